# Sourced: point CC/AR/RANLIB at `zig cc` targeting glibc 2.28 (wrappers in $1/bin, since
# autotools and OpenSSL's Configure want one word per tool). zig comes from PyPI (ziglang) in
# the tools venv that packaging/build-wheel.sh makes.
_W=$1
_ZIG="$_W/tools/bin/python -m ziglang"
mkdir -p "$_W/bin"
for _t in cc:"cc -target x86_64-linux-gnu.2.28" ar:ar ranlib:ranlib; do
    _name=zig-${_t%%:*}
    printf '#!/bin/sh\nexec %s %s "$@"\n' "$_ZIG" "${_t#*:}" >"$_W/bin/$_name.tmp"
    chmod +x "$_W/bin/$_name.tmp"
    mv "$_W/bin/$_name.tmp" "$_W/bin/$_name"
done
export CC="$_W/bin/zig-cc" AR="$_W/bin/zig-ar" RANLIB="$_W/bin/zig-ranlib"
# zig keeps its compile cache here rather than in $HOME.
export ZIG_GLOBAL_CACHE_DIR="$_W/zig-cache" ZIG_LOCAL_CACHE_DIR="$_W/zig-cache"
export CFLAGS="-O2 -fPIC"

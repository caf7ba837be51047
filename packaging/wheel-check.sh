#!/usr/bin/env bash
# `make wheel-check`: install the built wheel into a fresh venv inside a minimal Debian root file
# system that has Python but no libcurl and no compiler, and send over HTTPS to a FakeGraph
# running outside it (packaging/wheel_check.py says what is checked).
#   usage: packaging/wheel-check.sh PYTHON [WORKDIR [DISTDIR]]
# PYTHON runs FakeGraph (it needs graphsend[testing]: the dev venv). The root file system
# (debootstrap --variant=minbase, about a minute and 280 MB) is made once and kept in WORKDIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${1:?usage: wheel-check.sh PYTHON [WORKDIR [DISTDIR]]}
W=$(realpath -m "${2:-$ROOT/build/wheel-check}")
DIST=$(realpath -m "${3:-$ROOT/dist}")
SUITE=bookworm
ROOTFS=$W/rootfs-$SUITE

if [ "$(id -u)" != 0 ]; then
    echo "wheel-check: chroot needs root; run it as root (CI does) or in a container" >&2
    exit 1
fi
if [ ! -e "$ROOTFS/.complete" ]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        echo "wheel-check: installing debootstrap with apt-get..."
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq || true
        apt-get install -y -qq debootstrap >/dev/null
    fi
    rm -rf "$ROOTFS.tmp"
    mkdir -p "$W"
    echo "wheel-check: making a minimal $SUITE root file system (once)..."
    # minbase: essential packages only; python3-venv for the venv. No libcurl, no compiler.
    debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$ROOTFS.tmp" \
        http://deb.debian.org/debian >"$W/debootstrap.log" 2>&1 ||
        { tail -20 "$W/debootstrap.log"; exit 1; }
    touch "$ROOTFS.tmp/.complete"
    mv "$ROOTFS.tmp" "$ROOTFS"
fi
# setuptools for building the sdist offline (pip install --no-index), fetched once.
if ! ls "$W"/wheels/setuptools-*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip download -q --disable-pip-version-check --only-binary :all: \
        -d "$W/wheels" "setuptools>=77"
fi
wheel=$(ls "$DIST"/graphsend-*-manylinux*.whl)
sdist=$(ls "$DIST"/graphsend-*.tar.gz)
"$PYTHON" "$ROOT/packaging/wheel_check.py" --rootfs "$ROOTFS" --wheel "$wheel" --sdist "$sdist" \
    --wheels "$W/wheels"

# The whole suite against the installed wheel, not the in-place build: the wheel's compiler
# (clang) and libcurl differ, and the suite is what tells. The venv and its test extra are kept;
# the wheel is reinstalled on every run, and pytest runs from outside the checkout.
SUITE_VENV=$W/suite-venv
if [ ! -e "$SUITE_VENV/.complete" ]; then
    rm -rf "$SUITE_VENV"
    "$PYTHON" -m venv "$SUITE_VENV"
    "$SUITE_VENV/bin/pip" install -q --disable-pip-version-check --find-links "$DIST" \
        --only-binary graphsend "graphsend[test]" "setuptools>=77"
    touch "$SUITE_VENV/.complete"
fi
"$SUITE_VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
cd "$W"
"$SUITE_VENV/bin/python" -c 'import sys, graphsend, graphsend._native as n, graphsend._rules.ca as ca
assert graphsend.__file__.startswith(sys.prefix) and n.limited_api and ca.bundled_libcurl()
print("wheel-check: the suite against", n.__file__, n.libcurl_version, n.ssl_version)'
"$SUITE_VENV/bin/python" -m pytest -q -p no:cacheprovider -rs "$ROOT/tests"

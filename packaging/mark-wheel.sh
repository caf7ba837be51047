#!/usr/bin/env bash
# Write graphsend/_wheel.py into a source tree about to become the binary wheel: the marker that
# tells graphsend/_rules/ca.py that _native's libcurl has no CA store of its own.
#   usage: packaging/mark-wheel.sh SRCDIR WORKDIR   (WORKDIR as given to build-libcurl.sh)
set -euo pipefail
SRC=${1:?usage: mark-wheel.sh SRCDIR WORKDIR}
W=${2:?usage: mark-wheel.sh SRCDIR WORKDIR}
cat >"$SRC/graphsend/_wheel.py" <<MARKER
"""Present in the binary wheel only (packaging/mark-wheel.sh): _native links a static libcurl
built without a CA path, so graphsend/_rules/ca.py looks for the system's CA bundle itself."""

BUNDLED = "$(tr '\n' ';' <"$W/src/VERSIONS")"
MARKER

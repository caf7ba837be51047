#!/usr/bin/env bash
# `make lint`: csrc/ must still compile against the Limited API (GRAPHSEND_ABI3=1), which the
# binary wheel is built with; the in-place build uses the full API and would not notice.
# Syntax and types only (a few seconds), with the warnings-as-errors of the real build.
#   usage: packaging/abi3-check.sh PYTHON
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-python3}
include=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
curl_cflags=$(pkg-config --cflags libcurl 2>/dev/null || curl-config --cflags)
for f in csrc/*.c; do
    # shellcheck disable=SC2086
    "${CC:-cc}" -std=c11 -fsyntax-only -Wall -Wextra -Werror -DGRAPHSEND_ABI3=1 \
        -I"$include" $curl_cflags "$f"
done

#!/usr/bin/env bash
# Put the licence texts of what _native bundles into a wheel's .dist-info/licenses/bundled/
# (PEP 639), each named in METADATA as a License-File; the wheel is rewritten in place.
#   usage: packaging/add-licences.sh WHEEL WORKDIR   (WORKDIR as given to build-libcurl.sh)
# Needs Python with the `wheel` package (it rewrites RECORD).
set -euo pipefail
WHEEL=$(realpath "${1:?usage: add-licences.sh WHEEL WORKDIR}")
W=$(realpath "${2:?usage: add-licences.sh WHEEL WORKDIR}")
PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m wheel unpack -d "$tmp/unpacked" "$WHEEL" >/dev/null
tree=$(ls -d "$tmp"/unpacked/graphsend-*/)
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
# METADATA is headers, a blank line, then the README: the new headers go before that line.
for f in "$lic"/*; do
    echo "License-File: bundled/$(basename "$f")" # relative to .dist-info/licenses/ (PEP 639)
done >"$tmp/license-files"
awk -v extra="$tmp/license-files" '
    !done && $0 == "" { while ((getline line < extra) > 0) print line; done = 1 }
    { print }
    END { if (!done) while ((getline line < extra) > 0) print line }
' "$distinfo/METADATA" >"$tmp/METADATA"
mv "$tmp/METADATA" "$distinfo/METADATA"
mkdir -p "$tmp/packed"
"$PYTHON" -m wheel pack -d "$tmp/packed" "$tree" >/dev/null
mv "$tmp"/packed/*.whl "$WHEEL"

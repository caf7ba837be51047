#!/usr/bin/env bash
# Fetch the sources of the libraries bundled into the wheel: Debian bookworm's source packages
# (upstream tarball + Debian's patches, which carry the security fixes of a stable release),
# verified by apt against Debian's archive keys. A private apt state under $OUT keeps the
# machine's own apt configuration untouched.
#   usage: packaging/fetch-sources.sh OUTDIR
set -euo pipefail
OUT=$(realpath -m "${1:?usage: fetch-sources.sh OUTDIR}")
PKGS=(openssl nghttp2 curl)
mkdir -p "$OUT/apt/lists/partial" "$OUT/apt/cache/archives/partial" "$OUT/src"

if ls "$OUT"/src/openssl-*/Configure "$OUT"/src/nghttp2-*/configure.ac "$OUT"/src/curl-*/configure.ac \
    >/dev/null 2>&1; then
    exit 0 # already unpacked
fi

if ! command -v dpkg-source >/dev/null 2>&1; then # apt-get source unpacks with it
    echo "fetch-sources: installing dpkg-dev with apt-get..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev >/dev/null
fi
cat >"$OUT/apt/sources.list" <<'EOF'
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
EOF
APT=(apt-get -q -o "Dir::Etc::SourceList=$OUT/apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
    -o "Dir::State::Lists=$OUT/apt/lists" -o "Dir::Cache=$OUT/apt/cache" -o "Debug::NoLocking=1")
"${APT[@]}" update >/dev/null
cd "$OUT/src"
for pkg in "${PKGS[@]}"; do
    # Newest version first; a mirror's index can run ahead of its pool, so fall back to the
    # next one when a download fails. dpkg-source -x (run by apt-get source) applies the patches.
    versions=$(apt-cache "${APT[@]:2}" showsrc "$pkg" | sed -n 's/^Version: //p' | sort -urV)
    ok=""
    for v in $versions; do
        if "${APT[@]}" source "$pkg=$v" >"$OUT/apt/$pkg.log" 2>&1; then
            ok=$v
            break
        fi
        echo "fetch-sources: $pkg $v could not be downloaded, trying an older one" >&2
    done
    [ -n "$ok" ] || { cat "$OUT/apt/$pkg.log" >&2; exit 1; }
    echo "$pkg $ok" >>"$OUT/src/VERSIONS"
done
ls -d "$OUT"/src/*/

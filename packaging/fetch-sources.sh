#!/usr/bin/env bash
# Fetch and unpack the sources of the libraries bundled into the wheel: Debian bookworm's source
# packages (upstream tarball + Debian's patches, which carry a stable release's security fixes).
#   usage: packaging/fetch-sources.sh OUTDIR
# By default the files named in packaging/sources.lock, checked against their SHA-256 and patched
# with plain `patch`, so any machine with curl (or Python) can do it, Debian or not (cibuildwheel
# containers, macOS). GRAPHSEND_SOURCES=apt takes the newest bookworm versions with
# `apt-get source` instead (verified by apt against Debian's keys) and prints the lines for a new
# sources.lock; a Debian machine falls back to it when a pinned file is gone from the archive.
set -euo pipefail
OUT=${1:?usage: fetch-sources.sh OUTDIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) # (macOS has no realpath -m)
HERE=$(cd "$(dirname "$0")" && pwd)
PKGS=(openssl nghttp2 curl)
mkdir -p "$OUT/src"

if [ -e "$OUT/src/.complete" ]; then
    exit 0
fi

sha256() { if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1; }
download() { # url file
    if command -v curl >/dev/null; then
        curl -fsSL --retry 3 -o "$2.part" "$1"
    else
        python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$1" "$2.part"
    fi && mv "$2.part" "$2"
}

pinned() {
    local pkg version file sha url upstream dir
    rm -rf "$OUT/src" && mkdir -p "$OUT/src"
    while read -r pkg version file sha url; do
        case "$pkg" in '' | '#'*) continue ;; esac
        download "$url" "$OUT/src/$file" || { echo "fetch-sources: cannot download $url" >&2; return 1; }
        if [ "$(sha256 "$OUT/src/$file")" != "$sha" ]; then
            echo "fetch-sources: $file does not match its SHA-256 in sources.lock" >&2
            return 1
        fi
        echo "$pkg $version" >>"$OUT/src/VERSIONS.tmp"
    done <"$HERE/sources.lock"
    for pkg in "${PKGS[@]}"; do
        version=$(sed -n "s/^$pkg //p" "$OUT/src/VERSIONS.tmp" | head -1)
        upstream=${version%-*}
        dir=$OUT/src/$pkg-$upstream
        mkdir -p "$dir"
        tar -xf "$OUT/src/${pkg}_$upstream.orig.tar.gz" -C "$dir" --strip-components=1
        tar -xf "$OUT/src/${pkg}_$version.debian.tar.xz" -C "$dir"
        # What dpkg-source -x does for a "3.0 (quilt)" package: apply debian/patches/series.
        if [ -f "$dir/debian/patches/series" ]; then
            sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$dir/debian/patches/series" |
                while read -r patch opts; do
                    # shellcheck disable=SC2086
                    patch -d "$dir" -s -N ${opts:--p1} <"$dir/debian/patches/$patch" ||
                        { echo "fetch-sources: $pkg: $patch does not apply" >&2; exit 1; }
                done
        fi
    done
    sort -u "$OUT/src/VERSIONS.tmp" >"$OUT/src/VERSIONS" && rm "$OUT/src/VERSIONS.tmp"
}

from_apt() {
    local APT pkg versions v ok
    command -v apt-get >/dev/null || { echo "fetch-sources: no apt-get here" >&2; return 1; }
    if ! command -v dpkg-source >/dev/null 2>&1; then # apt-get source unpacks with it
        echo "fetch-sources: installing dpkg-dev with apt-get..."
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev >/dev/null
    fi
    # A private apt state keeps the machine's own apt configuration untouched.
    rm -rf "$OUT/src" "$OUT/apt" && mkdir -p "$OUT/src" "$OUT/apt/lists/partial" "$OUT/apt/cache/archives/partial"
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
        # next one when a download fails.
        versions=$(apt-cache "${APT[@]:2}" showsrc "$pkg" | sed -n 's/^Version: //p' | sort -urV)
        ok=""
        for v in $versions; do
            if "${APT[@]}" source "$pkg=$v" >"$OUT/apt/$pkg.log" 2>&1; then
                ok=$v
                # The lines of a sources.lock that pins what was just fetched.
                "${APT[@]}" source --print-uris "$pkg=$v" 2>/dev/null |
                    sed -n "s/^'\([^']*\)' \([^ ]*\) [0-9]* SHA256:\([0-9a-f]*\)$/$pkg $v \2 \3 \1/p" |
                    grep -E '(orig\.tar\.gz|debian\.tar\.xz) ' >>"$OUT/src/sources.lock"
                break
            fi
            echo "fetch-sources: $pkg $v could not be downloaded, trying an older one" >&2
        done
        [ -n "$ok" ] || { cat "$OUT/apt/$pkg.log" >&2; return 1; }
        echo "$pkg $ok" >>"$OUT/src/VERSIONS"
    done
    echo "fetch-sources: fetched with apt-get; to pin these, use $OUT/src/sources.lock:" >&2
    cat "$OUT/src/sources.lock" >&2
}

if [ "${GRAPHSEND_SOURCES:-pinned}" = apt ]; then
    from_apt
elif ! pinned; then
    echo "fetch-sources: the pinned sources failed; trying apt-get source (GRAPHSEND_SOURCES=apt)" >&2
    from_apt
fi
touch "$OUT/src/.complete"

#!/usr/bin/env bash
# Build the static libcurl that the wheel bundles: OpenSSL (TLS), nghttp2 (HTTP/2), libcurl with
# HTTP(S) only, compiled by `zig cc` for glibc 2.28 (manylinux_2_28) so the result runs on any
# Linux with glibc >= 2.28. Everything is static and position independent; the extension links it
# in and hides its symbols (no clash with the libssl that Python's own _ssl module loads).
#   usage: packaging/build-libcurl.sh WORKDIR     (WORKDIR as given to fetch-sources.sh)
# Each library is built once; a stamp file per library makes a second run instant.
# GRAPHSEND_NATIVE_CC=1: the machine's own compiler ($CC, else cc) for the machine's own target,
# where the machine already is the oldest target (cibuildwheel's manylinux images, macOS with
# MACOSX_DEPLOYMENT_TARGET): packaging/cibuildwheel.toml.
set -euo pipefail
W=${1:?usage: build-libcurl.sh WORKDIR}
mkdir -p "$W" && W=$(cd "$W" && pwd) # (macOS has no realpath -m)
HERE=$(cd "$(dirname "$0")" && pwd)
JOBS=${JOBS:-2}
PREFIX=$W/prefix
mkdir -p "$PREFIX" "$W/bin"
"$HERE/fetch-sources.sh" "$W"
if [ "${GRAPHSEND_NATIVE_CC:-0}" = 1 ]; then
    export CC=${CC:-cc} CFLAGS="${CFLAGS:-} -O2 -fPIC"
    OPENSSL_CONFIGURE=(./config) # detects the target (linux-aarch64, darwin64-arm64-cc, ...)
    HOST=()
    CMAKE=${CMAKE:-$(command -v cmake)}
else
    # shellcheck source=packaging/zig-env.sh
    source "$HERE/zig-env.sh" "$W"
    OPENSSL_CONFIGURE=(./Configure linux-x86_64)
    HOST=(--host=x86_64-linux-gnu)
    CMAKE=${CMAKE:-$W/tools/bin/cmake}
fi

src() { ls -d "$W"/src/"$1"-[0-9]*/ | head -1; }

if [ ! -e "$PREFIX/.openssl" ]; then
    cd "$(src openssl)"
    # Only what libcurl's TLS needs (3.0 has no no-docs/no-apps; build_libs skips both). OPENSSLDIR is a private path so that another distribution's
    # openssl.cnf is not read by accident (OPENSSL_CONF still names one when wanted).
    "${OPENSSL_CONFIGURE[@]}" --prefix="$PREFIX" --libdir=lib --openssldir=/usr/local/ssl \
        no-shared no-module no-tests no-engine no-legacy no-comp no-ssl3 \
        no-weak-ssl-ciphers no-dtls no-srtp no-sctp no-afalgeng no-capieng no-ui-console \
        -fPIC >"$W/openssl-configure.log" 2>&1 ||
        { tail -30 "$W/openssl-configure.log"; exit 1; }
    make -j"$JOBS" build_libs >"$W/openssl-build.log" 2>&1 || { tail -40 "$W/openssl-build.log"; exit 1; }
    make install_dev >>"$W/openssl-build.log" 2>&1 || { tail -40 "$W/openssl-build.log"; exit 1; }
    touch "$PREFIX/.openssl"
fi

if [ ! -e "$PREFIX/.nghttp2" ]; then
    # Debian's nghttp2 source has no generated configure; its CMake build needs no autotools.
    rm -rf "$W/nghttp2-build"
    "$CMAKE" -S "$(src nghttp2)" -B "$W/nghttp2-build" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DCMAKE_INSTALL_PREFIX="$PREFIX" \
        -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_C_COMPILER="$CC" ${AR:+-DCMAKE_AR="$AR"} \
        ${RANLIB:+-DCMAKE_RANLIB="$RANLIB"} -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DENABLE_LIB_ONLY=ON \
        -DENABLE_STATIC_LIB=ON -DENABLE_SHARED_LIB=OFF -DENABLE_DOC=OFF \
        -DENABLE_FAILMALLOC=OFF >"$W/nghttp2-configure.log" 2>&1 ||
        { tail -30 "$W/nghttp2-configure.log"; exit 1; }
    "$CMAKE" --build "$W/nghttp2-build" -j"$JOBS" >"$W/nghttp2-build.log" 2>&1 ||
        { tail -40 "$W/nghttp2-build.log"; exit 1; }
    "$CMAKE" --install "$W/nghttp2-build" >>"$W/nghttp2-build.log" 2>&1 ||
        { tail -40 "$W/nghttp2-build.log"; exit 1; }
    touch "$PREFIX/.nghttp2"
fi

if [ ! -e "$PREFIX/.curl" ]; then
    cd "$(src curl)"
    [ -x configure ] || autoreconf -fi >/dev/null
    # HTTP and HTTPS only. No CA path is compiled in: graphsend finds the CA bundle at run time
    # (graphsend/_rules/ca.py), since a path baked in on one distribution is wrong on the next.
    PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig" LIBS="-lpthread" \
        ./configure ${HOST[@]+"${HOST[@]}"} --prefix="$PREFIX" --libdir="$PREFIX/lib" \
        --disable-shared --enable-static --with-pic \
        --with-openssl="$PREFIX" --with-nghttp2="$PREFIX" \
        --without-ca-bundle --without-ca-path --without-ca-fallback \
        --without-zlib --without-brotli --without-zstd --without-libidn2 --without-libpsl \
        --without-librtmp --without-libssh2 --without-libssh --without-wolfssh --without-gssapi \
        --without-libgsasl --without-hyper --without-quiche --without-ngtcp2 --without-nghttp3 \
        --disable-ldap --disable-ldaps --disable-rtsp --disable-dict --disable-telnet \
        --disable-tftp --disable-pop3 --disable-imap --disable-smb --disable-smtp \
        --disable-gopher --disable-mqtt --disable-ftp --disable-file --disable-manual \
        --disable-ntlm --disable-ntlm-wb --disable-kerberos-auth --disable-negotiate-auth \
        --enable-threaded-resolver --enable-ipv6 \
        >"$W/curl-configure.log" 2>&1 || { tail -30 "$W/curl-configure.log"; exit 1; }
    make -j"$JOBS" -C lib >"$W/curl-build.log" 2>&1 || { tail -40 "$W/curl-build.log"; exit 1; }
    make -C lib install >>"$W/curl-build.log" 2>&1 || { tail -40 "$W/curl-build.log"; exit 1; }
    make -C include install >>"$W/curl-build.log" 2>&1 || { tail -40 "$W/curl-build.log"; exit 1; }
    install -m 644 libcurl.pc "$PREFIX/lib/pkgconfig/"
    install -D -m 755 curl-config "$PREFIX/bin/curl-config"
    touch "$PREFIX/.curl"
fi

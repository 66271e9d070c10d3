#!/usr/bin/env bash
# Installs the system packages the build needs when they are missing: librdkafka is built
# from source by rdkafka-sys with TLS, which needs OpenSSL's headers (libssl-dev) and
# pkg-config. As root through apt; otherwise fails saying what to install.
set -euo pipefail
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing libssl-dev and pkg-config"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libssl-dev pkg-config >/dev/null
else
    echo "deps: OpenSSL headers are missing: install libssl-dev and pkg-config (Debian) or openssl-devel (Fedora)" >&2
    exit 1
fi

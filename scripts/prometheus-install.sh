#!/usr/bin/env bash
# Installs Debian's prometheus package (the real server `prometheus` and `promtool`) when
# either is missing: as root through apt; otherwise fails saying what to install. Used by
# scripts/promtool-check.sh (make test) and scripts/demo.sh (make demo).
set -euo pipefail
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "prometheus: installing Debian's prometheus package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
else
    echo "prometheus and promtool are missing: install Debian's prometheus package (apt-get install prometheus)" >&2
    exit 1
fi

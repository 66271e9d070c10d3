#!/usr/bin/env bash
# Checks the Prometheus side with the real promtool from Debian's prometheus package,
# installing it when missing (as root, through apt): rule files are valid, every alert's
# unit tests pass (fires on a swing, quiet on a steady series), and the golden expositions
# pass promtool's metric lint. Fails, saying what is missing, when it cannot install.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "promtool: installing Debian's prometheus package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "promtool is missing: install Debian's prometheus package (apt-get install prometheus)" >&2
    exit 1
  fi
fi
promtool --version 2>&1 | head -1

promtool check rules deploy/prometheus/rules/*.yml
promtool test rules deploy/prometheus/tests/*.yml
for exposition in tests/golden/*/expected.prom; do
  promtool check metrics < "$exposition"
done
echo "promtool: rules valid, rule unit tests and exposition lint passed"

#!/usr/bin/env bash
# Checks the Prometheus side with the real promtool from Debian's prometheus package,
# installing it when missing (as root, through apt): rule files are valid, every alert's
# unit tests pass (fires on a swing, quiet on a steady series), and the golden expositions
# pass promtool's metric lint. Fails, saying what is missing, when it cannot install.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/prometheus-install.sh
promtool --version 2>&1 | head -1

promtool check rules deploy/prometheus/rules/*.yml
promtool test rules deploy/prometheus/tests/*.yml
for exposition in tests/golden/*/expected.prom; do
  promtool check metrics < "$exposition"
done
echo "promtool: rules valid, rule unit tests and exposition lint passed"

#!/usr/bin/env bash
# `make demo`: a local Tansu broker, the ledger topic, a generated ledger streaming in at a
# steady rate, and `marginstream run` live with /metrics, with a short summary every few
# seconds. Ctrl-C stops everything (marginstream takes its final checkpoint first).
#
# Environment: DEMO_SECONDS (default: until Ctrl-C), DEMO_RATE (events/s, default 300),
# KAFKA_BROKERS (use that broker instead of starting Tansu; set kafka.brokers to match).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/marginstream}
CONFIG=config/demo.toml
DIR=target/demo
PORT=9092
RATE=${DEMO_RATE:-300}
LISTEN=127.0.0.1:9898
mkdir -p "$DIR"
rm -rf "$DIR/state"

pids=()
cleanup() {
    trap - EXIT INT TERM
    echo
    echo "demo: stopping"
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [[ -n ${RUN_PID:-} ]] && kill -TERM "$RUN_PID" 2>/dev/null && wait "$RUN_PID" 2>/dev/null || true
    if [[ -z ${KAFKA_BROKERS:-} ]]; then scripts/broker.sh stop "$PORT" >/dev/null || true; fi
    echo "demo: stopped; marginstream's log is $DIR/run.log"
}
trap cleanup EXIT INT TERM

scripts/broker.sh start "$PORT"
overrides=()
if [[ -n ${KAFKA_BROKERS:-} ]]; then overrides=(--brokers "$KAFKA_BROKERS"); fi
"$BIN" create-topics --config "$CONFIG" "${overrides[@]}" --partitions 4

"$BIN" run --config "$CONFIG" "${overrides[@]}" 2>"$DIR/run.log" &
RUN_PID=$!

# 40 customers over the last 45 days, with 1 % bad lines and 1 % repeats, streamed.
"$BIN" generate --customers 40 --days 45 --end now --seed 7 --bad-share 0.01 \
    --duplicate-share 0.01 --rate "$RATE" 2>/dev/null |
    "$BIN" produce --config "$CONFIG" "${overrides[@]}" --input - 2>"$DIR/produce.log" &
pids+=($!)

cat <<TEXT

marginstream is live:
  metrics   http://$LISTEN/metrics
  health    http://$LISTEN/healthz     ready   http://$LISTEN/readyz
  ledger    topic cel.events (4 partitions), rejected messages in cel.events.dlq
  streaming about $RATE events/s; Ctrl-C stops.

TEXT

summary() {
    python3 - "$1" <<'PY'
import sys
values = {}
for line in open(sys.argv[1]):
    if line.startswith("#") or " " not in line:
        continue
    key, value = line.rsplit(" ", 1)
    values[key] = float(value)
def get(key, default=float("nan")):
    return values.get(key, default)
def pct(key):
    v = get(key)
    return "  n/a " if v != v else f"{100 * v:5.1f}%"
rejected = sum(v for k, v in values.items() if k.startswith("marginstream_rejected_events_total"))
W = 'window="30d"'
gm_m = pct("marginstream_portfolio_gm_market_ratio{%s}" % W)
gm_o = pct("marginstream_portfolio_gm_operating_ratio{%s}" % W)
drag = pct("marginstream_portfolio_services_drag_ratio{%s}" % W)
print(f"ready={int(get('marginstream_ready', 0))} consumed={int(get('marginstream_consumed_messages_total', 0))}"
      f" ({get('marginstream_consumed_messages_per_second', 0):.0f}/s) customers={int(get('marginstream_customers', 0))}"
      f" rejected={int(rejected)} dlq={int(get('marginstream_dlq_messages_total', 0))}"
      f" | 30d portfolio GM-M {gm_m} GM-O {gm_o} drag {drag}")
PY
}

started=$SECONDS
while :; do
    sleep 3
    kill -0 "$RUN_PID" 2>/dev/null || { echo "demo: marginstream exited; see $DIR/run.log" >&2; tail -5 "$DIR/run.log" >&2; exit 1; }
    if curl -fsS "http://$LISTEN/metrics" -o "$DIR/metrics.prom" 2>/dev/null; then
        summary "$DIR/metrics.prom"
    else
        echo "waiting for /metrics (joining the group takes a few seconds)"
    fi
    if [[ -n ${DEMO_SECONDS:-} ]] && ((SECONDS - started >= DEMO_SECONDS)); then
        break
    fi
done

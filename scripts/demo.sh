#!/usr/bin/env bash
# `make demo`: a local Tansu broker, a generated ledger of 300 customers (45 days of history,
# then a live stream that runs on in wall time, in which acme "beta"'s margin swings),
# `marginstream run` with /metrics and the query API, and a real Prometheus scraping it with
# the shipped rules, its history backfilled. A short summary every few seconds. Ctrl-C stops
# everything (marginstream takes its final checkpoint first).
#
# Environment: DEMO_SECONDS (default: until Ctrl-C), DEMO_RATE (live events/s, default 300),
# DEMO_SWING_AFTER (when acme "beta"'s infrastructure bill jumps, default 60s into the live
# part), DEMO_PROMETHEUS_PORT (default 9090, or a free port when it is taken), KAFKA_BROKERS
# (use that broker instead of starting Tansu). For tests (tests/e2e/demo_smoke.py): BIN
# (default target/release/marginstream), DEMO_WORK_DIR (logs, state and Prometheus's data;
# default target/demo), DEMO_KAFKA_PORT (Tansu's port, default 9092), DEMO_LISTEN (run's
# address, default 127.0.0.1:9898), DEMO_CUSTOMERS (default 300),
# DEMO_EVENTS_PER_CUSTOMER_DAY (default 50).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/marginstream}
CONFIG=config/demo.toml
DIR=${DEMO_WORK_DIR:-target/demo}
PORT=${DEMO_KAFKA_PORT:-9092}
BROKERS=${KAFKA_BROKERS:-127.0.0.1:$PORT}
RATE=${DEMO_RATE:-300}
SWING_AFTER=${DEMO_SWING_AFTER:-60s}
LISTEN=${DEMO_LISTEN:-127.0.0.1:9898}
SWING='acme "beta"'
CUSTOMERS=${DEMO_CUSTOMERS:-300}
PER_DAY=${DEMO_EVENTS_PER_CUSTOMER_DAY:-50}
# The week-ago baseline of the 7-day comparison covers this much of the live part.
BASELINE_HOURS=12

scripts/prometheus-install.sh
mkdir -p "$DIR"
rm -rf "$DIR/state" "$DIR/prometheus"
mkdir -p "$DIR/prometheus"

pids=()
cleanup() {
    trap - EXIT INT TERM
    echo
    echo "demo: stopping"
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ -n ${PROMETHEUS_PID:-} ]]; then
        kill -TERM "$PROMETHEUS_PID" 2>/dev/null && wait "$PROMETHEUS_PID" 2>/dev/null || true
    fi
    if [[ -n ${RUN_PID:-} ]]; then
        kill -TERM "$RUN_PID" 2>/dev/null && wait "$RUN_PID" 2>/dev/null || true
    fi
    if [[ -z ${KAFKA_BROKERS:-} ]]; then scripts/broker.sh stop "$PORT" >/dev/null || true; fi
    echo "demo: stopped; the logs are in $DIR (run.log, produce.log, prometheus.log)"
}
# Ctrl-C or a TERM is the way to stop: clean up and end with success.
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM

# Answers once $1 (a URL) does, or fails after 60 s or when process $2 exits.
wait_for() {
    local deadline=$((SECONDS + 60))
    until curl -fsS -o /dev/null "$1" 2>/dev/null; do
        if ((SECONDS > deadline)) || ! kill -0 "$2" 2>/dev/null; then
            echo "demo: $1 does not answer; see $DIR/*.log" >&2
            return 1
        fi
        sleep 0.3
    done
}

iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
urlencode() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

# In a session of its own, as run and Prometheus below: Ctrl-C reaches this script only.
setsid scripts/broker.sh start "$PORT"
"$BIN" create-topics --config "$CONFIG" --brokers "$BROKERS" --partitions 4

# The ledger: 45 days of history up to now (T0), 1 % bad lines and 1 % repeats. The same
# options give the same bytes, so the history backfilled below is exactly the beginning of
# what streams into Kafka. 50 events per customer and day (650k events, produced in about
# 2 s): with the default 5, a customer's 7-day GM-M rests on a few dozen costs and moves 5
# points from one week to the next by chance: the swing alert fires for a dozen customers.
T0=$(date -u +%s)
ledger=(--customers "$CUSTOMERS" --days 45 --events-per-customer-day "$PER_DAY" --end "$(iso "$T0")"
    --seed 7 --bad-share 0.01 --duplicate-share 0.01)

# The backfill: what Prometheus needs of the past for the 7-day comparison
# (marginstream:customer_gm_market_ratio_7d:change7d, `offset 7d`), which a demo of minutes
# cannot scrape itself. The history of every gauge of the 7d window, from a week before T0
# for BASELINE_HOURS, every 4 minutes (within the 5-minute lookback of `offset`). The replay
# starts with a marker at T0 - 7d - 10m, then the week of events before it, which fill the
# window without taking a sample each: every sample is a whole 7-day window.
week=$((7 * 86400))
printf '{"event_type":"Cost_Event","event_id":"demo-baseline-marker","occurred_at":"%s","amount":"0","currency":"USD","cost_function":"Excluded"}\n' \
    "$(iso $((T0 - week - 600)))" >"$DIR/baseline-marker.jsonl"
"$BIN" generate "${ledger[@]}" 2>/dev/null |
    MARGINSTREAM_LEDGER__WINDOWS='["7d"]' MARGINSTREAM_LEDGER__LIFETIME=false \
    "$BIN" replay --config "$CONFIG" --input "$DIR/baseline-marker.jsonl" --input - \
    --since "$(iso $((T0 - 2 * week - 3600)))" --until "$(iso $((T0 - week + BASELINE_HOURS * 3600)))" \
    --progress never --rejected-out "$DIR/baseline-rejected.jsonl" --format json --output /dev/null \
    --openmetrics-out "$DIR/baseline.om" --step 4m 2>"$DIR/baseline.log"
promtool tsdb create-blocks-from openmetrics --max-block-duration=24h "$DIR/baseline.om" \
    "$DIR/prometheus/data" >>"$DIR/baseline.log"
rm -f "$DIR/baseline.om"

# run and Prometheus in sessions of their own: Ctrl-C reaches this script only, whose cleanup
# stops them in order (Prometheus, run with its final checkpoint and commit, then the broker).
setsid "$BIN" run --config "$CONFIG" --brokers "$BROKERS" --listen "$LISTEN" --state-dir "$DIR/state" \
    2>"$DIR/run.log" &
RUN_PID=$!

# The history at once, then the live part at DEMO_RATE, until stopped.
"$BIN" generate "${ledger[@]}" --follow --rate "$RATE" --swing-after "$SWING_AFTER" 2>/dev/null |
    "$BIN" produce --config "$CONFIG" --brokers "$BROKERS" --input - 2>"$DIR/produce.log" &
pids+=($!)

# Prometheus: the shipped rules with only their `for:` cut to 0s, so an alert fires at its
# first evaluation instead of after 30 minutes; the expressions are unchanged.
PROMETHEUS_PORT=$(python3 - "${DEMO_PROMETHEUS_PORT:-9090}" <<'PY'
import socket, sys
with socket.socket() as s:
    try:
        s.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
PY
)
sed -E 's/^(\s*)for: \S+$/\1for: 0s/' deploy/prometheus/rules/marginstream.rules.yml >"$DIR/prometheus/rules.yml"
cat >"$DIR/prometheus/prometheus.yml" <<YAML
# Written by scripts/demo.sh.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files: [rules.yml]
scrape_configs:
  - job_name: marginstream
    static_configs:
      - targets: ["$LISTEN"]
YAML
wait_for "http://$LISTEN/healthz" "$RUN_PID"
setsid prometheus --config.file="$DIR/prometheus/prometheus.yml" --storage.tsdb.path="$DIR/prometheus/data" \
    --storage.tsdb.retention.time=100y --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
    >"$DIR/prometheus.log" 2>&1 &
PROMETHEUS_PID=$!
wait_for "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" "$PROMETHEUS_PID"

P=http://127.0.0.1:$PROMETHEUS_PORT
# Debian's build serves the classic UI only, whose alerts page is /classic/alerts.
ALERTS=$P/alerts
if [[ $(curl -s -o /dev/null -w '%{http_code}' "$ALERTS") == 404 ]]; then ALERTS=$P/classic/alerts; fi
graph() { echo "$P/graph?g0.expr=$(urlencode "$1")&g0.tab=0&g0.range_input=$2"; }
day_seconds=$((CUSTOMERS * PER_DAY * 107 / 100 / RATE))
cat <<TEXT

marginstream is live. $CUSTOMERS customers: 45 days of history, then the ledger runs on at $RATE
events/s, stamped with the wall clock. A ledger day passes every ${day_seconds} s or so: the windows
fill faster than in real time, watch the ratios more than the amounts. About $SWING_AFTER in,
acme "beta"'s infrastructure bill jumps: its 7-day GM-M falls 30 points or more below a week
ago, and the alert MarginstreamCustomerGmMarketDrop fires for it.

  /metrics     http://$LISTEN/metrics
               metrics.customers_max = 50 ($CONFIG): the 50 customers with the most 30-day
               revenue, and acme "beta" always, get series of their own; the other
               $((CUSTOMERS - 50)) are summed into customer_id="__other__"
  query API    the worst 30-day GM-M, over every customer whatever the budget:
               http://$LISTEN/api/v1/customers?window=30d&sort=gm_market_ratio&order=asc&limit=5
               the portfolio and its ACV tiers: http://$LISTEN/api/v1/portfolio
  Prometheus   $P (scrapes run every 5 s; the shipped rules, their for: cut to 0s)
    GM-M by tier     $(graph 'marginstream:segment_gm_market:ratio{window="30d"}' 15m)
    acme "beta" 7d   $(graph 'marginstream_gm_market_ratio{customer_id="acme \"beta\"",window="7d"}' 15m)
    7d vs week ago   $(graph 'marginstream:customer_gm_market_ratio_7d:change7d' 15m)
    alerts           $ALERTS
                     MarginstreamCustomerGmMarketDrop: acme "beta", and a few
                     infrastructure-heavy accounts whose busy weeks cross 5 points too;
                     MarginstreamPortfolioGmMarketBelow70: the generated portfolio sits
                     near 66 %; MarginstreamRejectedEvents: the ledger's 1 % bad lines.
  backfill     the week-ago baseline of the 7-day comparison: ${BASELINE_HOURS}h of the 7d window
               from a week before now, every 4 minutes ($DIR/baseline.log)
  ledger       topic cel.events (4 partitions), rejected messages in cel.events.dlq

Ctrl-C stops.

TEXT

started=$SECONDS
while :; do
    sleep 3
    kill -0 "$RUN_PID" 2>/dev/null || { echo "demo: marginstream exited; see $DIR/run.log" >&2; tail -5 "$DIR/run.log" >&2; exit 1; }
    kill -0 "$PROMETHEUS_PID" 2>/dev/null || { echo "demo: prometheus exited; see $DIR/prometheus.log" >&2; tail -5 "$DIR/prometheus.log" >&2; exit 1; }
    python3 scripts/demo-summary.py "$LISTEN" "$SWING"
    if [[ -n ${DEMO_SECONDS:-} ]] && ((SECONDS - started >= DEMO_SECONDS)); then
        break
    fi
done

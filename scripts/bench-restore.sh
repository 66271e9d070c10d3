#!/usr/bin/env bash
# Restart from a checkpoint, measured with 100k customers: written to target/bench/restore.md
# and the "## Restore" section of target/bench/report.md.
#
#  1. a local Tansu broker (or KAFKA_BROKERS), a topic of 4 partitions, and a ledger of
#     CUSTOMERS (100000) customers over DAYS (3) days, produced to it;
#  2. `marginstream run` reads it all (until /readyz says ready and every message is counted),
#     then stops on SIGTERM, writing its final checkpoint;
#  3. ROUNDS (3) times: `marginstream run` starts again on that checkpoint; reported are
#     marginstream_restore_duration_seconds (read, verify and decode the checkpoint), the
#     time from process start to /readyz answering 200 (includes the ~3 s group join of
#     this broker), and the checkpoint's size; medians. The restored gauges are checked
#     once: the counters still account for every message.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
CUSTOMERS=${CUSTOMERS:-100000}
DAYS=${DAYS:-3}
OUT=target/bench
WORK=$OUT/restore
BIN=target/release/marginstream
mkdir -p "$WORK"
[[ -x $BIN ]] || cargo build --release -p marginstream

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
broker_port=
if [[ -z ${KAFKA_BROKERS:-} ]]; then
    broker_port=$(free_port)
    scripts/broker.sh start "$broker_port" >/dev/null
    brokers=127.0.0.1:$broker_port
else
    brokers=$KAFKA_BROKERS
fi
run_pid=
cleanup() {
    [[ -n $run_pid ]] && kill "$run_pid" 2>/dev/null || true
    [[ -n $broker_port ]] && scripts/broker.sh stop "$broker_port" >/dev/null || true
}
trap cleanup EXIT

port=$(free_port)
suffix=$$-$(date +%s)
rm -rf "$WORK/state"
cat >"$WORK/config.toml" <<TOML
[kafka]
brokers = "$brokers"
topic = "restore-$suffix"
dlq_topic = "restore-$suffix.dlq"
group_id = "restore-$suffix"
[kafka.properties]
"session.timeout.ms" = "6000"
[metrics]
listen = "127.0.0.1:$port"
[ledger]
clock = "event"
[state]
dir = "$WORK/state"
checkpoint_interval = "1h"
TOML

ledger=$OUT/ledger-restore-${CUSTOMERS}c-${DAYS}d.jsonl
[[ -f $ledger ]] || "$BIN" generate --customers "$CUSTOMERS" --days "$DAYS" --seed 3 --output "$ledger" 2>/dev/null
lines=$(wc -l <"$ledger")
"$BIN" create-topics --config "$WORK/config.toml" --partitions 4 2>/dev/null
"$BIN" produce --config "$WORK/config.toml" --input "$ledger" 2>/dev/null

metric() { curl -fsS "http://127.0.0.1:$port/metrics" | awk -v name="$1" '$1 == name { print $2 }'; }
counted() {
    curl -fsS "http://127.0.0.1:$port/metrics" |
        awk '/^marginstream_(events_total|rejected_events_total)\{/ { s += $2 } END { printf "%d", s }'
}
# Ready, and (with `all`) every message counted: a scrape of 100k customers is hundreds of
# megabytes, so the restarts below wait for /readyz alone.
wait_ready() {
    local deadline=$((SECONDS + 600))
    until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && { [[ ${1:-} == fast ]] || [[ $(counted) == "$lines" ]]; }; do
        ((SECONDS < deadline)) || { echo "run did not catch up; see $WORK/run.log" >&2; exit 1; }
        kill -0 "$run_pid" || { echo "run exited; see $WORK/run.log" >&2; exit 1; }
        sleep 0.05
    done
}
stop_run() {
    kill -TERM "$run_pid"
    wait "$run_pid" || true
    run_pid=
}

"$BIN" run --config "$WORK/config.toml" 2>"$WORK/run.log" &
run_pid=$!
wait_ready
customers=$(metric marginstream_customers)
stop_run
size=$(stat -c %s "$WORK/state/checkpoint.bin")

results=()
for ((round = 1; round <= ROUNDS; round++)); do
    started=$(date +%s.%N)
    "$BIN" run --config "$WORK/config.toml" 2>>"$WORK/run.log" &
    run_pid=$!
    wait_ready fast
    ready=$(python3 -c "import time; print(f'{time.time() - $started:.2f}')")
    restore=$(metric marginstream_restore_duration_seconds)
    results+=("$restore $ready")
    echo "round $round: restore ${restore}s, ready after ${ready}s"
    if ((round == 1)) && [[ $(counted) != "$lines" ]]; then
        echo "the restored counters do not account for the $lines messages" >&2
        exit 1
    fi
    stop_run
done

python3 - "$OUT/restore.md" "$customers" "$lines" "$size" "${results[@]}" <<'PY'
import statistics, sys
out, customers, lines, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rounds = [tuple(float(x) for x in r.split()) for r in sys.argv[5:]]
restore = statistics.median(r[0] for r in rounds)
ready = statistics.median(r[1] for r in rounds)
with open(out, "w") as f:
    f.write("## Restore\n\n")
    f.write(f"`scripts/bench-restore.sh`: {customers} customers, {lines} events over 4 partitions, "
            f"checkpoint {size / 1e6:.1f} MB.\n\n")
    f.write("| round | restore (read, verify, decode) | start to /readyz |\n|---|---|---|\n")
    for i, (a, b) in enumerate(rounds, 1):
        f.write(f"| {i} | {a * 1000:.0f} ms | {b:.2f} s |\n")
    f.write(f"| **median** | **{restore * 1000:.0f} ms** | **{ready:.2f} s** |\n\n")
    f.write("Start to /readyz includes the group join of this broker (about 3 s with "
            "session.timeout.ms = 6000) and reading each partition to its end.\n")
PY
scripts/report-section.py "$OUT/report.md" "$OUT/restore.md"
cat "$OUT/restore.md"

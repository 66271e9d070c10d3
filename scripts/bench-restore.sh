#!/usr/bin/env bash
# Where a restarted or moved partition gets its state, measured with 100k customers: written
# to target/bench/restore.md and the "## Restore" section of target/bench/report.md.
#
#  1. a local Tansu broker (or KAFKA_BROKERS), a topic of 4 partitions, and a ledger of
#     CUSTOMERS (100000) customers over DAYS (3) days, produced to it;
#  2. `marginstream run` reads it all from the beginning with a checkpoint every 10 s, each
#     also publishing the partitions' snapshots to the state topic; reported: the time from
#     process start to /readyz with every message counted (a rebuild from the ledger, the
#     group join included), the loop's longest pause (marginstream_loop_service_max_seconds)
#     and the last checkpoint's phases (encode on the loop; write and publish in the
#     background); then it stops on SIGTERM, writing its final checkpoint and snapshots;
#     the checkpoint's size and the snapshots' size in the state topic;
#  3. ROUNDS (3) times each, interleaved: a restart on that checkpoint (local), a start on
#     an empty state.dir (restores from the state topic), a start on an empty state.dir with
#     the state topic off (rebuilds from the ledger); reported: start to /readyz 200, and
#     the restore's own time (marginstream_restore_duration_seconds for the checkpoint,
#     marginstream_state_restore_duration_seconds for the state topic); medians. The restored
#     counters are checked once per kind: they account for every message.
# Start to /readyz includes this broker's group join (about 3 s: Tansu assigns partitions
# session.timeout.ms / 2 after a join, 6 s here).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
CUSTOMERS=${CUSTOMERS:-100000}
DAYS=${DAYS:-3}
OUT=target/bench
WORK=$OUT/restore
BIN=${BIN:-target/release/marginstream}
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
rm -rf "$WORK"/state*
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
checkpoint_interval = "10s"
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
# Ready, and (unless `fast`) every message counted: a scrape of 100k customers is hundreds
# of megabytes, so the timed restarts wait for /readyz alone and count once afterwards.
wait_ready() {
    local deadline=$((SECONDS + 900))
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
elapsed_since() { python3 -c "import time; print(f'{time.time() - $1:.2f}')"; }

# 2. From the beginning, with checkpoints and snapshots along the way.
started=$(date +%s.%N)
"$BIN" run --config "$WORK/config.toml" 2>"$WORK/run.log" &
run_pid=$!
wait_ready
first_ready=$(elapsed_since "$started")
# One more checkpoint after the end (the interval is 10 s), so that its phases are those of
# a whole state.
sleep 12
customers=$(metric marginstream_customers)
pause_max=$(metric marginstream_loop_service_max_seconds)
encode=$(metric 'marginstream_checkpoint_duration_seconds{phase="encode"}')
write=$(metric 'marginstream_checkpoint_duration_seconds{phase="write"}')
publish=$(metric 'marginstream_checkpoint_duration_seconds{phase="publish"}')
published=$(metric marginstream_state_snapshots_published_total)
stop_run
size=$(stat -c %s "$WORK/state/checkpoint.bin")
echo "from the beginning: ready after ${first_ready}s; loop pause max ${pause_max}s; checkpoint encode ${encode}s write ${write}s publish ${publish}s; $published snapshots"

# 3. Restarts, interleaved.
results=()
snapshot_bytes=
for ((round = 1; round <= ROUNDS; round++)); do
    for kind in local state_topic rebuild; do
        config=$WORK/config.toml
        env=()
        case $kind in
            local) ;;
            state_topic)
                rm -rf "$WORK/state-fresh"
                env=(MARGINSTREAM_STATE__DIR="$WORK/state-fresh")
                ;;
            rebuild)
                rm -rf "$WORK/state-fresh"
                env=(MARGINSTREAM_STATE__DIR="$WORK/state-fresh" MARGINSTREAM_KAFKA__STATE_TOPIC='""')
                ;;
        esac
        started=$(date +%s.%N)
        env "${env[@]}" "$BIN" run --config "$config" 2>>"$WORK/run-$kind.log" &
        run_pid=$!
        wait_ready fast
        ready=$(elapsed_since "$started")
        case $kind in
            local) restore=$(metric marginstream_restore_duration_seconds) ;;
            state_topic)
                restore=$(metric marginstream_state_restore_duration_seconds)
                from=$(metric 'marginstream_partition_restores_total{source="state_topic"}')
                [[ $from == 4 ]] || { echo "state_topic round restored $from partitions from the state topic, not 4" >&2; exit 1; }
                ;;
            rebuild) restore=0 ;;
        esac
        if ((round == 1)); then
            have=$(counted)
            [[ $have == "$lines" ]] || { echo "$kind: the counters account for $have messages, not $lines" >&2; exit 1; }
        fi
        results+=("$kind $restore $ready")
        echo "round $round, $kind: restore ${restore}s, ready after ${ready}s"
        stop_run
    done
done
# The snapshots' size: the engine bytes a state topic restore read, from the first run's log.
snapshot_bytes=$(grep -o 'restored the partition from the state topic.*bytes=[0-9]*' "$WORK/run-state_topic.log" |
    head -4 | sed 's/.*bytes=//' | awk '{ s += $1 } END { print s + 0 }')

python3 - "$OUT/restore.md" "$customers" "$lines" "$size" "$snapshot_bytes" "$first_ready" "$pause_max" "$encode" "$write" "$publish" "${results[@]}" <<'PY'
import statistics, sys
out, customers, lines, size, snapshot = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
first_ready, pause_max, encode, write, publish = (float(x) for x in sys.argv[6:11])
rounds = [r.split() for r in sys.argv[11:]]
kinds = {"local": "local checkpoint (restart, same `state.dir`)",
         "state_topic": "state topic (empty `state.dir`)",
         "rebuild": "rebuild from the ledger (empty `state.dir`, state topic off)"}
with open(out, "w") as f:
    f.write("## Restore\n\n")
    f.write(f"`scripts/bench-restore.sh`: {customers} customers, {lines} events over 4 partitions; "
            f"local checkpoint {size / 1e6:.1f} MB, snapshots in the state topic {snapshot / 1e6:.1f} MB "
            f"(engine bytes of the 4 partitions, in pieces of 512 KiB).\n\n")
    f.write("| source | restore itself (median) | start to /readyz (median) | rounds (start to /readyz) |\n|---|---|---|---|\n")
    for kind, title in kinds.items():
        mine = [(float(r[1]), float(r[2])) for r in rounds if r[0] == kind]
        restore = statistics.median(m[0] for m in mine)
        ready = statistics.median(m[1] for m in mine)
        f.write(f"| {title} | {restore * 1000:.0f} ms | **{ready:.2f} s** | "
                + " / ".join(f"{m[1]:.2f}" for m in mine) + " s |\n")
    f.write("\nStart to /readyz includes the group join of this broker (about 3 s with "
            "session.timeout.ms = 6000); the state topic's restore reads and verifies the "
            "snapshots and decodes the engines on the loop, the partitions are then read "
            "from the snapshots' offsets (nothing new here).\n\n")
    f.write(f"The first run, from the beginning with a checkpoint every 10 s: ready after {first_ready:.2f} s. "
            f"The loop's longest pause over the run: {pause_max * 1000:.1f} ms "
            f"(`marginstream_loop_service_max_seconds`). The last checkpoint of the whole state: "
            f"encode {encode * 1000:.1f} ms on the loop (its only pause for a checkpoint), "
            f"write {write * 1000:.1f} ms and publish to the state topic {publish * 1000:.0f} ms "
            f"on the writer thread, while the loop goes on.\n")
PY
scripts/report-section.py "$OUT/report.md" "$OUT/restore.md"
cat "$OUT/restore.md"

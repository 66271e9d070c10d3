#!/usr/bin/env bash
# Crash to consuming again: a kill -9 of `marginstream run` during consumption, restarted at
# once on the same state directory, timed until the new process consumes (its
# marginstream_consumed_messages_total above 0), for several session.timeout.ms values and
# the shipped default. Written to target/bench/failover.md and the "## Failover" section of
# target/bench/report.md.
#
# Each round: a ledger streams into a 4-partition topic; `run` joins, consumes and
# checkpoints; it is killed (SIGKILL) and started again at once; the time from the kill to
# the first message consumed by the new process is recorded; the new process is stopped
# with SIGTERM (it leaves the group) before the next round. The dead member holds its
# partitions until its session times out, then the broker rebalances: that is what a
# shorter session.timeout.ms buys, at the price of evicting a member that stops
# heartbeating for that long (librdkafka heartbeats from its own thread, so a busy loop
# does not).
#
# Environment: ROUNDS (3) per setting, SESSIONS ("6000 default 45000"; "default" omits
# the property, i.e. marginstream's shipped 10000), LONG_ROUNDS (1) for settings of 30 s or
# more, KAFKA_BROKERS (an existing broker; else a local Tansu is started).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
LONG_ROUNDS=${LONG_ROUNDS:-1}
SESSIONS=${SESSIONS:-6000 default 45000}
OUT=target/bench
WORK=$OUT/failover
BIN=${BIN:-target/release/marginstream}
mkdir -p "$WORK"
[[ -x $BIN ]] || cargo build --release -p marginstream

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
broker_port=
if [[ -z ${KAFKA_BROKERS:-} ]]; then
    broker_port=$(free_port)
    scripts/broker.sh start "$broker_port" >/dev/null
    brokers=127.0.0.1:$broker_port
    broker_desc="Tansu $("$(scripts/broker.sh install)" --version 2>/dev/null | head -1) (memory storage), started by this script"
else
    brokers=$KAFKA_BROKERS
    broker_desc="the broker at $brokers (KAFKA_BROKERS)"
fi
run_pid=
producer_pid=
cleanup() {
    [[ -n $run_pid ]] && kill -9 "$run_pid" 2>/dev/null || true
    [[ -n $producer_pid ]] && kill "$producer_pid" 2>/dev/null || true
    [[ -n $broker_port ]] && scripts/broker.sh stop "$broker_port" >/dev/null || true
}
trap cleanup EXIT

ledger=$OUT/ledger-failover.jsonl
[[ -f $ledger ]] || "$BIN" generate --customers 2000 --days 30 --seed 9 --output "$ledger" 2>/dev/null
lines=$(wc -l <"$ledger")

# write_config NAME SESSION PORT: a configuration with its own topic and group.
write_config() {
    local name=$1 session=$2 port=$3 property=
    [[ $session == default ]] || property="\"session.timeout.ms\" = \"$session\""
    cat >"$WORK/$name.toml" <<TOML
[kafka]
brokers = "$brokers"
topic = "failover-$name"
dlq_topic = "failover-$name.dlq"
group_id = "failover-$name"
[kafka.properties]
$property
[metrics]
listen = "127.0.0.1:$port"
[ledger]
clock = "event"
[state]
dir = "$WORK/$name-state"
checkpoint_interval = "2s"
TOML
}
consumed() {
    curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null |
        awk '$1 == "marginstream_consumed_messages_total" { print $2 }'
}
wait_consuming() { # PORT PID DEADLINE_S: until the process has consumed something
    local deadline=$((SECONDS + $3)) c
    while :; do
        c=$(consumed "$1" || true)
        [[ -n $c && ${c%.*} -gt 0 ]] && return 0
        kill -0 "$2" 2>/dev/null || { echo "run exited" >&2; return 1; }
        ((SECONDS < deadline)) || { echo "nothing consumed within $3 s" >&2; return 1; }
        sleep 0.1
    done
}

results=()
for session in $SESSIONS; do
    rounds=$ROUNDS
    [[ $session != default ]] && ((session >= 30000)) && rounds=$LONG_ROUNDS
    for ((round = 1; round <= rounds; round++)); do
        name=s$session-r$round-$$
        port=$(free_port)
        write_config "$name" "$session" "$port"
        "$BIN" create-topics --config "$WORK/$name.toml" --partitions 4 2>/dev/null
        # Streams for up to 5 minutes: there is always something to consume.
        "$BIN" produce --config "$WORK/$name.toml" --input "$ledger" --rate $((lines / 300)) 2>/dev/null &
        producer_pid=$!
        "$BIN" run --config "$WORK/$name.toml" 2>"$WORK/$name.log" &
        run_pid=$!
        wait_consuming "$port" "$run_pid" 180
        sleep 3 # a checkpoint or two
        killed=$(date +%s.%N)
        kill -9 "$run_pid"
        wait "$run_pid" 2>/dev/null || true
        "$BIN" run --config "$WORK/$name.toml" 2>>"$WORK/$name.log" &
        run_pid=$!
        wait_consuming "$port" "$run_pid" 300
        seconds=$(python3 -c "import time; print(f'{time.time() - $killed:.1f}')")
        echo "session.timeout.ms $session, round $round: kill -9 to consuming again in ${seconds} s"
        results+=("$session $seconds")
        kill -TERM "$run_pid"
        wait "$run_pid" || true
        run_pid=
        kill "$producer_pid" 2>/dev/null || true
        wait "$producer_pid" 2>/dev/null || true
        producer_pid=
        rm -rf "$WORK/$name-state"
    done
done

python3 - "$OUT/failover.md" "$broker_desc" "${results[@]}" <<'PY'
import statistics, sys
out, broker = sys.argv[1], sys.argv[2]
rows = {}
for r in sys.argv[3:]:
    session, seconds = r.split()
    rows.setdefault(session, []).append(float(seconds))
with open(out, "w") as f:
    f.write("## Failover\n\n")
    f.write(f"`scripts/bench-failover.sh` on {broker}: `marginstream run` killed (SIGKILL) during "
            "consumption and started again at once on the same `state.dir`; the time from the kill "
            "to the new process consuming (medians).\n\n")
    f.write("| session.timeout.ms | kill -9 to consuming again (median) | rounds |\n|---|---|---|\n")
    for session, values in rows.items():
        label = "10000 (shipped default)" if session == "default" else session
        f.write(f"| {label} | **{statistics.median(values):.1f} s** | "
                + " / ".join(f"{v:.1f}" for v in values) + " s |\n")
    f.write("\nThe dead member keeps its partitions until its session times out; the broker then "
            "rebalances. On this broker a join also waits session.timeout.ms / 2 before the first "
            "assignment, so the time is about 1.5 to 2 sessions plus the restore; a Kafka broker "
            "with static membership (kafka.group_instance_id) gives a restarted member its "
            "partitions back at once.\n")
PY
scripts/report-section.py "$OUT/report.md" "$OUT/failover.md"
cat "$OUT/failover.md"

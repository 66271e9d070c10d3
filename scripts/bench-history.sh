#!/usr/bin/env bash
# History for backfill (`replay --openmetrics-out`), measured: written to
# target/bench/history.md and the "## History for backfill" section of target/bench/report.md.
#
# Two ledgers: 25 customers over 40 days at --step 1h (960 steps: the spool is merged once)
# and the 10k-customer ledger of scripts/bench-e2e.sh at --step 1d (40 steps, 1.24 GB of
# text). For each ledger, and each binary (this build, and with BEFORE=PATH that binary too,
# e.g. a build of the writer before issue 14, measured in the same session):
#  1. `replay --openmetrics-out`, RUNS (3) times, interleaved with the other binary and with
#     a replay without history: medians of wall and CPU time; the history's write time is
#     the difference of the two; the peak RSS;
#  2. `promtool tsdb create-blocks-from openmetrics` on the history, once (minutes: promtool
#     reads the whole file once per 2h block), unless PROMTOOL=skip;
#  3. the 25-customer history read by the reference OpenMetrics parser (prometheus_client,
#     from the test virtualenv of scripts/test-venv.sh): the samples it returns, or its error.
# These machines are noisy: compare binaries within one session only.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
BEFORE=${BEFORE:-}
PROMTOOL=${PROMTOOL:-run}
OUT=target/bench
WORK=$OUT/history
BIN=target/release/marginstream
SMALL=$OUT/ledger-25-customers-40d.jsonl
LARGE=$OUT/ledger-10k-customers.jsonl
mkdir -p "$WORK"
[[ -x $BIN ]] || cargo build --release -p marginstream
if [[ $PROMTOOL != skip ]] && ! command -v promtool >/dev/null; then
    echo "promtool is missing: scripts/promtool-check.sh installs Debian's prometheus package (or PROMTOOL=skip)" >&2
    exit 1
fi
if [[ -n $BEFORE && ! -x $BEFORE ]]; then
    echo "BEFORE=$BEFORE is not an executable" >&2
    exit 1
fi
PY=$(scripts/test-venv.sh)

[[ -s $SMALL ]] || "$BIN" generate --customers 25 --days 40 --seed 42 --output "$SMALL" 2>/dev/null
# The same ledger as scripts/bench-e2e.sh's.
[[ -s $LARGE ]] || "$BIN" generate --customers 10000 --days 40 --events-per-customer-day 5 --seed 42 \
    --duplicate-share 0.005 --bad-share 0.002 --output "$LARGE" 2>/dev/null

writers=("after:$BIN")
[[ -n $BEFORE ]] && writers=("before:$BEFORE" "${writers[@]}")
RESULTS=$WORK/results.txt
: >"$RESULTS"

# Runs a command and prints "wall-seconds peak-RSS-KiB CPU-seconds" of it; fails with its
# log. CPU time (user + system) is the steadier figure when other work shares the cores.
timed() {
    if ! /usr/bin/time -f '%e %M %U %S' -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/command.log"; then
        cat "$WORK/command.log" >&2
        exit 1
    fi
    awk '{ printf "%s %s %.2f\n", $1, $2, $3 + $4 }' "$WORK/time.txt" | tail -1
}

for case in "small:$SMALL:1h" "large:$LARGE:1d"; do
    IFS=: read -r name ledger step <<<"$case"
    for ((run = 1; run <= RUNS; run++)); do
        for writer in "${writers[@]}"; do
            label=${writer%%:*}
            binary=${writer#*:}
            result=$(timed "$binary" replay --input "$ledger" --progress never \
                --rejected-out "$WORK/rejected.jsonl" --format json --output /dev/null \
                --openmetrics-out "$WORK/$name-$label.om" --step "$step")
            echo "$name $label history $result" >>"$RESULTS"
            echo "$name $step $label run $run: $result (wall s, peak KiB, CPU s)"
        done
        result=$(timed "$BIN" replay --input "$ledger" --progress never \
            --rejected-out "$WORK/rejected.jsonl" --format json --output /dev/null)
        echo "$name - alone $result" >>"$RESULTS"
    done
    for writer in "${writers[@]}"; do
        label=${writer%%:*}
        history=$WORK/$name-$label.om
        echo "$name $label bytes $(stat -c %s "$history")" >>"$RESULTS"
        echo "$name $label samples $(grep -vc '^#' "$history")" >>"$RESULTS"
        if [[ $name == small ]]; then
            verdict=$("$PY" - "$history" <<'PY'
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
try:
    with open(sys.argv[1], encoding="utf-8") as f:
        print(sum(len(family.samples) for family in text_string_to_metric_families(f.read())))
except Exception as error:  # the parser's refusal is the result
    print("refused:", str(error).split(":")[0])
PY
)
            echo "$name $label parser $verdict" >>"$RESULTS"
            echo "$name $label reference parser: $verdict"
        fi
        if [[ $PROMTOOL != skip ]]; then
            rm -rf "$WORK/blocks"
            result=$(timed promtool tsdb create-blocks-from openmetrics "$history" "$WORK/blocks")
            echo "$name $label promtool $result $(du -sb "$WORK/blocks" | cut -f1)" >>"$RESULTS"
            echo "$name $label promtool: $result"
            rm -rf "$WORK/blocks"
        fi
        rm -f "$history"
    done
done

python3 - "$RESULTS" "$OUT/history.md" "$RUNS" "$(nproc)" "$BEFORE" <<'PY'
import statistics, sys, time
results, out, runs, cores, before = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
rows = {}
for line in open(results):
    name, label, what, *values = line.split(maxsplit=3)
    rows.setdefault((name, label, what), []).append(values[0].split() if values else [])
def median(name, label, what, field=0):
    values = [float(v[field]) for v in rows.get((name, label, what), [])]
    return statistics.median(values) if values else None
cases = [("small", "25 customers, 40 days", "1h"), ("large", "10k customers, 40 days", "1d")]
labels = [l for l in ("before", "after") if any(k[1] == l for k in rows)]
with open(out, "w") as f:
    f.write("## History for backfill\n\n")
    f.write(f"`scripts/bench-history.sh`, {time.strftime('%Y-%m-%d', time.gmtime())}, {cores} cores; "
            f"medians of {runs} interleaved runs; promtool once. ")
    if before:
        f.write(f"Before: `{before}`. ")
    else:
        f.write("Before (the writer of main before issue 14): not measured in this session "
                "(`BEFORE=PATH` measures a binary); see docs/benchmarks.md. ")
    f.write("Write time = replay with `--openmetrics-out` minus replay alone, wall and CPU "
            "(user + system; steadier when other work shares the cores).\n\n")
    f.write("| ledger | step | writer | samples | text MB | replay with history | write time (wall) | write time (CPU) | peak RSS MB | promtool create-blocks | reference parser |\n")
    f.write("|---|---|---|---|---|---|---|---|---|---|---|\n")
    for name, title, step in cases:
        alone = median(name, "-", "alone")
        alone_cpu = median(name, "-", "alone", 2)
        for label in labels:
            total = median(name, label, "history")
            cpu = median(name, label, "history", 2)
            rss = median(name, label, "history", 1)
            samples = rows.get((name, label, "samples"), [[None]])[0][0]
            size = float(rows.get((name, label, "bytes"), [["0"]])[0][0]) / 1e6
            promtool = median(name, label, "promtool")
            promtool_cpu = median(name, label, "promtool", 2)
            parser = " ".join(rows.get((name, label, "parser"), [["-"]])[0])
            f.write(f"| {title} | {step} | {label} | {samples} | {size:.0f} | {total:.2f} s | "
                    f"{total - alone:.2f} s | {cpu - alone_cpu:.2f} s | {rss / 1024:.0f} | "
                    f"{'%.0f s (CPU %.0f s)' % (promtool, promtool_cpu) if promtool is not None else 'skipped'} | {parser} |\n")
    f.write("\nReference parser: `prometheus_client.openmetrics.parser`, the samples it returns "
            "or the start of its error.\n")
PY
scripts/report-section.py "$OUT/report.md" "$OUT/history.md"
cat "$OUT/history.md"

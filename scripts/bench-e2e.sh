#!/usr/bin/env bash
# End-to-end benchmarks, written to target/bench/report.md (and .json):
#  1. replay of a generated ledger (~2M events, 10k customers) against the bare baseline
#     program (examples/baseline.rs) on the same file, in the same session, RUNS times each,
#     interleaved; medians and their ratio; peak RSS of the replay; in the same runs, replay of
#     the same ledger compressed with gzip (-6) and zstd (-3), decompressed on the reader thread;
#  2. render time and state size at 10k, 100k and 1M customers (examples/render.rs).
# These machines are noisy: read the medians and the ratio, not a single run.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
OUT=target/bench
BIN=${BIN:-target/release/marginstream}
LEDGER=$OUT/ledger-10k-customers.jsonl
mkdir -p "$OUT"

cargo build --release -p marginstream
cargo build --release --examples

if [ ! -s "$LEDGER" ]; then
  echo "generating $LEDGER"
  "$BIN" generate --customers 10000 --days 40 --events-per-customer-day 5 --seed 42 \
    --duplicate-share 0.005 --bad-share 0.002 --output "$LEDGER"
fi
lines=$(wc -l < "$LEDGER")
bytes=$(stat -c %s "$LEDGER")
echo "ledger: $lines lines, $bytes bytes"

# The compressed copies, made by the tools an export would use.
if ! command -v zstd >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing zstd"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zstd >/dev/null
  else
    echo "bench-e2e: the zstd command is missing: install zstd (Debian: apt-get install zstd)" >&2
    exit 1
  fi
fi
if [ ! -s "$LEDGER.gz" ] || [ "$LEDGER.gz" -ot "$LEDGER" ]; then
  gzip -6 -c "$LEDGER" > "$LEDGER.gz"
fi
if [ ! -s "$LEDGER.zst" ] || [ "$LEDGER.zst" -ot "$LEDGER" ]; then
  zstd -3 -q -f -c "$LEDGER" > "$LEDGER.zst"
fi
gz_bytes=$(stat -c %s "$LEDGER.gz")
zst_bytes=$(stat -c %s "$LEDGER.zst")

median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

: > "$OUT/baseline.txt"; : > "$OUT/replay.txt"; : > "$OUT/replay-rss.txt"
for kind in gz zst; do : > "$OUT/replay-$kind.txt"; : > "$OUT/replay-$kind-rss.txt"; done
: > "$OUT/replay-cpu.txt"; : > "$OUT/replay-gz-cpu.txt"; : > "$OUT/replay-zst-cpu.txt"
for run in $(seq "$RUNS"); do
  target/release/examples/baseline "$LEDGER" \
    | sed -E 's/.*"events_per_second":([0-9]+).*/\1/' >> "$OUT/baseline.txt"
  for kind in plain gz zst; do
    if [ "$kind" = plain ]; then input=$LEDGER; name=replay; else input=$LEDGER.$kind; name=replay-$kind; fi
    # Peak RSS in KiB, then user and system CPU seconds.
    /usr/bin/time -f '%M %U %S' -o "$OUT/time.txt" \
      "$BIN" replay --input "$input" --format json --output /dev/null \
        --rejected-out "$OUT/rejected.jsonl" --progress never 2> "$OUT/replay.log"
    sed -E -n 's/.*events_per_second=([0-9]+).*/\1/p' "$OUT/replay.log" >> "$OUT/$name.txt"
    tail -1 "$OUT/time.txt" | awk '{print $1}' >> "$OUT/$name-rss.txt"
    tail -1 "$OUT/time.txt" | awk '{print $2 + $3}' >> "$OUT/$name-cpu.txt"
  done
  echo "run $run: baseline $(tail -1 "$OUT/baseline.txt") ev/s, replay $(tail -1 "$OUT/replay.txt") ev/s, peak RSS $(tail -1 "$OUT/replay-rss.txt") KiB; from .gz $(tail -1 "$OUT/replay-gz.txt") ev/s, from .zst $(tail -1 "$OUT/replay-zst.txt") ev/s"
done
base=$(median < "$OUT/baseline.txt")
replay=$(median < "$OUT/replay.txt")
rss=$(median < "$OUT/replay-rss.txt")
ratio=$(awk -v r="$replay" -v b="$base" 'BEGIN {printf "%.2f", r / b}')
replay_cpu=$(median < "$OUT/replay-cpu.txt")
gz=$(median < "$OUT/replay-gz.txt"); gz_cpu=$(median < "$OUT/replay-gz-cpu.txt"); gz_rss=$(median < "$OUT/replay-gz-rss.txt")
zst=$(median < "$OUT/replay-zst.txt"); zst_cpu=$(median < "$OUT/replay-zst-cpu.txt"); zst_rss=$(median < "$OUT/replay-zst-rss.txt")
share() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

: > "$OUT/render.jsonl"
for spec in "10000 20" "100000 20" "1000000 10"; do
  echo "render: $spec"
  # shellcheck disable=SC2086
  target/release/examples/render $spec >> "$OUT/render.jsonl"
done

field() { sed -E "s/.*\"$1\":([0-9.]+).*/\1/"; }
{
  echo "# marginstream benchmark report"
  echo
  echo "Generated $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores ($(uname -m)), $RUNS interleaved runs each; medians."
  echo
  echo "## Replay, end to end"
  echo
  echo "Ledger: \`$LEDGER\`, $lines lines, $bytes bytes (10k customers, 40 days, 0.5 % duplicates, 0.2 % bad lines)."
  echo
  echo "| program | events/s (median) | runs |"
  echo "|---|---|---|"
  echo "| baseline (serde_json + decimal + timestamp + HashMap, one thread) | $base | $(paste -sd' ' "$OUT/baseline.txt") |"
  echo "| marginstream replay (all the contract's work) | $replay | $(paste -sd' ' "$OUT/replay.txt") |"
  echo
  echo "Ratio replay / baseline: **$ratio** (issue 12: ≥ 0.7; the first goal, ≥ 1.0, aim 1.8). Peak RSS of replay: $rss KiB (median)."
  echo
  echo "## Replay of compressed ledgers"
  echo
  echo "The same ledger compressed by \`gzip -6\` and \`zstd -3\`, replayed in the same interleaved runs; decompression runs on the reader thread (which also parses), ahead of the engine thread."
  echo
  echo "| input | bytes | events/s (median) | vs plain | CPU s, user + system (median) | peak RSS KiB (median) | runs |"
  echo "|---|---|---|---|---|---|---|"
  echo "| \`.jsonl\` | $bytes | $replay | 1.00 | $replay_cpu | $rss | $(paste -sd' ' "$OUT/replay.txt") |"
  echo "| \`.jsonl.gz\` | $gz_bytes | $gz | $(share "$gz" "$replay") | $gz_cpu | $gz_rss | $(paste -sd' ' "$OUT/replay-gz.txt") |"
  echo "| \`.jsonl.zst\` | $zst_bytes | $zst | $(share "$zst" "$replay") | $zst_cpu | $zst_rss | $(paste -sd' ' "$OUT/replay-zst.txt") |"
  echo
  echo "## Render and state size"
  echo
  echo "Default windows (24h, 7d, 30d, all): 36 series per customer (revenue, five costs, three ratios, four windows)."
  echo
  echo "| customers | series | exposition MB | first render ms | render ms (median, reused buffers) | one thread ms | state bytes/customer | RSS bytes/customer |"
  echo "|---|---|---|---|---|---|---|---|"
  while read -r row; do
    echo "| $(echo "$row" | field customers) | $(echo "$row" | field series) | $(awk -v b="$(echo "$row" | field exposition_bytes)" 'BEGIN {printf "%.0f", b / 1e6}') | $(echo "$row" | field render_ms_first) | $(echo "$row" | field render_ms_median) | $(echo "$row" | field render_ms_one_thread_median) | $(echo "$row" | field state_bytes_per_customer) | $(echo "$row" | field rss_bytes_per_customer) |"
  done < "$OUT/render.jsonl"
  echo
  echo "State bytes/customer is the engine's own estimate (ids, figures, bucket entries, index, expiry lists; the dedup index is per event and reported apart: $(tail -1 "$OUT/render.jsonl" | field dedup_bytes) bytes for $(tail -1 "$OUT/render.jsonl" | field dedup_keys) ids at 1M customers). RSS bytes/customer is the growth of the process's RSS while the state was built, divided by customers, allocator overhead and the dedup index included."
} > "$OUT/report.md"
echo "wrote $OUT/report.md"
cat "$OUT/report.md"

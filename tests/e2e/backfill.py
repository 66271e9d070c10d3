#!/usr/bin/env python3
"""Backfill end to end, against the real promtool and Prometheus (Debian's prometheus package).

1. `marginstream generate` a ledger, `marginstream replay --openmetrics-out --step 1h`;
2. `promtool tsdb create-blocks-from openmetrics` into a data directory;
3. start Prometheus on that directory (127.0.0.1, a free port, retention long enough to keep
   historical blocks: the default 15d would delete them at once);
4. query gauges of every family at historical timestamps through the HTTP API, and check each
   equals the history file's sample at that timestamp, which the history rule defines (the
   rule itself is pinned by tests/cli.rs). Decimal samples must come back as exactly the
   nearest f64.

Usage: backfill.py --binary target/debug/marginstream. The last line is
`backfill: N passed, M failed`; exit 1 on any failure, or when promtool/prometheus is missing.
"""

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prom  # noqa: E402  (the shared Prometheus helpers)


def parse_history(path):
    """Returns {(series_text, timestamp): value_text} for every sample."""
    samples = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            series, value, stamp = line.rstrip("\n").rsplit(" ", 2)
            samples[(series, int(stamp))] = value
    return samples


def query(port, expr, at):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": at})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    return body["data"]["result"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    args = parser.parse_args()
    binary = str(Path(args.binary).resolve())
    for tool in ("promtool", "prometheus"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: install Debian's prometheus package (make test does)", file=sys.stderr)
            print("backfill: 0 passed, 1 failed")
            return 1

    work = Path(tempfile.mkdtemp(prefix="marginstream-backfill-"))
    prometheus = None
    passed = failed = 0
    try:
        ledger = work / "ledger.jsonl"
        history = work / "history.om"
        subprocess.run([binary, "generate", "--customers", "12", "--days", "4", "--seed", "5",
                        "--output", str(ledger)], check=True, capture_output=True)
        subprocess.run([binary, "replay", "--input", str(ledger), "--progress", "never",
                        "--rejected-out", str(work / "rejected.jsonl"), "--format", "json",
                        "--output", str(work / "final.json"),
                        "--openmetrics-out", str(history), "--step", "1h"],
                       check=True, capture_output=True)
        samples = parse_history(history)
        data = work / "data"
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(history), str(data)],
                       check=True, capture_output=True)
        port = prom.free_port()
        prometheus = prom.start(work, "global: {scrape_interval: 1h}\nscrape_configs: []\n", data, port)

        # Every family, at several historical timestamps, including ratios (long decimals).
        rng = random.Random(7)
        stamps = sorted({stamp for (_, stamp) in samples})
        families = sorted({series.split("{")[0].split(" ")[0] for (series, _) in samples})
        chosen = []
        for family in families:
            keys = [k for k in samples if k[0].split("{")[0] == family]
            chosen += rng.sample(keys, min(4, len(keys)))
        for series, stamp in chosen:
            expected = float(samples[(series, stamp)])
            result = query(port, series, stamp)
            got = [float(r["value"][1]) for r in result if int(float(r["value"][0])) == stamp]
            if got == [expected]:
                passed += 1
            else:
                failed += 1
                print(f"MISMATCH {series} @ {stamp}: expected {expected!r}, got {result}")
        # A timestamp between two steps sees the earlier step (within the lookback).
        series, stamp = chosen[0]
        if stamps and len(stamps) > 1:
            result = query(port, series, stamp + 60)
            value = samples[(series, stamp)]
            if result and float(result[0]["value"][1]) == float(value):
                passed += 1
            else:
                failed += 1
                print(f"MISMATCH {series} one minute after {stamp}: expected {value}, got {result}")
        print(f"checked {len(chosen) + 1} queries over {len(families)} families and {len(stamps)} steps")
    except Exception as error:  # noqa: BLE001 - report and fail, whatever broke
        failed += 1
        print(f"ERROR {error}")
    finally:
        if prometheus is not None:
            prom.stop(prometheus)
        if failed == 0:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} for inspection")
    print(f"backfill: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

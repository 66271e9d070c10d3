#!/usr/bin/env python3
"""Live: a real Prometheus scrapes `marginstream run` on a real broker (Tansu), the swing alert
fires, and every panel of the Grafana dashboard that needs a live process returns data.

1. A ledger of two customers over the last 14 days: "steady" keeps GM-M at 80 %; "swing"
   goes from 80 % in the first week to 70 % in the second (10 points down).
2. The first week is backfilled (replay --openmetrics-out, promtool blocks), as an operator
   would load history; the whole ledger streams into Kafka and `marginstream run` (wall
   clock, the default of run) serves the present.
3. Prometheus scrapes run every second and evaluates the shipped rule file, with only the
   `for:` durations cut to 0s (the expressions are unchanged): the 7-day change rule
   compares the live 7d gauge with the backfilled one a week ago.
4. MarginstreamCustomerGmMarketDrop fires for "swing" and not for "steady"; the gauges seen
   by Prometheus are the exact values; every live-only dashboard query returns data.

Usage: live_alert.py --binary target/debug/marginstream. Last line `live-alert: N passed,
M failed`; exit 1 on failure or when promtool/prometheus or the broker cannot be started.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboard as dash  # noqa: E402  (the dashboard test's helpers)
import prom  # noqa: E402  (the shared Prometheus helpers)

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/rules/marginstream.rules.yml"
DASHBOARD = ROOT / "deploy/grafana/dashboards/marginstream.json"


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def ledger_lines(now):
    """The two customers' events, plus a marker that carries the watermark of the backfilled
    first week to just after now - 7d (so a sample exists where `offset 7d` looks)."""
    first, second = [], []
    start = now - timedelta(days=14) + timedelta(hours=2)
    t = start
    n = 0
    while t < now - timedelta(hours=2):
        week = first if t < now - timedelta(days=7) - timedelta(hours=2) else None
        if week is None and t < now - timedelta(days=7) + timedelta(hours=2):
            t += timedelta(hours=2)
            continue
        target = first if week is not None else second
        for customer in ("steady", "swing"):
            infra = "20.00" if (customer == "steady" or target is first) else "30.00"
            n += 1
            target.append({"event_type": "Revenue_Event", "event_id": f"r-{n}", "customer_id": customer,
                           "occurred_at": rfc3339(t), "amount": "100.00", "currency": "USD"})
            target.append({"event_type": "Cost_Event", "event_id": f"c-{n}", "customer_id": customer,
                           "occurred_at": rfc3339(t), "amount": infra, "currency": "USD",
                           "cost_function": "Infrastructure"})
        t += timedelta(hours=2)
    marker = {"event_type": "Cost_Event", "event_id": "marker", "occurred_at":
              rfc3339(now - timedelta(days=7) + timedelta(minutes=12)), "amount": "0",
              "currency": "USD", "cost_function": "Excluded"}
    return first + [marker], second


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    args = parser.parse_args()
    binary = str(Path(args.binary).resolve())
    report = dash.Report()
    for tool in ("promtool", "prometheus"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: install Debian's prometheus package (make test does)")
            print("live-alert: 0 passed, 1 failed")
            return 1

    work = Path(tempfile.mkdtemp(prefix="marginstream-live-alert-"))
    processes = []
    broker_port = None
    try:
        now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        first, second = ledger_lines(now)
        history_ledger = work / "first-week.jsonl"
        history_ledger.write_text("".join(json.dumps(e) + "\n" for e in first))
        full_ledger = work / "ledger.jsonl"
        full_ledger.write_text("".join(json.dumps(e) + "\n" for e in first + second))

        # The broker and the topics.
        brokers, broker_port = prom.start_broker()
        metrics_port = prom.free_port()
        suffix = f"{os.getpid()}-{int(time.time())}"
        config = work / "marginstream.toml"
        config.write_text(f"""[kafka]
brokers = "{brokers}"
topic = "live-alert-{suffix}"
dlq_topic = "live-alert-{suffix}.dlq"
group_id = "live-alert-{suffix}"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[metrics]
listen = "127.0.0.1:{metrics_port}"
[ledger]
windows = ["7d"]
lifetime = false
[state]
dir = "{work / 'state'}"
checkpoint_interval = "2s"
""")
        subprocess.run([binary, "create-topics", "--config", str(config), "--partitions", "2"],
                       check=True, capture_output=True)

        # History of the first week, backfilled into Prometheus's data directory.
        history = work / "history.om"
        subprocess.run([binary, "replay", "--config", str(config), "--input", str(history_ledger),
                        "--progress", "never", "--rejected-out", str(work / "rejected.jsonl"),
                        "--output", str(work / "history-final.prom"),
                        "--openmetrics-out", str(history), "--step", "2m"], check=True, capture_output=True)
        data = work / "data"
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h",
                        str(history), str(data)], check=True, capture_output=True)

        # The present: the whole ledger into Kafka, and run.
        subprocess.run([binary, "produce", "--config", str(config), "--input", str(full_ledger)],
                       check=True, capture_output=True)
        run_log = open(work / "run.log", "w")
        run = subprocess.Popen([binary, "run", "--config", str(config)], stdout=run_log,
                               stderr=subprocess.STDOUT)
        processes.append(run)
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline or run.poll() is not None:
                raise RuntimeError("marginstream run did not become ready: see " + str(work / "run.log"))
            time.sleep(0.3)

        # Prometheus: scrape run every second, the shipped rules with `for:` cut to 0s.
        rules = re.sub(r"(?m)^(\s*)for: \S+$", r"\1for: 0s", RULES.read_text())
        (work / "rules.yml").write_text(rules)
        prometheus_port = prom.free_port()
        prometheus = prom.start(work, f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
  - job_name: marginstream
    static_configs:
      - targets: ["127.0.0.1:{metrics_port}"]
""", data, prometheus_port)
        processes.append(prometheus)

        # The alert fires for the swing, never for the steady customer.
        firing = []
        deadline = time.time() + 90
        while time.time() < deadline:
            body = dash.api(prometheus_port, "alerts")
            firing = [a for a in body["data"]["alerts"]
                      if a["labels"].get("alertname") == "MarginstreamCustomerGmMarketDrop"
                      and a["state"] == "firing"]
            if firing:
                break
            time.sleep(1)
        customers = sorted(a["labels"].get("customer_id") for a in firing)
        report.check(customers == ["swing"], f"MarginstreamCustomerGmMarketDrop fires for swing only, got {customers}")
        if firing:
            report.check(abs(float(firing[0]["value"]) + 0.10) < 1e-9,
                         f"the alert's value is the 10-point drop, got {firing[0]['value']}")

        # Prometheus holds the live gauges, exactly.
        for customer, expected in (("swing", 0.7), ("steady", 0.8)):
            result = dash.api(prometheus_port, "query",
                              query=f'marginstream_gm_market_ratio{{customer_id="{customer}",window="7d"}}')
            values = [float(r["value"][1]) for r in result["data"]["result"]]
            report.check(values == [expected], f"live 7d GM-M of {customer} is {expected}, got {values}")

        # Every dashboard query that needs a live process returns data from this one.
        time.sleep(12)  # rates need a few scrapes; lag needs librdkafka's 5 s statistics
        dashboard = json.loads(DASHBOARD.read_text())
        variables = {"window": "7d", "customer": "swing", "datasource": "prometheus"}
        checked = 0
        for panel in dash.all_panels(dashboard):
            for target in panel.get("targets", []) or []:
                expr = target.get("expr")
                if not expr:
                    continue
                names = {dash.family(n) for n in dash.metric_names(expr)}
                if not names or not names <= dash.LIVE_ONLY:
                    continue
                text, _ = dash.interpolate(expr, variables)
                body = dash.api(prometheus_port, "query", query=text)
                ok = body.get("status") == "success" and bool(body["data"]["result"])
                checked += 1
                report.check(ok, f"live panel {panel.get('title')!r}: {text} returns data ({body.get('error', '')})")
        report.check(checked > 0, "the dashboard has live-only queries")
        print(f"checked {checked} live-only dashboard queries")
    except Exception as error:  # noqa: BLE001 - report and fail, whatever broke
        report.check(False, f"ERROR {error}")
    finally:
        prom.teardown(processes, broker_port, work, report.failed)
    print(f"live-alert: {report.passed} passed, {report.failed} failed")
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

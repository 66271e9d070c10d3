#!/usr/bin/env python3
"""Live: a real Prometheus scrapes `marginstream run` holding more customers than its exposure
budget (contract sections 7 and 8, issue 9), on a real broker (Tansu).

1. A generated ledger of 300 customers (with unattributed shared costs) streams into Kafka;
   `run` has `metrics.customers_max = 40` and one id in `customers_always`.
2. Prometheus scrapes it every second with the shipped rule file.
3. Checks, against the exact figures of `replay --format json` of the same ledger:
   - 40 customers have series of their own (the always-id among them), plus `__other__`;
     `marginstream_customers_exposed` says 40;
   - for every window and cost function, the sum over `customer_id` of `marginstream_revenue`
     and `marginstream_cost` equals the portfolio minus the unattributed costs;
   - the segment recording rules (`marginstream:segment_*`) equal the sums of the tiers'
     customers (each customer's tier from the query API), and the ratios recomputed from them;
   - the query API still answers for a customer without series of its own.

Usage: live_budget.py --binary target/debug/marginstream. Last line `live-budget: N passed,
M failed`; exit 1 on failure or when prometheus or the broker cannot be started.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboard as dash  # noqa: E402  (the dashboard test's helpers)
import prom  # noqa: E402  (the shared Prometheus helpers)

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/rules/marginstream.rules.yml"
FUNCTIONS = ["Infrastructure", "Support", "Success_Engineering", "Implementation", "Onboarding"]
BUDGET = 40
ALWAYS = "cust-00299"


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return response.read().decode()


def close(a, b):
    """Prometheus sums floats: equal within a relative 1e-12 of the exact decimal."""
    a, b = float(a), float(b)
    return abs(a - b) <= 1e-12 * max(1.0, abs(a), abs(b))


def scalar(port, query):
    """The single value of an instant query, or None."""
    body = dash.api(port, "query", query=query)
    result = body.get("data", {}).get("result", [])
    return result[0]["value"][1] if len(result) == 1 else None


def vector(port, query):
    """{frozenset(labels): value} of an instant query."""
    body = dash.api(port, "query", query=query)
    return {frozenset(r["metric"].items()): r["value"][1] for r in body.get("data", {}).get("result", [])}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    args = parser.parse_args()
    binary = str(Path(args.binary).resolve())
    report = dash.Report()
    if shutil.which("prometheus") is None:
        print("prometheus is missing: install Debian's prometheus package (make test does)")
        print("live-budget: 0 passed, 1 failed")
        return 1

    work = Path(tempfile.mkdtemp(prefix="marginstream-live-budget-"))
    processes = []
    broker_port = None
    try:
        ledger = work / "ledger.jsonl"
        subprocess.run([binary, "generate", "--customers", "300", "--days", "20", "--seed", "9",
                        "--output", str(ledger)], check=True, capture_output=True)
        lines = sum(1 for _ in open(ledger, encoding="utf-8"))

        brokers, broker_port = prom.start_broker()
        metrics_port = prom.free_port()
        suffix = f"{os.getpid()}-{int(time.time())}"
        config = work / "marginstream.toml"
        config.write_text(f"""[kafka]
brokers = "{brokers}"
topic = "live-budget-{suffix}"
dlq_topic = "live-budget-{suffix}.dlq"
group_id = "live-budget-{suffix}"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[metrics]
listen = "127.0.0.1:{metrics_port}"
customers_max = {BUDGET}
customers_always = ["{ALWAYS}"]
[ledger]
clock = "event"
[state]
dir = "{work / 'state'}"
checkpoint_interval = "2s"
""")
        subprocess.run([binary, "create-topics", "--config", str(config), "--partitions", "4"],
                       check=True, capture_output=True)
        replay = subprocess.run([binary, "replay", "--config", str(config), "--input", str(ledger),
                                 "--format", "json", "--progress", "never",
                                 "--rejected-out", str(work / "rejected.jsonl")],
                                check=True, capture_output=True)
        expected = json.loads(replay.stdout, parse_float=Decimal)
        subprocess.run([binary, "produce", "--config", str(config), "--input", str(ledger)],
                       check=True, capture_output=True)
        run_log = open(work / "run.log", "w")
        run = subprocess.Popen([binary, "run", "--config", str(config)], stdout=run_log,
                               stderr=subprocess.STDOUT)
        processes.append(run)
        deadline = time.time() + 120
        while True:
            counted = 0
            try:
                text = get(metrics_port, "/metrics")
                ready = "\nmarginstream_ready 1\n" in text
                for line in text.splitlines():
                    if line.startswith(("marginstream_events_total{", "marginstream_rejected_events_total{")):
                        counted += int(line.rsplit(" ", 1)[1])
                if ready and counted == lines:
                    break
            except OSError:
                pass
            if time.time() > deadline or run.poll() is not None:
                raise RuntimeError(f"run did not read the {lines} lines: see {work / 'run.log'}")
            time.sleep(0.5)

        prometheus_port = prom.free_port()
        (work / "rules.yml").write_text(RULES.read_text())
        prometheus = prom.start(work, f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
  - job_name: marginstream
    static_configs:
      - targets: ["127.0.0.1:{metrics_port}"]
""", work / "data", prometheus_port)
        processes.append(prometheus)
        deadline = time.time() + 60
        while scalar(prometheus_port, "marginstream:segment_customers:sum{segment=\"smb\"}") is None:
            if time.time() > deadline:
                raise RuntimeError("Prometheus has no recording rule result after 60 s")
            time.sleep(1)

        # The budget: 40 customers with series of their own, the always-id among them.
        ids = vector(prometheus_port, 'count by (customer_id) (marginstream_revenue{window="all"})')
        exposed = {dict(k)["customer_id"] for k in ids} - {"__other__"}
        report.check(len(exposed) == BUDGET, f"{BUDGET} customers exposed, got {len(exposed)}")
        report.check(ALWAYS in exposed, f"{ALWAYS} (customers_always) is exposed")
        report.check(any(dict(k)["customer_id"] == "__other__" for k in ids), "__other__ is present")
        report.check(scalar(prometheus_port, "marginstream_customers_exposed") == str(BUDGET),
                     "marginstream_customers_exposed is the budget")
        report.check(scalar(prometheus_port, "marginstream_customers") == str(len(expected["customers"])),
                     "every customer is held")

        # Sums over customer_id equal the portfolio minus the unattributed costs, per window.
        for window in expected["windows"]:
            customers = [c["windows"][window] for c in expected["customers"]]
            portfolio = expected["portfolio"][window]
            revenue = sum((Decimal(c["revenue"]) for c in customers), Decimal(0))
            got = scalar(prometheus_port, f'sum(marginstream_revenue{{window="{window}"}})')
            report.check(got is not None and close(got, revenue),
                         f"{window}: sum of revenue over customer_id {got} == {revenue}")
            report.check(revenue == Decimal(portfolio["revenue"]), f"{window}: revenue has no unattributed part")
            for function in FUNCTIONS:
                attributed = sum((Decimal(c["cost"][function]) for c in customers), Decimal(0))
                unattributed = Decimal(portfolio["cost"][function]) - attributed
                got = scalar(prometheus_port,
                             f'sum(marginstream_cost{{window="{window}",cost_function="{function}"}})')
                live_portfolio = scalar(prometheus_port,
                                        f'marginstream_portfolio_cost{{window="{window}",cost_function="{function}"}}')
                report.check(got is not None and close(got, attributed),
                             f"{window} {function}: sum over customer_id {got} == {attributed}")
                report.check(live_portfolio is not None and close(float(live_portfolio) - float(unattributed), attributed),
                             f"{window} {function}: portfolio {live_portfolio} minus unattributed {unattributed}")

        # Tiers: each customer's from the API; the recording rules equal the tiers' sums.
        tiers = {}
        cursor = None
        while True:
            path = "/api/v1/customers?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            page = json.loads(get(metrics_port, path))
            for customer in page["customers"]:
                tiers[customer["customer_id"]] = customer["segment"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        report.check(len(tiers) == len(expected["customers"]), "the API answers for every customer")
        hidden = next(c for c in expected["customers"] if c["customer_id"] not in exposed)
        answer = json.loads(get(metrics_port, "/api/v1/customers/" + urllib.parse.quote(hidden["customer_id"], safe="")),
                            parse_float=Decimal)
        report.check(answer["windows"] == hidden["windows"] and answer["exposed"] is False,
                     f"the API answers exactly for {hidden['customer_id']}, which has no series")
        names = [s["segment"] for s in expected["segments"]]
        for segment in names:
            members = [c for c in expected["customers"] if tiers[c["customer_id"]] == segment]
            count = scalar(prometheus_port, f'marginstream:segment_customers:sum{{segment="{segment}"}}')
            report.check(count == str(len(members)), f"{segment}: {len(members)} customers, rule says {count}")
            for window in expected["windows"]:
                revenue = sum((Decimal(c["windows"][window]["revenue"]) for c in members), Decimal(0))
                infra = sum((Decimal(c["windows"][window]["cost"]["Infrastructure"]) for c in members), Decimal(0))
                got = scalar(prometheus_port, f'marginstream:segment_revenue:sum{{segment="{segment}",window="{window}"}}')
                report.check(got is not None and close(got, revenue),
                             f"{segment} {window}: revenue rule {got} == {revenue}")
                ratio = scalar(prometheus_port,
                               f'marginstream:segment_gm_market:ratio{{segment="{segment}",window="{window}"}}')
                if revenue > 0:
                    want = (revenue - infra) / revenue
                    report.check(ratio is not None and abs(float(ratio) - float(want)) < 1e-12,
                                 f"{segment} {window}: GM-M rule {ratio} == {want}")
                else:
                    report.check(ratio is None, f"{segment} {window}: no GM-M without revenue")
    except Exception as error:  # noqa: BLE001 - report and fail, whatever broke
        report.check(False, f"ERROR {error}")
    finally:
        prom.teardown(processes, broker_port, work, report.failed)
    print(f"live-budget: {report.passed} passed, {report.failed} failed")
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

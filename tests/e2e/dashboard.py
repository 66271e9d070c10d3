#!/usr/bin/env python3
"""The Grafana dashboard end to end, against the real promtool and Prometheus (Debian's prometheus
package), as tests/e2e/backfill.py does for the gauges.

1. Load deploy/grafana/dashboards/marginstream.json and check it structurally: unique panel ids,
   no overlapping panels, every target with an expr and a unique refId, the datasource through
   the `${datasource}` variable everywhere, the `window` and `customer` variables, percent units
   on ratio panels, and the KBCM bands (0.65, 0.72, 0.81) shown as thresholds on every GM panel.
2. `marginstream generate` a ledger, `marginstream replay --openmetrics-out --step 1h`,
   `promtool tsdb create-blocks-from openmetrics`, and start Prometheus on the blocks with the
   project's rule file loaded (rule_files). Recording rules are not evaluated over backfilled
   history, which is why the dashboard reads raw gauges only; the portfolio GM-M, GM-O and drag
   queries are compared instead with the recording rules' own expressions (expanded from
   /api/v1/rules) and with the exporter's portfolio ratio gauges, at every step, and those by
   ACV tier with the tier rules and gauges, tier by tier.
3. Substitute the variables as Grafana's Prometheus data source does ($window: every option;
   $customer: a plain id and every id with a quote, a backslash or a non-ASCII character, escaped
   like Grafana: backslash doubled; $__rate_interval: 5m; $__interval: 1h) and run every target
   with /api/v1/query_range over the backfilled range (instant targets also with /api/v1/query
   at its end). Each must return data, finite values, and the labels its legend names.
   Targets reading a metric that only `marginstream run` exposes (self-metrics and counters: the
   backfill holds the gauges of the contract only) are "live-only": they must parse (status
   success from /api/v1/query), and each such metric name must be one the binary writes.

Usage: dashboard.py --binary target/debug/marginstream. The last line is
`dashboard: N passed, M failed`; exit 1 on any failure, or when promtool/prometheus is missing.
"""

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prom  # noqa: E402  (the shared Prometheus helpers)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/dashboards/marginstream.json"
RULES = ROOT / "deploy/prometheus/rules/marginstream.rules.yml"

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
KBCM = (0.65, 0.72, 0.81)
STEP = 3600
# What Grafana substitutes for its built-in variables in this test.
BUILTINS = {"__rate_interval": "5m", "__interval": "1h", "__interval_ms": "3600000"}

# Metrics only `marginstream run` exposes: its self-metrics, and the counters of the contract,
# which replay's history (gauges only) does not hold.
LIVE_ONLY = {
    "marginstream_consumer_lag_messages", "marginstream_consumed_messages_total",
    "marginstream_consumed_messages_per_second", "marginstream_rebalances_total",
    "marginstream_partitions_assigned", "marginstream_partitions_rebuilding", "marginstream_ready",
    "marginstream_checkpoints_total", "marginstream_checkpoint_failures_total",
    "marginstream_checkpoint_last_success_timestamp_seconds", "marginstream_checkpoint_age_seconds",
    "marginstream_checkpoint_size_bytes", "marginstream_checkpoint_duration_seconds",
    "marginstream_restore_duration_seconds", "marginstream_dlq_messages_total",
    "marginstream_dlq_failures_total", "marginstream_dlq_pending_messages",
    "marginstream_consumer_paused", "marginstream_apply_latency_seconds",
    "marginstream_rejected_events_total", "marginstream_events_total",
}
# A portfolio ratio target, by its legend: the recording rule and the exporter gauge it equals.
PORTFOLIO_RATIOS = {
    "GM-M": ("marginstream:portfolio_gm_market:ratio", "marginstream_portfolio_gm_market_ratio"),
    "GM-O": ("marginstream:portfolio_gm_operating:ratio", "marginstream_portfolio_gm_operating_ratio"),
    "Services drag": ("marginstream:portfolio_services_drag:ratio",
                      "marginstream_portfolio_services_drag_ratio"),
}
# A ratio by ACV tier, by its panel's title: the recording rule and the exporter gauge it equals,
# tier by tier.
SEGMENT_RATIOS = {
    "GM-M by tier": ("marginstream:segment_gm_market:ratio", "marginstream_segment_gm_market_ratio"),
    "GM-O by tier": ("marginstream:segment_gm_operating:ratio", "marginstream_segment_gm_operating_ratio"),
    "Services drag by tier": ("marginstream:segment_services_drag:ratio",
                              "marginstream_segment_services_drag_ratio"),
}

GM_TITLE = re.compile(r"\bGM-[MO]\b")
RATIO_TITLE = re.compile(r"\bGM-[MO]\b|[Dd]rag|[Ss]hare")
# Grafana's template syntax: $name, [[name:format]], ${name.field:format}.
VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}")
METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'|`[^`]*`")


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {what}")
        return ok


def api(port, path, **params):
    """GET /api/v1/<path>; returns the decoded body, including Prometheus's error bodies."""
    query = urllib.parse.urlencode(params, doseq=True)
    url = f"http://127.0.0.1:{port}/api/v1/{path}?{query}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        return json.load(error)


def prometheus_regular_escape(value):
    """Grafana's Prometheus data source, for a variable neither multi nor include-all (its default,
    without the experimental prometheusSpecialCharsInLabelValues toggle): backslash doubled,
    a single quote turned into backslash-backslash-quote."""
    return value.replace("\\", "\\\\").replace("'", "\\\\'")


def interpolate(expr, variables):
    """Replaces the variables as Grafana does; returns (text, unresolved names)."""
    unresolved = []

    def replace(match):
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        if name in BUILTINS and not fmt:
            return BUILTINS[name]
        if name in variables and not fmt:
            return prometheus_regular_escape(variables[name])
        unresolved.append(match.group(0))
        return match.group(0)

    return VARIABLE.sub(replace, expr), unresolved


def metric_names(expr):
    """Metric names in a PromQL expression: identifiers outside strings starting with marginstream."""
    bare = STRING.sub('""', expr)
    return {m for m in METRIC.findall(bare) if m.startswith("marginstream")}


def family(name):
    for suffix in ("_sum", "_count", "_bucket"):
        if name.endswith(suffix) and name[: -len(suffix)] in LIVE_ONLY:
            return name[: -len(suffix)]
    return name


def all_panels(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        for inner in panel.get("panels", []) or []:  # collapsed rows hold their panels
            yield inner


def threshold_values(thresholds):
    return [step.get("value") for step in (thresholds or {}).get("steps", [])]


def panel_units(panel):
    config = panel.get("fieldConfig", {})
    units = {config.get("defaults", {}).get("unit")}
    for override in config.get("overrides", []):
        for prop in override.get("properties", []):
            if prop.get("id") == "unit":
                units.add(prop.get("value"))
    return units


def shows_thresholds(panel):
    """Whether the panel draws its thresholds: lines/areas, background colours or coloured cells."""
    config = panel.get("fieldConfig", {})
    kind = panel.get("type")
    if kind == "timeseries":
        mode = config.get("defaults", {}).get("custom", {}).get("thresholdsStyle", {}).get("mode", "off")
        return mode != "off"
    if kind == "stat":
        return config.get("defaults", {}).get("color", {}).get("mode") == "thresholds" and \
            panel.get("options", {}).get("colorMode", "value") != "none"
    if kind == "gauge" or kind == "bargauge":
        return True
    if kind == "table":
        cells = [config.get("defaults", {}).get("custom", {}).get("cellOptions", {})]
        for override in config.get("overrides", []):
            cells += [p["value"] for p in override.get("properties", []) if p.get("id") == "custom.cellOptions"]
        return any(c.get("type") in ("color-background", "color-text") for c in cells)
    return False


def panel_thresholds(panel):
    """Every threshold set of the panel: the defaults and each override's."""
    config = panel.get("fieldConfig", {})
    sets = [config.get("defaults", {}).get("thresholds")]
    for override in config.get("overrides", []):
        sets += [p["value"] for p in override.get("properties", []) if p.get("id") == "thresholds"]
    return [s for s in sets if s]


def check_structure(dashboard, report):
    report.check(isinstance(dashboard.get("schemaVersion"), int) and 36 <= dashboard["schemaVersion"] <= 41,
                 f"schemaVersion {dashboard.get('schemaVersion')} is not a Grafana 10/11 one (36-41)")
    report.check(bool(dashboard.get("uid")) and bool(dashboard.get("title")), "dashboard has no uid or title")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    report.check(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
                 "no `datasource` variable of type datasource for prometheus")
    window = variables.get("window", {})
    options = [o.get("value") for o in window.get("options", [])]
    report.check(window.get("type") == "custom" and window.get("query", "").replace(" ", "") == "24h,7d,30d,all"
                 and options == ["24h", "7d", "30d", "all"] and window.get("current", {}).get("value") == "30d",
                 "`window` is not a custom variable 24h,7d,30d,all defaulting to 30d")
    customer = variables.get("customer", {})
    query = customer.get("query")
    query = query.get("query") if isinstance(query, dict) else query
    report.check(customer.get("type") == "query" and query == "label_values(marginstream_revenue, customer_id)"
                 and customer.get("datasource") == DATASOURCE
                 and not customer.get("multi") and not customer.get("includeAll"),
                 "`customer` is not a single-value query variable label_values(marginstream_revenue, "
                 "customer_id) on ${datasource}")

    panels = list(all_panels(dashboard))
    ids = [p.get("id") for p in panels]
    report.check(all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)),
                 f"panel ids are not unique integers: {ids}")
    cells = {}
    for panel in panels:
        grid = panel.get("gridPos", {})
        if not report.check(all(isinstance(grid.get(k), int) for k in "xywh") and grid["x"] + grid["w"] <= 24,
                            f"panel {panel.get('id')} has no valid gridPos: {grid}"):
            continue
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in cells:
                    report.check(False, f"panels {cells[(x, y)]} and {panel['id']} overlap at ({x}, {y})")
                    break
                cells[(x, y)] = panel["id"]
            else:
                continue
            break

    for panel in panels:
        if panel.get("type") == "row":
            continue
        name = f"panel {panel.get('id')} {panel.get('title')!r}"
        targets = panel.get("targets") or []
        report.check(bool(targets), f"{name} has no targets")
        report.check(panel.get("datasource") == DATASOURCE, f"{name} datasource is not {DATASOURCE}")
        refs = [t.get("refId") for t in targets]
        report.check(len(refs) == len(set(refs)) and all(refs), f"{name} refIds are not unique: {refs}")
        for target in targets:
            report.check(isinstance(target.get("expr"), str) and target["expr"].strip(),
                         f"{name} target {target.get('refId')} has no expr")
            report.check(target.get("datasource") == DATASOURCE,
                         f"{name} target {target.get('refId')} datasource is not {DATASOURCE}")
        title = panel.get("title", "")
        if RATIO_TITLE.search(title):
            report.check("percentunit" in panel_units(panel), f"{name} shows a ratio without percentunit")
        if GM_TITLE.search(title) and "swing" not in title:
            kbcm = [s for s in panel_thresholds(panel)
                    if all(any(v is not None and abs(v - band) < 1e-12 for v in threshold_values(s))
                           for band in KBCM)]
            report.check(bool(kbcm), f"{name} lacks the KBCM thresholds {KBCM}")
            report.check(shows_thresholds(panel), f"{name} does not display its thresholds")
        elif "swing" in title:
            report.check(any(-0.05 in threshold_values(s) for s in panel_thresholds(panel))
                         and shows_thresholds(panel), f"{name} lacks the -5 point alert threshold")
    return panels


def values_of(result):
    return [float(v) for series in result for _, v in series.get("values", [series.get("value", [0, "0"])])]


def expand_rules(expr, rules, depth=0):
    """Substitutes each recording rule name by its own expression, recursively."""
    if depth > 10:
        raise RuntimeError("recording rules nest too deep")
    bare_names = {m for m in METRIC.findall(STRING.sub('""', expr)) if m in rules}
    for name in sorted(bare_names, key=len, reverse=True):
        expr = re.sub(rf"(?<![\w:]){re.escape(name)}(?![\w:])", f"({rules[name]})", expr)
    if bare_names:
        return expand_rules(expr, rules, depth + 1)
    return expr


def by_time(result):
    return {int(float(t)): float(v) for t, v in result[0]["values"]} if len(result) == 1 else None


def by_segment(result):
    """{segment: {time: value}} of a range result with one series per segment."""
    return {series["metric"].get("segment"): {int(float(t)): float(v) for t, v in series["values"]}
            for series in result}


def first_seen(port, customer, start, end):
    """The first step at which the customer has a revenue sample."""
    selector = f"marginstream_revenue{{customer_id='{prometheus_regular_escape(customer)}'}}"
    result = api(port, "query_range", query=selector, start=start, end=end, step=STEP)["data"]["result"]
    stamps = [int(float(t)) for series in result for t, _ in series["values"]]
    return min(stamps) if stamps else None


def close(a, b):
    return a == b or abs(a - b) <= 1e-12 + 1e-9 * max(abs(a), abs(b))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--dashboard", default=str(DASHBOARD))
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    binary = str(Path(args.binary).resolve())
    report = Report()
    started = time.time()
    for tool in ("promtool", "prometheus"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: install Debian's prometheus package (make test does)", file=sys.stderr)
            print("dashboard: 0 passed, 1 failed")
            return 1

    work = Path(tempfile.mkdtemp(prefix="marginstream-dashboard-"))
    prometheus = None
    try:
        dashboard = json.loads(Path(args.dashboard).read_text(encoding="utf-8"))
        panels = check_structure(dashboard, report)
        visible = [p for p in panels if p.get("type") != "row"]
        print(f"structure: {len(visible)} panels in {len(panels) - len(visible)} rows, "
              f"{sum(len(p.get('targets', [])) for p in visible)} targets")

        # A ledger of 10 days: enough for the 7-day comparisons (offset 7d) to have data.
        ledger = work / "ledger.jsonl"
        history = work / "history.om"
        subprocess.run([binary, "generate", "--customers", "12", "--days", "10", "--seed", "5",
                        "--output", str(ledger)], check=True, capture_output=True)
        subprocess.run([binary, "replay", "--input", str(ledger), "--progress", "never",
                        "--rejected-out", str(work / "rejected.jsonl"), "--format", "json",
                        "--output", str(work / "final.json"),
                        "--openmetrics-out", str(history), "--step", "1h"],
                       check=True, capture_output=True)
        with open(history, encoding="utf-8") as lines:
            stamps = sorted({int(line.rsplit(" ", 1)[1]) for line in lines
                             if line.strip() and not line.startswith("#")})
        start, end = stamps[0], stamps[-1]
        data = work / "data"
        # Day blocks, as docs/backfill.md advises for long histories: far fewer blocks, faster.
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h",
                        str(history), str(data)],
                       check=True, capture_output=True)
        port = prom.free_port()
        prometheus = prom.start(work, "global: {scrape_interval: 1h, evaluation_interval: 1h}\n"
                                f"rule_files: [{json.dumps(str(RULES))}]\nscrape_configs: []\n",
                                data, port)

        # The rule file is loaded; its recording rules' expressions, as Prometheus parsed them.
        groups = api(port, "rules")["data"]["groups"]
        rules = {r["name"]: r["query"] for g in groups for r in g["rules"] if r["type"] == "recording"}
        report.check({"marginstream-recording", "marginstream-alerts"} <= {g["name"] for g in groups}
                     and all(name in rules for name, _ in [*PORTFOLIO_RATIOS.values(), *SEGMENT_RATIOS.values()]),
                     f"rule groups not loaded from {RULES}: {[g['name'] for g in groups]}")

        # What the variables offer, queried as Grafana does.
        names = set(api(port, "label/__name__/values", start=start, end=end)["data"])
        windows = api(port, "label/window/values", start=start, end=end)["data"]
        customers = api(port, "label/customer_id/values", **{"match[]": "marginstream_revenue"},
                        start=start, end=end)["data"]
        window_options = [o["value"] for v in dashboard["templating"]["list"] if v["name"] == "window"
                          for o in v.get("options", [])]
        report.check(set(window_options) <= set(windows),
                     f"window options {window_options} not all in the data ({windows})")
        plain = [c for c in customers if re.fullmatch(r"[A-Za-z0-9_.-]+", c)][:1]
        special = [c for c in customers if not re.fullmatch(r"[A-Za-z0-9_.-]+", c)]
        chosen = plain + special
        report.check(bool(plain), f"no plain customer id among {customers}")
        print(f"backfill: {len(stamps)} steps of 1h, windows {windows}, {len(customers)} customers; "
              f"drill-down with {chosen}")

        binary_text = Path(binary).read_bytes()
        live_checked = {}
        live_panels = []
        query_count = 0
        for panel in visible:
            name = f"[{panel['id']}] {panel.get('title')}"
            live_targets = 0
            ok_before = report.failed
            for target in panel.get("targets", []):
                expr = target.get("expr") or ""
                metrics = {family(m) for m in metric_names(expr)}
                missing = {m for m in metrics if m not in names}
                unknown = missing - LIVE_ONLY
                if not report.check(not unknown, f"{name} {target['refId']}: metrics neither backfilled "
                                    f"nor live-only: {sorted(unknown)}"):
                    continue
                live = bool(missing)
                live_targets += live
                for metric in missing:
                    if metric not in live_checked:
                        live_checked[metric] = report.check(
                            metric.encode() in binary_text, f"{name}: live-only metric {metric} is not in {binary}")
                variants = [{}]
                if re.search(r"\$\{?window\b|\[\[window", expr):
                    variants = [dict(v, window=w) for v in variants for w in window_options]
                if re.search(r"\$\{?customer\b|\[\[customer", expr):
                    variants = [dict(v, customer=c) for v in variants for c in chosen]
                # A comparison with `offset` needs that much of the customer's history: a customer that
                # joined later has none (the generator's north\east joins in its last days). Such a
                # target may return nothing for a customer first seen less than the offset before the
                # end, and must return data for the others (one at least).
                offsets = [int(n) * {"m": 60, "h": 3600, "d": 86400, "w": 604800}[u]
                           for n, u in re.findall(r"\boffset\s+(\d+)([mhdw])\b", expr)]
                offset_per_customer = bool(offsets) and any("customer" in v for v in variants)
                with_data = []
                for variables in variants:
                    text, unresolved = interpolate(expr, variables)
                    what = f"{name} {target['refId']} {variables or ''}"
                    if not report.check(not unresolved, f"{what}: unresolved variables {unresolved}"):
                        continue
                    query_count += 1
                    if live:
                        body = api(port, "query", query=text, time=end)
                        report.check(body.get("status") == "success",
                                     f"{what}: does not parse: {body.get('error')}\n  {text}")
                        continue
                    body = api(port, "query_range", query=text, start=start, end=end, step=STEP)
                    if not report.check(body.get("status") == "success",
                                        f"{what}: {body.get('error')}\n  {text}"):
                        continue
                    result = body["data"]["result"]
                    if not result and offset_per_customer:
                        first = first_seen(port, variables["customer"], start, end)
                        if report.check(first is not None and first + max(offsets) > end,
                                        f"{what}: no data, though the customer was first seen at {first}"):
                            print(f"note   {what}: no data, as expected: customer first seen "
                                  f"{(end - first) / 86400:.1f} days before the end")
                        continue
                    if not report.check(bool(result), f"{what}: no data\n  {text}"):
                        continue
                    with_data.append(variables)
                    values = values_of(result)
                    report.check(all(math.isfinite(v) for v in values), f"{what}: NaN or infinite values")
                    labels = re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat") or "")
                    report.check(all(label in series["metric"] for series in result for label in labels),
                                 f"{what}: legend {target.get('legendFormat')!r} names labels the result lacks")
                    if target.get("instant"):
                        body = api(port, "query", query=text, time=end)
                        report.check(body.get("status") == "success" and body["data"]["result"],
                                     f"{what}: instant query at the end returns no data")
                    # Portfolio ratios equal the recording rules' expressions and the exporter's gauges.
                    legend = target.get("legendFormat")
                    if "marginstream_portfolio_" in expr and legend in PORTFOLIO_RATIOS and "window" in variables:
                        rule, gauge = PORTFOLIO_RATIOS[legend]
                        window = variables["window"]
                        ours = by_time(result)
                        for other, source in ((expand_rules(rule, rules), f"rule {rule}"),
                                              (f'{gauge}{{window="{window}"}}', f"gauge {gauge}")):
                            got = api(port, "query_range", query=other, start=start, end=end, step=STEP)
                            series = [s for s in got["data"]["result"] if s["metric"].get("window") == window]
                            theirs = by_time(series)
                            report.check(
                                ours is not None and theirs is not None and ours.keys() == theirs.keys()
                                and all(close(ours[t], theirs[t]) for t in ours),
                                f"{what}: differs from the {source} over the range")
                    # Ratios by tier equal the tier recording rules' expressions and the exporter's
                    # tier gauges, tier by tier.
                    title = panel.get("title")
                    if "marginstream_segment_" in expr and title in SEGMENT_RATIOS and "window" in variables:
                        rule, gauge = SEGMENT_RATIOS[title]
                        window = variables["window"]
                        ours = by_segment(result)
                        for other, source in ((expand_rules(rule, rules), f"rule {rule}"),
                                              (f'{gauge}{{window="{window}"}}', f"gauge {gauge}")):
                            got = api(port, "query_range", query=other, start=start, end=end, step=STEP)
                            theirs = by_segment([s for s in got["data"]["result"]
                                                 if s["metric"].get("window") == window])
                            report.check(
                                ours.keys() == theirs.keys()
                                and all(ours[k].keys() == theirs[k].keys()
                                        and all(close(ours[k][t], theirs[k][t]) for t in ours[k]) for k in ours),
                                f"{what}: differs from the {source} over the range")
                if offset_per_customer and not live:
                    report.check(bool(with_data), f"{name} {target['refId']}: no data for any customer")
            if live_targets:
                live_panels.append(name if live_targets == len(panel.get("targets", []))
                                   else f"{name} ({live_targets} of its targets)")
            print(("ok     " if report.failed == ok_before else "FAILED ") +
                  ("live-only " if live_targets else "data      ") + name)
        print(f"live-only (parsed only; their metrics exist under `marginstream run`): {len(live_panels)} panels")
        for name in live_panels:
            print(f"  {name}")
        print(f"ran {query_count} panel queries for {len(visible)} panels in {time.time() - started:.1f}s")
    except Exception as error:  # noqa: BLE001 - report and fail, whatever broke
        report.failed += 1
        print(f"ERROR {error!r}")
    finally:
        if prometheus is not None:
            prom.stop(prometheus)
        if report.failed == 0 and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} for inspection")
    print(f"dashboard: {report.passed} passed, {report.failed} failed")
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

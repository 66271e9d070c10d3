#!/usr/bin/env python3
"""What marginstream writes, read by the reference Python parsers (prometheus-client).

promtool accepts more than OpenMetrics allows (a history whose series were interleaved, issue
14); other importers read the history with stricter parsers. So every output is parsed with
the reference ones, and every sample they return is compared with the file's own line:

(a) History (`replay --openmetrics-out --step 1h`) of every golden ledger (with its
    config.toml) and of a generated ledger whose customer ids are rewritten to need every
    escape a label value can need (quotes, backslashes, a literal backslash-n, non-ASCII,
    braces, commas, `=` and `#`): `prometheus_client.openmetrics.parser
    .text_string_to_metric_families`. A real line feed cannot be in a customer id (the
    contract refuses control characters, which the ledger here checks), so the label escape
    `\\n` is exercised by the literal backslash-n; the exporter's unit tests write one.
(b) Text exposition: every tests/golden/*/expected.prom and a fresh `replay --format
    prometheus` of the generated ledger: `prometheus_client.parser
    .text_string_to_metric_families`.

A sample matches its line when the name, every label (unescaped here by an independent
reader of the line), the value (the f64 nearest the decimal text) and the timestamp are
equal, in the same order, and there are as many samples as lines.

Run with the test virtualenv's python (scripts/test-venv.sh installs prometheus-client,
pinned and hash-checked): `$(scripts/test-venv.sh) tests/e2e/parsers.py --binary
target/debug/marginstream`. The last line is `parsers: N passed, M failed`; exit 1 on any
failure, or when prometheus_client is missing.
"""

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')
UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}

# Customer ids that need escaping in JSON and in label values, or are not ASCII.
SPECIAL_IDS = [
    'acme "co" {}',
    "north\\east\\{}",
    "literal \\n not a newline {}",
    'quote \\" and backslash {}',
    "müller–gmbh ✓ {}",
    "日本の顧客 {}",
    "rocket 🚀 {}",
    'x",window="7d {}',
    "a{{b}}=c # d, e {}",
    "ends with a backslash {}\\",
]


def read_line(line):
    """Reads one sample line on its own: (name, labels, value text, timestamp text or None)."""
    match = NAME.match(line)
    if not match:
        raise ValueError(f"no metric name: {line!r}")
    name, i = match.group(0), match.end()
    labels = {}
    if line[i] == "{":
        i += 1
        while line[i] != "}":
            match = LABEL.match(line, i)
            if not match:
                raise ValueError(f"bad label at {i}: {line!r}")
            key, i = match.group(1), match.end()
            value = []
            while line[i] != '"':
                if line[i] == "\\":
                    value.append(UNESCAPE[line[i + 1]])
                    i += 2
                else:
                    value.append(line[i])
                    i += 1
            labels[key] = "".join(value)
            i += 1
            if line[i] == ",":
                i += 1
        i += 1
    fields = line[i:].split(" ")
    if fields[0] != "" or len(fields) not in (2, 3):
        raise ValueError(f"bad value or timestamp: {line!r}")
    return name, labels, fields[1], fields[2] if len(fields) == 3 else None


def stamp_of(timestamp):
    """A parsed timestamp as (seconds, nanoseconds), or None."""
    if timestamp is None:
        return None
    if hasattr(timestamp, "sec"):
        return (timestamp.sec, timestamp.nsec)
    return (int(timestamp), 0)


def compare(text, families, what):
    """Returns the mismatches between the parser's samples and the text's sample lines."""
    lines = [line for line in text.split("\n") if line and not line.startswith("#")]
    samples = [sample for family in families for sample in family.samples]
    problems = []
    if len(samples) != len(lines):
        problems.append(f"{what}: the parser returned {len(samples)} samples for {len(lines)} lines")
    for line, sample in zip(lines, samples):
        name, labels, value, stamp = read_line(line)
        expected_stamp = None if stamp is None else (int(stamp), 0)
        same_value = float(value) == sample.value or (math.isnan(float(value)) and math.isnan(sample.value))
        if (name, labels, expected_stamp) != (sample.name, dict(sample.labels), stamp_of(sample.timestamp)) or not same_value:
            problems.append(f"{what}: line {line!r} parsed as {sample!r}")
            if len(problems) > 5:
                break
    return problems


def parse(kind, text):
    """Parses with the reference parser of `kind` ("openmetrics" or "text")."""
    if kind == "openmetrics":
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
    else:
        from prometheus_client.parser import text_string_to_metric_families
    return list(text_string_to_metric_families(text))


def escaping_ledger(binary, work):
    """A generated ledger with every customer id rewritten to one of SPECIAL_IDS, and one
    event whose id holds a real line feed (which must be rejected)."""
    plain = work / "generated.jsonl"
    subprocess.run([binary, "generate", "--customers", "10", "--days", "3", "--seed", "14",
                    "--output", str(plain)], check=True, capture_output=True)
    ids = {}
    out_lines = []
    for line in plain.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        customer = event.get("customer_id")
        if isinstance(customer, str):
            if customer not in ids:
                ids[customer] = SPECIAL_IDS[len(ids) % len(SPECIAL_IDS)].format(len(ids))
            event["customer_id"] = ids[customer]
        out_lines.append(json.dumps(event, ensure_ascii=False))
    out_lines.append(json.dumps({
        "event_type": "Revenue_Event", "event_id": "newline-id", "customer_id": "line\nfeed",
        "occurred_at": "2025-12-31T00:00:00Z", "amount": "1", "currency": "USD"}))
    ledger = work / "special-ids.jsonl"
    ledger.write_text("\n".join(out_lines) + "\n", encoding="utf-8")
    return ledger, set(ids.values())


def replay(binary, ledger, work, name, config=None, extra=()):
    args = [binary, "replay", "--input", str(ledger), "--progress", "never",
            "--rejected-out", str(work / f"{name}.rejected.jsonl")]
    if config is not None:
        args += ["--config", str(config)]
    subprocess.run(args + list(extra), check=True, capture_output=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    args = parser.parse_args()
    binary = str(Path(args.binary).resolve())
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        print("prometheus_client is missing: run this with $(scripts/test-venv.sh), as make test does",
              file=sys.stderr)
        print("parsers: 0 passed, 1 failed")
        return 1

    work = Path(tempfile.mkdtemp(prefix="marginstream-parsers-"))
    passed = failed = 0

    def check(kind, text, what, families_expected=None):
        nonlocal passed, failed
        try:
            families = parse(kind, text)
            problems = compare(text, families, what)
            if families_expected is not None and len(families) != families_expected:
                problems.append(f"{what}: {len(families)} families, expected {families_expected}")
        except Exception as error:  # noqa: BLE001 - the parser's refusal is the finding
            problems = [f"{what}: the {kind} parser refused it: {error}"]
        if problems:
            failed += 1
            for problem in problems:
                print(f"FAIL {problem}")
        else:
            passed += 1
            samples = sum(1 for line in text.split("\n") if line and not line.startswith("#"))
            print(f"ok   {what}: {samples} samples")

    try:
        # (a) Histories, with the OpenMetrics parser: 18 gauge families each (the 12 of contract
        # section 5 and, with the default tiers, the six of section 8).
        histories = []
        for case in sorted((ROOT / "tests/golden").iterdir()):
            if not (case / "input.jsonl").exists():
                continue
            config = case / "config.toml"
            history = work / f"{case.name}.om"
            replay(binary, case / "input.jsonl", work, case.name,
                   config if config.exists() else None,
                   ["--format", "json", "--output", str(work / f"{case.name}.json"),
                    "--openmetrics-out", str(history), "--step", "1h"])
            histories.append((f"history of golden/{case.name}", history))
        ledger, special = escaping_ledger(binary, work)
        history = work / "special-ids.om"
        exposition = work / "special-ids.prom"
        replay(binary, ledger, work, "special-ids", None,
               ["--format", "prometheus", "--output", str(exposition),
                "--openmetrics-out", str(history), "--step", "1h"])
        histories.append(("history of the escaping ledger", history))
        for what, path in histories:
            check("openmetrics", path.read_text(encoding="utf-8"), what, families_expected=18)

        # Every special id is in the history, unescaped back to itself; the line feed was refused.
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
        seen = {sample.labels.get("customer_id")
                for family in text_string_to_metric_families(history.read_text(encoding="utf-8"))
                for sample in family.samples}
        rejected = (work / "special-ids.rejected.jsonl").read_text(encoding="utf-8")
        if special <= seen and "line\nfeed" not in seen and "newline-id" in rejected:
            passed += 1
            print(f"ok   the {len(special)} escaping ids come back whole; a line feed in an id is rejected")
        else:
            failed += 1
            print(f"FAIL ids missing from the history: {sorted(special - seen)!r}; "
                  f"line feed seen: {'line' + chr(10) + 'feed' in seen}")

        # (b) Text expositions, with the Prometheus text parser: 21 families each (the 14 of
        # contract section 5, the customers exposed of section 7, the six of section 8).
        for expected in sorted((ROOT / "tests/golden").glob("*/expected.prom")):
            check("text", expected.read_text(encoding="utf-8"),
                  f"exposition golden/{expected.parent.name}", families_expected=21)
        check("text", exposition.read_text(encoding="utf-8"), "exposition of the escaping ledger",
              families_expected=21)
    except Exception as error:  # noqa: BLE001 - report and fail, whatever broke
        failed += 1
        print(f"ERROR {error}")
    finally:
        if failed == 0:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} for inspection")
    print(f"parsers: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

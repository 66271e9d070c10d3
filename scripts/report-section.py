#!/usr/bin/env python3
"""Puts a section into the benchmark report: `report-section.py REPORT SECTION`.

SECTION is a Markdown file whose first line is its `## ` heading. The section of REPORT
with that heading (up to the next `## ` heading) is replaced by it, or it is appended;
other sections are kept. REPORT is created when missing, and replaced atomically."""

import os
import sys

report, section_path = sys.argv[1], sys.argv[2]
with open(section_path, encoding="utf-8") as f:
    section = f.read().rstrip("\n") + "\n"
heading = section.splitlines()[0]
if not heading.startswith("## "):
    sys.exit(f"{section_path}: the first line is not a '## ' heading")
text = "# marginstream benchmark report\n"
if os.path.exists(report):
    with open(report, encoding="utf-8") as f:
        text = f.read()
lines = text.splitlines(keepends=True)
start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == heading), None)
if start is None:
    text = text.rstrip("\n") + "\n\n" + section
else:
    end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
    rest = "".join(lines[end:])
    text = "".join(lines[:start]) + section + ("\n" + rest if rest else "")
tmp = report + ".tmp"
with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
os.replace(tmp, report)

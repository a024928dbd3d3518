#!/usr/bin/env python3
"""Writes KTO rows whose completions are all "7" (3 of 4 desirable): the
KL pairs (each prompt with another row's completion) are then the same
whatever the micro-batch size, so runs with different per-device batches
can be compared.

    kto_const_completion.py SOURCE.jsonl OUT.jsonl ROWS
"""
import json
import sys

src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(src) as f, open(out, "w") as g:
    for i, line in enumerate(f):
        if i == n:
            break
        row = json.loads(line)
        row["completion"] = "7"
        row["label"] = i % 4 != 0
        g.write(json.dumps(row) + "\n")

#!/usr/bin/env python3
"""Compares two trlc runs: the step-1 loss of their metrics.jsonl and the
gradients they dumped (--dump-gradients, F32 safetensors), by relative
error in norm. Standard library only.

    compare_runs.py RUN_A GRADS_A RUN_B GRADS_B TOLERANCE
"""
import json
import math
import struct
import sys


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        b, e = info["data_offsets"]
        out[name] = struct.unpack(f"<{(e - b) // 4}f", data[base + b:base + e])
    return out


def first_loss(run):
    with open(f"{run}/metrics.jsonl") as f:
        for line in f:
            row = json.loads(line)
            if row.get("step") == 1 and "loss" in row:
                return row["loss"]
    raise SystemExit(f"{run}/metrics.jsonl has no step 1")


def main():
    run_a, grads_a, run_b, grads_b, tol = sys.argv[1:6]
    tol = float(tol)
    la, lb = first_loss(run_a), first_loss(run_b)
    worst = abs(la - lb) / abs(la)
    print(f"loss {la:.9g} vs {lb:.9g}: relative error {worst:.2e}")
    ga, gb = read_safetensors(grads_a), read_safetensors(grads_b)
    assert ga.keys() == gb.keys(), "different gradient tensors"
    for name in sorted(ga):
        diff = math.sqrt(sum((x - y) ** 2 for x, y in zip(ga[name], gb[name])))
        norm = math.sqrt(sum(x * x for x in ga[name])) or 1.0
        worst = max(worst, diff / norm)
        if diff / norm > tol:
            print(f"{name}: relative error {diff / norm:.2e} > {tol}")
    print(f"{len(ga)} gradients, worst relative error {worst:.2e}")
    print("MATCH" if worst <= tol else "DIFFER")
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Compares two trlc runs step by step: the loss of every step RUN_B logged
(relative error; RUN_B may be a resumed run, logging only the later steps) and the final model.safetensors (a LoRA run's adapter_model.safetensors; largest relative error
of any tensor, in norm). Standard library only.

    compare_trajectories.py RUN_A RUN_B TOLERANCE
"""
import json
import math
import os
import sys

from compare_runs import read_safetensors


def losses(run):
    with open(f"{run}/metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def main():
    run_a, run_b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
    la, lb = losses(run_a), losses(run_b)
    if not lb or not lb.keys() <= la.keys():
        print(f"logged steps differ: {sorted(la)} vs {sorted(lb)}")
        return 1
    worst_loss = max(abs(la[s] - lb[s]) / abs(la[s]) for s in lb)
    print(f"{len(lb)} steps, worst loss relative error {worst_loss:.2e}")
    # A LoRA run saves its adapters alone.
    name = "model.safetensors" if os.path.exists(f"{run_a}/model.safetensors") \
        else "adapter_model.safetensors"
    wa = read_safetensors(f"{run_a}/{name}")
    wb = read_safetensors(f"{run_b}/{name}")
    if wa.keys() != wb.keys():
        print("different tensors in the final models")
        return 1
    worst_weight = 0.0
    for name in sorted(wa):
        diff = math.sqrt(sum((x - y) ** 2 for x, y in zip(wa[name], wb[name])))
        norm = math.sqrt(sum(x * x for x in wa[name])) or 1.0
        worst_weight = max(worst_weight, diff / norm)
    print(f"{len(wa)} weights, worst relative error {worst_weight:.2e}")
    ok = worst_loss <= tol and worst_weight <= tol
    print("MATCH" if ok else "DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

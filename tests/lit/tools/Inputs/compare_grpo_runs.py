#!/usr/bin/env python3
"""Checks that two GRPO (RLOO, online DPO) runs sampled and trained alike: their first
batches as trained (TRLC_DUMP_GRPO_BATCH: completions, sampling
log-probabilities, advantages) are equal, every logged metric but the
timings is equal, and the final weights are bit-identical; with TOLERANCE,
metrics and weights agree within that relative error instead (runs whose
gradients are summed in another order: replicated against ZeRO-3).
Standard library only.

    compare_grpo_runs.py RUN_A DUMP_A RUN_B DUMP_B [TOLERANCE]
"""
import json
import math
import sys

from compare_runs import read_safetensors


def metrics(run):
    with open(f"{run}/metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    varies = {"step_time_s", "tokens_per_second", "peak_memory_bytes", "planned_memory_bytes",
              "runtime_allocated_bytes"}
    return [{k: v for k, v in r.items() if not k.startswith("time/") and k not in varies}
            for r in rows]


def main():
    run_a, dump_a, run_b, dump_b = sys.argv[1:5]
    with open(dump_a) as fa, open(dump_b) as fb:
        a, b = json.load(fa), json.load(fb)
    if a != b:
        print("the first batches differ")
        return 1
    rows = sum(len(m) for m in a["micro_batches"])
    # (Online DPO's rows carry no sampling log-probabilities.)
    def length(r):
        if "old_logps" in r:
            return len(r["old_logps"])
        if "logps" in r:  # PPO's rollout
            return len(r["logps"])
        return sum(r["completion_mask"])
    lengths = sorted({length(r) for m in a["micro_batches"] for r in m})
    print(f"first batch: {rows} completions, lengths {lengths[0]}..{lengths[-1]}, identical")
    ma, mb = metrics(run_a), metrics(run_b)
    if len(sys.argv) > 5:
        return close(ma, mb, run_a, run_b, float(sys.argv[5]))
    if ma != mb:
        for ra, rb in zip(ma, mb):
            if ra != rb:
                print(f"metrics differ: {ra} vs {rb}")
                break
        return 1
    print(f"{len(ma)} metric rows identical")
    with open(f"{run_a}/model.safetensors", "rb") as fa, open(f"{run_b}/model.safetensors", "rb") as fb:
        if fa.read() != fb.read():
            print("final weights differ")
            return 1
    print("final weights identical")
    return 0


def close(ma, mb, run_a, run_b, tol):
    def rel(x, y):
        return abs(x - y) / max(abs(x), abs(y), 1e-30)
    worst = 0.0
    for ra, rb in zip(ma, mb):
        if ra.keys() != rb.keys():
            print(f"metric keys differ: {sorted(ra)} vs {sorted(rb)}")
            return 1
        for k, v in ra.items():
            if isinstance(v, float) and abs(v) > 1e-6:
                worst = max(worst, rel(v, rb[k]))
            elif v != rb[k] and not isinstance(v, float):
                print(f"{k} differs: {v} vs {rb[k]}")
                return 1
    wa = read_safetensors(f"{run_a}/model.safetensors")
    wb = read_safetensors(f"{run_b}/model.safetensors")
    worst_w = 0.0
    for name, a in wa.items():
        b = wb[name]
        diff = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
        norm = math.sqrt(sum(x * x for x in a)) or 1.0
        worst_w = max(worst_w, diff / norm)
    print(f"{len(ma)} metric rows within {worst:.1e}, weights within {worst_w:.1e}")
    ok = len(ma) == len(mb) and worst <= tol and worst_w <= tol
    print("CLOSE" if ok else "FAR")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

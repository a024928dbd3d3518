#!/usr/bin/env python3
"""Checks that two GRPO runs sampled and trained alike: their first
batches as trained (TRLC_DUMP_GRPO_BATCH: completions, sampling
log-probabilities, advantages) are equal, every logged metric but the
timings is equal, and the final weights are bit-identical. Standard library
only.

    compare_grpo_runs.py RUN_A DUMP_A RUN_B DUMP_B
"""
import json
import sys


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
    lengths = sorted({len(r["old_logps"]) for m in a["micro_batches"] for r in m})
    print(f"first batch: {rows} completions, lengths {lengths[0]}..{lengths[-1]}, identical")
    ma, mb = metrics(run_a), metrics(run_b)
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


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Checks a GRPO demo run: the mean reward rose by at least MIN_RISE (first
logged row against the last) and the greedy exact match on the held-out
prompts rose (the run evaluates before its first step and after its last).
Standard library only.

    check_grpo_demo.py RUN MIN_RISE
"""
import json
import sys


def main():
    run, min_rise = sys.argv[1], float(sys.argv[2])
    with open(f"{run}/metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    logged = [r for r in rows if "loss" in r]
    evals = [r["eval_exact_match"] for r in rows if "eval_exact_match" in r]
    first, last = logged[0]["reward"], logged[-1]["reward"]
    print(f"reward: {first:.3f} -> {last:.3f}")
    print(f"greedy exact match: {evals[0]:.3f} -> {evals[-1]:.3f}")
    ok = last - first >= min_rise and len(evals) == 2 and evals[-1] > evals[0]
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

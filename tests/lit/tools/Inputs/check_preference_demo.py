#!/usr/bin/env python3
"""Checks a preference run against the SFT model it started from: the
reward metrics rose (first logged row against the last) and the greedy
exact match did not fall below the SFT model's. Standard library only.

    check_preference_demo.py SFT_RUN RUN METRIC [METRIC...]
"""
import json
import sys


def rows(run):
    with open(f"{run}/metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def exact_match(run):
    evals = [r["eval_exact_match"] for r in rows(run) if "eval_exact_match" in r]
    return evals[-1] if evals else None


def main():
    sft, run, metrics = sys.argv[1], sys.argv[2], sys.argv[3:]
    logged = [r for r in rows(run) if "loss" in r]
    ok = len(logged) >= 2
    for m in metrics:
        first, last = logged[0][m], logged[-1][m]
        rose = last > first
        ok &= rose
        print(f"{m}: {first:.4f} -> {last:.4f} ({'rose' if rose else 'did not rise'})")
    base, now = exact_match(sft), exact_match(run)
    held = base is not None and now is not None and now >= base
    ok &= held
    print(f"exact match: SFT {base} -> {now} ({'held' if held else 'FELL'})")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

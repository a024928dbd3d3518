#!/usr/bin/env python3
"""Checks an online demo run (GRPO, RLOO, online DPO, PPO): the mean reward
(metric KEY, "reward" unless given; online DPO and PPO log "objective/scores")
rose by at least MIN_RISE (first logged row against the last) and the
greedy exact match on the held-out prompts rose (the run evaluates before
its first step and after its last; with --reward-only, the reward alone).
Standard library only.

    check_grpo_demo.py RUN MIN_RISE [KEY] [--reward-only]
"""
import json
import sys


def main():
    args = [a for a in sys.argv[1:] if a != "--reward-only"]
    reward_only = len(args) < len(sys.argv) - 1
    run, min_rise = args[0], float(args[1])
    key = args[2] if len(args) > 2 else "reward"
    with open(f"{run}/metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    logged = [r for r in rows if "loss" in r]
    evals = [r["eval_exact_match"] for r in rows if "eval_exact_match" in r]
    first, last = logged[0][key], logged[-1][key]
    print(f"reward: {first:.3f} -> {last:.3f}")
    print(f"greedy exact match: {evals[0]:.3f} -> {evals[-1]:.3f}")
    ok = last - first >= min_rise and len(evals) == 2 and (reward_only or evals[-1] > evals[0])
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

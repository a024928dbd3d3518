#!/usr/bin/env python3
"""Describes a trained reward model directory and its metrics: the config's
architectures and labels, its tensors' kinds, the metric keys of its last
logged row, and, given a second run, whether TRL's score metrics
(accuracy, margin, min/mean/max_reward) agree row by row within 1e-5.

    check_reward_run.py RUN [OTHER_RUN]

With --init, compares the weights a run started from (--dump-initial)
with the causal LM it was given: every tensor but the score head the LM's,
the score head new, the LM head unused.

    check_reward_run.py --init INITIAL.safetensors LM_DIR
"""
import json
import sys

from compare_runs import read_safetensors


def rows(run):
    with open(f"{run}/metrics.jsonl") as f:
        return [json.loads(line) for line in f if '"loss"' in line]


def check_init(initial, lm):
    start = read_safetensors(initial)
    base = read_safetensors(f"{lm}/model.safetensors")
    same = sorted(k for k in start if k in base and start[k] == base[k])
    print("from the LM", len(same), "of", len(start), "new", sorted(set(start) - set(base)),
          "unused", sorted(set(base) - set(start)))
    head = start["score.weight"]
    rms = (sum(x * x for x in head) / len(head)) ** 0.5
    print("score head rms", "about 0.02" if 0.01 < rms < 0.03 else rms)
    return 0


def main():
    if sys.argv[1] == "--init":
        return check_init(sys.argv[2], sys.argv[3])
    run = sys.argv[1]
    config = json.load(open(f"{run}/config.json"))
    print("architectures", config["architectures"], "labels", len(config["id2label"]),
          "pad_token_id", config.get("pad_token_id"))
    weights = read_safetensors(f"{run}/model.safetensors")
    print("score.weight", len(weights.get("score.weight", [])), "lm_head",
          "lm_head.weight" in weights, "tensors", len(weights))
    last = rows(run)[-1]
    print("metrics", " ".join(sorted(k for k in last if k in (
        "accuracy", "margin", "min_reward", "mean_reward", "max_reward", "num_tokens"))))
    ordered = last["min_reward"] <= last["mean_reward"] <= last["max_reward"]
    print("min <= mean <= max", ordered)
    if len(sys.argv) > 2:
        other = rows(sys.argv[2])
        worst = 0.0
        for a, b in zip(rows(run), other):
            for k in ("accuracy", "margin", "min_reward", "mean_reward", "max_reward"):
                worst = max(worst, abs(a[k] - b[k]) / max(1.0, abs(a[k])))
        print("SAME" if worst <= 1e-5 and len(other) == len(rows(run)) else f"DIFFER {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

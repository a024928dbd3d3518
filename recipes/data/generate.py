#!/usr/bin/env python3
"""Writes the small synthetic datasets the example recipes train on.

The task is two-number addition ("12+7=" -> "19"), in each TRL format:
prompt-completion (SFT), preference (DPO: the right sum is chosen, a sum off
by one is rejected), unpaired preference (KTO) and prompt-only (GRPO).
Deterministic: the same files come out on every run.
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def problems(rng, n, lo=0, hi=49):
    for _ in range(n):
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        yield f"{a}+{b}=", str(a + b), a + b


def write(name, rows):
    with open(os.path.join(HERE, name), "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def main():
    rng = random.Random(1234)
    write("arith-sft.jsonl",
          [{"prompt": p, "completion": c} for p, c, _ in problems(rng, 2000)])
    write("arith-sft-eval.jsonl",
          [{"prompt": p, "completion": c} for p, c, _ in problems(rng, 64)])
    write("arith-dpo.jsonl",
          [{"prompt": p, "chosen": c, "rejected": str(s + rng.choice([-1, 1]))}
           for p, c, s in problems(rng, 256, lo=1)])
    write("arith-kto.jsonl",
          [{"prompt": p, "completion": c if good else str(s + 1), "label": good}
           for (p, c, s), good in zip(problems(rng, 256),
                                      (rng.random() < 0.5 for _ in range(256)))])
    write("arith-grpo.jsonl",
          [{"prompt": p, "answer": c} for p, c, _ in problems(rng, 256)])


if __name__ == "__main__":
    main()

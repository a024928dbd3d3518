#!/usr/bin/env python3
"""Writes the small synthetic datasets the example recipes train on.

The task is two-number addition ("12+7=" -> "19"), in each TRL format:
prompt-completion (SFT), preference (DPO: the right sum is chosen, a sum off
by one is rejected; reward modelling: several kinds of wrong answer), unpaired preference (KTO) and prompt-only (GRPO). The
wrong sums keep the right one's tens digit (39 is never the wrong answer
for 40): only the last digit tells them apart, so preference training
does not push down a digit the right answer starts with.
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


# A character-level vocabulary for the arithmetic task: the demo's tokenizer.
SPECIAL = ["<pad>", "<s>", "</s>"]
CHARS = list("0123456789+=-")
VOCAB = {tok: i for i, tok in enumerate(SPECIAL + CHARS)}
PAD, BOS, EOS = 0, 1, 2


def tokenizer_json():
    """A Hugging Face tokenizers file: one token per character."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": t, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
            for i, t in enumerate(SPECIAL)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "."},
                          "behavior": "Isolated", "invert": False},
        # BOS before every encoded text, as Llama's tokenizers do.
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [BOS], "tokens": ["<s>"]}}},
        "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": VOCAB, "unk_token": "<pad>"},
    }


def tokenize(prompt, completion):
    """Pre-tokenized prompt-completion row: loss on the completion and EOS."""
    p = [BOS] + [VOCAB[c] for c in prompt]
    c = [VOCAB[ch] for ch in completion] + [EOS]
    return {"input_ids": p + c, "completion_mask": [0] * len(p) + [1] * len(c)}


def near_miss(s, step):
    """s + step, or s - step where that would change the tens digit."""
    if (s % 10 == 0 and step < 0) or (s % 10 == 9 and step > 0):
        return s - step
    return s + step


def wrong_answer(rng, s):
    """A wrong answer for the sum s: off by one or by ten, another number,
    a digit dropped, added or swapped."""
    text = str(s)
    while True:
        kind = rng.randrange(6)
        if kind == 0:
            w = str(near_miss(s, rng.choice([-1, 1])))
        elif kind == 1:
            w = str(s + 10 if s < 10 or rng.random() < 0.5 else s - 10)
        elif kind == 2:
            w = str(rng.randint(0, 98))
        elif kind == 3:
            w = text[:-1] if len(text) > 1 else text + text
        elif kind == 4:
            w = text + str(rng.randint(0, 9))
        else:
            w = text[::-1]
        if w != text:
            return w


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
    # Pre-tokenized copies: the `tokenized` format, and what the tokenizer
    # must reproduce from the text (tests/lit/tools/data.test).
    for name in ("arith-sft", "arith-sft-eval"):
        with open(os.path.join(HERE, name + ".jsonl")) as f:
            rows = [json.loads(line) for line in f]
        write(name + ".tokens.jsonl",
              [tokenize(r["prompt"], r["completion"]) for r in rows])
    os.makedirs(os.path.join(HERE, "arith-tokenizer"), exist_ok=True)
    with open(os.path.join(HERE, "arith-tokenizer", "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json(), f, indent=1)
        f.write("\n")
    with open(os.path.join(HERE, "arith-tokenizer", "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
                   "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=1)
        f.write("\n")
    write("arith-dpo.jsonl",
          [{"prompt": p, "chosen": c, "rejected": str(near_miss(s, rng.choice([-1, 1])))}
           for p, c, s in problems(rng, 256, lo=1)])
    write("arith-kto.jsonl",
          [{"prompt": p, "completion": c if good else str(near_miss(s, 1)), "label": good}
           for (p, c, s), good in zip(problems(rng, 256),
                                      (rng.random() < 0.5 for _ in range(256)))])
    # GRPO tokenizes prompts without special tokens (as TRL does): the
    # prompt carries the BOS the SFT model was trained with as text.
    write("arith-grpo.jsonl",
          [{"prompt": "<s>" + p, "answer": c} for p, c, _ in problems(rng, 2000)])
    # Reward modelling (its own generator, so the files above stay as they
    # were): the right sum against the kinds of wrong answer a sampling
    # policy writes, two pairs per prompt.
    rm = random.Random(4321)
    write("arith-rm.jsonl",
          [{"prompt": p, "chosen": c, "rejected": wrong_answer(rm, s)}
           for p, c, s in problems(rm, 1500) for _ in range(2)])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""trlc on a real pretrained model against a PyTorch reference.

SmolLM2-135M-Instruct (scripts/fetch-smollm2) fine-tuned on chat rows: the
first step's loss of trlc in fp32 equals a float64 PyTorch forward of the
same weights and tokens within 1e-5 relative, and within bf16's tolerance
with `dtype = "bf16"`; three AdamW steps follow the reference's losses; the
model trlc saves, reloaded in the reference, gives the reference's loss
after those steps.

    test_smollm2.py --trlc build/bin/trlc --model DIR

Exit code 77 (skipped) when torch cannot be imported.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("SKIPPED: PyTorch is not installed (apt install python3-torch)")
    sys.exit(77)
from test_reference import batch_tensors, llama_logits, read_safetensors  # noqa: E402

ROWS = [
    [("user", "What is the capital of France?"), ("assistant", "The capital of France is Paris.")],
    [("system", "You answer briefly."), ("user", "How many legs does a spider have?"),
     ("assistant", "Eight.")],
    [("user", "Name a primary color."), ("assistant", "Red is a primary color.")],
    [("user", "What is 12 plus 30?"), ("assistant", "12 plus 30 is 42."),
     ("user", "And 42 minus 2?"), ("assistant", "40.")],
]
STEPS, LR = 3, 1e-4


def recipe(model, data, out, dtype, steps):
    return f"""method = "sft"
[model]
path = "{model}"
dtype = "{dtype}"
[data]
train = "{data}"
max_length = 96
[train]
per_device_train_batch_size = {len(ROWS)}
max_steps = {steps}
learning_rate = {LR}
lr_scheduler_type = "constant"
max_grad_norm = 1.0
[output]
output_dir = "{out}"
logging_steps = 1
save_steps = 1000
"""


def train(trlc, tmp, model, data, dtype, steps):
    path = os.path.join(tmp, f"{dtype}.toml")
    out = os.path.join(tmp, f"{dtype}-run")
    with open(path, "w") as f:
        f.write(recipe(model, data, out, dtype, steps))
    res = subprocess.run([trlc, "train", path, "-o", os.path.join(tmp, f"{dtype}.trlc"),
                          "--quiet"], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"trlc failed ({dtype}):\n{res.stdout}{res.stderr}")
    with open(os.path.join(out, "metrics.jsonl")) as f:
        losses = [json.loads(l)["loss"] for l in f if '"loss"' in l]
    rows = subprocess.run([trlc, "data", path, "--emit=jsonl"], capture_output=True, text=True,
                          check=True).stdout
    return losses, [json.loads(l) for l in rows.splitlines()], out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trlc", required=True)
    ap.add_argument("--model", required=True)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "chat.jsonl")
        with open(data, "w") as f:
            for conv in ROWS:
                f.write(json.dumps({"messages": [{"role": r, "content": c} for r, c in conv]}) + "\n")
        losses, rows, out = train(args.trlc, tmp, args.model, data, "fp32", STEPS)
        bf16, _, _ = train(args.trlc, tmp, args.model, data, "bf16", 1)

        cfg = json.load(open(os.path.join(args.model, "config.json")))
        seq = max(len(r["input_ids"]) for r in rows)
        ids, pos, mask, labels = batch_tensors(rows, seq)
        num_items = (labels != -100).sum()

        def loss_of(p):
            logits = llama_logits(p, cfg, ids, pos, mask)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                   ignore_index=-100, reduction="sum") / num_items

        params = {k: v.requires_grad_(True)
                  for k, v in read_safetensors(os.path.join(args.model, "model.safetensors")).items()}
        opt = torch.optim.AdamW(
            [{"params": [v for v in params.values() if v.dim() >= 2], "weight_decay": 0.0},
             {"params": [v for v in params.values() if v.dim() < 2], "weight_decay": 0.0}],
            lr=LR, betas=(0.9, 0.999), eps=1e-8)
        reference = []
        for step in range(STEPS):
            opt.zero_grad()
            loss = loss_of(params)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
            opt.step()
            reference.append(loss.item())
        with torch.no_grad():
            after = loss_of(params).item()

        def check(what, got, want, limit):
            r = abs(got - want) / abs(want)
            print(f"{what}: trlc {got:.7f} torch {want:.7f} rel {r:.2e} (limit {limit:g})")
            if r > limit:
                failures.append(f"{what} differs by {r:.2e} relative (limit {limit:g})")

        print(f"{len(rows)} chat rows, {int(mask.sum())} tokens, {int(num_items)} trained")
        check("step 1 loss, fp32", losses[0], reference[0], 1e-5)
        check("step 1 loss, bf16", bf16[0], reference[0], 2e-2)
        for step in range(1, STEPS):
            check(f"step {step + 1} loss, fp32", losses[step], reference[step], 1e-4)
        saved = read_safetensors(os.path.join(out, "model.safetensors"))
        with torch.no_grad():
            reloaded = loss_of(saved).item()
        check(f"saved model's loss after {STEPS} steps", reloaded, after, 1e-4)
        # The repository's real recipe compiles against this model: chat
        # rows with assistant-only masks from the stock ChatML template,
        # packed, with the fused loss and an eval program.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        res = subprocess.run([args.trlc, "compile", "recipes/smollm2-sft.toml", "-o",
                              os.path.join(tmp, "recipe.trlc"), "--set",
                              f'model.path="{args.model}"'], cwd=root, capture_output=True,
                             text=True)
        print(res.stdout.splitlines()[0] if res.stdout else res.stderr)
        if res.returncode != 0 or not os.path.exists(os.path.join(tmp, "recipe.trlc",
                                                                  "data", "eval.bin")):
            failures.append(f"recipes/smollm2-sft.toml does not compile:\n{res.stderr}")
    if failures:
        print("\nFAILED:\n" + "\n".join(failures))
        sys.exit(1)
    print("SmolLM2 matches the PyTorch reference")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/cpu_sft: trlc against PyTorch eager, same model, batch, data and threads.

Trains a model on random pre-tokenized rows for a few steps with each
engine in its own process, and prints tokens/s and peak RSS of both and the
ratios. PyTorch starts from the same weights, runs the reference model of
tests/torch (eager attention: PyTorch 1.13 on Debian has neither SDPA nor
torch.compile; with a newer torch, torch.compile is tried too) with
torch.optim.AdamW and clipping at 1.0, as trlc does. Cases:

  tiny     llama 4x256 (GQA 8/4, vocab 1024), random init, batch 8 x 128
  smollm2  SmolLM2-135M-Instruct (scripts/fetch-smollm2), batch 4 x 128

With --lora, trlc also trains LoRA adapters (r 16, every linear layer, the
base frozen) on the same model, batch and data, and prints their tokens/s
against full fine-tuning.

    /usr/bin/python3 bench/cpu_sft/run.py --trlc build/bin/trlc [--threads 2] [--case smollm2]
"""
import argparse
import importlib.util
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

CONFIG = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4,
              num_attention_heads=8, num_key_value_heads=4, vocab_size=1024,
              max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0,
              tie_word_embeddings=False)
SEQ, BATCH = 128, 8
MODEL = None  # the SmolLM2 case's model directory


def recipe(data, out_dir, steps):
    if MODEL:
        model = f'path = "{MODEL}"\ndtype = "fp32"'
    else:
        cfg = "\n".join(f"{k} = {json.dumps(v)}" for k, v in CONFIG.items())
        model = f'init_seed = 1\ndtype = "fp32"\n[model.config]\nmodel_type = "llama"\n{cfg}'
    return f"""method = "sft"
[model]
{model}
[data]
train = "{data}"
max_length = {SEQ}
[train]
learning_rate = 1e-4
lr_scheduler_type = "constant"
per_device_train_batch_size = {BATCH}
max_steps = {steps}
[output]
output_dir = "{out_dir}"
logging_steps = 1
save_strategy = "no"
save_total_limit = 1
"""


def torch_child(args):
    """Runs in a separate process so that its peak RSS is its own."""
    import torch
    torch.set_num_threads(args.threads)
    spec = importlib.util.spec_from_file_location(
        "ref", os.path.join(ROOT, "tests", "torch", "test_reference.py"))
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    torch.set_default_dtype(torch.float32)
    import torch.nn.functional as F
    params = {k: v.float().requires_grad_(True)
              for k, v in ref.read_safetensors(args.init).items()}
    rows = [json.loads(l) for l in open(args.data)]
    cfg = CONFIG
    opt = torch.optim.AdamW(list(params.values()), lr=1e-4)
    logits_fn = ref.llama_logits
    if args.compile and hasattr(torch, "compile"):
        logits_fn = torch.compile(logits_fn)
    times, tokens = [], []
    for step in range(args.steps):
        batch = rows[(step * BATCH) % len(rows):][:BATCH]
        ids, pos, mask, labels = ref.batch_tensors(batch, SEQ)
        n = (labels != -100).sum()
        t0 = time.perf_counter()
        opt.zero_grad()
        logits = logits_fn(params, cfg, ids, pos, mask)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                               ignore_index=-100, reduction="sum") / n
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
        tokens.append(int(mask.sum()))
    warm = times[2:]
    print(json.dumps({"tokens_per_second": statistics.median(t / s for t, s in zip(tokens[2:], warm)),
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "first_loss": None}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trlc", default=os.path.join(ROOT, "build", "bin", "trlc"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3,
                    help="alternate the engines this many times; report medians")
    ap.add_argument("--case", choices=["tiny", "smollm2"], default="tiny")
    ap.add_argument("--child", choices=["torch"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--lora", action="store_true", help="also time trlc's LoRA (r 16, all-linear)")
    ap.add_argument("--init")
    ap.add_argument("--data")
    args = ap.parse_args()
    global CONFIG, SEQ, BATCH, MODEL
    if args.case == "smollm2":
        MODEL = subprocess.run([os.path.join(ROOT, "scripts", "fetch-smollm2")], check=True,
                               capture_output=True, text=True).stdout.strip()
        CONFIG = json.load(open(os.path.join(MODEL, "config.json")))
        SEQ, BATCH = 128, 4
    if args.child:
        return torch_child(args)

    with tempfile.TemporaryDirectory() as tmp:
        rng = random.Random(0)
        data = os.path.join(tmp, "rows.jsonl")
        with open(data, "w") as f:
            for _ in range(64):
                ids = [rng.randrange(CONFIG["vocab_size"]) for _ in range(SEQ)]
                f.write(json.dumps({"input_ids": ids, "completion_mask": [1] * SEQ}) + "\n")
        rec = os.path.join(tmp, "bench.toml")
        with open(rec, "w") as f:
            f.write(recipe(data, os.path.join(tmp, "run"), args.steps))
        init = os.path.join(tmp, "init.safetensors")
        runs = {}

        def record(name, tps, rss):
            runs.setdefault(name, []).append((tps, rss))

        for _ in range(args.repeats):
            dump = [] if MODEL else ["--dump-initial", init]
            subprocess.run([args.trlc, "train", rec, "-o", os.path.join(tmp, "b.trlc"), "--quiet",
                            "--threads", str(args.threads)] + dump, check=True)
            if MODEL:
                init = os.path.join(MODEL, "model.safetensors")
            metrics = [json.loads(l) for l in open(os.path.join(tmp, "run", "metrics.jsonl"))]
            record("trlc", statistics.median(m["tokens_per_second"] for m in metrics[2:]),
                   metrics[-1]["peak_memory_bytes"])
            if args.lora:
                lrec = os.path.join(tmp, "lora.toml")
                with open(lrec, "w") as f:
                    f.write(recipe(data, os.path.join(tmp, "lora-run"), args.steps) +
                            '[peft]\nr = 16\nlora_alpha = 32\ntarget_modules = "all-linear"\n')
                subprocess.run([args.trlc, "train", lrec, "-o", os.path.join(tmp, "l.trlc"),
                                "--quiet", "--threads", str(args.threads)], check=True)
                lm = [json.loads(l) for l in open(os.path.join(tmp, "lora-run", "metrics.jsonl"))]
                record("trlc LoRA r16", statistics.median(m["tokens_per_second"] for m in lm[2:]),
                       lm[-1]["peak_memory_bytes"])
            for name, extra in (("pytorch eager", []), ("pytorch compile", ["--compile"])):
                if extra:
                    has = subprocess.run([sys.executable, "-c", "import torch; print(hasattr(torch, 'compile'))"],
                                         capture_output=True, text=True).stdout.strip()
                    if has != "True":
                        continue
                # PyTorch gets the better of the default and the passive
                # OpenMP wait policy (trlc runs with the passive one).
                best = None
                for policy in (None, "PASSIVE"):
                    env = dict(os.environ)
                    env.pop("OMP_WAIT_POLICY", None)
                    if policy:
                        env["OMP_WAIT_POLICY"] = policy
                    out = subprocess.run([sys.executable, __file__, "--child", "torch", "--case", args.case,
                                          "--threads", str(args.threads), "--steps", str(args.steps),
                                          "--init", init, "--data", data] + extra,
                                         capture_output=True, text=True, env=env)
                    if out.returncode != 0:
                        print(f"{name}: failed\n{out.stderr[-2000:]}")
                        continue
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    if best is None or r["tokens_per_second"] > best[0]:
                        best = (r["tokens_per_second"], r["peak_rss"])
                if best:
                    record(name, *best)
        if "pytorch compile" not in runs:
            print("pytorch compile: unavailable (this torch has no torch.compile)")
        results = {name: (statistics.median(t for t, _ in r), max(m for _, m in r))
                   for name, r in runs.items()}
        trlc_tps, trlc_rss = results["trlc"]

    model = ("SmolLM2-135M-Instruct" if MODEL else "llama 4x256 (GQA 8/4, vocab 1024)")
    print(f"\ncpu_sft: {model}, batch {BATCH} x {SEQ} tokens, "
          f"{args.threads} threads, fp32, median of {args.repeats} alternating runs")
    print(f"{'engine':<18}{'tokens/s':>12}{'peak RSS':>14}")
    for name, (tps, rss) in results.items():
        print(f"{name:<18}{tps:>12.0f}{rss / 2**20:>11.1f} MiB")
    for name, (tps, rss) in results.items():
        if name != "trlc":
            print(f"trlc / {name}: {trlc_tps / tps:.2f}x tokens/s, {trlc_rss / rss:.2f}x peak RSS")


if __name__ == "__main__":
    main()

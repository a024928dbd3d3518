#!/usr/bin/env python3
"""bench/cpu_dpo: trlc's DPO step against PyTorch eager on the CPU.

Same model, pairs, batch and threads, each engine in its own process:
tokens/s (the policy's tokens, chosen and rejected) and peak RSS of both,
and the ratios. PyTorch runs the reference model of tests/torch on the same
initial weights, the frozen reference as a second copy under no_grad, TRL's
sigmoid loss, torch.optim.AdamW and clipping at 1.0, as trlc does. fp32 on
both sides. Cases:

  tiny     llama 4x256 (GQA 8/4, vocab 1024), random init, 4 pairs of 2 x 128 tokens
  smollm2  SmolLM2-135M-Instruct (scripts/fetch-smollm2), 2 pairs of 2 x 128 tokens

    /usr/bin/python3 bench/cpu_dpo/run.py --trlc build/bin/trlc [--threads 2] [--case smollm2]
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
PROMPT, COMPLETION, PAIRS = 32, 96, 4
MODEL = None  # the SmolLM2 case's model directory


def recipe(data, out_dir, steps, extra):
    if MODEL:
        model = f'path = "{MODEL}"\ndtype = "fp32"'
    else:
        cfg = "\n".join(f"{k} = {json.dumps(v)}" for k, v in CONFIG.items())
        model = f'init_seed = 1\ndtype = "fp32"\n[model.config]\nmodel_type = "llama"\n{cfg}'
    return f"""method = "dpo"
[model]
{model}
[data]
train = "{data}"
max_length = {PROMPT + COMPLETION}
max_prompt_length = {PROMPT}
{extra}[train]
learning_rate = 1e-5
lr_scheduler_type = "constant"
per_device_train_batch_size = {PAIRS}
max_steps = {steps}
[dpo]
beta = 0.1
[output]
output_dir = "{out_dir}"
logging_steps = 1
save_strategy = "no"
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
    frozen = {k: v.detach().clone() for k, v in params.items()}
    rows = [json.loads(l) for l in open(args.data)]
    opt = torch.optim.AdamW(list(params.values()), lr=1e-5)
    seq = PROMPT + COMPLETION

    def logps(p, batch):
        ids, pos, mask, labels = ref.batch_tensors(batch, seq)
        logits = ref.llama_logits(p, CONFIG, ids, pos, mask)
        keep = labels != -100
        tok = torch.gather(logits.log_softmax(-1), 2, labels.clamp(min=0)[..., None])[..., 0]
        return (tok * keep).sum(-1), int(mask.sum())

    times, tokens = [], []
    for step in range(args.steps):
        pairs = rows[(step * PAIRS) % len(rows):][:PAIRS]
        batch = []
        for side in ("chosen_input_ids", "rejected_input_ids"):
            for r in pairs:
                ids = r["prompt_input_ids"] + r[side]
                batch.append({"input_ids": ids,
                              "completion_mask": [0] * len(r["prompt_input_ids"]) + [1] * len(r[side])})
        t0 = time.perf_counter()
        opt.zero_grad()
        pol, n = logps(params, batch)
        with torch.no_grad():
            rf, _ = logps(frozen, batch)
        pc, pr = pol[:PAIRS], pol[PAIRS:]
        rc, rr = rf[:PAIRS], rf[PAIRS:]
        loss = -F.logsigmoid(0.1 * ((pc - rc) - (pr - rr))).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
        tokens.append(n)
    print(json.dumps({"tokens_per_second": statistics.median(t / s for t, s in zip(tokens[2:], times[2:])),
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trlc", default=os.path.join(ROOT, "build", "bin", "trlc"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3,
                    help="alternate the engines this many times; report medians")
    ap.add_argument("--case", choices=["tiny", "smollm2"], default="tiny")
    ap.add_argument("--child", choices=["torch"])
    ap.add_argument("--init")
    ap.add_argument("--data")
    args = ap.parse_args()
    global CONFIG, PAIRS, MODEL
    if args.case == "smollm2":
        MODEL = subprocess.run([os.path.join(ROOT, "scripts", "fetch-smollm2")], check=True,
                               capture_output=True, text=True).stdout.strip()
        CONFIG = json.load(open(os.path.join(MODEL, "config.json")))
        PAIRS = 2
    if args.child:
        return torch_child(args)

    with tempfile.TemporaryDirectory() as tmp:
        rng = random.Random(0)
        data = os.path.join(tmp, "pairs.jsonl")
        ids = lambda n: [rng.randrange(3, CONFIG["vocab_size"]) for _ in range(n)]
        with open(data, "w") as f:
            for _ in range(64):
                f.write(json.dumps({"prompt_input_ids": ids(PROMPT),
                                    "chosen_input_ids": ids(COMPLETION),
                                    "rejected_input_ids": ids(COMPLETION)}) + "\n")
        init = os.path.join(tmp, "init.safetensors")
        runs = {}
        settings = [("trlc", ""), ("trlc fused", "[memory]\nuse_liger_kernel = true\n")]
        for _ in range(args.repeats):
            for name, extra in settings:
                rec = os.path.join(tmp, "bench.toml")
                with open(rec, "w") as f:
                    f.write(recipe(data, os.path.join(tmp, "run"), args.steps, "") + extra)
                dump = [] if MODEL else ["--dump-initial", init]
                subprocess.run([args.trlc, "train", rec, "-o", os.path.join(tmp, "b.trlc"), "--quiet",
                                "--threads", str(args.threads)] + dump, check=True)
                metrics = [json.loads(l) for l in open(os.path.join(tmp, "run", "metrics.jsonl"))]
                runs.setdefault(name, []).append(
                    (statistics.median(m["tokens_per_second"] for m in metrics[2:]),
                     metrics[-1]["peak_memory_bytes"]))
            if MODEL:
                init = os.path.join(MODEL, "model.safetensors")
            best = None
            for policy in (None, "PASSIVE"):
                env = dict(os.environ)
                env.pop("OMP_WAIT_POLICY", None)
                if policy:
                    env["OMP_WAIT_POLICY"] = policy
                out = subprocess.run([sys.executable, __file__, "--child", "torch", "--case", args.case,
                                      "--threads", str(args.threads), "--steps", str(args.steps),
                                      "--init", init, "--data", data],
                                     capture_output=True, text=True, env=env)
                if out.returncode != 0:
                    print(f"pytorch: failed\n{out.stderr[-2000:]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                if best is None or r["tokens_per_second"] > best[0]:
                    best = (r["tokens_per_second"], r["peak_rss"])
            if best:
                runs.setdefault("pytorch eager", []).append(best)
        results = {name: (statistics.median(t for t, _ in r), max(m for _, m in r))
                   for name, r in runs.items()}

    model = "SmolLM2-135M-Instruct" if MODEL else "llama 4x256 (GQA 8/4, vocab 1024)"
    print(f"\ncpu_dpo: {model}, {PAIRS} pairs x 2 x {PROMPT + COMPLETION} tokens, "
          f"{args.threads} threads, fp32, median of {args.repeats} alternating runs")
    print(f"{'engine':<18}{'tokens/s':>12}{'peak RSS':>14}")
    for name, (tps, rss) in results.items():
        print(f"{name:<18}{tps:>12.0f}{rss / 2**20:>11.1f} MiB")
    torch_tps, torch_rss = results["pytorch eager"]
    for name in ("trlc", "trlc fused"):
        tps, rss = results[name]
        print(f"{name} / pytorch eager: {tps / torch_tps:.2f}x tokens/s, {rss / torch_rss:.2f}x peak RSS")


if __name__ == "__main__":
    main()

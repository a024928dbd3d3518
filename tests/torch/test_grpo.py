#!/usr/bin/env python3
"""trlc's GRPO step against TRL's loss written here in PyTorch.

For each loss type (grpo, bnpo, dr_grpo, dapo, and dapo with
use_liger_kernel's fused log-probabilities), GSPO's sequence-level ratio,
and the second step of num_iterations = 2 (at temperature 0.8: the ratios
move away from 1 and get clipped) at both importance levels, with two micro-batches
accumulated and the KL term on (beta > 0), trlc trains one step of a small
llama from random weights: it generates, rewards (a Python reward function
with varied values, so the advantages are not zero) and writes the batches
it trained on (TRLC_DUMP_GRPO_BATCH), its initial weights and its
accumulated gradients. The reference (float64) takes the same completions,
old log-probabilities and advantages, computes the per-token log-
probabilities with a full forward pass and TRL's loss:
  per token  -min(r A, clip(r, 1 - eps, 1 + eps) A) + beta KL3,  r = exp(logp - old)
             (sequence level: r = exp(masked mean of logp - old) per sequence)
  grpo       mean over sequences of each sequence's mean
  bnpo       sum / the micro-batch's completion tokens
  dr_grpo    sum / (rows x max_completion_length)
  dapo       sum / the completion tokens of the whole accumulated batch
(the first three averaged over the micro-batches, as TRL's gradient
accumulation does), and compares the loss (1e-5) and every gradient (1e-4,
relative, norm-wise). The advantages are checked against the group formula
with the rewards recomputed here.

Exit code 77 (skipped) when torch cannot be imported.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

try:
    import torch
except ImportError:
    print("SKIPPED: PyTorch is not installed (apt install python3-torch)")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_reference as ref  # noqa: E402

torch.set_default_dtype(torch.float64)
ROOT = ref.ROOT

REWARD = '''
def digits(prompts, completions, completion_ids, **kwargs):
    return [float(sum(ids) % 7) / 7.0 for ids in completion_ids]
'''


def recipe(tmp, loss_type, out_dir, eos=2, liger=False, level="token", iterations=1,
           temperature=1.0):
    data = os.path.join(ROOT, "recipes/data/arith-grpo.jsonl")
    return f"""method = "grpo"
{ref.tiny_llama(eos, init_seed=3)}[data]
train = "{data}"
max_prompt_length = 8
max_completion_length = 6
[memory]
use_liger_kernel = {"true" if liger else "false"}
[train]
learning_rate = 1e-3
per_device_train_batch_size = 8
gradient_accumulation_steps = 2
max_steps = {iterations}
[grpo]
num_generations = 4
beta = 0.04
loss_type = "{loss_type}"
importance_sampling_level = "{level}"
num_iterations = {iterations}
temperature = {temperature}
reward_funcs = ["python:{tmp}/reward.py:digits"]
[output]
output_dir = "{out_dir}"
logging_steps = 1
"""


def run_case(trlc, loss_type, tmp, failures, eos, liger=False, level="token", iterate=False):
    """One step of `loss_type`; with `iterate`, the second step of
    num_iterations = 2 (temperature 0.8), which trains the first step's
    completions again: the reference starts from the weights after step 1
    (its checkpoint) and takes the batch the checkpoint kept, so the ratios
    are away from 1 and the clipping and the importance level matter."""
    name = loss_type + ("-liger" if liger else "") + ("-" + level if level != "token" else "") + \
        ("-iter2" if iterate else "")
    out_dir = os.path.join(tmp, name)
    rec = os.path.join(tmp, name + ".toml")
    temperature = 0.8 if iterate else 1.0
    with open(rec, "w") as f:
        f.write(recipe(tmp, loss_type, out_dir, eos, liger, level, 2 if iterate else 1, temperature))
    init = os.path.join(tmp, name + "-init.safetensors")
    grads = os.path.join(tmp, name + "-grad.safetensors")
    dump = os.path.join(tmp, name + "-batch.json")
    env = dict(os.environ, TRLC_DUMP_GRPO_BATCH=dump)
    artifact = os.path.join(tmp, name + ".trlc")
    cmd = [trlc, "train", rec, "-o", artifact, "--threads", "1", "--quiet", "--dump-initial", init]
    if iterate:
        cmd += ["--max-steps", "1"]
    else:
        cmd += ["--dump-gradients", grads]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode == 0 and iterate:
        # Step 2 from step 1's checkpoint: its weights, its batch.
        start = os.path.join(tmp, name + "-start.safetensors")
        res = subprocess.run([trlc, "run", artifact, "--threads", "1", "--quiet", "--max-steps", "2",
                              "--resume", os.path.join(out_dir, "checkpoint-1"),
                              "--output-dir", out_dir + "-2", "--dump-initial", start,
                              "--dump-gradients", grads], capture_output=True, text=True)
        dump = os.path.join(out_dir, "checkpoint-1", "grpo_batch-rank0.json")
    if res.returncode != 0:
        failures.append(f"{name}: trlc failed:\n{res.stdout}{res.stderr}")
        return
    batch = json.load(open(dump))
    with open(os.path.join(out_dir + ("-2" if iterate else ""), "metrics.jsonl")) as f:
        metrics = [json.loads(l) for l in f if '"loss"' in l]
    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    reference = {k: v.detach().clone() for k, v in ref.read_safetensors(init).items()}
    params = {k: v.clone().requires_grad_(True) for k, v in
              ref.read_safetensors(start if iterate else init).items()}
    seq, gens, beta, eps, most = 14, 4, 0.04, 0.2, 6
    micro = batch["micro_batches"]
    global_tokens = sum(sum(r["completion_mask"]) for m in micro for r in m)

    def logps(p, ids, pos, mask):
        logits = ref.llama_logits(p, cfg, ids, pos, mask) / temperature
        return torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]

    total = 0.0
    worst_adv = 0.0
    outside = active = 0.0
    for rows in micro:
        b = len(rows)
        ids = torch.zeros(b, seq, dtype=torch.int64)
        mask = torch.zeros(b, seq, dtype=torch.int64)
        cmask = torch.zeros(b, seq - 1)
        old = torch.zeros(b, seq - 1)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            mask[i, :n] = 1
            c = r["completion_mask"]
            start = n - len(r["old_logps"])
            for k, lp in enumerate(r["old_logps"]):
                old[i, start + k - 1] = lp
                cmask[i, start + k - 1] = float(c[start + k])
        pos = torch.arange(seq)[None].expand(b, seq)
        adv = torch.tensor([r["advantage"] for r in rows])
        # The advantages: (r - group mean) / (group std + 1e-4), r recomputed.
        rewards = torch.tensor([float(sum(r["input_ids"][n:]) % 7) / 7.0 for r, n in
                                ((r, len(r["input_ids"]) - len(r["old_logps"])) for r in rows)])
        g = rewards.view(-1, gens)
        want = ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)).view(-1)
        worst_adv = max(worst_adv, (want - adv).abs().max().item())
        lp = logps(params, ids, pos, mask)
        with torch.no_grad():
            ref_lp = logps(reference, ids, pos, mask)
        if not iterate:
            # num_iterations = 1: TRL's old log-probabilities are the step's
            # own, detached.
            old = lp.detach()
        if level == "sequence":  # GSPO: one ratio per sequence
            ratio = torch.exp(((lp - old) * cmask).sum(-1, keepdim=True) /
                              cmask.sum(-1, keepdim=True).clamp(min=1))
        else:
            ratio = torch.exp(lp - old)
        per_token = -torch.min(ratio * adv[:, None], ratio.clamp(1 - eps, 1 + eps) * adv[:, None])
        with torch.no_grad():
            out = ((ratio < 1 - eps) | (ratio > 1 + eps)).double().expand_as(cmask) * cmask
            outside += out.sum().item()
            active += cmask.sum().item()
        diff = ref_lp - lp
        per_token = per_token + beta * (torch.exp(diff) - diff - 1)
        masked = per_token * cmask
        if loss_type == "grpo":
            loss = (masked.sum(-1) / cmask.sum(-1).clamp(min=1)).mean() / len(micro)
        elif loss_type == "bnpo":
            loss = masked.sum() / cmask.sum().clamp(min=1) / len(micro)
        elif loss_type == "dr_grpo":
            loss = masked.sum() / (b * most) / len(micro)
        else:
            loss = masked.sum() / global_tokens
        total = total + loss
    total.backward()
    clipped = outside / max(active, 1)
    if iterate and clipped == 0:
        failures.append(f"{name}: no ratio left [1 - eps, 1 + eps]: the clipping is not tested")
    if worst_adv > 1e-9:
        failures.append(f"{name}: advantages differ from the group formula by {worst_adv:.2e}")
    # The group advantages sum to zero and the ratio is 1 up to rounding, so
    # the loss itself is near 0: compare it absolutely, the gradients
    # relatively.
    r = abs(metrics[-1]["loss"] - total.item())
    lengths = sorted({len(r["old_logps"]) for m in micro for r in m})
    trlc_grads = ref.read_safetensors(grads)
    worst = max((ref.rel(trlc_grads[k], p.grad), k) for k, p in params.items())
    print(f"{name}: loss trlc {metrics[-1]['loss']:.3e} torch {total.item():.3e} (abs {r:.1e});"
          f" worst gradient rel error {worst[0]:.2e} ({worst[1]}); advantages within"
          f" {worst_adv:.1e}; completion lengths {lengths}" +
          (f"; clipped tokens {clipped:.0%}" if iterate else ""))
    if r > 1e-6:
        failures.append(f"{name}: loss differs by {r:.2e} (limit 1e-6 absolute)")
    if len(lengths) < 2:
        failures.append(f"{name}: every completion has {lengths} tokens: the loss types "
                        "are not told apart")
    if worst[0] > 1e-4:
        failures.append(f"{name}: gradient of {worst[1]} differs by {worst[0]:.2e} (limit 1e-4)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trlc", required=True)
    args = ap.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "reward.py"), "w") as f:
            f.write(REWARD)
        # EOS: the token the random model samples most, so that completions
        # end at different lengths and the four normalisations differ.
        probe = []
        run_case(args.trlc, "grpo", tmp, probe, 2)
        batch = json.load(open(os.path.join(tmp, "grpo-batch.json")))
        counts = {}
        for m in batch["micro_batches"]:
            for r in m:
                for t in r["input_ids"][len(r["input_ids"]) - len(r["old_logps"]):]:
                    counts[t] = counts.get(t, 0) + 1
        eos = max((c, t) for t, c in counts.items() if t > 2)[1]
        print(f"EOS for the comparison: token {eos}")
        for loss_type in ("grpo", "bnpo", "dr_grpo", "dapo"):
            run_case(args.trlc, loss_type, tmp, failures, eos)
        # use_liger_kernel: the fused log-probabilities (no [T, V] logits).
        run_case(args.trlc, "dapo", tmp, failures, eos, liger=True)
        # GSPO, and the second iteration of num_iterations = 2 (ratios away
        # from 1, temperature 0.8) at both importance levels.
        run_case(args.trlc, "grpo", tmp, failures, eos, level="sequence")
        for loss_type in ("grpo", "dapo"):
            for level in ("token", "sequence"):
                run_case(args.trlc, loss_type, tmp, failures, eos, level=level, iterate=True)
        run_case(args.trlc, "bnpo", tmp, failures, eos, level="sequence", iterate=True)
        run_case(args.trlc, "dr_grpo", tmp, failures, eos, liger=True, iterate=True)
    if failures:
        print("\nFAILED:\n" + "\n".join(failures))
        sys.exit(1)
    print("all GRPO comparisons passed")


if __name__ == "__main__":
    main()

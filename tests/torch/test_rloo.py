#!/usr/bin/env python3
"""trlc's RLOO step against TRL's RLOOTrainer written here in PyTorch.

trlc trains a small llama from random weights for one step (which moves the
policy away from its reference), then a resumed run takes the second step:
it generates from the moved policy, rewards the completions with a Python
reward of varied values, and writes the batch it trains on
(TRLC_DUMP_GRPO_BATCH), the weights it starts from and its accumulated
gradients. The reference (float64) recomputes from the same completions:
  old     the per-token log-probabilities of the policy (logits / temperature)
  kl      per completion, sum over its tokens of old - reference
  reward  the reward function's value - beta x kl
  A       reward - the mean of the other rewards of its prompt's group
          (leave-one-out), optionally standardised over the batch
  loss    mean over completions of -min(r A, clip(r, 1 - eps, 1 + eps_high) A),
          r = exp(sum of the completion's log-probabilities - old's sum)
and compares the advantages (5e-6), the loss (1e-6) and every gradient
(1e-4, relative, norm-wise), with and without normalize_advantages and
with use_liger_kernel's fused log-probabilities; then the second step of
num_iterations = 2, where the ratios move away from 1 and get clipped.

Exit code 77 (skipped) when torch cannot be imported.
"""
import argparse
import json
import os
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
BETA, EPS, EPS_HIGH, GENS, TEMPERATURE = 0.05, 0.2, 0.28, 4, 0.9


def recipe(tmp, out_dir, normalize, liger, iterations):
    return f"""method = "rloo"
{ref.tiny_llama(20)}[data]
train = "{ROOT}/recipes/data/arith-grpo.jsonl"
max_prompt_length = 8
max_completion_length = 6
[memory]
use_liger_kernel = {"true" if liger else "false"}
[train]
learning_rate = 3e-2
per_device_train_batch_size = 8
gradient_accumulation_steps = 2
max_steps = 2
[rloo]
num_generations = {GENS}
beta = {BETA}
epsilon = {EPS}
epsilon_high = {EPS_HIGH}
temperature = {TEMPERATURE}
num_iterations = {iterations}
normalize_advantages = {"true" if normalize else "false"}
reward_funcs = ["python:{tmp}/reward.py:digits"]
[output]
output_dir = "{out_dir}"
logging_steps = 1
save_steps = 1
"""


def run_case(trlc, tmp, failures, normalize=False, liger=False, iterate=False):
    name = "rloo" + ("-normalized" if normalize else "") + ("-liger" if liger else "") + \
        ("-iter2" if iterate else "")
    out = os.path.join(tmp, name)
    rec = os.path.join(tmp, name + ".toml")
    with open(rec, "w") as f:
        f.write(recipe(tmp, out, normalize, liger, 2 if iterate else 1))
    files, error = ref.second_step(trlc, rec, out, os.path.join(tmp, name))
    if error:
        failures.append(f"{name}: trlc failed:\n{error}")
        return
    init, start, grads, dump = files["init"], files["start"], files["grads"], files["dump"]
    if iterate:
        dump = os.path.join(out, "checkpoint-1", "grpo_batch-rank0.json")
    batch = json.load(open(dump))
    metrics = ref.last_metrics(out + "-2")
    cfg = json.load(open(os.path.join(out, "config.json")))
    reference = {k: v.detach().clone() for k, v in ref.read_safetensors(init).items()}
    params = {k: v.clone().requires_grad_(True) for k, v in ref.read_safetensors(start).items()}
    seq = 14
    micro = batch["micro_batches"]
    sequences = sum(len(m) for m in micro)

    def logps(p, ids, pos, mask):
        logits = ref.llama_logits(p, cfg, ids, pos, mask) / TEMPERATURE
        return torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]

    total, worst_adv, worst_old, outside = 0.0, 0.0, 0.0, 0
    tensors = []
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
            start_at = n - len(r["old_logps"])
            for k, lp in enumerate(r["old_logps"]):
                old[i, start_at + k - 1] = lp
                cmask[i, start_at + k - 1] = float(r["completion_mask"][start_at + k])
        pos = torch.arange(seq)[None].expand(b, seq)
        tensors.append((rows, ids, mask, cmask, old, pos))
    # The advantages from the rewards, the KL to the reference and the
    # leave-one-out baseline (the first iteration's policy: `start`, unless
    # the batch was generated before step 1).
    gen_params = reference if iterate else params
    all_adv, want_adv = [], []
    for rows, ids, mask, cmask, old, pos in tensors:
        with torch.no_grad():
            pol = logps(gen_params, ids, pos, mask)
            refl = logps(reference, ids, pos, mask)
        worst_old = max(worst_old, ((pol - old) * cmask).abs().max().item())
        rewards = torch.tensor([float(sum(r["input_ids"][len(r["input_ids"]) - len(r["old_logps"]):]) % 7) / 7.0
                                for r in rows])
        kl = ((pol - refl) * cmask).sum(-1)
        penal = (rewards - BETA * kl).view(-1, GENS)
        loo = penal - (penal.sum(1, keepdim=True) - penal) / (GENS - 1)
        want_adv.append(loo.view(-1))
        all_adv.append(torch.tensor([r["advantage"] for r in rows]))
    want = torch.cat(want_adv)
    if normalize:
        want = (want - want.mean()) / (want.std() + 1e-4)
    worst_adv = (want - torch.cat(all_adv)).abs().max().item()
    for rows, ids, mask, cmask, old, pos in tensors:
        adv = torch.tensor([r["advantage"] for r in rows])
        lp = logps(params, ids, pos, mask)
        ratio = torch.exp((lp * cmask).sum(-1) - (old * cmask).sum(-1))
        outside += int(((ratio < 1 - EPS) | (ratio > 1 + EPS_HIGH)).sum())
        per_seq = -torch.min(ratio * adv, ratio.clamp(1 - EPS, 1 + EPS_HIGH) * adv)
        total = total + per_seq.sum() / sequences
    total.backward()
    r = abs(metrics["loss"] - total.item())
    trlc_grads = ref.read_safetensors(grads)
    worst = max((ref.rel(trlc_grads[k], p.grad), k) for k, p in params.items())
    print(f"{name}: loss trlc {metrics['loss']:.4e} torch {total.item():.4e} (abs {r:.1e}); "
          f"worst gradient rel error {worst[0]:.2e} ({worst[1]}); advantages within {worst_adv:.1e}; "
          f"old log-probabilities within {worst_old:.1e}; mean |A| {want.abs().mean():.3f}; "
          f"clipped completions {outside}/{sequences}")
    if worst_adv > 5e-6:
        failures.append(f"{name}: advantages differ by {worst_adv:.2e}")
    if worst_old > 1e-5:
        failures.append(f"{name}: old log-probabilities differ by {worst_old:.2e}")
    if r > 1e-6:
        failures.append(f"{name}: loss differs by {r:.2e}")
    if worst[0] > 1e-4:
        failures.append(f"{name}: gradient of {worst[1]} differs by {worst[0]:.2e}")
    if iterate and outside == 0:
        failures.append(f"{name}: no ratio was clipped: the clipping is not tested")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trlc", required=True)
    args = ap.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "reward.py"), "w") as f:
            f.write(REWARD)
        run_case(args.trlc, tmp, failures)
        run_case(args.trlc, tmp, failures, normalize=True)
        run_case(args.trlc, tmp, failures, liger=True)
        run_case(args.trlc, tmp, failures, iterate=True)
    if failures:
        print("\nFAILED:\n" + "\n".join(failures))
        sys.exit(1)
    print("all RLOO comparisons passed")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""trlc's online DPO step against TRL's OnlineDPOTrainer written here in PyTorch.

trlc trains a small llama from random weights for one step (which moves the
policy away from its reference), then a resumed run takes the second step:
it samples two completions of each prompt from the moved policy, scores
them with a Python reward of varied values (less missing_eos_penalty for a
completion without EOS), ranks each pair and writes the pairs it trains on
(TRLC_DUMP_GRPO_BATCH), the weights it starts from and its accumulated
gradients. The reference (float64) recomputes from the same completions:
  score   reward - missing_eos_penalty when the completion has no EOS;
          the chosen completion's score is at least the rejected one's
  logps   per completion, the sum of its tokens' log-probabilities (TRL's
          online DPO sums for IPO too), policy and reference
  h       (pi_c - pi_r) - (ref_c - ref_r)
  loss    mean over the pairs of -logsigmoid(beta h) (sigmoid) or
          (h - 1 / (2 beta))^2 (ipo), averaged over the micro-batches
and compares the scores (1e-6), the loss (1e-6 relative), every gradient (1e-4,
relative, norm-wise) and TRL's metrics (objective/kl, objective/entropy,
objective/scores, rewards/margins, logps/chosen; 1e-5), for both loss
types and with use_liger_kernel's fused log-probabilities. The data holds
one optimizer step per epoch and beta = [0.1, 0.3], so the second step
must train with the second epoch's beta. A last case ranks the pairs with
a pairwise judge (the longer text wins) instead of rewards.

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
    import torch.nn.functional as F
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
BETAS, PENALTY, EOS, PAIRS, ACCUM = [0.1, 0.3], 0.5, 2, 8, 2


def recipe(tmp, out_dir, loss_type, liger):
    return f"""method = "online_dpo"
{ref.tiny_llama(EOS)}[data]
train = "{tmp}/prompts.jsonl"
max_prompt_length = 8
max_completion_length = 6
[memory]
use_liger_kernel = {"true" if liger else "false"}
[train]
learning_rate = 3e-2
per_device_train_batch_size = {PAIRS}
gradient_accumulation_steps = {ACCUM}
max_steps = 2
[online_dpo]
beta = {BETAS}
loss_type = "{loss_type}"
missing_eos_penalty = {PENALTY}
temperature = 1.0
reward_funcs = ["python:{tmp}/reward.py:digits"]
[output]
output_dir = "{out_dir}"
logging_steps = 1
save_steps = 1
"""


def run_case(trlc, tmp, failures, loss_type="sigmoid", liger=False):
    name = "online-dpo-" + loss_type + ("-liger" if liger else "")
    out = os.path.join(tmp, name)
    rec = os.path.join(tmp, name + ".toml")
    with open(rec, "w") as f:
        f.write(recipe(tmp, out, loss_type, liger))
    files, error = ref.second_step(trlc, rec, out, os.path.join(tmp, name))
    if error:
        failures.append(f"{name}: trlc failed:\n{error}")
        return
    init, start, grads, dump = files["init"], files["start"], files["grads"], files["dump"]
    batch = json.load(open(dump))
    metrics = ref.last_metrics(out + "-2")
    cfg = json.load(open(os.path.join(out, "config.json")))
    reference = {k: v.detach().clone() for k, v in ref.read_safetensors(init).items()}
    params = {k: v.clone().requires_grad_(True) for k, v in ref.read_safetensors(start).items()}
    beta = BETAS[1]  # one step per epoch: the second step is the second epoch's
    if abs(batch["beta"] - beta) > 1e-12 or abs(metrics["beta"] - beta) > 1e-9:
        failures.append(f"{name}: beta {batch['beta']} (metric {metrics['beta']}), not the "
                        f"second epoch's {beta}")
    seq = 14

    def seq_logps(p, ids, pos, mask, cmask):
        logits = ref.llama_logits(p, cfg, ids, pos, mask)
        lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
        return (lp * cmask).sum(-1)

    total, worst_score, misordered, no_eos, n = 0.0, 0.0, 0, 0, 0
    kl_sum, ent_sum, score_sum, margin_sum, chosen_sum, pairs = 0.0, 0.0, 0.0, 0.0, 0.0, 0
    for rows in batch["micro_batches"]:
        b = len(rows) // 2
        ids = torch.zeros(2 * b, seq, dtype=torch.int64)
        mask = torch.zeros(2 * b, seq, dtype=torch.int64)
        cmask = torch.zeros(2 * b, seq - 1)
        for i, r in enumerate(rows):
            k = len(r["input_ids"])
            ids[i, :k] = torch.tensor(r["input_ids"])
            mask[i, :k] = 1
            cmask[i, :k - 1] = torch.tensor(r["completion_mask"][1:], dtype=torch.float64)
            completion = [t for t, m in zip(r["input_ids"], r["completion_mask"]) if m]
            want = float(sum(completion) % 7) / 7.0 - (0.0 if EOS in completion else PENALTY)
            no_eos += EOS not in completion
            n += 1
            worst_score = max(worst_score, abs(want - r["score"]))
        misordered += sum(rows[k]["score"] < rows[b + k]["score"] for k in range(b))
        pos = torch.arange(seq)[None].expand(2 * b, seq)
        pol = seq_logps(params, ids, pos, mask, cmask)
        with torch.no_grad():
            refl = seq_logps(reference, ids, pos, mask, cmask)
        h = (pol[:b] - pol[b:]) - (refl[:b] - refl[b:])
        if loss_type == "sigmoid":
            losses = -F.logsigmoid(beta * h)
        else:
            losses = (h - 1 / (2 * beta)) ** 2
        total = total + losses.mean() / ACCUM
        with torch.no_grad():
            kl_sum += (pol - refl).sum().item()
            ent_sum += (-pol).sum().item()
            score_sum += sum(r["score"] for r in rows)
            margin_sum += (beta * h).sum().item()
            chosen_sum += pol[:b].sum().item()
            pairs += b
    total.backward()
    r = abs(metrics["loss"] - total.item()) / max(1.0, abs(total.item()))
    trlc_grads = ref.read_safetensors(grads)
    worst = max((ref.rel(trlc_grads[k], p.grad), k) for k, p in params.items())
    want_metrics = {"objective/kl": kl_sum / (2 * pairs), "objective/entropy": ent_sum / (2 * pairs),
                    "objective/scores": score_sum / (2 * pairs), "rewards/margins": margin_sum / pairs,
                    "logps/chosen": chosen_sum / pairs}
    worst_metric = max((abs(metrics[k] - v) / max(1.0, abs(v)), k) for k, v in want_metrics.items())
    print(f"{name}: loss trlc {metrics['loss']:.4e} torch {total.item():.4e} (rel {r:.1e}); "
          f"worst gradient rel error {worst[0]:.2e} ({worst[1]}); scores within {worst_score:.1e} "
          f"({no_eos}/{n} without EOS); metrics within {worst_metric[0]:.1e} ({worst_metric[1]})")
    if worst_score > 1e-6:
        failures.append(f"{name}: scores differ by {worst_score:.2e}")
    if misordered:
        failures.append(f"{name}: {misordered} pairs put the lower score first")
    if not 0 < no_eos < n:
        failures.append(f"{name}: {no_eos}/{n} completions without EOS: the penalty is not tested")
    if r > 1e-6:
        failures.append(f"{name}: loss differs by {r:.2e}")
    if worst[0] > 1e-4:
        failures.append(f"{name}: gradient of {worst[1]} differs by {worst[0]:.2e}")
    if worst_metric[0] > 1e-5:
        failures.append(f"{name}: metric {worst_metric[1]} differs by {worst_metric[0]:.2e}")


JUDGE = '''
def longer(prompts, completions):
    # The longer text of each pair wins (ties: the first).
    assert len(prompts) == len(completions) and all(len(p) == 2 for p in completions)
    return [0 if len(a) >= len(b) else 1 for a, b in completions]
'''


def judge_case(trlc, tmp, failures):
    """A pairwise judge ranks the pairs: every chosen completion's text is at
    least as long as its rejected one's."""
    name = "online-dpo-judge"
    out = os.path.join(tmp, name)
    rec = os.path.join(tmp, name + ".toml")
    text = recipe(tmp, out, "sigmoid", False).replace(
        f'reward_funcs = ["python:{tmp}/reward.py:digits"]', f'judge = "python:{tmp}/judge.py:longer"')
    with open(rec, "w") as f:
        f.write(text)
    dump = os.path.join(tmp, name + ".json")
    res = subprocess.run([trlc, "train", rec, "-o", os.path.join(tmp, name + ".trlc"), "--threads", "1",
                          "--quiet", "--max-steps", "1"], capture_output=True, text=True,
                         env=dict(os.environ, TRLC_DUMP_GRPO_BATCH=dump))
    if res.returncode != 0:
        failures.append(f"{name}: trlc failed:\n{res.stdout}{res.stderr}")
        return
    vocab = {i: t for t, i in json.load(open(os.path.join(
        ROOT, "recipes/data/arith-tokenizer/tokenizer.json")))["model"]["vocab"].items()}

    def length(r):
        ids = [t for t, m in zip(r["input_ids"], r["completion_mask"]) if m and t not in (0, 1, EOS)]
        return sum(len(vocab[t]) if t in vocab else len(f"<{t}>") for t in ids)

    wrong, differ, pairs = 0, 0, 0
    for rows in json.load(open(dump))["micro_batches"]:
        b = len(rows) // 2
        for k in range(b):
            chosen, rejected = length(rows[k]), length(rows[b + k])
            wrong += chosen < rejected
            differ += chosen != rejected
            pairs += 1
    metrics = ref.last_metrics(out)
    print(f"{name}: {pairs} pairs, {differ} of different lengths, {wrong} chosen shorter; "
          f"objective/scores logged: {'objective/scores' in metrics}")
    if wrong:
        failures.append(f"{name}: {wrong} pairs chose the shorter completion")
    if not differ:
        failures.append(f"{name}: every pair ties: the judge's ranking is not tested")
    if "objective/scores" in metrics or "rewards/margins" not in metrics:
        failures.append(f"{name}: a judged run logs scores, or lacks the DPO metrics")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trlc", required=True)
    args = ap.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "reward.py"), "w") as f:
            f.write(REWARD)
        # One optimizer step per epoch: PAIRS x ACCUM prompts.
        with open(os.path.join(ROOT, "recipes/data/arith-grpo.jsonl")) as src, \
                open(os.path.join(tmp, "prompts.jsonl"), "w") as dst:
            for _ in range(PAIRS * ACCUM):
                dst.write(src.readline())
        run_case(args.trlc, tmp, failures)
        run_case(args.trlc, tmp, failures, loss_type="ipo")
        run_case(args.trlc, tmp, failures, liger=True)
        with open(os.path.join(tmp, "judge.py"), "w") as f:
            f.write(JUDGE)
        judge_case(args.trlc, tmp, failures)
    if failures:
        print("\nFAILED:\n" + "\n".join(failures))
        sys.exit(1)
    print("all online DPO comparisons passed")


if __name__ == "__main__":
    main()

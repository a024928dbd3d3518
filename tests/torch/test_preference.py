#!/usr/bin/env python3
"""trlc's DPO and KTO against a PyTorch reference written from TRL's formulas.

A 2-layer llama (grouped-query attention, tied head), pre-tokenized
preference data, fp32 in trlc and float64 here. For every loss type: the
first step's loss (1e-5 relative) and every gradient (1e-4 relative,
norm-wise), TRL's metrics of that step, then the loss over four AdamW
steps (1e-4 relative). The reference model is the frozen initial policy,
or another model directory ([dpo] ref_model). Every micro-batch of a step
holds rows whose loss does not depend on how the shuffle groups them, so
the comparison does not need trlc's data order.

Exit code 77 (skipped) when torch cannot be imported.
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_reference import llama_logits, read_safetensors, rel  # noqa: E402  (exits 77 without torch)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

VOCAB, MAX_LEN = 40, 16


def llama_config():
    return """model_type = "llama"
hidden_size = 32
intermediate_size = 48
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
vocab_size = 40
max_position_embeddings = 32
rms_norm_eps = 1e-6
rope_theta = 10000.0
tie_word_embeddings = true
initializer_range = 0.2
"""


def make_pairs(n, rng):
    rows = []
    for _ in range(n):
        prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 5))]
        chosen = [rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 6))]
        rejected = [rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 6))]
        rows.append({"prompt_input_ids": prompt, "chosen_input_ids": chosen,
                     "rejected_input_ids": rejected})
    return rows


def make_unpaired(n, rng):
    rows = []
    for k in range(n):
        prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 5))]
        completion = [rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 6))]
        rows.append({"prompt_input_ids": prompt, "completion_input_ids": completion,
                     "label": k % 3 != 1})
    return rows


def batch(seqs):
    """[(prompt, completion)] -> ids, pos, mask, labels of one padded batch."""
    b = len(seqs)
    ids = torch.zeros(b, MAX_LEN, dtype=torch.int64)
    pos = torch.zeros(b, MAX_LEN, dtype=torch.int64)
    mask = torch.zeros(b, MAX_LEN, dtype=torch.int64)
    labels = torch.full((b, MAX_LEN), -100, dtype=torch.int64)
    for r, (p, c) in enumerate(seqs):
        full = p + c
        n = len(full)
        ids[r, :n] = torch.tensor(full)
        pos[r, :n] = torch.arange(n)
        mask[r, :n] = 1
        for t in range(len(p) - 1, n - 1):
            labels[r, t] = full[t + 1]
    return ids, pos, mask, labels


def seq_logps(params, cfg, seqs, mean=False):
    """Sum (IPO: mean) of the completion tokens' log-probabilities, and the
    token log-probabilities with their mask (for RPO's NLL)."""
    ids, pos, mask, labels = batch(seqs)
    logits = llama_logits(params, cfg, ids, pos, mask)
    keep = labels != -100
    tok = torch.gather(logits.log_softmax(-1), 2, labels.clamp(min=0)[..., None])[..., 0] * keep
    total = tok.sum(-1)
    return (total / keep.sum(-1) if mean else total), tok, keep


# TRL's DPO losses (trl/trainer/dpo_trainer.py dpo_loss), per pair.
def dpo_losses(kind, beta, ls, pc, pr, rc, rr):
    hc, hr = pc - rc, pr - rr
    logits = hc - hr
    if kind == "sigmoid":
        return -F.logsigmoid(beta * logits) * (1 - ls) - F.logsigmoid(-beta * logits) * ls
    if kind == "robust":
        return (-F.logsigmoid(beta * logits) * (1 - ls) + F.logsigmoid(-beta * logits) * ls) / (1 - 2 * ls)
    if kind == "hinge":
        return torch.relu(1 - beta * logits)
    if kind == "ipo":
        return (logits - 1 / (2 * beta)) ** 2
    if kind == "apo_zero":
        return (1 - torch.sigmoid(beta * hc)) + torch.sigmoid(beta * hr)
    if kind == "apo_down":
        return torch.sigmoid(beta * hc) + (1 - torch.sigmoid(beta * (hc - hr)))
    raise ValueError(kind)


def dpo_step(params, ref, cfg, rows, opts):
    """The loss of one micro-batch (TRL: mean over its pairs, + rpo_alpha x
    the chosen completions' token NLL) and the metrics."""
    ipo = opts["loss_type"] == "ipo"
    chosen = [(r["prompt_input_ids"], r["chosen_input_ids"]) for r in rows]
    rejected = [(r["prompt_input_ids"], r["rejected_input_ids"]) for r in rows]
    pc, tok, keep = seq_logps(params, cfg, chosen, ipo)
    pr, _, _ = seq_logps(params, cfg, rejected, ipo)
    with torch.no_grad():
        rc, _, _ = seq_logps(ref, cfg, chosen, ipo)
        rr, _, _ = seq_logps(ref, cfg, rejected, ipo)
    beta = opts["beta"]
    loss = dpo_losses(opts["loss_type"], beta, opts.get("label_smoothing", 0.0), pc, pr, rc, rr).mean()
    if opts.get("rpo_alpha"):
        loss = loss + opts["rpo_alpha"] * (-tok.sum() / keep.sum())
    cr, rj = beta * (pc - rc).detach(), beta * (pr - rr).detach()
    metrics = {"rewards/chosen": cr.mean().item(), "rewards/rejected": rj.mean().item(),
               "rewards/accuracies": (cr > rj).double().mean().item(),
               "rewards/margins": (cr - rj).mean().item(),
               "logps/chosen": pc.mean().item(), "logps/rejected": pr.mean().item()}
    return loss, metrics


def kto_step(params, ref, cfg, rows, opts):
    """TRL's KTO loss of one micro-batch: the KL estimate over the
    mismatched pairs (each prompt with the previous row's completion, the
    first with the last), detached and clamped; the mean of the weighted
    per-example losses."""
    beta, kind = opts["beta"], opts["loss_type"]
    seqs = [(r["prompt_input_ids"], r["completion_input_ids"]) for r in rows]
    pol, _, _ = seq_logps(params, cfg, seqs)
    with torch.no_grad():
        rf, _, _ = seq_logps(ref, cfg, seqs)
    kl = torch.zeros(())
    if kind == "kto":
        n = len(rows)
        kl_seqs = [(rows[i]["prompt_input_ids"], rows[(i - 1) % n]["completion_input_ids"]) for i in range(n)]
        with torch.no_grad():
            kp, _, _ = seq_logps(params, cfg, kl_seqs)
            kr, _, _ = seq_logps(ref, cfg, kl_seqs)
            kl = (kp - kr).mean().clamp(min=0)
    label = torch.tensor([bool(r["label"]) for r in rows])
    ratio = pol - rf
    wd, wu = opts.get("desirable_weight", 1.0), opts.get("undesirable_weight", 1.0)
    if kind == "kto":
        good = 1 - torch.sigmoid(beta * (ratio - kl))
        bad = 1 - torch.sigmoid(beta * (kl - ratio))
    else:
        good = 1 - torch.sigmoid(beta * ratio)
        bad = torch.sigmoid(beta * ratio)
    losses = torch.cat([wd * good[label], wu * bad[~label]])
    loss = losses.mean()
    rw = beta * ratio.detach()
    metrics = {"rewards/chosen": rw[label].mean().item(), "rewards/rejected": rw[~label].mean().item(),
               "logps/chosen": pol[label].mean().item(), "logps/rejected": pol[~label].mean().item()}
    if kind == "kto":
        metrics["kl"] = kl.item()
    return loss, metrics


def recipe(method, data, out_dir, batch_size, accum, section, ref_dir=None):
    section = dict(section)
    data_extra = "padding_free = true\n" if section.pop("padding_free", False) else ""
    memory = "[memory]\nuse_liger_kernel = true\n" if section.pop("fused", False) else ""
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in section.items())
    if ref_dir:
        extra += f'ref_model = "{ref_dir}"\n'
    return f"""method = "{method}"
[model]
init_seed = 7
dtype = "fp32"
[model.config]
{llama_config()}
[data]
train = "{data}"
max_length = {MAX_LEN}
max_prompt_length = 8
{data_extra}{memory}[train]
learning_rate = 1e-2
lr_scheduler_type = "cosine"
warmup_steps = 1
per_device_train_batch_size = {batch_size}
gradient_accumulation_steps = {accum}
max_steps = 4
max_grad_norm = 0.5
weight_decay = 0.1
[{method}]
{extra}[output]
output_dir = "{out_dir}"
logging_steps = 1
save_strategy = "no"
"""


def hf_adamw(params, steps, warm=1, total=4):
    decay = [v for v in params.values() if v.dim() >= 2]
    no_decay = [v for v in params.values() if v.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.999), eps=1e-8)

    def schedule(k):
        if k < warm:
            return k / max(1, warm)
        progress = (k - warm) / max(1, total - warm)
        return max(0.0, 0.5 * (1 + math.cos(math.pi * progress)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def run_case(trlc, name, method, opts, tmp, failures, accum=1, ref_dir=None, ref_params=None):
    rng = random.Random(name)
    n = 6
    rows = make_pairs(n, rng) if method == "dpo" else make_unpaired(n, rng)
    data = os.path.join(tmp, name + ".jsonl")
    with open(data, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    out_dir = os.path.join(tmp, name + "-run")
    path = os.path.join(tmp, name + ".toml")
    with open(path, "w") as f:
        f.write(recipe(method, data, out_dir, n // accum, accum, opts, ref_dir))
    init = os.path.join(tmp, name + "-init.safetensors")
    grads = os.path.join(tmp, name + "-grad.safetensors")
    res = subprocess.run([trlc, "train", path, "-o", os.path.join(tmp, name + ".trlc"),
                          "--threads", "1", "--quiet", "--dump-initial", init,
                          "--dump-gradients", grads], capture_output=True, text=True)
    if res.returncode != 0:
        failures.append(f"{name}: trlc failed:\n{res.stdout}{res.stderr}")
        return None
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        metrics = [json.loads(l) for l in f if '"loss"' in l]
    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    start = read_safetensors(init)
    ref = {k: v.clone() for k, v in (ref_params or start).items()}
    step = dpo_step if method == "dpo" else kto_step

    # 1. Loss, gradients and metrics of the first step.
    params = {k: v.clone().requires_grad_(True) for k, v in start.items()}
    opts = {k: v for k, v in opts.items() if k not in ("padding_free", "fused")}
    loss, ref_metrics = step(params, ref, cfg, rows, opts)
    loss.backward()
    r = abs(metrics[0]["loss"] - loss.item()) / max(abs(loss.item()), 1e-12)
    line = f"{name}: loss trlc {metrics[0]['loss']:.8f} torch {loss.item():.8f} rel {r:.2e}"
    if r > 1e-5:
        failures.append(f"{name}: loss differs by {r:.2e} relative (limit 1e-5)")
    got = read_safetensors(grads)
    worst = max((rel(got[k], p.grad), k) for k, p in params.items())
    line += f"; worst gradient rel {worst[0]:.2e}"
    if worst[0] > 1e-4:
        failures.append(f"{name}: gradient of {worst[1]} differs by {worst[0]:.2e} (limit 1e-4)")
    for key, want in ref_metrics.items():
        have = metrics[0].get(key)
        if have is None or abs(have - want) > 1e-5 * max(1.0, abs(want)):
            failures.append(f"{name}: metric {key} is {have}, the reference says {want}")

    # 2. Four AdamW steps.
    p2 = {k: v.clone().requires_grad_(True) for k, v in start.items()}
    opt, sched = hf_adamw(p2, 4)
    worst_loss = worst_metric = 0.0
    for k in range(4):
        opt.zero_grad()
        l, m = step(p2, ref, cfg, rows, opts)
        for key, want in m.items():
            worst_metric = max(worst_metric, abs(metrics[k][key] - want) / max(1.0, abs(want)))
        l.backward()
        torch.nn.utils.clip_grad_norm_(list(p2.values()), 0.5)
        opt.step()
        sched.step()
        worst_loss = max(worst_loss, abs(metrics[k]["loss"] - l.item()) / max(abs(l.item()), 1e-12))
    line += f"; 4 AdamW steps worst loss rel {worst_loss:.2e}, metrics {worst_metric:.2e}"
    if worst_loss > 1e-4:
        failures.append(f"{name}: AdamW loss trajectory differs by {worst_loss:.2e} (limit 1e-4)")
    if worst_metric > 1e-4:
        failures.append(f"{name}: metrics over the AdamW steps differ by {worst_metric:.2e} (limit 1e-4)")
    print(line)
    return out_dir


DPO_CASES = [
    ("dpo-sigmoid", {"beta": 0.5, "loss_type": "sigmoid"}, 1),
    ("dpo-sigmoid-smoothed-accum", {"beta": 0.5, "loss_type": "sigmoid", "label_smoothing": 0.1}, 2),
    ("dpo-robust", {"beta": 0.5, "loss_type": "robust", "label_smoothing": 0.2}, 1),
    ("dpo-hinge", {"beta": 2.0, "loss_type": "hinge"}, 1),
    ("dpo-ipo", {"beta": 0.5, "loss_type": "ipo"}, 1),
    ("dpo-apo-zero", {"beta": 0.5, "loss_type": "apo_zero"}, 1),
    ("dpo-apo-down", {"beta": 0.5, "loss_type": "apo_down"}, 1),
    ("dpo-rpo", {"beta": 0.5, "loss_type": "sigmoid", "rpo_alpha": 0.7}, 1),
    ("dpo-ipo-precomputed", {"beta": 0.5, "loss_type": "ipo", "precompute_ref_log_probs": True}, 1),
    # Padding-free pairs and the fused head give the padded, unfused
    # results (the reference here is the padded computation).
    ("dpo-padding-free", {"beta": 0.5, "loss_type": "sigmoid", "padding_free": True}, 1),
    ("dpo-padding-free-apo-zero-accum", {"beta": 0.5, "loss_type": "apo_zero",
                                         "padding_free": True}, 2),
    ("dpo-padding-free-rpo", {"beta": 0.5, "loss_type": "sigmoid", "rpo_alpha": 0.3,
                              "padding_free": True}, 1),
    ("dpo-padding-free-precomputed", {"beta": 0.5, "loss_type": "ipo", "padding_free": True,
                                      "precompute_ref_log_probs": True}, 1),
    ("dpo-fused", {"beta": 0.5, "loss_type": "sigmoid", "rpo_alpha": 0.5, "fused": True}, 1),
    ("dpo-padding-free-fused", {"beta": 0.5, "loss_type": "hinge", "padding_free": True,
                                "fused": True}, 1),
]
KTO_CASES = [
    ("kto", {"beta": 0.5, "loss_type": "kto", "desirable_weight": 1.3, "undesirable_weight": 0.8}, 1),
    ("kto-apo-zero-unpaired-accum", {"beta": 0.5, "loss_type": "apo_zero_unpaired",
                                     "desirable_weight": 0.9}, 2),
    ("kto-precomputed", {"beta": 0.5, "loss_type": "kto", "precompute_ref_log_probs": True}, 1),
    ("kto-fused", {"beta": 0.5, "loss_type": "kto", "fused": True}, 1),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trlc", required=True)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        trained = None
        for name, opts, accum in DPO_CASES:
            if args.only in name:
                out = run_case(args.trlc, name, "dpo", opts, tmp, failures, accum)
                trained = trained or out
        for name, opts, accum in KTO_CASES:
            if args.only in name:
                run_case(args.trlc, name, "kto", opts, tmp, failures, accum)
        # Another model as the reference ([dpo] ref_model: the first case's
        # trained model), live and precomputed.
        if trained and "ref" in args.only + "ref":
            ref = read_safetensors(os.path.join(trained, "model.safetensors"))
            for name, method, opts in [
                    ("dpo-ref-model", "dpo", {"beta": 0.5, "loss_type": "sigmoid"}),
                    ("dpo-ref-model-precomputed", "dpo",
                     {"beta": 0.5, "loss_type": "sigmoid", "precompute_ref_log_probs": True}),
                    ("kto-ref-model-precomputed", "kto",
                     {"beta": 0.5, "loss_type": "kto", "precompute_ref_log_probs": True})]:
                run_case(args.trlc, name, method, opts, tmp, failures, 1, trained, ref)
    if failures:
        print("\nFAILED:\n" + "\n".join(failures))
        sys.exit(1)
    print("all preference comparisons passed")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""LoRA ([peft], trl-lora) against a PyTorch reference of PEFT's formula.

Trains one step of a 2-layer llama (untied head, every linear targeted,
init_lora_weights = false so both A and B start non-zero) and of a gpt2
(Conv1D weights, its default target c_attn, rsLoRA), fp32, dumping the
weights the step starts from (the frozen base and the adapters) and the
gradients. The reference computes the same SFT loss with each targeted
weight W replaced by W + scale x B A (scale lora_alpha / r, or / sqrt(r)
with rsLoRA; transposed for Conv1D) and differentiates it: the loss must
agree to 1e-6 relative, every adapter's gradient to 1e-5, and no base
weight may have a gradient. Then 8 AdamW steps against torch.optim.AdamW
over the adapters (the loss at every step to 1e-5, the saved adapters to
1e-4). The saved adapter holds PEFT's keys
(base_model.model.<module>.lora_A.weight) with the trained values, and
loads with `peft` when it is installed. Then one DPO step with the
adapters starting at zero (PEFT's default): the reference is the base with
the adapters off, so every reward is exactly 0 at the first step. Then one
step with lora_dropout = 0.2: the reference draws trl.dropout's masks with
the same hash (splitmix64 of the seed, the adapter's stream and the
position; the first micro-batch's seed is 42 << 32) and computes
W x + scale B A (mask x / 0.8); loss to 1e-6, adapter gradients to 1e-5,
and the loss must differ from the one without dropout.

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

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("SKIPPED: PyTorch is not installed (apt install python3-torch)")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_reference as ref  # noqa: E402

torch.set_default_dtype(torch.float64)

PEFT = {"llama": ('r = 4\nlora_alpha = 8\ntarget_modules = "all-linear"\n'
                  'init_lora_weights = false\n', 2.0),
        "gpt2": ("r = 4\nlora_alpha = 6\nuse_rslora = true\ninit_lora_weights = false\n", 3.0)}


def recipe(case, data, out):
    text = ref.recipe_text("llama-gqa-untied" if case == "llama" else "gpt2", data, out, 6, 1)
    text = text.replace("max_steps = 10", "max_steps = 1").replace("warmup_steps = 2", "warmup_steps = 0")
    return text + "[peft]\n" + PEFT[case][0]


def run(trlc, rec, tmp, name):
    init, grads = os.path.join(tmp, name + "-init.safetensors"), os.path.join(tmp, name + "-grad.safetensors")
    res = subprocess.run([trlc, "train", rec, "-o", os.path.join(tmp, name + ".trlc"), "--threads", "1",
                          "--quiet", "--dump-initial", init, "--dump-gradients", grads],
                         capture_output=True, text=True)
    if res.returncode != 0:
        print(f"trlc failed:\n{res.stdout}{res.stderr}")
        sys.exit(1)
    return ref.read_safetensors(init), ref.read_safetensors(grads)


def merged(p, case):
    """The weights the adapted model computes with: W + scale x B A."""
    scale = PEFT[case][1]
    out = {k: v for k, v in p.items() if ".lora_" not in k}
    for k in p:
        if k.endswith(".lora_A.weight"):
            base = k[:-len(".lora_A.weight")] + ".weight"
            delta = scale * (p[base[:-7] + ".lora_B.weight"] @ p[k])
            out[base] = p[base] + (delta.T if case == "gpt2" else delta)
    return out


def sft_case(trlc, tmp, case, failures):
    rng = random.Random(11)
    rows = ref.make_rows(6, 40, 12, rng)
    data = os.path.join(tmp, case + ".jsonl")
    with open(data, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    out = os.path.join(tmp, case + "-run")
    rec = os.path.join(tmp, case + ".toml")
    with open(rec, "w") as f:
        f.write(recipe(case, data, out))
    init, grads = run(trlc, rec, tmp, case)
    cfg = json.load(open(os.path.join(out, "adapter_config.json")))
    params = {k: v.clone().requires_grad_(".lora_" in k) for k, v in init.items()}
    model_cfg = json.load(open(os.path.join(tmp, case + ".trlc", "plan.json")))["run"]["model_config"]
    ids, pos, mask, labels = ref.batch_tensors(rows, 12)
    logits_fn = ref.gpt2_logits if case == "gpt2" else ref.llama_logits

    def loss_of(p):
        logits = logits_fn(merged(p, case), model_cfg, ids, pos, mask)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                               ignore_index=-100, reduction="sum") / (labels != -100).sum()

    loss = loss_of(params)
    loss.backward()
    got = ref.last_metrics(out)["loss"]
    r = abs(got - loss.item()) / abs(loss.item())
    adapters = sorted(k for k in params if ".lora_" in k)
    print(f"{case}: {len(adapters)} adapters ({', '.join(cfg['target_modules'])}), loss trlc "
          f"{got:.8f} torch {loss.item():.8f} rel {r:.2e}")
    if r > 1e-6:
        failures.append(f"{case}: the LoRA loss differs by {r:.2e}")
    if set(grads) != set(adapters):
        failures.append(f"{case}: gradients for {sorted(set(grads) ^ set(adapters))[:4]} "
                        "(only the adapters train)")
        return
    worst = max((ref.rel(grads[k], params[k].grad), k) for k in adapters)
    print(f"{case}: worst adapter gradient rel error {worst[0]:.2e} ({worst[1]})")
    if worst[0] > 1e-5:
        failures.append(f"{case}: the gradient of {worst[1]} differs by {worst[0]:.2e}")
    adamw_steps(trlc, tmp, case, data, init, adapters, loss_of, failures)
    saved = ref.read_safetensors(os.path.join(out, "adapter_model.safetensors"))
    want = {"base_model.model." + k for k in adapters}
    if set(saved) != want:
        failures.append(f"{case}: adapter_model.safetensors keys {sorted(set(saved) ^ want)[:4]}")
    elif all(torch.equal(saved["base_model.model." + k], init[k]) for k in adapters):
        failures.append(f"{case}: the saved adapters are the initial ones (no step trained them)")
    try:
        import peft  # noqa: F401
    except ImportError:
        print(f"{case}: peft is not installed; the PEFT load check is skipped")
        return
    config = peft.LoraConfig.from_pretrained(out)
    if config.r != 4 or sorted(config.target_modules) != sorted(cfg["target_modules"]):
        failures.append(f"{case}: peft reads another LoraConfig: {config}")


def adamw_steps(trlc, tmp, case, data, init, adapters, loss_of, failures, steps=8):
    """`steps` optimizer steps on the same batch against torch.optim.AdamW
    over the adapters alone (weight decay 0.1 on each, cosine schedule,
    clipping at 0.5 over the adapters' norm): the loss at every step and
    the saved adapters."""
    out = os.path.join(tmp, case + "-steps")
    rec = os.path.join(tmp, case + "-steps.toml")
    with open(rec, "w") as f:
        f.write(recipe(case, data, out).replace("max_steps = 1", f"max_steps = {steps}"))
    res = subprocess.run([trlc, "train", rec, "-o", os.path.join(tmp, case + "-steps.trlc"),
                          "--threads", "1", "--quiet"], capture_output=True, text=True)
    if res.returncode != 0:
        failures.append(f"{case}: trlc failed:\n{res.stdout}{res.stderr}")
        return
    with open(os.path.join(out, "metrics.jsonl")) as f:
        logged = [json.loads(line)["loss"] for line in f if '"loss"' in line]
    p = {k: v.clone().requires_grad_(k in adapters) for k, v in init.items()}
    opt = torch.optim.AdamW([p[k] for k in adapters], lr=1e-2, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: max(0.0, 0.5 * (1 + math.cos(math.pi * k / steps))))
    worst = 0.0
    for step in range(steps):
        opt.zero_grad()
        loss = loss_of(p)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p[k] for k in adapters], 0.5)
        opt.step()
        sched.step()
        worst = max(worst, abs(logged[step] - loss.item()) / abs(loss.item()))
    saved = ref.read_safetensors(os.path.join(out, "adapter_model.safetensors"))
    wrel = max(ref.rel(saved["base_model.model." + k], p[k].detach()) for k in adapters)
    print(f"{case}: {steps} AdamW steps, worst loss rel error {worst:.2e} "
          f"({logged[0]:.4f} -> {logged[-1]:.4f}), final adapters within {wrel:.2e}")
    if worst > 1e-5 or wrel > 1e-4:
        failures.append(f"{case}: the AdamW trajectory differs (loss {worst:.2e}, adapters {wrel:.2e})")


DPO = """method = "dpo"
[model]
init_seed = 3
tokenizer = "{root}/recipes/data/arith-tokenizer"
dtype = "fp32"
[model.config]
hidden_size = 32
intermediate_size = 48
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
vocab_size = 32
initializer_range = 0.2
[data]
train = "{root}/recipes/data/arith-dpo.jsonl"
max_length = 16
max_prompt_length = 8
[train]
per_device_train_batch_size = 8
max_steps = 2
learning_rate = 1e-2
[dpo]
beta = 0.5
[peft]
r = 4
target_modules = ["q_proj", "down_proj"]
[output]
output_dir = "{out}"
logging_steps = 1
"""


def dpo_case(trlc, tmp, failures):
    out = os.path.join(tmp, "dpo-run")
    rec = os.path.join(tmp, "dpo.toml")
    with open(rec, "w") as f:
        f.write(DPO.format(root=ref.ROOT, out=out))
    res = subprocess.run([trlc, "train", rec, "-o", os.path.join(tmp, "dpo.trlc"), "--threads", "1",
                          "--quiet"], capture_output=True, text=True)
    if res.returncode != 0:
        failures.append(f"DPO with LoRA: trlc failed:\n{res.stdout}{res.stderr}")
        return
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if '"loss"' in line]
    first, second = rows[0], rows[1]
    print(f"DPO with LoRA: step 1 rewards/chosen {first['rewards/chosen']} rejected "
          f"{first['rewards/rejected']} loss {first['loss']:.8f}; step 2 rewards/margins "
          f"{second['rewards/margins']:.6f}")
    if first["rewards/chosen"] != 0 or first["rewards/rejected"] != 0:
        failures.append("DPO with LoRA: the first step's rewards are not 0: the reference is not "
                        "the base with the adapters off")
    if abs(first["loss"] - 0.6931471805599453) > 1e-6:
        failures.append(f"DPO with LoRA: the first loss {first['loss']} is not log 2")
    if second["rewards/margins"] == 0:
        failures.append("DPO with LoRA: the adapters did not move the policy off the reference")


M64 = (1 << 64) - 1


def dropout_keep(seed, stream, n, p):
    """trl.dropout's mask (trlc/ScalarMath.h: dropoutKeeps) of n elements."""
    import numpy as np
    base = (seed * 0x9E3779B97F4A7C15 + (stream + 1) * 0xD1B54A32D192ED03) & M64
    z = np.arange(n, dtype=np.uint64) + np.uint64(base)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    keep = (z >> np.uint64(40)) >= np.uint64(int(math.floor(p * 2 ** 24 + 0.5)))
    return torch.from_numpy(keep.astype("float64"))


def dropout_case(trlc, tmp, failures):
    # One row: the mask is over the positions of the step's batch, whose
    # row order the sampler shuffles.
    rng = random.Random(5)
    rows = ref.make_rows(1, 40, 12, rng)
    data = os.path.join(tmp, "dropout.jsonl")
    with open(data, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    out = os.path.join(tmp, "dropout-run")
    rec = os.path.join(tmp, "dropout.toml")
    with open(rec, "w") as f:
        f.write(recipe("llama", data, out).replace("per_device_train_batch_size = 6",
                                                   "per_device_train_batch_size = 1") +
                "lora_dropout = 0.2\n")
    init, grads = run(trlc, rec, tmp, "dropout")
    params = {k: v.clone().requires_grad_(".lora_" in k) for k, v in init.items()}
    model_cfg = json.load(open(os.path.join(tmp, "dropout.trlc", "plan.json")))["run"]["model_config"]
    # The mask is over the step's [batch, sequence bound, features] layout.
    bound = json.load(open(os.path.join(tmp, "dropout.trlc", "manifest.json")))["sequence_bound"]
    ids, pos, mask, labels = ref.batch_tensors(rows, bound)
    scale, p_drop, seed = PEFT["llama"][1], 0.2, 42 << 32

    def loss_of(p, dropout):
        stream = [0]

        def linear(x, name):
            a, b = p[name[:-7] + ".lora_A.weight"], p[name[:-7] + ".lora_B.weight"]
            xa = x
            if dropout:
                keep = dropout_keep(seed, stream[0], x.numel(), p_drop).view(x.shape)
                xa = x * keep / (1 - p_drop)
            stream[0] += 1
            return x @ p[name].T + scale * ((xa @ a.T) @ b.T)

        logits = ref.llama_logits(p, model_cfg, ids, pos, mask, linear)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                               ignore_index=-100, reduction="sum") / (labels != -100).sum()

    loss = loss_of(params, True)
    loss.backward()
    plain = loss_of(params, False).item()
    got = ref.last_metrics(out)["loss"]
    r = abs(got - loss.item()) / abs(loss.item())
    adapters = sorted(k for k in params if ".lora_" in k)
    worst = max((ref.rel(grads[k], params[k].grad), k) for k in adapters)
    print(f"lora_dropout 0.2: loss trlc {got:.8f} torch {loss.item():.8f} rel {r:.2e} "
          f"(without dropout {plain:.8f}); worst adapter gradient rel error {worst[0]:.2e}")
    if r > 1e-6:
        failures.append(f"lora_dropout: the loss differs by {r:.2e}")
    if abs(plain - loss.item()) < 1e-4:
        failures.append("lora_dropout: the loss equals the one without dropout")
    if worst[0] > 1e-5:
        failures.append(f"lora_dropout: the gradient of {worst[1]} differs by {worst[0]:.2e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trlc", required=True)
    args = ap.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in ("llama", "gpt2"):
            sft_case(args.trlc, tmp, case, failures)
        dpo_case(args.trlc, tmp, failures)
        dropout_case(args.trlc, tmp, failures)
    if failures:
        print("\nFAILED:\n" + "\n".join(failures))
        sys.exit(1)
    print("LoRA matches PEFT's formula")


if __name__ == "__main__":
    main()

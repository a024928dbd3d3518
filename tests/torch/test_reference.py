#!/usr/bin/env python3
"""trlc against a PyTorch reference written here (as llm.c's test does).

For a 2-layer llama with grouped-query attention (tied and untied head) and
a 2-layer gpt2: trlc writes its initial weights and the gradients of its
first micro-batch; the reference, in float64, loads the same weights, runs
the same tokens and compares the loss (1e-5 relative) and every gradient
(1e-4 relative, norm-wise). Then 10 AdamW steps (clipping, weight decay on
matrices only, warm-up + cosine schedule, gradient accumulation) must
follow PyTorch's loss trajectory within 1e-4 relative.

Exit code 77 (skipped) when torch cannot be imported.
"""
import argparse
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile
import zlib

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("SKIPPED: PyTorch is not installed (apt install python3-torch)")
    sys.exit(77)

torch.set_default_dtype(torch.float64)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info["dtype"]
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:e]), dtype=torch.float32)
        out[name] = t.reshape(info["shape"]).to(torch.float64)
    return out


# --- the reference models --------------------------------------------------

def attention(q, k, v, mask):
    """q [B,S,Hq,D], k/v [B,S,Hkv,D], key mask [B,S]; causal."""
    b, s, hq, d = q.shape
    group = hq // k.shape[2]
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(d)
    allowed = torch.tril(torch.ones(s, s, dtype=torch.bool))[None, None] & \
        mask.bool()[:, None, None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))
    p = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return torch.einsum("bhij,bjhd->bihd", p, v)


def rope(x, pos, theta):
    d = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    ang = pos[..., None].float() * inv.float()  # float32, as transformers
    cos = torch.cat([ang.cos(), ang.cos()], -1).to(x.dtype)[:, :, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1).to(x.dtype)[:, :, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def llama_logits(p, cfg, ids, pos, mask, linear=None):
    """`linear(x, name)`, when given, computes each decoder linear (a LoRA
    reference adds its adapters there), called in the model's order: q, k,
    v, o, gate, up, down per layer."""
    b, s = ids.shape
    h, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = h // nh
    lin = linear or (lambda x, name: x @ p[name].T)
    x = p["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        n1 = rms_norm(x, p[pre + "input_layernorm.weight"], cfg["rms_norm_eps"])
        q = lin(n1, pre + "self_attn.q_proj.weight").view(b, s, nh, d)
        k = lin(n1, pre + "self_attn.k_proj.weight").view(b, s, nkv, d)
        v = lin(n1, pre + "self_attn.v_proj.weight").view(b, s, nkv, d)
        q, k = rope(q, pos, cfg["rope_theta"]), rope(k, pos, cfg["rope_theta"])
        o = attention(q, k, v, mask).reshape(b, s, nh * d)
        x = x + lin(o, pre + "self_attn.o_proj.weight")
        n2 = rms_norm(x, p[pre + "post_attention_layernorm.weight"], cfg["rms_norm_eps"])
        g = lin(n2, pre + "mlp.gate_proj.weight")
        u = lin(n2, pre + "mlp.up_proj.weight")
        x = x + lin(F.silu(g) * u, pre + "mlp.down_proj.weight")
    x = rms_norm(x, p["model.norm.weight"], cfg["rms_norm_eps"])
    head = p["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else p["lm_head.weight"]
    return x @ head.T


def gpt2_logits(p, cfg, ids, pos, mask):
    b, s = ids.shape
    h, nh = cfg["n_embd"], cfg["n_head"]
    d = h // nh
    eps = cfg["layer_norm_epsilon"]
    ln = lambda x, pre: F.layer_norm(x, (h,), p[pre + ".weight"], p[pre + ".bias"], eps)
    conv = lambda x, pre: x @ p[pre + ".weight"] + p[pre + ".bias"]  # Conv1D: [in, out]
    x = p["transformer.wte.weight"][ids] + p["transformer.wpe.weight"][pos]
    for l in range(cfg["n_layer"]):
        pre = f"transformer.h.{l}."
        qkv = conv(ln(x, pre + "ln_1"), pre + "attn.c_attn")
        q, k, v = (t.reshape(b, s, nh, d) for t in qkv.split(h, dim=-1))
        x = x + conv(attention(q, k, v, mask).reshape(b, s, h), pre + "attn.c_proj")
        a = F.gelu(conv(ln(x, pre + "ln_2"), pre + "mlp.c_fc"), approximate="tanh")
        x = x + conv(a, pre + "mlp.c_proj")
    return ln(x, "transformer.ln_f") @ p["transformer.wte.weight"].T


# --- data and recipes ------------------------------------------------------

def make_rows(n, vocab, max_len, rng):
    rows = []
    for _ in range(n):
        length = rng.randint(4, max_len)
        prompt = rng.randint(1, length - 2)
        ids = [rng.randrange(vocab) for _ in range(length)]
        rows.append({"input_ids": ids,
                     "completion_mask": [0] * prompt + [1] * (length - prompt)})
    return rows


def batch_tensors(rows, seq):
    b = len(rows)
    ids = torch.zeros(b, seq, dtype=torch.int64)
    pos = torch.zeros(b, seq, dtype=torch.int64)
    mask = torch.zeros(b, seq, dtype=torch.int64)
    labels = torch.full((b, seq), -100, dtype=torch.int64)
    for r, row in enumerate(rows):
        n = len(row["input_ids"])
        ids[r, :n] = torch.tensor(row["input_ids"])
        pos[r, :n] = torch.arange(n)
        mask[r, :n] = 1
        for t in range(n - 1):
            if row["completion_mask"][t + 1]:
                labels[r, t] = row["input_ids"][t + 1]
    return ids, pos, mask, labels


CASES = {
    "llama-gqa-tied": ("llama", True),
    "llama-gqa-untied": ("llama", False),
    "gpt2": ("gpt2", True),
}


def recipe_text(case, data, out_dir, batch, accum):
    family, tied = CASES[case]
    if family == "gpt2":
        config = """model_type = "gpt2"
n_embd = 32
n_layer = 2
n_head = 4
n_positions = 32
vocab_size = 40
layer_norm_epsilon = 1e-5
activation_function = "gelu_new"
"""
    else:
        config = f"""model_type = "llama"
hidden_size = 32
intermediate_size = 48
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
vocab_size = 40
max_position_embeddings = 32
rms_norm_eps = 1e-6
rope_theta = 10000.0
tie_word_embeddings = {"true" if tied else "false"}
"""
    return f"""method = "sft"
[model]
init_seed = 7
dtype = "fp32"
[model.config]
{config}initializer_range = 0.2
[data]
train = "{data}"
max_length = 12
[train]
learning_rate = 1e-2
lr_scheduler_type = "cosine"
warmup_steps = 2
per_device_train_batch_size = {batch}
gradient_accumulation_steps = {accum}
max_steps = 10
max_grad_norm = 0.5
weight_decay = 0.1
[output]
output_dir = "{out_dir}"
logging_steps = 1
save_steps = 1000
"""


def rel(a, b):
    return (a - b).norm().item() / max(b.norm().item(), 1e-30)


# --- the online methods' tests (test_rloo, test_online_dpo, test_ppo, ...) --

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_llama(eos_token_id, init_seed=5):
    """The [model] tables of the online methods' tests: a 2-layer llama with
    grouped-query attention and tied embeddings, from seeded random weights
    in fp32, over the addition task's tokenizer."""
    return f"""[model]
init_seed = {init_seed}
dtype = "fp32"
tokenizer = "{ROOT}/recipes/data/arith-tokenizer"
[model.config]
model_type = "llama"
hidden_size = 32
intermediate_size = 48
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
vocab_size = 32
max_position_embeddings = 32
rms_norm_eps = 1e-6
rope_theta = 10000.0
tie_word_embeddings = true
initializer_range = 0.3
bos_token_id = 1
eos_token_id = {eos_token_id}
pad_token_id = 0
"""


def second_step(trlc, rec, out, prefix):
    """Trains recipe `rec` (output_dir `out`, saving every step) for one
    step, then resumes from its checkpoint for the second, which writes the
    weights it starts from, its accumulated gradients and the batch it
    trains on (TRLC_DUMP_GRPO_BATCH). Returns the files by name ("artifact",
    "init", "start", "grads", "dump") and trlc's output when it failed."""
    files = {"artifact": prefix + ".trlc", "init": prefix + "-init.safetensors",
             "start": prefix + "-start.safetensors", "grads": prefix + "-grad.safetensors",
             "dump": prefix + ".json"}
    res = subprocess.run([trlc, "train", rec, "-o", files["artifact"], "--threads", "1", "--quiet",
                          "--max-steps", "1", "--dump-initial", files["init"]],
                         capture_output=True, text=True)
    if res.returncode == 0:
        res = subprocess.run([trlc, "run", files["artifact"], "--threads", "1", "--quiet",
                              "--max-steps", "2", "--resume", os.path.join(out, "checkpoint-1"),
                              "--output-dir", out + "-2", "--dump-initial", files["start"],
                              "--dump-gradients", files["grads"]],
                             capture_output=True, text=True,
                             env=dict(os.environ, TRLC_DUMP_GRPO_BATCH=files["dump"]))
    return files, (None if res.returncode == 0 else res.stdout + res.stderr)


def last_metrics(run_dir):
    """The last training row (one with a loss) of a run's metrics.jsonl."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if '"loss"' in line][-1]


def run_case(trlc, case, tmp, failures):
    family, _ = CASES[case]
    batch, accum = (4, 2) if case == "llama-gqa-untied" else (6, 1)
    rng = random.Random(zlib.crc32(case.encode()))
    rows = make_rows(batch * accum, 40, 12, rng)
    data = os.path.join(tmp, case + ".jsonl")
    with open(data, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    recipe = os.path.join(tmp, case + ".toml")
    out_dir = os.path.join(tmp, case + "-run")
    with open(recipe, "w") as f:
        f.write(recipe_text(case, data, out_dir, batch, accum))
    init, grads = os.path.join(tmp, case + "-init.safetensors"), os.path.join(tmp, case + "-grad.safetensors")
    cmd = [trlc, "train", recipe, "-o", os.path.join(tmp, case + ".trlc"), "--threads", "1",
           "--quiet", "--dump-initial", init, "--dump-gradients", grads]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        failures.append(f"{case}: trlc failed:\n{res.stdout}{res.stderr}")
        return
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        metrics = [json.loads(l) for l in f if '"loss"' in l]
    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    params = {k: v.clone().requires_grad_(True) for k, v in read_safetensors(init).items()}
    logits_fn = gpt2_logits if family == "gpt2" else llama_logits
    seq = 12

    # All rows' trainable tokens normalise the accumulated loss, as in TRL.
    ids, pos, mask, labels = batch_tensors(rows, seq)
    num_items = (labels != -100).sum()

    def loss_of(p):
        logits = logits_fn(p, cfg, ids, pos, mask)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                               ignore_index=-100, reduction="sum") / num_items

    # 1. The loss and the gradients of the first step, accumulated over its
    # micro-batches (trlc dumps them before the optimizer step).
    loss = loss_of(params)
    loss.backward()
    trlc_loss = metrics[0]["loss"]
    r = abs(trlc_loss - loss.item()) / abs(loss.item())
    print(f"{case}: loss trlc {trlc_loss:.8f} torch {loss.item():.8f} rel {r:.2e}")
    if r > 1e-5:
        failures.append(f"{case}: loss differs by {r:.2e} relative (limit 1e-5)")
    trlc_grads = read_safetensors(grads)
    if set(trlc_grads) != set(params):
        failures.append(f"{case}: gradient names differ: {sorted(set(trlc_grads) ^ set(params))}")
    else:
        worst = max((rel(trlc_grads[k], p.grad), k) for k, p in params.items())
        print(f"{case}: worst gradient rel error {worst[0]:.2e} ({worst[1]}), "
              f"{accum} micro-batch(es) accumulated")
        if worst[0] > 1e-4:
            failures.append(f"{case}: gradient of {worst[1]} differs by {worst[0]:.2e} (limit 1e-4)")

    # 2. Ten AdamW steps, as the Hugging Face Trainer sets them up.
    p2 = {k: v.detach().clone().requires_grad_(True) for k, v in read_safetensors(init).items()}
    decay = [v for v in p2.values() if v.dim() >= 2]
    no_decay = [v for v in p2.values() if v.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    total, warm = 10, 2

    def schedule(k):
        if k < warm:
            return k / max(1, warm)
        progress = (k - warm) / max(1, total - warm)
        return max(0.0, 0.5 * (1 + math.cos(math.pi * progress)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    worst = 0.0
    for step in range(total):
        opt.zero_grad()
        l = loss_of(p2)
        l.backward()
        torch.nn.utils.clip_grad_norm_(list(p2.values()), 0.5)
        opt.step()
        sched.step()
        r = abs(metrics[step]["loss"] - l.item()) / abs(l.item())
        worst = max(worst, r)
    print(f"{case}: 10 AdamW steps, worst loss rel error {worst:.2e} "
          f"(loss {metrics[0]['loss']:.4f} -> {metrics[-1]['loss']:.4f})")
    if worst > 1e-4:
        failures.append(f"{case}: AdamW loss trajectory differs by {worst:.2e} (limit 1e-4)")

    # 3. The saved model is a Hugging Face model directory trlc loads back:
    # the same weights (gpt2's Conv1D transposed on save and on load).
    reload_recipe = os.path.join(tmp, case + "-reload.toml")
    with open(reload_recipe, "w") as f:
        f.write(f"""method = "sft"
[model]
path = "{out_dir}"
dtype = "fp32"
[data]
train = "{data}"
max_length = 12
[train]
max_steps = 1
per_device_train_batch_size = {batch}
[output]
output_dir = "{out_dir}-reload"
""")
    again = os.path.join(tmp, case + "-again.safetensors")
    res = subprocess.run([trlc, "train", reload_recipe, "-o", os.path.join(tmp, case + "-reload.trlc"),
                          "--threads", "1", "--quiet", "--dump-initial", again],
                         capture_output=True, text=True)
    if res.returncode != 0:
        failures.append(f"{case}: trlc could not load its saved model:\n{res.stdout}{res.stderr}")
    else:
        saved, loaded = read_safetensors(os.path.join(out_dir, "model.safetensors")), read_safetensors(again)
        same = set(saved) == set(loaded) and all(torch.equal(saved[k], loaded[k]) for k in saved)
        print(f"{case}: saved model reloads with identical weights: {same}")
        if not same:
            failures.append(f"{case}: reloading the saved model changed its weights")

    # 4. The saved model loads in transformers and gives the same logits.
    try:
        import transformers  # noqa: F401
    except ImportError:
        print(f"{case}: transformers is not installed; the saved model's reload check is skipped")
        return
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(out_dir, torch_dtype=torch.float64)
    final = read_safetensors(os.path.join(out_dir, "model.safetensors"))
    with torch.no_grad():
        ours = logits_fn(final, cfg, ids, pos, mask)
        theirs = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    m = mask.bool()
    r = rel(ours[m], theirs[m])
    print(f"{case}: transformers reload, logits rel error {r:.2e}")
    if r > 1e-6:
        failures.append(f"{case}: the saved model's logits in transformers differ by {r:.2e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trlc", required=True)
    args = ap.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            run_case(args.trlc, case, tmp, failures)
    if failures:
        print("\nFAILED:\n" + "\n".join(failures))
        sys.exit(1)
    print("all PyTorch comparisons passed")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/generate: trlc's generation programs against a PyTorch KV-cache loop.

The same llama (4 layers, hidden 256, GQA 8/4, vocab 1024, random weights
from trlc's initialisation) completes the same batch of prompts greedily on
the CPU: trlc with `trlc generate` (prefill + one decode step per token
over its KV cache; its own timing, without process start and weight
loading), PyTorch eager with the reference model of tests/torch extended by
a KV cache (prefill, then one token per step, keys and values
concatenated), with the same threads. Both stop a row at EOS. Prints
tokens/s of both, the ratio, and whether the completions agree.

    /usr/bin/python3 bench/generate/run.py --trlc build/bin/trlc [--threads 2]
"""
import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "torch"))

CONFIG = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4,
              num_attention_heads=8, num_key_value_heads=4, vocab_size=1024,
              max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0,
              tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def recipe(data, out_dir, batch, seq):
    cfg = "\n".join(f"{k} = {json.dumps(v)}" for k, v in CONFIG.items())
    return f"""method = "sft"
[model]
init_seed = 1
dtype = "fp32"
[model.config]
model_type = "llama"
{cfg}
[data]
train = "{data}"
eval = "{data}"
max_length = {seq}
[train]
per_device_train_batch_size = {batch}
max_steps = 1
[output]
output_dir = "{out_dir}"
save_strategy = "no"
"""


def torch_generate(torch, F, ref, params, cfg, prompts, new, threads):
    """Greedy decoding with a KV cache; returns (completions, seconds)."""
    torch.set_num_threads(threads)
    h, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d, eps, theta = h // nh, cfg["rms_norm_eps"], cfg["rope_theta"]
    p = {k: v.float() for k, v in params.items()}
    layers = cfg["num_hidden_layers"]
    b = len(prompts)
    lens = [len(x) for x in prompts]

    def step(ids, pos, cache, key_mask):
        """ids, pos [b, s]; cache: per layer (k, v) [b, t, nkv, d] or None."""
        s = ids.shape[1]
        x = p["model.embed_tokens.weight"][ids]
        new_cache = []
        for l in range(layers):
            pre = f"model.layers.{l}."
            n1 = ref.rms_norm(x, p[pre + "input_layernorm.weight"], eps)
            q = (n1 @ p[pre + "self_attn.q_proj.weight"].T).view(b, s, nh, d)
            k = (n1 @ p[pre + "self_attn.k_proj.weight"].T).view(b, s, nkv, d)
            v = (n1 @ p[pre + "self_attn.v_proj.weight"].T).view(b, s, nkv, d)
            q, k = ref.rope(q, pos, theta), ref.rope(k, pos, theta)
            if cache is not None:
                k = torch.cat([cache[l][0], k], 1)
                v = torch.cat([cache[l][1], v], 1)
            new_cache.append((k, v))
            kk = k.repeat_interleave(nh // nkv, dim=2)
            vv = v.repeat_interleave(nh // nkv, dim=2)
            scores = torch.einsum("bihd,bjhd->bhij", q, kk) / math.sqrt(d)
            t = kk.shape[1]
            qpos = pos[:, None, :, None]
            kpos = torch.arange(t)[None, None, None, :]
            allowed = (kpos <= qpos) & key_mask[:, None, None, :t].bool()
            scores = scores.masked_fill(~allowed, float("-inf"))
            o = torch.softmax(scores, -1).nan_to_num(0.0)
            o = torch.einsum("bhij,bjhd->bihd", o, vv).reshape(b, s, h)
            x = x + o @ p[pre + "self_attn.o_proj.weight"].T
            n2 = ref.rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps)
            g = n2 @ p[pre + "mlp.gate_proj.weight"].T
            u = n2 @ p[pre + "mlp.up_proj.weight"].T
            x = x + (F.silu(g) * u) @ p[pre + "mlp.down_proj.weight"].T
        x = ref.rms_norm(x[:, -1:], p["model.norm.weight"], eps)
        return x @ p["lm_head.weight"].T, new_cache

    assert len(set(lens)) == 1, "the reference takes prompts of one length"
    with torch.no_grad():
        start = time.perf_counter()
        # Prefill every prompt but its last token, then one token per step
        # (as trlc does); keys and values are appended to the cache.
        n = lens[0]
        ids = torch.tensor([x[:-1] for x in prompts])
        full_mask = torch.ones(b, n - 1 + new, dtype=torch.int64)
        _, cache = step(ids, torch.arange(n - 1)[None].expand(b, -1), None, full_mask)
        cur = torch.tensor([x[-1] for x in prompts])[:, None]
        out = [[] for _ in prompts]
        done = [False] * b
        for t in range(new):
            pos = torch.full((b, 1), n - 1 + t, dtype=torch.int64)
            logits, cache = step(cur, pos, cache, full_mask)
            nxt = logits[:, 0].argmax(-1)
            for r in range(b):
                if not done[r]:
                    out[r].append(int(nxt[r]))
                    done[r] = int(nxt[r]) == cfg["eos_token_id"]
            if all(done):
                break
            cur = nxt[:, None]
        return out, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trlc", default=os.path.join(ROOT, "build", "bin", "trlc"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--new", type=int, default=112)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    seq = args.prompt + args.new
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.jsonl")
        with open(data, "w") as f:
            for _ in range(args.batch):
                ids = [rng.randrange(3, 1024) for _ in range(seq)]
                f.write(json.dumps({"input_ids": ids,
                                    "completion_mask": [0] * args.prompt + [1] * args.new}) + "\n")
        rec = os.path.join(tmp, "r.toml")
        out_dir = os.path.join(tmp, "out")
        with open(rec, "w") as f:
            f.write(recipe(data, out_dir, args.batch, seq))
        art = os.path.join(tmp, "g.trlc")
        init = os.path.join(tmp, "init.safetensors")
        subprocess.run([args.trlc, "compile", rec, "-o", art], check=True, capture_output=True)
        subprocess.run([args.trlc, "run", art, "--max-steps", "1", "--quiet", "--threads",
                        str(args.threads), "--dump-initial", init], check=True)
        prompts = [[rng.randrange(3, 1024) for _ in range(args.prompt)] for _ in range(args.batch)]
        pfile = os.path.join(tmp, "prompts.jsonl")
        with open(pfile, "w") as f:
            for x in prompts:
                f.write(json.dumps({"prompt_ids": x}) + "\n")

        import torch
        import torch.nn.functional as F
        import test_reference as ref
        torch.set_default_dtype(torch.float32)
        params = ref.read_safetensors(init)
        cfg = dict(CONFIG)

        trlc_rates, torch_rates = [], []
        trlc_out = torch_out = None
        for _ in range(args.repeats):
            res = subprocess.run([args.trlc, "generate", art, "--prompts", pfile, "--max-new-tokens",
                                  str(args.new), "--threads", str(args.threads), "--timing"],
                                 check=True, capture_output=True, text=True)
            trlc_out = [json.loads(l)["completion_ids"] for l in res.stdout.splitlines()]
            timing = json.loads(res.stderr.strip().splitlines()[-1])
            trlc_rates.append(timing["tokens"] / timing["seconds"])
            torch_out, seconds = torch_generate(torch, F, ref, params, cfg, prompts, args.new,
                                                args.threads)
            torch_rates.append(sum(len(o) for o in torch_out) / seconds)
        a, b = statistics.median(trlc_rates), statistics.median(torch_rates)
        same = sum(x == y for x, y in zip(trlc_out, torch_out))
        print(f"greedy generation, llama 4x256 (GQA 8/4, vocab 1024), batch {args.batch}, "
              f"prompt {args.prompt}, up to {args.new} new tokens, {args.threads} threads")
        print(f"trlc     {a:10.1f} tokens/s")
        print(f"PyTorch  {b:10.1f} tokens/s (eager, KV cache)")
        print(f"ratio    {a / b:10.2f}x")
        print(f"completions identical: {same}/{len(prompts)}")


if __name__ == "__main__":
    main()

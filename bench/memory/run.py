#!/usr/bin/env python3
"""Memory benchmark: planned device memory with each memory technique.

Part 1 (planning, no weights): for a Qwen2.5-0.5B-shaped and a
Llama-3-8B-shaped model at sequence 4096, batch 8, compiles the SFT step with
nothing, + packing (trl-packing-layout), + the fused loss (trl-fuse-loss)
and reads `trlc inspect --json`: the peak device bytes by category, against
the closed forms of REFERENCE.md (16 bytes per parameter of model state,
34 s b h bytes of 16-bit activations per layer, the s b V logits). trlc's
CPU plan is fp32, so its activations are compared with twice the 16-bit
formula. Recomputation and offloading come from trl-offload-remat; a
`[memory] budget` row lets the compiler choose among them.

Part 3 (planning): with every technique on and `zero_stage = 3`, the plan
of one rank for 1, 2, 4 and 8 ranks: model state per rank, the gathered
layers, the collective bytes per optimizer step, and whether a 24 GiB
budget per rank fits.

Part 4 (planning): DPO on the Qwen2.5-0.5B shape, 8 pairs of up to 1024
tokens, bf16 storage (the default): the reference model as its own plan
category, then each technique on top of the previous: the fused loss,
padding-free pairs (bounded by the data plan's longest batch), precomputed
reference log-probabilities (no reference weights in the step) and
activation offloading with recomputation.

Part 5 (planning): LoRA (r = 16, every linear layer) against full
fine-tuning on both shapes, bf16 plans, with the same memory settings.

Part 6 (planning): layer checkpointing (Hugging Face's gradient
checkpointing, trlc's default), offloaded checkpoints and ZeRO-3 over 8
ranks, bf16 plans, against selective recompute with offloading.

Part 2 (measured, CPU): trains a small llama for a few steps with the fused
loss on and off and prints peak RSS, the planned bytes and the bytes the
runtime allocated.

    python3 bench/memory/run.py --trlc build/bin/trlc
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

MODELS = {
    "Qwen2.5-0.5B": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         vocab_size=151936, tie_word_embeddings="true"),
    "Llama-3-8B": dict(model_type="llama", hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       vocab_size=128256, tie_word_embeddings="false"),
}
GIB = 1024 ** 3


def long_rows(path, n=64, chars=5000):
    """Rows longer than the sequence (digits, one token per character with
    the demo tokenizer), so the data plan keeps the full bound: trlc sizes
    a step by the longest row it will see."""
    import random
    rng = random.Random(0)
    with open(path, "w") as f:
        for _ in range(n):
            text = "".join(rng.choice("0123456789+=") for _ in range(chars))
            f.write(json.dumps({"text": text}) + "\n")


def config_lines(cfg):
    """A MODELS entry as [model.config] TOML lines."""
    return [f"{k} = {v}" if not isinstance(v, str) or v in ("true", "false") else f'{k} = "{v}"'
            for k, v in cfg.items()]


def recipe(path, cfg, seq, batch, packing, liger, out, recompute=False, offload=False,
           budget=None, zero=0, dtype="fp32"):
    """`recompute`: False, True (the cheap ops alone, recompute = "selective",
    as the recorded fp32 rows were planned) or "full" (whole layers,
    Hugging Face's gradient checkpointing)."""
    data = os.path.join(os.path.dirname(path), "long.jsonl")
    if not os.path.exists(data):
        long_rows(data)
    # fp32 storage: the recorded plans predate trl-mixed-precision (bf16
    # activations, the default), which halves the activation bytes again.
    lines = ['method = "sft"', "[model]", "init_seed = 0", f'dtype = "{dtype}"',
             'tokenizer = "recipes/data/arith-tokenizer"', "[model.config]"]
    lines += config_lines(cfg)
    lines += [f"max_position_embeddings = {seq}", "[data]",
              f'train = "{data}"', f"max_length = {seq}"]
    if packing:
        lines += ["packing = true"]
    lines += ["[train]", f"per_device_train_batch_size = {batch}", "max_steps = 10",
              "[memory]", f"use_liger_kernel = {'true' if liger else 'false'}",
              f"gradient_checkpointing = {'true' if recompute else 'false'}",
              f'recompute = "{"full" if recompute == "full" else "selective"}"',
              f"activation_offloading = {'true' if offload else 'false'}",
              f'budget = "{budget or "auto"}"', f"zero_stage = {zero}",
              "[output]", f'output_dir = "{out}"']
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def plan(trlc, work, name, cfg, seq, batch, packing, liger, recompute=False, offload=False,
         budget=None, zero=0, nproc=1, dtype="fp32"):
    r = os.path.join(work, f"{name}.toml")
    recipe(r, cfg, seq, batch, packing, liger, os.path.join(work, "out"), recompute, offload,
           budget, zero, dtype)
    art = os.path.join(work, f"{name}.trlc")
    done = subprocess.run([trlc, "compile", r, "-o", art, "--nproc", str(nproc)],
                          capture_output=True, text=True)
    for line in done.stderr.splitlines():
        if "budget" in line:
            print(f"<!-- {line.strip()} -->")
    if done.returncode != 0:
        return None
    j = json.loads(subprocess.run([trlc, "inspect", art, "--json"], check=True,
                                  capture_output=True, text=True).stdout)
    return j


def params_of(cfg):
    h, i, L, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    d = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * d
    per_layer = h * h * 2 + 2 * h * kv + 3 * h * i + 2 * h
    bias = (2 * kv + h) if cfg["model_type"] == "qwen2" else 0
    head = 0 if cfg["tie_word_embeddings"] == "true" else v * h
    return L * (per_layer + bias) + v * h + head + h


def part1(trlc, seq, batch):
    print(f"## Planned peak device memory, SFT step, sequence {seq}, batch {batch} (fp32 CPU plan)\n")
    print("| model | setting | peak (device) | model state | activations | workspace | host pool | formula |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for mname, cfg in MODELS.items():
            n = params_of(cfg)
            s, b, h, L, v = seq, batch, cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
            state = 16 * n
            acts16 = 34 * s * b * h * L
            logits = 4 * s * b * v
            for label, packing, liger, rec, off in [
                    ("nothing", False, False, False, False),
                    ("+ packing", True, False, False, False),
                    ("+ fused loss", True, True, False, False),
                    ("+ recompute (gradient_checkpointing)", True, True, True, False),
                    ("+ activation offloading", True, True, True, True)]:
                j = plan(trlc, work, f"{mname}-{packing}-{liger}-{rec}-{off}", cfg, seq, batch,
                         packing, liger, rec, off)
                c = j["peak"]["by_category"]
                model_state = c["parameters"] + c["gradients"] + c["optimizer state"]
                formula = state + 2 * acts16 + (0 if liger else 2 * logits)
                print(f"| {mname} | {label} | {j['peak']['bytes'] / GIB:.1f} GiB | "
                      f"{model_state / GIB:.2f} GiB | {c['activations'] / GIB:.1f} GiB | "
                      f"{c['workspace'] / GIB:.2f} GiB | {j['host_bytes'] / GIB:.1f} GiB | "
                      f"{formula / GIB:.1f} GiB |")
            j = plan(trlc, work, f"{mname}-budget", cfg, seq, batch, True, True, False, False,
                     budget="24GiB")
            if j is None:
                print(f"| {mname} | fused loss + budget 24 GiB | does not fit (see the compiler's message) | | | | | |")
            else:
                c = j["peak"]["by_category"]
                print(f"| {mname} | fused loss + budget 24 GiB | {j['peak']['bytes'] / GIB:.1f} GiB | "
                      f"{(c['parameters'] + c['gradients'] + c['optimizer state']) / GIB:.2f} GiB | "
                      f"{c['activations'] / GIB:.1f} GiB | {c['workspace'] / GIB:.2f} GiB | "
                      f"{j['host_bytes'] / GIB:.1f} GiB | |")
            print(f"| {mname} | closed forms | {n / 1e9:.3f} B params: 16 B/param = {state / GIB:.2f} GiB; "
                  f"34sbh x L (bf16) = {acts16 / GIB:.1f} GiB; fp32 logits s b V = {logits / GIB:.1f} GiB | | | | | |")
    print()


def part3(trlc, seq, batch):
    print(f"## ZeRO-3 per rank: every technique on, sequence {seq}, batch {batch} per rank\n")
    print("| model | ranks | peak per rank | model state per rank | gathered / packed buffers at the peak "
          "| activations at the peak | communication per step | budget 24 GiB per rank |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for mname, cfg in MODELS.items():
            for n in (1, 2, 4, 8):
                j = plan(trlc, work, f"{mname}-z{n}", cfg, seq, batch, True, True, True, True,
                         zero=3, nproc=n)
                fit = plan(trlc, work, f"{mname}-z{n}-fit", cfg, seq, batch, True, True,
                           budget="24GiB", zero=3, nproc=n)
                c, dp = j["peak"]["by_category"], j["data_parallel"]
                comm = sum(dp["communication_bytes_per_step"].values())
                print(f"| {mname} | {n} | {j['peak']['bytes'] / GIB:.1f} GiB | "
                      f"{dp['model_state_bytes_per_rank'] / GIB:.2f} GiB | "
                      f"{c['communication buffers'] / GIB:.2f} GiB | {c['activations'] / GIB:.1f} GiB | "
                      f"{comm / GIB:.1f} GiB | "
                      f"{'fits: %.1f GiB' % (fit['peak']['bytes'] / GIB) if fit else 'does not fit'} |")
    print()


def preference_rows(path, n=64, seed=0):
    """DPO pairs with a long tail: prompts of 100-300 characters (one token
    each with the demo tokenizer), most completions 50-400 and one pair in
    sixteen up to 900, so a few pairs fill max_length and most do not."""
    import random
    rng = random.Random(seed)
    digits = lambda k: "".join(rng.choice("0123456789+=") for _ in range(k))
    with open(path, "w") as f:
        for i in range(n):
            hi = 900 if i % 16 == 0 else 400
            f.write(json.dumps({"prompt": digits(rng.randint(100, 300)),
                                "chosen": digits(rng.randint(50, hi)),
                                "rejected": digits(rng.randint(50, hi))}) + "\n")


def part4(trlc, pairs=8, seq=1024):
    cfg = MODELS["Qwen2.5-0.5B"]
    print(f"## DPO: planned peak device memory, {cfg['model_type']} Qwen2.5-0.5B shape, "
          f"{pairs} pairs x {seq} tokens (bf16 storage)\n")
    print("| setting | peak (device) | model state | reference weights | activations | workspace "
          "| host pool | tokens per step |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "pairs.jsonl")
        preference_rows(data)
        rows = [("nothing (padded pairs, unfused head, live reference)", {}),
                ("+ fused loss", {"liger": True}),
                ("+ padding-free pairs", {"liger": True, "padding_free": True}),
                ("+ precomputed reference", {"liger": True, "padding_free": True, "pre": True}),
                ("+ activation offloading + recompute",
                 {"liger": True, "padding_free": True, "pre": True, "offload": True})]
        for label, o in rows:
            lines = ['method = "dpo"', "[model]", "init_seed = 0",
                     'tokenizer = "recipes/data/arith-tokenizer"', "[model.config]"]
            lines += config_lines(cfg)
            lines += [f"max_position_embeddings = {seq}", "[data]", f'train = "{data}"',
                      f"max_length = {seq}", f"padding_free = {'true' if o.get('padding_free') else 'false'}",
                      "[train]", f"per_device_train_batch_size = {pairs}", "max_steps = 10",
                      "[memory]", f"use_liger_kernel = {'true' if o.get('liger') else 'false'}",
                      f"activation_offloading = {'true' if o.get('offload') else 'false'}",
                      f"gradient_checkpointing = {'true' if o.get('offload') else 'false'}",
                      'recompute = "selective"',
                      "[dpo]", f"precompute_ref_log_probs = {'true' if o.get('pre') else 'false'}",
                      "[output]", f'output_dir = "{os.path.join(work, "out")}"']
            r = os.path.join(work, "dpo.toml")
            with open(r, "w") as f:
                f.write("\n".join(lines) + "\n")
            art = os.path.join(work, "dpo.trlc")
            subprocess.run([trlc, "compile", r, "-o", art], check=True, capture_output=True)
            j = json.loads(subprocess.run([trlc, "inspect", art, "--json"], check=True,
                                          capture_output=True, text=True).stdout)
            manifest = json.load(open(os.path.join(art, "manifest.json")))
            c = j["peak"]["by_category"]
            state = c["parameters"] + c["gradients"] + c["optimizer state"]
            ref = c.get("frozen parameters", 0)
            tokens = manifest["sequence_bound"] * (1 if o.get("padding_free") else 2 * pairs)
            print(f"| {label} | {j['peak']['bytes'] / GIB:.2f} GiB | {state / GIB:.2f} GiB | "
                  f"{ref / GIB:.2f} GiB | {c['activations'] / GIB:.2f} GiB | "
                  f"{c['workspace'] / GIB:.2f} GiB | {j['host_bytes'] / GIB:.2f} GiB | {tokens} |")
    print()


def part5(trlc, seq, batch, r=16):
    """LoRA (r = 16, every linear layer) against full fine-tuning, bf16
    plans (the default storage), with the same memory settings."""
    print(f"## LoRA (r = {r}, all-linear) against full fine-tuning: planned peak, SFT step, "
          f"sequence {seq}, batch {batch} (bf16 plans)\n")
    print("| model | setting | full fine-tuning | LoRA | LoRA model state (adapters + frozen base) "
          "| LoRA activations | LoRA host pool |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "long.jsonl")
        long_rows(data)
        for mname, cfg in MODELS.items():
            for label, o in [("fused loss", {"liger": True}),
                             ("+ recompute", {"liger": True, "rec": True}),
                             ("+ activation offloading", {"liger": True, "rec": True, "off": True}),
                             ("fused loss + budget 24 GiB", {"liger": True, "budget": "24GiB"}),
                             ("fused loss + layer checkpointing", {"liger": True, "rec": "full"}),
                             ("+ offloaded checkpoints", {"liger": True, "rec": "full", "off": True})]:
                peaks = []
                for lora in (False, True):
                    lines = ['method = "sft"', "[model]", "init_seed = 0",
                             'tokenizer = "recipes/data/arith-tokenizer"', "[model.config]"]
                    lines += config_lines(cfg)
                    lines += [f"max_position_embeddings = {seq}", "[data]", f'train = "{data}"',
                              f"max_length = {seq}", "packing = true", "[train]",
                              f"per_device_train_batch_size = {batch}", "max_steps = 10",
                              "[memory]", f"use_liger_kernel = {'true' if o.get('liger') else 'false'}",
                              f"gradient_checkpointing = {'true' if o.get('rec') else 'false'}",
                              f'recompute = "{"full" if o.get("rec") == "full" else "selective"}"',
                              f"activation_offloading = {'true' if o.get('off') else 'false'}",
                              f'budget = "{o.get("budget", "auto")}"']
                    if lora:
                        lines += ["[peft]", f"r = {r}", f"lora_alpha = {2 * r}",
                                  'target_modules = "all-linear"']
                    lines += ["[output]", f'output_dir = "{os.path.join(work, "out")}"']
                    rec = os.path.join(work, "lora.toml")
                    with open(rec, "w") as f:
                        f.write("\n".join(lines) + "\n")
                    art = os.path.join(work, "lora.trlc")
                    done = subprocess.run([trlc, "compile", rec, "-o", art], capture_output=True,
                                          text=True)
                    if done.returncode != 0:
                        peaks.append(None)
                        continue
                    peaks.append(json.loads(subprocess.run(
                        [trlc, "inspect", art, "--json"], check=True, capture_output=True,
                        text=True).stdout))
                full, mine = peaks
                show = lambda j: "does not fit" if j is None else f"{j['peak']['bytes'] / GIB:.2f} GiB"
                if mine is None:
                    print(f"| {mname} | {label} | {show(full)} | does not fit | | | |")
                    continue
                c = mine["peak"]["by_category"]
                state = (c["parameters"] + c["gradients"] + c["optimizer state"] +
                         c.get("frozen parameters", 0))
                print(f"| {mname} | {label} | {show(full)} | {show(mine)} | {state / GIB:.2f} GiB | "
                      f"{c['activations'] / GIB:.2f} GiB | {mine['host_bytes'] / GIB:.2f} GiB |")
    print()


def part6(trlc, seq, batch):
    """Layer checkpointing (Hugging Face's gradient checkpointing, the
    default), offloaded checkpoints and ZeRO-3, bf16 plans (the default
    storage), against selective recompute with offloading."""
    print(f"## Layer checkpointing: planned peak, SFT step, sequence {seq}, batch {batch} "
          f"(packed, fused loss, bf16 plans)\n")
    print("| model | setting | ranks | peak per rank | model state per rank | activations | host pool "
          "| recomputed per step | copied to the host per step | added time per step, CUDA profile |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for mname, cfg in MODELS.items():
            for label, rec, off, n in [
                    ("no checkpointing", False, False, 1),
                    ("selective recompute + offloading", True, True, 1),
                    ("full layer checkpointing", "full", False, 1),
                    ("full + offloaded checkpoints", "full", True, 1),
                    ("ZeRO-3, full layer checkpointing", "full", False, 8),
                    ("ZeRO-3, full + offloaded checkpoints", "full", True, 8)]:
                r = os.path.join(work, f"{mname}-ckpt.toml")
                recipe(r, cfg, seq, batch, True, True, os.path.join(work, "out"), rec, off,
                       zero=3 if n > 1 else 0, dtype="bf16")
                art = os.path.join(work, f"{mname}-ckpt.trlc")
                done = subprocess.run([trlc, "compile", r, "-o", art, "--nproc", str(n),
                                       "--emit=mlir"], capture_output=True, text=True)
                def attr(name):
                    for line in done.stdout.splitlines():
                        if f"{name} = " in line and "@train_step" in line:
                            text = line.split(f"{name} = ")[1].split(" ")[0]
                            if text.startswith("0x"):  # MLIR's exact form of an f64
                                import struct
                                return struct.unpack(">d", bytes.fromhex(text[2:]))[0]
                            return float(text)
                    return 0.0
                # The pass's CUDA profile (passes/OffloadRemat.cpp): products at
                # 7.9e14 FLOP/s, copies at 5e10 B/s each way with 10 us latency.
                flops, moved = attr("trl.recomputed_flops"), attr("trl.offloaded_bytes")
                copies = attr("trl.offloaded_values")
                cuda_s = flops / 7.9e14 + 2 * (moved / 5e10 + copies * 1e-5)
                subprocess.run([trlc, "compile", r, "-o", art, "--nproc", str(n)], check=True,
                               capture_output=True)
                j = json.loads(subprocess.run([trlc, "inspect", art, "--json"], check=True,
                                              capture_output=True, text=True).stdout)
                c = j["peak"]["by_category"]
                state = (j["data_parallel"]["model_state_bytes_per_rank"] if n > 1 else
                         c["parameters"] + c["gradients"] + c["optimizer state"])
                print(f"| {mname} | {label} | {n} | {j['peak']['bytes'] / GIB:.2f} GiB | "
                      f"{state / GIB:.2f} GiB | {c['activations'] / GIB:.2f} GiB | "
                      f"{j['host_bytes'] / GIB:.2f} GiB | {flops / 1e12:.1f} TFLOP | "
                      f"{moved / GIB:.2f} GiB | {1e3 * cuda_s:.0f} ms |")
    print()


def part2(trlc):
    print("## Measured on the CPU: small llama, each technique on top of the previous\n")
    print("| setting | peak RSS | planned device (arena + workspace) | runtime allocated | host pool |")
    print("|---|---|---|---|---|")
    cfg = dict(model_type="llama", hidden_size=256, intermediate_size=688, num_hidden_layers=4,
               num_attention_heads=8, num_key_value_heads=4, vocab_size=32000,
               tie_word_embeddings="false")
    with tempfile.TemporaryDirectory() as work:
        for label, liger, rec, off in [("packing", False, False, False),
                                       ("+ fused loss", True, False, False),
                                       ("+ recompute", True, True, False),
                                       ("+ activation offloading", True, True, True)]:
            tag = f"{liger}-{rec}-{off}"
            out = os.path.join(work, f"out-{tag}")
            r = os.path.join(work, f"small-{tag}.toml")
            art = os.path.join(work, f"s-{tag}.trlc")
            recipe(r, cfg, 256, 8, True, liger, out, rec, off)
            subprocess.run([trlc, "train", r, "-o", art, "--max-steps", "3", "--quiet",
                            "--threads", "2"], check=True, capture_output=True)
            host = json.loads(subprocess.run([trlc, "inspect", art, "--json"], check=True,
                                             capture_output=True, text=True).stdout)["host_bytes"]
            rows = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
            m = max(rows, key=lambda x: x.get("peak_memory_bytes", 0))
            print(f"| {label} | {m['peak_memory_bytes'] / 2**20:.1f} MiB | "
                  f"{m['planned_memory_bytes'] / 2**20:.1f} MiB | "
                  f"{m['runtime_allocated_bytes'] / 2**20:.1f} MiB | {host / 2**20:.1f} MiB |")
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trlc", default="build/bin/trlc")
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--only", choices=["sft", "zero3", "dpo", "lora", "checkpointing", "measured"],
                    default=None)
    args = ap.parse_args()
    if args.only == "dpo":
        part4(args.trlc)
        return 0
    if args.only == "lora":
        part5(args.trlc, args.seq, args.batch)
        return 0
    if args.only == "checkpointing":
        part6(args.trlc, args.seq, args.batch)
        return 0
    part1(args.trlc, args.seq, args.batch)
    part3(args.trlc, args.seq, args.batch)
    part4(args.trlc)
    part5(args.trlc, args.seq, args.batch)
    part6(args.trlc, args.seq, args.batch)
    part2(args.trlc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

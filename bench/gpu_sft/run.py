#!/usr/bin/env python3
"""bench/gpu_sft: an SFT step on a GPU, trlc against PyTorch + transformers.

Same model shape, random initial weights (trlc's, loaded by the peer), the
same packed token rows, sequence length and batch. The peer is
transformers' AutoModelForCausalLM with SDPA attention, fp32 master
weights under bf16 autocast and fused AdamW (what the Hugging Face Trainer
does with bf16=True), run eager and under torch.compile. trlc runs the
artifact compiled from the same rows (fp32 master weights and
activations, bf16 matrix products, fused linear cross entropy).

Cases: a Qwen2.5-0.5B-shaped model at sequence 2048 (documents of random
length packed best-fit-decreasing) and GPT-2 124M at T=1024 with batch
16, 32 and 64. Each engine runs in a process of its own; tokens/s is the
median over the steps after the warm-up. Peak memory is given twice: what
the engine's allocator held at most (trlc: its arena, scratch and the
cuBLASLt workspace, measured with cudaMemGetInfo; PyTorch:
max_memory_allocated) and the most device memory in use while the process
ran, context included (NVML, sampled every 10 ms). MFU counts 6 x the
matrix-product parameters + 6 x layers x sequence x attention width flops
per token (causal attention over the whole row, the same count for both
engines) against the bf16 matrix-product peak measured here with a
8192^3 torch.matmul.

Two steps, because the compiler and the GPU are on different machines:

    # where trlc compiles (MLIR): recipes, packed rows and artifacts
    python3 bench/gpu_sft/run.py prepare --trlc build/bin/trlc --out bench/gpu_sft/cases
    # on the GPU machine, with a runtime-only build (-DTRLC_COMPILER=OFF)
    python3 bench/gpu_sft/run.py measure --trlc build-gpu/bin/trlc --cases bench/gpu_sft/cases

`prepare --tiny` and `measure --device cpu` run the same code on small
shapes on a CPU (fp32 peer, no MFU), to check the script without a GPU.
"""
import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

QWEN = dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
            num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
            max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0,
            tie_word_embeddings=True)
GPT2 = dict(model_type="gpt2", vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12,
            n_head=12, tie_word_embeddings=True)
TINY_LLAMA = dict(model_type="qwen2", hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
                  max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0,
                  tie_word_embeddings=True)
TINY_GPT2 = dict(model_type="gpt2", vocab_size=512, n_positions=128, n_embd=64, n_layer=2,
                 n_head=4, tie_word_embeddings=True)


def cases(tiny):
    if tiny:
        return [dict(name="tiny-qwen2-s128-b4", model=TINY_LLAMA, seq=128, batch=4, steps=6),
                dict(name="tiny-gpt2-t128-b4", model=TINY_GPT2, seq=128, batch=4, steps=6)]
    out = [dict(name="qwen2.5-0.5b-s2048-b8", model=QWEN, seq=2048, batch=8, steps=12)]
    for b in (16, 32, 64):
        out.append(dict(name=f"gpt2-124m-t1024-b{b}", model=GPT2, seq=1024, batch=b, steps=12))
    return out


# ---------------------------------------------------------------- prepare

def toml_value(v):
    return json.dumps(v) if not isinstance(v, bool) else ("true" if v else "false")


# Rows of logits per chunk of trlc's fused lm_head + loss. Liger's rule
# (the default) picks 128 for the Qwen case: each chunk then adds its
# lm_head gradient into the fp32 [vocab, hidden] accumulator, 128 times a
# step. 1024 rows cost 0.9 GiB more scratch there and do it 16 times.
LOSS_CHUNK = 1024


def recipe(case, docs):
    cfg = "\n".join(f"{k} = {toml_value(v)}" for k, v in case["model"].items())
    return f"""# bench/gpu_sft case {case['name']} (written by run.py prepare)
method = "sft"
[model]
init_seed = 1
dtype = "bf16"
[model.config]
{cfg}
[data]
train = "{docs}"
max_length = {case['seq']}
packing = true
packing_strategy = "bfd"
[train]
learning_rate = 1e-4
lr_scheduler_type = "constant"
per_device_train_batch_size = {case['batch']}
max_steps = {case['steps']}
max_grad_norm = 1.0
[memory]
use_liger_kernel = true
loss_chunk_size = {LOSS_CHUNK}
[output]
output_dir = "runs/gpu_sft"
logging_steps = 1
save_steps = 100000
save_total_limit = 1
"""


def write_docs(path, vocab, seq, tokens, seed):
    """Pre-tokenized documents of lognormal length (a third of the row on
    average, at most one row), `tokens` tokens in all."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        total = 0
        while total < tokens:
            n = max(8, min(seq, int(rng.lognormvariate(math.log(seq / 4), 0.8))))
            ids = [rng.randrange(3, vocab) for _ in range(n)]
            f.write(json.dumps({"input_ids": ids}) + "\n")
            total += n


def prepare(args):
    os.makedirs(args.out, exist_ok=True)
    manifest = []
    for case in cases(args.tiny):
        name = case["name"]
        vocab = case["model"]["vocab_size"]
        docs = os.path.abspath(os.path.join(args.out, f"{name}.docs.jsonl"))
        # Packing leaves a little room per row: 1.1 x the tokens the steps use.
        write_docs(docs, vocab, case["seq"], int(1.1 * case["seq"] * case["batch"] * case["steps"]), 7)
        rec = os.path.join(args.out, f"{name}.toml")
        with open(rec, "w") as f:
            f.write(recipe(case, docs))
        art = os.path.join(args.out, f"{name}.trlc")
        t0 = time.time()
        subprocess.run([args.trlc, "compile", rec, "-o", art], check=True, stdout=subprocess.DEVNULL)
        # The packed rows, for the peer: token ids and document lengths.
        rows = os.path.join(args.out, f"{name}.rows.jsonl")
        packed = subprocess.run([args.trlc, "data", rec, "--emit=jsonl"], check=True,
                                capture_output=True, text=True).stdout
        with open(rows, "w") as f:
            for line in packed.splitlines():
                r = json.loads(line)
                f.write(json.dumps({"input_ids": r["input_ids"],
                                    "seq_lengths": r["seq_lengths"]}) + "\n")
        os.remove(docs)  # the artifact carries its shard; the peer reads rows.jsonl
        print(f"{name}: compiled in {time.time() - t0:.1f} s")
        manifest.append(dict(case, artifact=os.path.basename(art), rows=os.path.basename(rows)))
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump(manifest, f, indent=1)


# ---------------------------------------------------------------- measure

def flops_per_token(m, seq):
    """6 x matrix-product parameters + 6 x layers x seq x attention width."""
    if m["model_type"] == "gpt2":
        h, layers = m["n_embd"], m["n_layer"]
        per_layer, width = 12 * h * h, h
    else:
        h, layers = m["hidden_size"], m["num_hidden_layers"]
        d = h // m["num_attention_heads"]
        q, kv = m["num_attention_heads"] * d, m["num_key_value_heads"] * d
        per_layer = h * q + 2 * h * kv + q * h + 3 * h * m["intermediate_size"]
        width = q
    return 6 * (layers * per_layer + m["vocab_size"] * h) + 6 * layers * seq * width


def read_rows(path):
    return [json.loads(l) for l in open(path)]


def peer_child(args):
    """One engine in its own process: prints a JSON line of results."""
    import torch
    import transformers
    from safetensors.torch import load_file
    case = json.loads(args.case)
    cuda = args.device == "cuda"
    dev = torch.device(args.device)
    m = dict(case["model"])
    cfg = transformers.AutoConfig.for_model(**m)
    kw = {"attn_implementation": "sdpa" if cuda else "eager"}
    model = transformers.AutoModelForCausalLM.from_config(cfg, **kw)
    state = load_file(args.init)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" or k.endswith(".attn.bias")
                                          or k.endswith(".attn.masked_bias"))]
    if missing or unexpected:
        raise SystemExit(f"the initial weights do not fit the model: missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]}")
    if m.get("tie_word_embeddings", True):
        model.tie_weights()
    model.float().to(dev).train()  # fp32 master weights
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0,
                            **({"fused": True} if cuda else {}))
    step_fn = model
    if args.compile:
        step_fn = torch.compile(model)
    rows = read_rows(args.rows)
    seq, batch = case["seq"], case["batch"]

    def make_batch(step):
        ids = torch.zeros(batch, seq, dtype=torch.long)
        pos = torch.zeros(batch, seq, dtype=torch.long)
        labels = torch.full((batch, seq), -100, dtype=torch.long)
        tokens = 0
        for r in range(batch):
            row = rows[(step * batch + r) % len(rows)]
            x = row["input_ids"]
            n = len(x)
            ids[r, :n] = torch.tensor(x)
            p, at = [], 0
            for length in row.get("seq_lengths", [n]):
                p.extend(range(length))
            pos[r, :n] = torch.tensor(p[:n])  # restarting per document, as trlc's
            # Next-token labels inside each document (none across a boundary).
            lab = torch.tensor(x)
            labels[r, :n] = lab
            for length in row.get("seq_lengths", [n]):
                at += length
                if at < n:
                    labels[r, at] = -100
            labels[r, 0] = -100
            tokens += n
        return ids.to(dev), pos.to(dev), labels.to(dev), tokens

    def loss_of(ids, pos, labels):
        # transformers shifts labels by one inside; its position ids restart
        # per document as trlc's do.
        if cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return step_fn(input_ids=ids, position_ids=pos, labels=labels).loss
        return step_fn(input_ids=ids, position_ids=pos, labels=labels).loss

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, tokens, losses = [], [], []
    for step in range(case["steps"]):
        ids, pos, labels, n = make_batch(step)
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = loss_of(ids, pos, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))  # synchronizes
        times.append(time.perf_counter() - t0)
        tokens.append(n)
    warm = args.warmup
    out = {"tokens_per_second": statistics.median(t / s for t, s in zip(tokens[warm:], times[warm:])),
           "losses": losses,
           "torch": torch.__version__, "transformers": transformers.__version__}
    if cuda:
        out["allocator_peak_bytes"] = torch.cuda.max_memory_allocated()
        out["reserved_peak_bytes"] = torch.cuda.max_memory_reserved()
    print(json.dumps(out))


class DeviceMemory:
    """The most device memory in use while a child runs (NVML), minus what
    was in use before it started."""

    def __init__(self, device):
        self.handle = None
        if device != "cuda":
            return
        try:
            import pynvml
            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:
            self.handle = None

    def used(self):
        return self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used

    def run(self, cmd, **kw):
        """subprocess.run, with a timeout reported as a failed run."""
        try:
            return self._run(cmd, **kw)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(cmd, -1, "", f"timed out after {e.timeout} s"), None

    def _run(self, cmd, **kw):
        if self.handle is None:
            return subprocess.run(cmd, **kw), None
        base, peak, done = self.used(), [0], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], self.used())
                time.sleep(0.01)
        t = threading.Thread(target=sample)
        t.start()
        try:
            r = subprocess.run(cmd, **kw)
        finally:
            done.set()
            t.join()
        return r, max(0, peak[0] - base)


def matmul_peak():
    """Median bf16 TFLOP/s of an 8192^3 torch.matmul on random data."""
    import torch
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        a @ b
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    return 2 * n ** 3 / statistics.median(times) / 1e12


def measure(args):
    manifest = json.load(open(os.path.join(args.cases, "cases.json")))
    manifest = [c for c in manifest if args.only in c["name"]]
    os.makedirs(args.out, exist_ok=True)
    peak = matmul_peak() if args.device == "cuda" else None
    mem = DeviceMemory(args.device)
    results = []
    for case in manifest:
        name = case["name"]
        art = os.path.join(args.cases, case["artifact"])
        run_dir = os.path.join(args.out, name)
        init = os.path.join(args.out, f"{name}.init.safetensors")
        cmd = [args.trlc, "run", art, "--device", args.device, "--output-dir", run_dir,
               "--quiet", "--dump-initial", init]
        if args.device == "cpu":
            cmd += ["--threads", str(os.cpu_count())]
        r, nvml = mem.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        if r.returncode != 0:
            print(f"{name}: trlc failed\n{r.stderr[-3000:]}")
            continue
        metrics = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
        metrics = [m for m in metrics if "tokens_per_second" in m]
        row = {"case": name, "fpt": flops_per_token(case["model"], case["seq"]),
               "engines": {"trlc": {
                   "tokens_per_second": statistics.median(m["tokens_per_second"]
                                                          for m in metrics[args.warmup:]),
                   "allocator_peak_bytes": metrics[-1]["runtime_allocated_bytes"],
                   "planned_bytes": metrics[-1]["planned_memory_bytes"],
                   "device_used_bytes": nvml,
                   "losses": [m["loss"] for m in metrics],
                   "log": r.stderr[-2000:]}}}
        for engine, extra in (("pytorch eager", []), ("pytorch compile", ["--compile"])):
            if engine.split()[1] not in args.engines:
                continue
            if extra and args.device != "cuda":
                continue  # torch.compile is benchmarked on the GPU only
            p, nvml = mem.run([sys.executable, __file__, "peer", "--case", json.dumps(case),
                               "--rows", os.path.join(args.cases, case["rows"]), "--init", init,
                               "--device", args.device, "--warmup", str(args.warmup)] + extra,
                              capture_output=True, text=True, timeout=args.timeout)
            if p.returncode != 0:
                print(f"{name}: {engine} failed\n{p.stderr[-3000:]}")
                continue
            res = json.loads(p.stdout.strip().splitlines()[-1])
            res["device_used_bytes"] = nvml
            row["engines"][engine] = res
        results.append(row)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump({"matmul_peak_tflops": peak, "device": device_name(args.device),
                       "results": results}, f, indent=1)
    report(results, peak, args.device)


def device_name(device):
    if device != "cuda":
        return "cpu"
    import torch
    return torch.cuda.get_device_name(0)


def gib(x):
    return "-" if x is None else f"{x / 2**30:.2f} GiB"


def report(results, peak, device):
    print(f"\ngpu_sft on {device_name(device)}"
          + (f", bf16 matmul peak {peak:.0f} TFLOP/s (measured)" if peak else ""))
    print(f"{'case':<24}{'engine':<17}{'tokens/s':>10}{'MFU':>7}{'alloc peak':>13}"
          f"{'device used':>13}{'loss 1st/last':>16}")
    for row in results:
        for engine, e in row["engines"].items():
            tps = e["tokens_per_second"]
            mfu = f"{100 * tps * row['fpt'] / (peak * 1e12):.1f}%" if peak else "-"
            loss = e["losses"]
            print(f"{row['case']:<24}{engine:<17}{tps:>10.0f}{mfu:>7}"
                  f"{gib(e.get('allocator_peak_bytes')):>13}{gib(e.get('device_used_bytes')):>13}"
                  f"{loss[0]:>8.3f}/{loss[-1]:<7.3f}")
        t = row["engines"]["trlc"]
        peers = {k: v for k, v in row["engines"].items() if k != "trlc"}
        if peers:
            best = max(peers, key=lambda k: peers[k]["tokens_per_second"])
            b = peers[best]
            line = f"  trlc / best peer ({best}): {t['tokens_per_second'] / b['tokens_per_second']:.2f}x tokens/s"
            if b.get("allocator_peak_bytes"):
                line += f", {t['allocator_peak_bytes'] / b['allocator_peak_bytes']:.2f}x allocator peak"
            if t.get("device_used_bytes") and b.get("device_used_bytes"):
                line += f", {t['device_used_bytes'] / b['device_used_bytes']:.2f}x device used"
            print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--trlc", default=os.path.join(ROOT, "build", "bin", "trlc"))
    p.add_argument("--out", default=os.path.join(HERE, "cases"))
    p.add_argument("--tiny", action="store_true")
    m = sub.add_parser("measure")
    m.add_argument("--trlc", default=os.path.join(ROOT, "build", "bin", "trlc"))
    m.add_argument("--cases", default=os.path.join(HERE, "cases"))
    m.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu_sft"))
    m.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    m.add_argument("--warmup", type=int, default=3)
    m.add_argument("--engines", type=lambda s: s.split(","), default=["trlc", "eager", "compile"],
                   help="comma-separated subset of trlc,eager,compile (the peers need trlc's "
                        "initial weights, so trlc always runs)")
    m.add_argument("--timeout", type=float, default=300, help="seconds per engine and case")
    m.add_argument("--only", default="", help="the cases whose name contains this")
    c = sub.add_parser("peer")
    c.add_argument("--case", required=True)
    c.add_argument("--rows", required=True)
    c.add_argument("--init", required=True)
    c.add_argument("--device", default="cuda")
    c.add_argument("--warmup", type=int, default=3)
    c.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    {"prepare": prepare, "measure": measure, "peer": peer_child}[args.cmd](args)


if __name__ == "__main__":
    main()

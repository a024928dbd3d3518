#!/usr/bin/env python3
"""trlc's generation engine against a full forward pass in PyTorch.

For a 2-layer llama (grouped-query attention) and a 2-layer gpt2, trains
one step (so the weights are not the initial ones), then completes prompts
of 1 to 9 tokens greedily with `trlc generate` (several prompt lengths in
one batch, the last batch partly empty). The reference (float64, each
prompt alone, no cache) recomputes the whole sequence and checks that
every generated token is the argmax of the full forward's logits at its
position (a near-tie within 1e-4 is allowed either way), that a row stops
at EOS, and that the decode step's KV cache gives what recomputation gives.
Then sampling: the same seed gives the same completions, another seed
others.

Exit code 77 (skipped) when torch cannot be imported.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

try:
    import torch
except ImportError:
    print("SKIPPED: PyTorch is not installed (apt install python3-torch)")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_reference as ref  # noqa: E402  (the reference models)

torch.set_default_dtype(torch.float64)

EOS = 2
VOCAB = 40


def recipe(case, data, out_dir):
    text = ref.recipe_text(case, data, out_dir, 4, 1)
    text = text.replace("max_steps = 10", "max_steps = 1")
    # Generation is compiled with an eval set; EOS ends a completion.
    text = text.replace("[data]\n", f'[data]\neval = "{data}"\n', 1)
    text = text.replace("initializer_range = 0.2", f"initializer_range = 0.3\neos_token_id = {EOS}")
    return text


def generate(trlc, artifact, model, prompts_file, *extra):
    cmd = [trlc, "generate", artifact, "--model", model, "--prompts", prompts_file,
           "--threads", "2", *extra]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout}{res.stderr}")
    return [json.loads(l) for l in res.stdout.splitlines()]


def run_case(trlc, case, tmp, failures):
    family, _ = ref.CASES[case]
    rng = random.Random(case)
    rows = ref.make_rows(8, VOCAB, 12, rng)
    data = os.path.join(tmp, case + ".jsonl")
    with open(data, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    rec = os.path.join(tmp, case + ".toml")
    out_dir = os.path.join(tmp, case + "-run")
    with open(rec, "w") as f:
        f.write(recipe(case, data, out_dir))
    artifact = os.path.join(tmp, case + ".trlc")
    res = subprocess.run([trlc, "train", rec, "-o", artifact, "--threads", "1", "--quiet"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        failures.append(f"{case}: trlc train failed:\n{res.stdout}{res.stderr}")
        return
    prompts = [[rng.randrange(3, VOCAB) for _ in range(n)] for n in (1, 5, 9, 3, 7, 2)]
    pfile = os.path.join(tmp, case + "-prompts.jsonl")
    with open(pfile, "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt_ids": p}) + "\n")
    got = generate(trlc, artifact, out_dir, pfile, "--max-new-tokens", "8")
    if len(got) != len(prompts):
        failures.append(f"{case}: {len(got)} completions for {len(prompts)} prompts")
        return

    params = ref.read_safetensors(os.path.join(out_dir, "model.safetensors"))
    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    logits_fn = ref.gpt2_logits if family == "gpt2" else ref.llama_logits
    seq_bound = 12
    checked = ties = 0
    for p, g in zip(prompts, got):
        comp = g["completion_ids"]
        full = p + comp
        # Stops: EOS only last, else 8 new tokens or the sequence bound.
        if EOS in comp[:-1]:
            failures.append(f"{case}: a completion goes on after EOS: {comp}")
        stopped = (comp and comp[-1] == EOS) or len(comp) == 8 or len(full) == seq_bound
        if not stopped or g["finished"] != bool(comp and comp[-1] == EOS):
            failures.append(f"{case}: completion {comp} of prompt {p} stopped wrongly "
                            f"(finished={g['finished']})")
        n = len(full)
        ids = torch.tensor([full])
        with torch.no_grad():
            logits = logits_fn(params, cfg, ids, torch.arange(n)[None], torch.ones(1, n,
                                                                          dtype=torch.int64))
        for i, tok in enumerate(comp):
            row = logits[0, len(p) - 1 + i]
            best = int(row.argmax())
            checked += 1
            if best != tok:
                if row[best] - row[tok] < 1e-4:
                    ties += 1
                    continue
                failures.append(f"{case}: prompt {p}: token {i} is {tok}, the full forward's "
                                f"argmax is {best} (logits {row[tok]:.6f} vs {row[best]:.6f})")
                break
    print(f"{case}: {checked} generated tokens equal the full forward's argmax"
          f" ({ties} near-ties)")

    # EOS: make a token the greedy completions produce the end of sequence;
    # each row must stop right after its first occurrence.
    longest = max(got, key=lambda g: len(g["completion_ids"]))["completion_ids"]
    stop = longest[len(longest) // 2]
    cut = generate(trlc, artifact, out_dir, pfile, "--max-new-tokens", "8",
                   "--eos-token-id", str(stop))
    for g, c in zip(got, cut):
        comp = g["completion_ids"]
        want = comp[:comp.index(stop) + 1] if stop in comp else comp
        if c["completion_ids"] != want or c["finished"] != (stop in comp):
            failures.append(f"{case}: with EOS {stop}, {comp} became {c['completion_ids']} "
                            f"(finished={c['finished']}), expected {want}")
    print(f"{case}: rows stop at EOS {stop}")

    a = generate(trlc, artifact, out_dir, pfile, "--max-new-tokens", "8", "--sample",
                 "--seed", "11", "--temperature", "1.5", "--top-k", "20", "--top-p", "0.95")
    b = generate(trlc, artifact, out_dir, pfile, "--max-new-tokens", "8", "--sample",
                 "--seed", "11", "--temperature", "1.5", "--top-k", "20", "--top-p", "0.95")
    c = generate(trlc, artifact, out_dir, pfile, "--max-new-tokens", "8", "--sample",
                 "--seed", "12", "--temperature", "1.5", "--top-k", "20", "--top-p", "0.95")
    if a != b:
        failures.append(f"{case}: the same seed sampled different completions")
    if a == c:
        failures.append(f"{case}: seeds 11 and 12 sampled the same completions")
    print(f"{case}: sampling reproducible by seed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trlc", required=True)
    args = ap.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in ("llama-gqa-tied", "gpt2"):
            run_case(args.trlc, case, tmp, failures)
    if failures:
        print("\nFAILED:\n" + "\n".join(failures))
        sys.exit(1)
    print("all generation checks passed")


if __name__ == "__main__":
    main()

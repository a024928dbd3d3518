#!/usr/bin/env python3
"""Reward models against a PyTorch reference.

Builds a tiny sequence-classification checkpoint in the Hugging Face layout
(LlamaForSequenceClassification: the base model's weights plus score.weight
[1, hidden], one label, its own random weights and shapes, the policy's
vocabulary), then trains one online DPO step that ranks its pairs with it
(TRLC_DUMP_GRPO_BATCH writes the pairs and their scores). The reference
(float64) scores each completion as transformers does: the model's final
hidden states at the last token of prompt + completion (the completion
without its special tokens, as TRL re-tokenizes the decoded text; for PPO
through its EOS, as TRL's PPOTrainer scores the response ids), times
score.weight. Compares every score (1e-5, relative to max(1, |score|)), the
ranking, and checks that the GRPO metric rewards/NAME/mean of the same
model matches the mean of its scores (1e-5). Then trains the same
checkpoint one step as a reward model (method = "reward", fp32) and checks
its loss, gradients, accuracy and margin against TRL's RewardTrainer
formulas.

Exit code 77 (skipped) when torch cannot be imported.
"""
import argparse
import json
import os
import struct
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
SPECIAL = {0, 1, 2}  # pad, bos, eos of the policy's config

RM_CONFIG = {
    "architectures": ["LlamaForSequenceClassification"], "model_type": "llama",
    "hidden_size": 24, "intermediate_size": 40, "num_hidden_layers": 2,
    "num_attention_heads": 3, "num_key_value_heads": 1, "vocab_size": 32,
    "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
    "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def build_reward_model(path):
    os.makedirs(path, exist_ok=True)
    c = RM_CONFIG
    h, i, d = c["hidden_size"], c["intermediate_size"], c["hidden_size"] // c["num_attention_heads"]
    g = torch.Generator().manual_seed(11)

    def rnd(*shape, scale=0.3):
        return torch.randn(*shape, generator=g) * scale

    w = {"model.embed_tokens.weight": rnd(c["vocab_size"], h, scale=1.0),
         "model.norm.weight": 1 + rnd(h, scale=0.1), "score.weight": rnd(1, h, scale=1.0)}
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w.update({p + "input_layernorm.weight": 1 + rnd(h, scale=0.1),
                  p + "post_attention_layernorm.weight": 1 + rnd(h, scale=0.1),
                  p + "self_attn.q_proj.weight": rnd(h, h), p + "self_attn.k_proj.weight": rnd(d, h),
                  p + "self_attn.v_proj.weight": rnd(d, h), p + "self_attn.o_proj.weight": rnd(h, h),
                  p + "mlp.gate_proj.weight": rnd(i, h), p + "mlp.up_proj.weight": rnd(i, h),
                  p + "mlp.down_proj.weight": rnd(h, i)})
    write_safetensors(os.path.join(path, "model.safetensors"), w)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(c, f)
    return {k: v.to(torch.float32).to(torch.float64) for k, v in w.items()}


def reference_score(w, ids):
    """transformers' score: the head over the last token's final hidden state."""
    p = dict(w)
    p["lm_head.weight"] = w["score.weight"]
    x = torch.tensor([ids])
    pos = torch.arange(len(ids))[None]
    mask = torch.ones_like(x)
    return ref.llama_logits(p, RM_CONFIG, x, pos, mask)[0, -1, 0].item()


POLICY = """{model}[data]
train = "{root}/recipes/data/arith-grpo.jsonl"
max_prompt_length = 8
max_completion_length = 6
[train]
learning_rate = 1e-3
per_device_train_batch_size = 8
gradient_accumulation_steps = 2
max_steps = 1
[output]
output_dir = "{out}"
logging_steps = 1
"""


def train(trlc, tmp, name, method, table):
    """Trains one step of `method` with [`method`] `table`; returns the
    batch it dumped (TRLC_DUMP_GRPO_BATCH) and its last metrics row."""
    rec = os.path.join(tmp, name + ".toml")
    with open(rec, "w") as f:
        f.write(f'method = "{method}"\n' + POLICY.format(model=ref.tiny_llama(2), root=ROOT, out=os.path.join(tmp, name)) +
                f"[{method}]\n{table}")
    dump = os.path.join(tmp, name + ".json")
    res = subprocess.run([trlc, "train", rec, "-o", os.path.join(tmp, name + ".trlc"), "--threads", "1",
                          "--quiet"], capture_output=True, text=True,
                         env=dict(os.environ, TRLC_DUMP_GRPO_BATCH=dump))
    if res.returncode != 0:
        print(f"trlc failed:\n{res.stdout}{res.stderr}")
        sys.exit(1)
    return json.load(open(dump)), ref.last_metrics(os.path.join(tmp, name))


VOCAB = {c: i for i, c in enumerate(["<pad>", "<s>", "</s>"] + list("0123456789+=-"))}

REWARD = """method = "reward"
[model]
path = "{rm}"
tokenizer = "{root}/recipes/data/arith-tokenizer"
dtype = "fp32"
[data]
train = "{data}"
max_length = 16
[train]
learning_rate = 1e-3
per_device_train_batch_size = 4
gradient_accumulation_steps = 2
max_steps = 1
[output]
output_dir = "{out}"
logging_steps = 1
"""


def reward_training(trlc, tmp, rm, failures):
    """TRL's RewardTrainer loss, -log sigmoid(score(chosen) - score(rejected))
    averaged over the pairs (the two micro-batches' means averaged), each
    score read at the last token (the EOS TRL appends); its gradients for
    every tensor, and the logged accuracy and margin."""
    with open(os.path.join(ROOT, "recipes/data/arith-rm.jsonl")) as f:
        pairs = [json.loads(line) for line in f][:8]
    data = os.path.join(tmp, "pairs.jsonl")
    with open(data, "w") as f:
        for p in pairs:
            f.write(json.dumps(p) + "\n")
    out = os.path.join(tmp, "rm-run")
    rec = os.path.join(tmp, "rm-run.toml")
    with open(rec, "w") as f:
        f.write(REWARD.format(rm=rm, root=ROOT, data=data, out=out))
    init, grads = os.path.join(tmp, "rm-init.safetensors"), os.path.join(tmp, "rm-grad.safetensors")
    res = subprocess.run([trlc, "train", rec, "-o", os.path.join(tmp, "rm-run.trlc"), "--threads", "1",
                          "--quiet", "--dump-initial", init, "--dump-gradients", grads],
                         capture_output=True, text=True)
    if res.returncode != 0:
        failures.append(f"reward modelling: trlc failed:\n{res.stdout}{res.stderr}")
        return
    params = {k: v.clone().requires_grad_(True) for k, v in ref.read_safetensors(init).items()}

    def score(text):
        ids = [1] + [VOCAB[c] for c in text] + [2]
        p = dict(params)
        p["lm_head.weight"] = params["score.weight"]
        x = torch.tensor([ids])
        return ref.llama_logits(p, RM_CONFIG, x, torch.arange(len(ids))[None], torch.ones_like(x))[0, -1, 0]

    chosen = torch.stack([score(p["prompt"] + p["chosen"]) for p in pairs])
    rejected = torch.stack([score(p["prompt"] + p["rejected"]) for p in pairs])
    loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
    loss.backward()
    m = ref.last_metrics(out)
    r = abs(m["loss"] - loss.item()) / abs(loss.item())
    acc = (chosen > rejected).double().mean().item()
    margin = (chosen - rejected).mean().item()
    print(f"reward modelling: loss trlc {m['loss']:.8f} torch {loss.item():.8f} rel {r:.2e}; "
          f"accuracy {m['accuracy']} ({acc}), margin {m['margin']:.6f} ({margin:.6f})")
    if r > 1e-5:
        failures.append(f"reward modelling's loss differs by {r:.2e} relative")
    if m["accuracy"] != acc or abs(m["margin"] - margin) > 1e-5 * max(1.0, abs(margin)):
        failures.append("reward modelling's accuracy or margin differs from the reference")
    got = ref.read_safetensors(grads)
    if set(got) != set(params):
        failures.append(f"reward modelling's gradient names differ: {sorted(set(got) ^ set(params))}")
        return
    worst = max((ref.rel(got[k], p.grad), k) for k, p in params.items())
    print(f"reward modelling: worst gradient rel error {worst[0]:.2e} ({worst[1]})")
    if worst[0] > 1e-5:
        failures.append(f"reward modelling's gradient of {worst[1]} differs by {worst[0]:.2e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trlc", required=True)
    args = ap.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        rm = os.path.join(tmp, "tiny-rm")
        w = build_reward_model(rm)

        # Online DPO ranks its pairs with the model.
        batch, _ = train(args.trlc, tmp, "odpo", "online_dpo",
                         f'temperature = 1.0\nreward_funcs = ["model:{rm}"]\n')
        worst, scores, misordered = 0.0, [], 0
        for rows in batch["micro_batches"]:
            b = len(rows) // 2
            for r in rows:
                prompt = [t for t, m in zip(r["input_ids"], r["completion_mask"]) if not m]
                completion = [t for t, m in zip(r["input_ids"], r["completion_mask"]) if m]
                want = reference_score(w, prompt + [t for t in completion if t not in SPECIAL])
                scores.append(want)
                worst = max(worst, abs(want - r["score"]) / max(1.0, abs(want)))
            misordered += sum(rows[k]["score"] < rows[b + k]["score"] for k in range(b))
        print(f"online DPO: {len(scores)} scores in {min(scores):.3f}..{max(scores):.3f} within "
              f"{worst:.1e} of the reference; {misordered} pairs misordered")
        if worst > 1e-5:
            failures.append(f"reward model scores differ by {worst:.2e}")
        if misordered:
            failures.append(f"{misordered} pairs put the lower score first")
        if max(scores) - min(scores) < 0.1:
            failures.append("the scores barely vary: the test would not see a wrong position")

        # GRPO: the model's metric is the mean of its scores over the batch.
        batch, metrics = train(args.trlc, tmp, "grpo", "grpo",
                               f'num_generations = 4\nreward_funcs = ["model:{rm}"]\n')
        want = []
        for rows in batch["micro_batches"]:
            for r in rows:
                n = len(r["input_ids"]) - len(r["old_logps"])
                prompt, completion = r["input_ids"][:n], r["input_ids"][n:]
                want.append(reference_score(w, prompt + [t for t in completion if t not in SPECIAL]))
        mean = sum(want) / len(want)
        got = metrics.get("rewards/tiny-rm/mean")
        print(f"GRPO: rewards/tiny-rm/mean {got} against the reference's {mean:.6f}")
        if got is None or abs(got - mean) > 1e-5 * max(1.0, abs(mean)):
            failures.append(f"GRPO's rewards/tiny-rm/mean {got} is not the scores' mean {mean}")
        # PPO scores prompt + completion through its EOS (TRL's PPOTrainer
        # scores the truncated response's ids, EOS kept).
        batch, _ = train(args.trlc, tmp, "ppo", "ppo",
                         f'temperature = 1.0\nreward_funcs = ["model:{rm}"]\n')
        worst, with_eos, n = 0.0, 0, 0
        for rows in batch["micro_batches"]:
            for r in rows:
                ids, p = r["input_ids"], r["prompt_length"]
                completion = []
                for t in ids[p:]:
                    if t == 0:  # padding
                        continue
                    completion.append(t)
                    if t == 2:
                        break
                with_eos += 2 in completion
                want = reference_score(w, ids[:p] + completion)
                worst = max(worst, abs(want - r["score"]) / max(1.0, abs(want)))
                n += 1
        print(f"PPO: {n} scores ({with_eos} completions with EOS) within {worst:.1e} of the reference")
        if worst > 1e-5:
            failures.append(f"PPO's reward model scores differ by {worst:.2e}")
        if not with_eos:
            failures.append("no PPO completion ended with EOS: the test would not see it dropped")

        # Reward modelling from the same checkpoint: one step over 8 pairs
        # (2 micro-batches of 4), fp32.
        reward_training(args.trlc, tmp, rm, failures)
    if failures:
        print("\nFAILED:\n" + "\n".join(failures))
        sys.exit(1)
    print("reward model scores, and reward modelling's loss and gradients, match")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes a tiny LlamaForSequenceClassification directory (config.json and
model.safetensors with seeded random weights, score.weight [LABELS, 24])
for the reward-model tests. Standard library only.

    make_reward_model.py DIR [LABELS [VOCAB]]
"""
import json
import os
import random
import struct
import sys


def main():
    out = sys.argv[1]
    labels = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    vocab = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    h, i, heads, kv, layers = 24, 40, 3, 1, 2
    d = h // heads
    rng = random.Random(11)
    shapes = {"model.embed_tokens.weight": [vocab, h], "model.norm.weight": [h],
              "score.weight": [labels, h]}
    for l in range(layers):
        p = f"model.layers.{l}."
        shapes.update({p + "input_layernorm.weight": [h], p + "post_attention_layernorm.weight": [h],
                       p + "self_attn.q_proj.weight": [h, h], p + "self_attn.k_proj.weight": [kv * d, h],
                       p + "self_attn.v_proj.weight": [kv * d, h], p + "self_attn.o_proj.weight": [h, h],
                       p + "mlp.gate_proj.weight": [i, h], p + "mlp.up_proj.weight": [i, h],
                       p + "mlp.down_proj.weight": [h, i]})
    header, blobs, offset = {}, [], 0
    for name, shape in shapes.items():
        n = 1
        for s in shape:
            n *= s
        norm = name.endswith("norm.weight")
        values = [1.0 + rng.gauss(0, 0.1) if norm else rng.gauss(0, 0.5) for _ in range(n)]
        data = struct.pack(f"<{n}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    os.makedirs(out, exist_ok=True)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    config = {"architectures": ["LlamaForSequenceClassification"], "model_type": "llama",
              "hidden_size": h, "intermediate_size": i, "num_hidden_layers": layers,
              "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab,
              "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
              "tie_word_embeddings": False, "pad_token_id": 0,
              "id2label": {str(k): f"LABEL_{k}" for k in range(labels)}}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


if __name__ == "__main__":
    main()

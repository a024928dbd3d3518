#!/usr/bin/env python3
"""Checks a merged model (trlc merge) against its base and adapter: every
adapted weight is W + scale x B A (scale lora_alpha / r), every other
tensor the base's. Standard library only.

    check_merge.py BASE_DIR ADAPTER_DIR MERGED_DIR
"""
import json
import sys

from compare_runs import read_safetensors


def main():
    base_dir, adapter_dir, merged_dir = sys.argv[1:4]
    base = read_safetensors(f"{base_dir}/model.safetensors")
    lora = read_safetensors(f"{adapter_dir}/adapter_model.safetensors")
    merged = read_safetensors(f"{merged_dir}/model.safetensors")
    cfg = json.load(open(f"{adapter_dir}/adapter_config.json"))
    scale = cfg["lora_alpha"] / cfg["r"]
    r = cfg["r"]
    adapted, worst = 0, 0.0
    for name, w in base.items():
        key = "base_model.model." + name[:-len(".weight")]
        if key + ".lora_A.weight" not in lora:
            if merged[name] != w:
                print(f"{name} changed, but no adapter targets it")
                return 1
            continue
        a, b = lora[key + ".lora_A.weight"], lora[key + ".lora_B.weight"]
        inn = len(a) // r
        out = len(b) // r
        for i in range(out):
            for j in range(inn):
                want = w[i * inn + j] + scale * sum(b[i * r + k] * a[k * inn + j] for k in range(r))
                worst = max(worst, abs(merged[name][i * inn + j] - want))
        adapted += 1
    print(f"{adapted} weights merged, worst error {worst:.1e}")
    print("MERGED" if adapted and worst < 1e-5 else "WRONG")
    return 0


if __name__ == "__main__":
    sys.exit(main())

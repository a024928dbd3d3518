#!/usr/bin/env python3
"""Checks that a run started from a PEFT adapter ([peft] adapter): the
adapters of its --dump-initial equal the adapter's tensors. Standard
library only.

    check_adapter_init.py INITIAL.safetensors ADAPTER_DIR
"""
import sys

from compare_runs import read_safetensors


def main():
    initial = read_safetensors(sys.argv[1])
    adapter = read_safetensors(f"{sys.argv[2]}/adapter_model.safetensors")
    mine = {"base_model.model." + k: v for k, v in initial.items() if ".lora_" in k}
    if set(mine) != set(adapter):
        print(f"different adapters: {sorted(set(mine) ^ set(adapter))[:4]}")
        return 1
    same = all(mine[k] == adapter[k] for k in adapter)
    print(f"{len(adapter)} adapters", "SAME" if same else "DIFFER")
    return 0


if __name__ == "__main__":
    sys.exit(main())

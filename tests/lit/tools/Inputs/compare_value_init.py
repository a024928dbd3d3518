#!/usr/bin/env python3
"""Checks that a PPO run's initial value model (the "value_model." tensors
of --dump-initial) equals a reward model's checkpoint, tensor by tensor.
Standard library only.

    compare_value_init.py INITIAL.safetensors REWARD_MODEL.safetensors
"""
import json
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return {k: data[v["data_offsets"][0]:v["data_offsets"][1]]
            for k, v in header.items() if k != "__metadata__"}


def main():
    initial, rm = read(sys.argv[1]), read(sys.argv[2])
    values = {k[len("value_model."):]: v for k, v in initial.items() if k.startswith("value_model.")}
    if set(values) != set(rm):
        print(f"the value model's tensors {sorted(set(values) ^ set(rm))} differ from the reward model's")
        return 1
    differ = [k for k in rm if values[k] != rm[k]]
    if differ:
        print(f"{len(differ)} tensors differ, e.g. {differ[0]}")
        return 1
    print(f"{len(rm)} value-model tensors equal the reward model's")
    return 0


if __name__ == "__main__":
    sys.exit(main())

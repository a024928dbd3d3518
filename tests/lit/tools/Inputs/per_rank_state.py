#!/usr/bin/env python3
"""Reads `trlc inspect --memory --json` reports of one recipe compiled for
1..N ranks with ZeRO-3 and checks that the planned model state per rank is
the one-process state divided by the world size (up to the padding of each
flat group: at most 16 bytes per element of padding per group).

    per_rank_state.py REPORT_1 REPORT_2 ...   (world sizes 1, 2, ...)
"""
import json
import sys


def main():
    reports = [json.load(open(p))["data_parallel"] for p in sys.argv[1:]]
    one = reports[0]["model_state_bytes_one_process"]
    ok = True
    for r in reports:
        n = r["world_size"]
        per_rank = r["model_state_bytes_per_rank"]
        ideal = one / n
        ok &= r["model_state_bytes_one_process"] == one and abs(per_rank - ideal) / ideal < 0.01
        print(f"world {n}: {per_rank} bytes per rank, {per_rank / one:.4f} of one process "
              f"(1/{n} = {1 / n:.4f})")
    print("SCALES" if ok else "DOES NOT SCALE")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

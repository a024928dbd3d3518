#!/usr/bin/env python3
"""Checks that the device memory a run measured matches its plan: the last
metrics row's runtime_allocated_bytes (cudaMemGetInfo around each
allocation) must be the planned bytes (arena + kernel scratch) plus the
cuBLASLt workspace, give or take the driver's 2 MiB pages per allocation
(a small allocation may land in a page the driver already held).

    device_peak.py RUN_DIR
"""
import json
import sys

WORKSPACE = 32 << 20
PAGE = 2 << 20
SLACK = 8 << 20


def main():
    with open(f"{sys.argv[1]}/metrics.jsonl") as f:
        rows = [json.loads(line) for line in f if "planned_memory_bytes" in line]
    planned = rows[-1]["planned_memory_bytes"]
    measured = rows[-1]["runtime_allocated_bytes"]
    extra = measured - planned - WORKSPACE
    print(f"planned {planned} bytes + workspace {WORKSPACE}, measured {measured} "
          f"({extra:+d} bytes)")
    return 0 if -PAGE <= extra <= SLACK else 1


if __name__ == "__main__":
    sys.exit(main())

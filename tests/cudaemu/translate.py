#!/usr/bin/env python3
"""Rewrites a CUDA kernel file into C++ for the host emulation (emu.h).

    translate.py IN.cu OUT.cpp

kernel<<<grid, block[, smem[, stream]]>>>(args) becomes
::emu::launch(kernel, ::emu::Config(grid, block, ...))(args), and
`extern __shared__ [__align__(n)] T name[];` a pointer to the launch's
dynamic shared memory. Nothing else changes: the rest is the kernels' own
source.
"""
import re
import sys

src = open(sys.argv[1]).read()
launch = re.compile(r"([A-Za-z_]\w*(?:<[^<>;]*>)?)\s*<<<(.*?)>>>\s*\(", re.S)
src = launch.sub(lambda m: "::emu::launch(%s, ::emu::Config(%s))(" % (m.group(1), m.group(2)), src)
shared = re.compile(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([\w ]+?)\s+(\w+)\[\];")
src = shared.sub(lambda m: "%s *%s = static_cast<%s *>(::emu::dynamicShared());" % (m.group(1), m.group(2), m.group(1)), src)
out = '#line 1 "%s"\n' % sys.argv[1] + src
open(sys.argv[2], "w").write(out)

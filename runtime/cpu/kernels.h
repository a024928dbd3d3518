//===- kernels.h - the CPU backend's kernels --------------------*- C++ -*-===//
//
// One function template per kernel of trlc/Kernels.def, named by its
// `impl` column and defined in the file of its op family (elementwise.cpp,
// norm.cpp, attention.cpp, ...), instantiated for float and double. The
// backend's dispatch table (CpuBackend.cpp) is generated from the same
// list, so a kernel without a CPU implementation does not link.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_CPU_KERNELS_H
#define TRLC_RUNTIME_CPU_KERNELS_H

#include "trlc/Backend.h"

namespace trlc::cpu {

#define TRLC_KERNEL(Id, name, impl, minIn, maxIn, minOut, maxOut)              \
  template <typename T> void impl(const KernelArgs &a);
#include "trlc/Kernels.def"

} // namespace trlc::cpu

#endif // TRLC_RUNTIME_CPU_KERNELS_H

//===- Kernels.h - the plan's kernels: ids, contracts, scratch --*- C++ -*-===//
//
// `Kernel` is generated from trlc/Kernels.def, the one list of kernels. A
// kernel call of a plan names one (plan.json keeps the name); the artifact
// reader checks each call's arity against the table, and the executor
// hands the id to a backend, whose dispatch table is generated from the
// same list.
//
// scratchBytes() is the one answer to "how much workspace does this call
// need": the compiler (planned bytes, the budget search), `trlc inspect`
// and both backends ask it.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_KERNELS_H
#define TRLC_RUNTIME_KERNELS_H

#include <cstdint>
#include <optional>
#include <string_view>

namespace trlc {

namespace artifact {
struct KernelCall;
struct Plan;
} // namespace artifact

enum class Kernel : uint8_t {
#define TRLC_KERNEL(Id, name, impl, minIn, maxIn, minOut, maxOut) Id,
#define TRLC_COLLECTIVE(Id, name, minIn, maxIn, minOut, maxOut) Id,
#include "trlc/Kernels.def"
};

/// Kernels a backend runs come first in the enum; the collectives follow.
inline constexpr int kBackendKernels = 0
#define TRLC_KERNEL(Id, name, impl, minIn, maxIn, minOut, maxOut) +1
#include "trlc/Kernels.def"
    ;
inline constexpr int kKernels = kBackendKernels
#define TRLC_KERNEL(Id, name, impl, minIn, maxIn, minOut, maxOut)
#define TRLC_COLLECTIVE(Id, name, minIn, maxIn, minOut, maxOut) +1
#include "trlc/Kernels.def"
    ;

/// The name in plan.json and of the `trl` op it lowers from.
const char *kernelName(Kernel kernel);
std::optional<Kernel> kernelByName(std::string_view name);

/// all_gather, reduce_scatter, all_reduce: run by the executor through
/// the communicator.
inline bool isCollective(Kernel kernel) {
  return static_cast<int>(kernel) >= kBackendKernels;
}

/// How many inputs and outputs a call has (max -1: any number).
struct Arity {
  int minIn, maxIn, minOut, maxOut;
};
Arity kernelArity(Kernel kernel);

/// Where a plan's calls run, as far as their workspace is concerned.
struct ScratchTarget {
  enum Device { Cpu, Cuda } device = Cpu;
  int threads = 1; // CPU: per-thread scratch
};

/// Workspace bytes of one call on `target`: the kernel's own scratch and,
/// on CUDA, the fp32 copies of bf16 operands its kernel does not read
/// itself. The compiler and `trlc inspect` price plans on {Cpu, 1}.
int64_t scratchBytes(const artifact::KernelCall &call,
                     const artifact::Plan &plan, const ScratchTarget &target);
/// The largest scratchBytes() of any call of the plan: what the executor
/// reserves once.
int64_t planScratchBytes(const artifact::Plan &plan,
                         const ScratchTarget &target);

} // namespace trlc

#endif // TRLC_RUNTIME_KERNELS_H

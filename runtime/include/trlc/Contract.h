//===- Contract.h - plan calls checked against their kernels ----*- C++ -*-===//
//
// The artifact reader's second half: once every tensor lies inside the
// arena, each call is checked against what its kernel assumes (ranks,
// dimensions, element types, attributes, aliasing), and each program's
// inputs and outputs against what the runtime writes and reads there. A
// plan that passes cannot make a kernel read or write outside a tensor.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_CONTRACT_H
#define TRLC_RUNTIME_CONTRACT_H

#include <string>

namespace trlc::artifact {

struct KernelCall;
struct Plan;
struct Program;

/// "" when `call` keeps its kernel's contract, else what it breaks.
std::string checkCall(const KernelCall &call, const Plan &plan);
/// "" when the program's named inputs and outputs have the shapes and
/// element types the runtime fills and reads, else what is wrong.
std::string checkProgramIo(const std::string &name, const Program &program, const Plan &plan);
/// "" when the generation programs (prefill, decode) agree with each other
/// and with what trlc/Generate.h writes and reads, else what is wrong.
std::string checkGeneration(const Plan &plan);

} // namespace trlc::artifact

#endif // TRLC_RUNTIME_CONTRACT_H

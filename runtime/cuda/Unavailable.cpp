//===- Unavailable.cpp - makeCudaBackend in a build without CUDA ----------===//

#include "trlc/Backend.h"

namespace trlc {

std::unique_ptr<Backend> makeCudaBackend(int) {
  throw KernelError(
      "--device cuda: this trlc was built without the CUDA backend (no CUDA "
      "toolkit at build time); rebuild where nvcc is on PATH, or run with "
      "--device cpu");
}

} // namespace trlc

//===- adamw.cpp - the optimizer step -------------------------------------===//
//
// Gradient norm (a deterministic sum in double), the LR schedule and
// AdamW, which clips the gradient by the global norm as
// torch.nn.utils.clip_grad_norm_ does; the schedule, the clipping factor
// and the update are shared with the CUDA kernels (trlc/ScalarMath.h).
//
//===----------------------------------------------------------------------===//

#include "cpu/common.h"

namespace trlc::cpu {

template <typename T> void gradNorm(const KernelArgs &a) {
  double total = 0;
  for (const TensorRef &g : a.in)
    total += parallelSum(g.numel(), [&](int64_t i) {
      double v = g.as<T>()[i];
      return v * v;
    });
  a.out[0].as<T>()[0] = static_cast<T>(attrB(a, "squared") ? total : std::sqrt(total));
}

template <typename T> void lrSchedule(const KernelArgs &a) {
  double f = lrFactor(attrLrSchedule(a), static_cast<double>(index(a.in[0], 0)),
                      static_cast<double>(attrI(a, "warmup_steps")),
                      static_cast<double>(attrI(a, "total_steps")));
  a.out[0].as<T>()[0] = static_cast<T>(attrF(a, "base_lr") * f);
}

template <typename T> void adamw(const KernelArgs &a) {
  const T *p = a.in[0].as<T>(), *g = a.in[1].as<T>(), *m = a.in[2].as<T>(),
          *v = a.in[3].as<T>();
  // With the global gradient norm: clipped by it (torch's clip_grad_norm_).
  T scale = a.in.size() > 6 && a.in[6]
                ? clipCoefficient(a.in[6].as<T>()[0], static_cast<T>(attrF(a, "max_grad_norm")))
                : T(1);
  AdamWStep<T> s = adamwStep(attrAdamW(a), a.in[4].as<T>()[0],
                             static_cast<double>(index(a.in[5], 0)), scale);
  T *po = a.out[0].as<T>(), *mo = a.out[1].as<T>(), *vo = a.out[2].as<T>();
  int64_t n = a.out[0].numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    adamwUpdate(s, p[i], g[i], m[i], v[i], po[i], mo[i], vo[i]);
}

TRLC_CPU_KERNEL(gradNorm)
TRLC_CPU_KERNEL(lrSchedule)
TRLC_CPU_KERNEL(adamw)

} // namespace trlc::cpu

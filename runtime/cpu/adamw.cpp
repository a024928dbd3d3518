//===- adamw.cpp - the optimizer step -------------------------------------===//
//
// Gradient norm (a deterministic sum in double), clipping as
// torch.nn.utils.clip_grad_norm_, the LR schedule and AdamW, with the
// schedule and the update shared with the CUDA kernels (trlc/ScalarMath.h).
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

template <typename T> void clipGrad(const KernelArgs &a) {
  const T *g = a.in[0].as<T>();
  T norm = a.in[1].as<T>()[0];
  // torch.nn.utils.clip_grad_norm_: scale by min(1, max / (norm + 1e-6)).
  T coef = std::min(T(1), static_cast<T>(attrF(a, "max_norm")) / (norm + T(1e-6)));
  T *y = a.out[0].as<T>();
  int64_t n = a.out[0].numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    y[i] = g[i] * coef;
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
  AdamWStep<T> s = adamwStep(attrAdamW(a), a.in[4].as<T>()[0],
                             static_cast<double>(index(a.in[5], 0)));
  T *po = a.out[0].as<T>(), *mo = a.out[1].as<T>(), *vo = a.out[2].as<T>();
  int64_t n = a.out[0].numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    adamwUpdate(s, p[i], g[i], m[i], v[i], po[i], mo[i], vo[i]);
}

TRLC_CPU_KERNEL(gradNorm)
TRLC_CPU_KERNEL(clipGrad)
TRLC_CPU_KERNEL(lrSchedule)
TRLC_CPU_KERNEL(adamw)

} // namespace trlc::cpu

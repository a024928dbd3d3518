//===- rope.cpp - rotary position embeddings ------------------------------===//
//
// Hugging Face's rotate_half convention, Llama-3 frequency scaling; the
// inverse rotation (attribute `inverse`) is the gradient.
//
//===----------------------------------------------------------------------===//

#include "cpu/common.h"

namespace trlc::cpu {

namespace {

/// Inverse frequencies of the rotate-half convention, with Llama-3 scaling.
std::vector<double> inverseFrequencies(const KernelArgs &a, int64_t d) {
  double theta = attrF(a, "theta");
  std::vector<double> inv(d / 2);
  for (int64_t i = 0; i < d / 2; ++i) {
    // transformers computes base ** (2i / d) in float32.
    float expo = static_cast<float>(2 * i) / static_cast<float>(d);
    inv[i] = 1.0f / std::pow(static_cast<float>(theta), expo);
  }
  if (a.attrs->contains("scaling")) {
    const auto &s = a.attrs->at("scaling");
    double factor = s.at("factor"), low = s.at("low_freq_factor"),
           high = s.at("high_freq_factor"),
           old = s.at("original_max_position_embeddings").get<double>();
    double lowWavelen = old / low, highWavelen = old / high;
    for (double &f : inv) {
      double wavelen = 2 * M_PI / f;
      if (wavelen < highWavelen)
        continue;
      if (wavelen > lowWavelen) {
        f /= factor;
        continue;
      }
      double smooth = (old / wavelen - low) / (high - low);
      f = (1 - smooth) * f / factor + smooth * f;
    }
  }
  return inv;
}

} // namespace

template <typename T> void rope(const KernelArgs &a) {
  const TensorRef &x = a.in[0], &pos = a.in[1];
  int64_t d = x.dim(-1), heads = x.dim(-2), tokens = pos.numel();
  std::vector<double> inv = inverseFrequencies(a, d);
  double sign = attrB(a, "inverse") ? -1 : 1;
  const T *in = x.as<T>();
  T *out = a.out[0].as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    double p = static_cast<double>(index(pos, t));
    for (int64_t i = 0; i < d / 2; ++i) {
      // transformers forms the angle and its cos/sin in float32.
      float angle = static_cast<float>(p) * static_cast<float>(inv[i]);
      T c = std::cos(angle), s = static_cast<T>(sign) * std::sin(angle);
      for (int64_t h = 0; h < heads; ++h) {
        const T *xr = in + (t * heads + h) * d;
        T *yr = out + (t * heads + h) * d;
        T x1 = xr[i], x2 = xr[i + d / 2];
        yr[i] = x1 * c - x2 * s;
        yr[i + d / 2] = x2 * c + x1 * s;
      }
    }
  }
}

TRLC_CPU_KERNEL(rope)

} // namespace trlc::cpu

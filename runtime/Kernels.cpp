//===- Kernels.cpp - the kernel table, arities and scratch sizes ----------===//

#include "trlc/Kernels.h"
#include "trlc/Artifact.h"
#include "trlc/Backend.h"

#ifdef TRLC_HAVE_CUDA
#include "cuda/kernels.h"
#endif

#include <algorithm>
#include <stdexcept>
#include <string>

namespace trlc {

namespace {

struct Row {
  const char *name;
  Arity arity;
};

constexpr Row kTable[] = {
#define TRLC_KERNEL(Id, name, impl, minIn, maxIn, minOut, maxOut)              \
  {#name, {minIn, maxIn, minOut, maxOut}},
#define TRLC_COLLECTIVE(Id, name, minIn, maxIn, minOut, maxOut)                \
  {#name, {minIn, maxIn, minOut, maxOut}},
#include "trlc/Kernels.def"
};
static_assert(std::size(kTable) == kKernels);

const Row &row(Kernel k) { return kTable[static_cast<int>(k)]; }

/// The fused lm_head kernels: 0 forward, 1 backward (which takes the
/// incoming gradient first, so its operands are one further).
std::optional<int> fusedHead(Kernel k) {
  switch (k) {
  case Kernel::FusedLinearCrossEntropy:
  case Kernel::FusedLinearLogProbs: return 0;
  case Kernel::FusedLinearCrossEntropyGrad:
  case Kernel::FusedLinearLogProbsGrad: return 1;
  default: return std::nullopt;
  }
}

/// The call's tensors as TensorRefs at stand-in addresses (distinct
/// buffers apart, views of one buffer together), for the rules that look
/// at a call's operands rather than a plan's indices.
struct Probe {
  KernelArgs args;
  Probe(const artifact::KernelCall &call, const artifact::Plan &plan) {
    auto ref = [&](int t) {
      if (t < 0)
        return TensorRef{};
      const artifact::TensorDesc &d = plan.tensors[t];
      auto at = static_cast<uintptr_t>(d.offset + 1) +
                (d.host ? (uintptr_t(1) << 62) : 0);
      return TensorRef{reinterpret_cast<void *>(at), &d};
    };
    for (int t : call.in)
      args.in.push_back(ref(t));
    for (int t : call.out)
      args.out.push_back(ref(t));
    args.attrs = &call.attrs;
  }
};

int64_t cpuScratch(const artifact::KernelCall &call, const artifact::Plan &plan,
                   int64_t threads) {
  auto shape = [&](int i) -> const std::vector<int64_t> & {
    return plan.tensors[call.in[i]].shape;
  };
  const int64_t e = 8; // room for f64
  switch (call.kernel) {
  case Kernel::RmsNormGrad:
    return threads * shape(1).back() * e;
  case Kernel::LayerNormGrad:
    return 2 * threads * shape(1).back() * e;
  case Kernel::Attention:
  case Kernel::AttentionGrad: {
    bool forward = call.kernel == Kernel::Attention;
    const auto &q = shape(forward ? 0 : 1);
    // varlen: documents of at most max_seqlen tokens (all tokens without it)
    int64_t len = q.size() == 4                    ? q[1]
                  : call.attrs.contains("max_seqlen") ? call.attrs["max_seqlen"].get<int64_t>()
                                                      : q[0];
    int64_t matrices = forward ? 1 : 2;
    return threads * (matrices * len * len + len) * e;
  }
  case Kernel::CachedAttention:  // one row of scores per thread
    return threads * shape(1)[1] * e;
  case Kernel::FusedLinearCrossEntropy:
  case Kernel::FusedLinearLogProbs:
  case Kernel::FusedLinearCrossEntropyGrad:
  case Kernel::FusedLinearLogProbsGrad: {
    int grad = *fusedHead(call.kernel);
    const auto &h = shape(grad);
    int64_t rows = 1;
    for (size_t i = 0; i + 1 < h.size(); ++i)
      rows *= h[i];
    int64_t chunk = std::min<int64_t>(call.attrs.at("chunk_size").get<int64_t>(), rows);
    return std::max<int64_t>(chunk, 1) * shape(grad + 1)[0] * e;
  }
  default:
    return 0;
  }
}

#ifdef TRLC_HAVE_CUDA
namespace cu = trlc::cuda;

int64_t cudaKernelScratch(const artifact::KernelCall &call,
                          const artifact::Plan &plan) {
  auto shape = [&](int i) -> const std::vector<int64_t> & {
    return plan.tensors[call.in[i]].shape;
  };
  auto rows = [&](int i) { return plan.tensors[call.in[i]].numel() / shape(i).back(); };
  switch (call.kernel) {
  case Kernel::Linear: {
    int64_t m = rows(0), k = shape(0).back(), n = shape(1)[0];
    return cu::align256(2 * m * k) + cu::align256(2 * n * k);
  }
  case Kernel::LinearGrad: {
    int64_t m = rows(1), k = shape(1).back(), n = shape(2)[0];
    return cu::align256(2 * m * n) + cu::align256(2 * n * k) + cu::align256(2 * m * k) +
           (call.out.size() > 2 ? cu::columnSumScratch(m, n) : 0);
  }
  case Kernel::EmbeddingGrad:
    return cu::embeddingGradScratch(plan.tensors[call.out[0]].shape[0],
                                    plan.tensors[call.in[1]].numel());
  case Kernel::RmsNormGrad:
  case Kernel::LayerNormGrad:
    return cu::normGradScratch(rows(1), shape(1).back(), call.kernel == Kernel::LayerNormGrad);
  case Kernel::AttentionGrad: {
    const auto &q = shape(1);
    return cu::attentionGradScratch(q.size() == 4 ? q[0] * q[1] : q[0], q[q.size() - 2]);
  }
  case Kernel::CachedAttention:
    return cu::cachedAttentionScratch(shape(0)[0], shape(0)[1], shape(0)[2], shape(1)[1]);
  case Kernel::CrossEntropy:
    return cu::lossScratch(rows(0));
  case Kernel::FusedLinearCrossEntropy:
  case Kernel::FusedLinearLogProbs:
  case Kernel::FusedLinearCrossEntropyGrad:
  case Kernel::FusedLinearLogProbsGrad: {
    int grad = *fusedHead(call.kernel);
    cu::FusedLinear f;
    f.hidden.bf16 = plan.tensors[call.in[grad]].dtype == artifact::DType::BF16;
    f.rows = rows(grad);
    f.h = shape(grad).back();
    f.vocab = shape(grad + 1)[0];
    f.chunk = std::max<int64_t>(1, std::min(call.attrs.at("chunk_size").get<int64_t>(), f.rows));
    return cu::fusedLinearScratch(f, grad);
  }
  case Kernel::GradNorm:
    return cu::gradNormScratch(static_cast<int>(call.in.size()));
  default:
    return 0;
  }
}
#endif

} // namespace

const char *kernelName(Kernel kernel) { return row(kernel).name; }

std::optional<Kernel> kernelByName(std::string_view name) {
  for (int k = 0; k < kKernels; ++k)
    if (name == kTable[k].name)
      return static_cast<Kernel>(k);
  return std::nullopt;
}

Arity kernelArity(Kernel kernel) { return row(kernel).arity; }

bool stagesBf16(Kernel kernel, const KernelArgs &args, ScratchTarget::Device device) {
  using artifact::DType;
  if (!hasTensorOf(args, DType::BF16))
    return false;
  if (device == ScratchTarget::Cpu)
    return !(kernel == Kernel::Copy && args.in[0].dtype() == args.out[0].dtype());
  // CUDA: byte moves, the products and the fused head (bf16 operands are
  // what cuBLASLt multiplies anyway), the norms' outputs, rope, the MLP
  // activations, and attention when its tensor-core kernels take the call
  // read and write bf16 themselves, for the operands in these masks.
  if (kernel == Kernel::Copy || kernel == Kernel::Split || kernel == Kernel::Concat)
    return false;
  unsigned inMask = 0, outMask = 0;
  switch (kernel) {
  case Kernel::Linear: inMask = 0b1, outMask = 0b1; break;
  case Kernel::LinearGrad: inMask = 0b10; break;
  case Kernel::Swiglu: inMask = 0b11, outMask = 0b1; break;
  case Kernel::SwigluGrad: inMask = 0b110; break;
  case Kernel::Gelu: inMask = 0b1, outMask = 0b1; break;
  case Kernel::GeluGrad: inMask = 0b10; break;
  case Kernel::Dropout: inMask = 0b1, outMask = 0b1; break;
  case Kernel::RmsNorm:
  case Kernel::LayerNorm: outMask = 0b1; break;
  case Kernel::Rope: inMask = 0b1, outMask = 0b1; break;
  case Kernel::Attention:
  case Kernel::AttentionGrad: {
    // The tensor-core kernels: q, k and v stored in bf16, a head
    // dimension they take.
    size_t q = kernel == Kernel::AttentionGrad ? 1 : 0;
    for (size_t i = q; i < q + 3; ++i)
      if (args.in[i].dtype() != DType::BF16)
        return true;
    int64_t d = args.in[q].dim(-1);
    if (d != 16 && d != 32 && d != 64 && d != 128)
      return true;
    inMask = kernel == Kernel::Attention ? 0b111 : 0b11111;
    outMask = kernel == Kernel::Attention ? 0b1 : 0;
    break;
  }
  case Kernel::FusedLinearCrossEntropy:
  case Kernel::FusedLinearLogProbs: inMask = 0b1; break;
  case Kernel::FusedLinearCrossEntropyGrad:
  case Kernel::FusedLinearLogProbsGrad: inMask = 0b10; break;
  default: return true;
  }
  for (size_t i = 0; i < args.in.size(); ++i)
    if (args.in[i] && args.in[i].dtype() == DType::BF16 && !(inMask >> i & 1))
      return true;
  for (size_t i = 0; i < args.out.size(); ++i)
    if (args.out[i].dtype() == DType::BF16 && !(outMask >> i & 1))
      return true;
  return false;
}

Bf16Staging::Bf16Staging(const KernelArgs &args, int64_t align) : align(align) {
  for (const auto *list : {&args.in, &args.out})
    for (const TensorRef &t : *list)
      if (t && t.dtype() == artifact::DType::BF16 && offsetOf(t.data) < 0) {
        buffers_.push_back({t.data, t.numel(), bytes_});
        bytes_ += (4 * t.numel() + align - 1) / align * align;
      }
}

int64_t Bf16Staging::offsetOf(const void *data) const {
  for (const Buffer &b : buffers_)
    if (b.data == data)
      return b.offset;
  return -1;
}

KernelArgs Bf16Staging::redirect(const KernelArgs &args, char *base,
                                 std::vector<artifact::TensorDesc> &descs) const {
  descs.clear();
  descs.reserve(args.in.size() + args.out.size());
  KernelArgs wide = args;
  auto widen = [&](TensorRef &t) {
    if (!t || t.dtype() != artifact::DType::BF16)
      return;
    descs.push_back(*t.desc);
    descs.back().dtype = artifact::DType::F32;
    t.data = base + offsetOf(t.data);
    t.desc = &descs.back();
  };
  for (TensorRef &t : wide.in)
    widen(t);
  for (TensorRef &t : wide.out)
    widen(t);
  return wide;
}

int64_t scratchBytes(const artifact::KernelCall &call, const artifact::Plan &plan,
                     const ScratchTarget &target) {
  if (isCollective(call.kernel))
    return 0;
  if (target.device == ScratchTarget::Cpu)
    return cpuScratch(call, plan, target.threads);
#ifdef TRLC_HAVE_CUDA
  // A call that runs on fp32 copies of its bf16 tensors keeps them first.
  Probe probe(call, plan);
  int64_t staging = stagesBf16(call.kernel, probe.args, ScratchTarget::Cuda)
                        ? Bf16Staging(probe.args, 256).bytes()
                        : 0;
  return staging + cudaKernelScratch(call, plan);
#else
  throw std::logic_error("scratchBytes: this build has no CUDA backend");
#endif
}

int64_t planScratchBytes(const artifact::Plan &plan, const ScratchTarget &target) {
  int64_t most = 0;
  for (const auto &[name, program] : plan.programs)
    for (const artifact::KernelCall &c : program.calls)
      most = std::max(most, scratchBytes(c, plan, target));
  return most;
}

} // namespace trlc

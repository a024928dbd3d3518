//===- CudaBackend.cpp - the CUDA backend: plans' calls onto the kernels
//---===//
//
// Memory: the arena and scratch are plain device memory (cudaMalloc); the
// trainer writes a step's token ids and reads its loss with copy() between
// programs, and offloaded activations live in pinned host memory.
//
// Streams: kernels run in plan order on one compute stream. A copy between
// the arena and the host pool (trl.offload / trl.reload) runs on a second,
// copy stream once the compute stream has reached it; a later kernel that
// touches either end of a copy still in flight waits for it on the device
// (an event), so transfers overlap the kernels between a copy and its
// first use, as the plan's offload schedule places them.
//
// Recording: a program's launches are captured into a CUDA graph (relaxed
// capture mode) and replayed each step; every launch argument is fixed by
// the plan, values that change per step (token ids, the step counter, the
// learning rate) are read on the device.
//
//===----------------------------------------------------------------------===//

#include "trlc/Backend.h"

#include "kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

namespace trlc {
namespace {

using artifact::DType;
namespace cu = trlc::cuda;

void check(cudaError_t e, const char *what) {
  if (e != cudaSuccess)
    throw KernelError(std::string("CUDA: ") + what + ": " +
                      cudaGetErrorString(e));
}

float *F(const TensorRef &t) { return t ? t.as<float>() : nullptr; }
/// An operand a kernel reads (or writes) in fp32 or bf16 storage.
cu::Floats V(const TensorRef &t) { return {t.data, t.dtype() == DType::BF16}; }
cu::FloatsOut VOut(const TensorRef &t) {
  return {t.data, t.dtype() == DType::BF16};
}

cu::Index idx(const TensorRef &t) {
  cu::Index i;
  i.data = t.data;
  switch (t.dtype()) {
  case DType::I64:
    i.type = cu::Index::I64;
    break;
  case DType::I32:
    i.type = cu::Index::I32;
    break;
  case DType::Bool:
    i.type = cu::Index::U8;
    break;
  case DType::F32:
    i.type = cu::Index::F32;
    break;
  case DType::F64:
  case DType::BF16:
    throw KernelError(std::string("an ") + artifact::dtypeName(t.dtype()) +
                      " index tensor on the CUDA backend");
  }
  return i;
}

/// The attention call's sequences (see cu::AttentionShape).
cu::AttentionShape attentionShape(const KernelArgs &a, const TensorRef &q,
                                  const TensorRef &k, const TensorRef &mask,
                                  const TensorRef &cuSeqlens) {
  cu::AttentionShape s;
  s.varlen = attrS(a, "layout") == "varlen";
  s.causal = attrB(a, "causal");
  s.scale = static_cast<float>(attrF(a, "scale"));
  s.d = q.dim(-1);
  s.hq = q.dim(-2);
  s.hkv = k.dim(-2);
  if (s.varlen) {
    s.cuSeqlens = idx(cuSeqlens);
    s.count = cuSeqlens.numel() - 1;
    s.totalTokens = q.dim(0);
    s.maxLen = a.attrs->contains("max_seqlen") ? attrI(a, "max_seqlen")
                                               : s.totalTokens;
  } else {
    s.count = q.dim(0);
    s.rowLength = s.maxLen = q.dim(1);
    s.totalTokens = s.count * s.rowLength;
    if (mask)
      s.mask = idx(mask);
  }
  return s;
}

/// The fused head's operands, from the call's inputs starting at `first`.
cu::FusedLinear fusedLinear(const KernelArgs &a, int first) {
  cu::FusedLinear f;
  const TensorRef &hidden = a.in[first], &weight = a.in[first + 1];
  f.hidden = V(hidden);
  f.weight = F(weight);
  f.labels = idx(a.in[first + 2]);
  f.rows = rowsOf(hidden);
  f.h = hidden.dim(-1);
  f.vocab = weight.dim(0);
  f.chunk = std::max<int64_t>(1, std::min(attrI(a, "chunk_size"), f.rows));
  f.ignore = attrI(a, "ignore_index");
  return f;
}

/// dpo_loss(_grad)'s operands from `first` (the gradient's are one on).
cu::Dpo dpoOf(const KernelArgs &a, size_t first) {
  cu::Dpo d;
  d.kind = attrDpoKind(a);
  d.beta = static_cast<float>(attrF(a, "beta"));
  d.labelSmoothing = static_cast<float>(attrF(a, "label_smoothing"));
  d.rpoAlpha = static_cast<float>(attrF(a, "rpo_alpha"));
  d.pc = F(a.in[first]);
  d.pr = F(a.in[first + 1]);
  d.rc = F(a.in[first + 2]);
  d.rr = F(a.in[first + 3]);
  d.weights = F(a.in[first + 4]);
  d.nllWeight = a.in.size() > first + 5 && a.in[first + 5] ? F(a.in[first + 5]) : nullptr;
  d.betaValue = a.in.size() > first + 6 && a.in[first + 6] ? F(a.in[first + 6]) : nullptr;
  d.n = a.in[first].numel();
  return d;
}

/// kto_loss(_grad)'s operands from `first`.
cu::Kto ktoOf(const KernelArgs &a, size_t first) {
  cu::Kto k;
  k.kind = attrKtoKind(a);
  k.beta = static_cast<float>(attrF(a, "beta"));
  k.desirable = static_cast<float>(attrF(a, "desirable_weight"));
  k.undesirable = static_cast<float>(attrF(a, "undesirable_weight"));
  k.pol = F(a.in[first]);
  k.ref = F(a.in[first + 1]);
  k.label = idx(a.in[first + 2]);
  k.weights = F(a.in[first + 3]);
  k.kl = a.in.size() > first + 4 ? F(a.in[first + 4]) : nullptr;
  k.n = a.in[first].numel();
  return k;
}

cu::Grpo grpoOf(const KernelArgs &a, int first) {
  cu::Grpo g;
  std::string t = attrS(a, "loss_type");
  g.type = t == "grpo"      ? cu::GrpoType::Grpo
           : t == "bnpo"    ? cu::GrpoType::Bnpo
           : t == "dr_grpo" ? cu::GrpoType::DrGrpo
                            : cu::GrpoType::Dapo;
  g.epsilonLow = static_cast<float>(attrF(a, "epsilon_low"));
  g.epsilonHigh = static_cast<float>(attrF(a, "epsilon_high"));
  g.beta = static_cast<float>(attrF(a, "beta"));
  g.sequenceLevel = attrB(a, "sequence_level");
  g.logp = F(a.in[first]);
  g.old = F(a.in[first + 1]);
  g.advantages = F(a.in[first + 2]);
  g.mask = F(a.in[first + 3]);
  g.normalizer = F(a.in[first + 4]);
  if (a.in.size() > static_cast<size_t>(first + 5))
    g.ref = F(a.in[first + 5]);
  g.rows = a.in[first].dim(0);
  g.cols = a.in[first].dim(1);
  return g;
}

cu::Rloo rlooOf(const KernelArgs &a, int first) {
  cu::Rloo r;
  r.epsilonLow = static_cast<float>(attrF(a, "epsilon_low"));
  r.epsilonHigh = static_cast<float>(attrF(a, "epsilon_high"));
  r.logp = F(a.in[first]);
  r.old = F(a.in[first + 1]);
  r.advantages = F(a.in[first + 2]);
  r.mask = F(a.in[first + 3]);
  r.normalizer = F(a.in[first + 4]);
  r.rows = a.in[first].dim(0);
  r.cols = a.in[first].dim(1);
  return r;
}

/// ppo_loss(_grad)'s operands from `first`.
cu::Ppo ppoOf(const KernelArgs &a, int first) {
  cu::Ppo p;
  p.cliprange = static_cast<float>(attrF(a, "cliprange"));
  p.cliprangeValue = static_cast<float>(attrF(a, "cliprange_value"));
  p.vfCoef = static_cast<float>(attrF(a, "vf_coef"));
  p.logp = F(a.in[first]);
  p.old = F(a.in[first + 1]);
  p.advantages = F(a.in[first + 2]);
  p.mask = F(a.in[first + 3]);
  p.values = F(a.in[first + 4]);
  p.oldValues = F(a.in[first + 5]);
  p.returns = F(a.in[first + 6]);
  p.valueMask = F(a.in[first + 7]);
  p.pgWeight = F(a.in[first + 8]);
  p.vfWeight = F(a.in[first + 9]);
  p.n = a.in[first].numel();
  return p;
}

class CudaBackend : public Backend {
public:
  explicit CudaBackend(int device) : device(device) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
      throw KernelError(
          std::string("--device cuda: no CUDA device is visible (") +
          (e != cudaSuccess ? cudaGetErrorString(e) : "0 devices") +
          "); run with --device cpu");
    if (device >= count)
      throw KernelError("--device cuda: this process wants GPU " +
                        std::to_string(device) + " (LOCAL_RANK) but " +
                        std::to_string(count) + " are visible");
    check(cudaSetDevice(device), "cudaSetDevice");
    check(cudaFree(nullptr), "creating the context");
    check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
          "creating a stream");
    check(cudaStreamCreateWithFlags(&copyStream, cudaStreamNonBlocking),
          "creating a stream");
    int64_t before = freeBytes();
    check(cudaMalloc(&workspace, kWorkspaceBytes),
          "allocating the cuBLASLt workspace");
    check(cudaMalloc(&statusWords, 2 * sizeof(long long)),
          "allocating the status word");
    check(cudaMemset(statusWords, 0, 2 * sizeof(long long)),
          "clearing the status word");
    held.add(workspace, std::max<int64_t>(0, before - freeBytes()));
    status.code = static_cast<int *>(statusWords);
    status.value = static_cast<long long *>(statusWords) + 1;
    try {
      matmul = cu::createMatmul(workspace, kWorkspaceBytes);
    } catch (const std::exception &x) {
      throw KernelError(x.what());
    }
  }

  ~CudaBackend() override {
    cudaStreamSynchronize(stream);
    cudaStreamSynchronize(copyStream);
    for (cudaGraphExec_t g : graphs)
      cudaGraphExecDestroy(g);
    for (cudaEvent_t ev : events)
      cudaEventDestroy(ev);
    cu::destroyMatmul(matmul);
    cudaFree(statusWords);
    cudaFree(workspace);
    cudaStreamDestroy(copyStream);
    cudaStreamDestroy(stream);
  }

  std::string name() const override { return "cuda"; }

  void *allocate(int64_t bytes) override {
    void *p = nullptr;
    size_t n = std::max<int64_t>(bytes, 256);
    int64_t before = freeBytes();
    if (cudaMalloc(&p, n) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    check(cudaMemsetAsync(p, 0, n, stream), "clearing an allocation");
    check(cudaStreamSynchronize(stream), "clearing an allocation");
    int64_t got = std::max<int64_t>(0, before - freeBytes());
    held.add(p, got);
    return p;
  }
  void release(void *ptr) override {
    held.remove(ptr);
    cudaFree(ptr);
  }
  void *allocateHost(int64_t bytes) override {
    void *p = nullptr;
    if (cudaHostAlloc(&p, std::max<int64_t>(bytes, 64), cudaHostAllocDefault) !=
        cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    std::memset(p, 0, bytes);
    return p;
  }
  void releaseHost(void *ptr) override { cudaFreeHost(ptr); }

  void copy(void *dst, const void *src, int64_t bytes) override {
    if (dst != src)
      check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream),
            "copy");
  }

  /// The dispatch table, generated from trlc/Kernels.def.
  using Method = void (CudaBackend::*)(const KernelArgs &);
  static const Method kKernelTable[];

  ScratchTarget scratchTarget() const override {
    return {ScratchTarget::Cuda, 1};
  }

  void run(Kernel kernel, const KernelArgs &args) override {
    std::string name = kernelName(kernel);
    if (isCollective(kernel))
      throw KernelError("the CUDA backend does not run collective '" + name +
                        "'");
    for (const auto *list : {&args.in, &args.out})
      for (const TensorRef &t : *list)
        if (t && t.dtype() == DType::F64)
          throw KernelError(
              "kernel '" + name +
              "': the CUDA backend computes in f32, this plan has f64 tensors");
    waitForCopies(args);
    Method method = kKernelTable[static_cast<int>(kernel)];
    try {
      if (stagesBf16(kernel, args, ScratchTarget::Cuda))
        runStaged(method, args);
      else
        (this->*method)(args);
    } catch (const KernelError &) {
      throw;
    } catch (const std::exception &e) {
      throw KernelError("kernel '" + name + "': " + e.what());
    }
  }

  // One member per kernel of trlc/Kernels.def (below), named by its
  // `impl` column.
#define TRLC_KERNEL(Id, name, impl, minIn, maxIn, minOut, maxOut)              \
  void impl(const KernelArgs &a);
#include "trlc/Kernels.def"

  void synchronize() override {
    join();
    check(cudaStreamSynchronize(stream), "running the step");
    inFlight.clear();
    nextEvent = 0;
    long long words[2];
    check(cudaMemcpy(words, statusWords, sizeof words, cudaMemcpyDeviceToHost),
          "reading the status word");
    if (words[0] == 0)
      return;
    check(cudaMemset(statusWords, 0, sizeof words), "clearing the status word");
    int code = static_cast<int>(words[0] & 0xffffffff);
    std::string value = std::to_string(words[1]);
    if (code == cu::Status::TokenOutsideVocab)
      throw KernelError("token id " + value +
                        " is outside the vocabulary of the embedding");
    if (code == cu::Status::CacheSlot)
      throw KernelError("generation: position " + value + " is outside the KV cache");
    if (code == cu::Status::LongDocument)
      throw KernelError(
          "attention: a document of " + value +
          " tokens exceeds max_seqlen (cu_seqlens does not match the plan)");
    throw KernelError("label " + value +
                      " is outside the vocabulary of the lm_head");
  }

  /// Measured: the device memory each allocation took (cudaMemGetInfo
  /// around it, pages resident), plus the cuBLASLt workspace.
  int64_t allocatedPeakBytes() const override { return held.peak(); }

  bool canRecord() const override { return true; }
  void beginRecording() override {
    check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed),
          "starting a CUDA graph");
  }
  int endRecording(std::string &why) override {
    try {
      join();
    } catch (const KernelError &) {
      // A capture that already failed: ending it below says why.
    }
    inFlight.clear();
    nextEvent = 0;
    cudaGraph_t graph = nullptr;
    cudaError_t e = cudaStreamEndCapture(stream, &graph);
    if (e != cudaSuccess || !graph) {
      why = std::string("capture failed: ") + cudaGetErrorString(e);
      cudaGetLastError();
      return -1;
    }
    cudaGraphExec_t exec = nullptr;
    e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
      why = std::string("instantiation failed: ") + cudaGetErrorString(e);
      cudaGetLastError();
      return -1;
    }
    graphs.push_back(exec);
    return static_cast<int>(graphs.size()) - 1;
  }
  void replay(int id) override {
    check(cudaGraphLaunch(graphs.at(id), stream), "replaying");
  }

private:
  static constexpr size_t kWorkspaceBytes = 32 << 20;

  /// A call whose kernel does not take its bf16 tensors (stagesBf16): they
  /// are widened to fp32 at the start of its scratch (the kernel's own
  /// scratch follows them), and its bf16 outputs rounded back.
  void runStaged(Method method, const KernelArgs &args) {
    Bf16Staging staging(args, 256);
    char *base = static_cast<char *>(args.scratch);
    for (const Bf16Staging::Buffer &b : staging.buffers())
      cu::toF32(stream, b.data, reinterpret_cast<float *>(base + b.offset),
                b.elements);
    std::vector<artifact::TensorDesc> descs;
    KernelArgs wide = staging.redirect(args, base, descs);
    wide.scratch = base + staging.bytes();
    (this->*method)(wide);
    for (size_t i = 0; i < args.out.size(); ++i)
      if (args.out[i] && args.out[i].dtype() == DType::BF16)
        cu::toBf16(stream, F(wide.out[i]), args.out[i].data,
                   args.out[i].numel());
  }

  void moveParts(const KernelArgs &a, const TensorRef &whole,
                 const std::vector<TensorRef> &parts, bool toParts);
  const void *asBf16(const TensorRef &t, char *&scratch);

  /// A copy on the copy stream: its bytes and the event that ends it.
  struct Copy {
    const char *dstLo, *dstHi, *srcLo, *srcHi;
    cudaEvent_t done;
  };

  cudaEvent_t event() {
    if (nextEvent == events.size()) {
      cudaEvent_t ev;
      check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming),
            "creating an event");
      events.push_back(ev);
    }
    return events[nextEvent++];
  }

  /// Makes the compute stream wait for copies in flight that `args` touch.
  void waitForCopies(const KernelArgs &args) {
    if (inFlight.empty())
      return;
    auto overlaps = [&](const char *lo, const char *hi) {
      for (const auto *list : {&args.in, &args.out})
        for (const TensorRef &t : *list) {
          if (!t)
            continue;
          const char *a = static_cast<const char *>(t.data);
          if (a < hi && lo < a + t.desc->bytes())
            return true;
        }
      return false;
    };
    std::vector<Copy> keep;
    for (const Copy &c : inFlight) {
      if (overlaps(c.dstLo, c.dstHi) || overlaps(c.srcLo, c.srcHi))
        check(cudaStreamWaitEvent(stream, c.done, 0), "waiting for a copy");
      else
        keep.push_back(c);
    }
    inFlight.swap(keep);
  }

  /// An offload or reload: on the copy stream, after the kernels before it.
  void asyncCopy(void *dst, const void *src, int64_t bytes) {
    cudaEvent_t ready = event(), done = event();
    check(cudaEventRecord(ready, stream), "recording an event");
    check(cudaStreamWaitEvent(copyStream, ready, 0), "ordering a copy");
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, copyStream),
          "offload copy");
    check(cudaEventRecord(done, copyStream), "recording an event");
    const char *d = static_cast<const char *>(dst),
               *s = static_cast<const char *>(src);
    inFlight.push_back({d, d + bytes, s, s + bytes, done});
    copiesIssued = true;
  }

  /// Joins the copy stream back into the compute stream.
  void join() {
    if (!copiesIssued)
      return;
    cudaEvent_t ev = event();
    check(cudaEventRecord(ev, copyStream), "recording an event");
    check(cudaStreamWaitEvent(stream, ev, 0), "joining the copy stream");
    copiesIssued = false;
  }

  static int64_t freeBytes() {
    size_t freeNow = 0, total = 0;
    check(cudaMemGetInfo(&freeNow, &total), "cudaMemGetInfo");
    return static_cast<int64_t>(freeNow);
  }

  int device;
  HeldBytes held; // measured bytes of the live allocations and workspace
  cudaStream_t stream = nullptr, copyStream = nullptr;
  void *workspace = nullptr, *statusWords = nullptr;
  cu::Status status;
  cu::Matmul *matmul = nullptr;
  std::vector<cudaEvent_t> events;
  size_t nextEvent = 0;
  std::vector<Copy> inFlight;
  bool copiesIssued = false;
  std::vector<cudaGraphExec_t> graphs;
};

const CudaBackend::Method CudaBackend::kKernelTable[] = {
#define TRLC_KERNEL(Id, name, impl, minIn, maxIn, minOut, maxOut)              \
  &CudaBackend::impl,
#include "trlc/Kernels.def"
};
static_assert(std::size(CudaBackend::kKernelTable) == kBackendKernels);

void CudaBackend::fill(const KernelArgs &a) {
  cu::fill(stream, F(a.out[0]), static_cast<float>(attrF(a, "value")),
           a.out[0].numel());
}

void CudaBackend::copyTensor(const KernelArgs &a) {
  if (a.out[0].data == a.in[0].data)
    return;
  if (a.in[0].desc->host || a.out[0].desc->host)
    asyncCopy(a.out[0].data, a.in[0].data, a.in[0].desc->bytes());
  else
    copy(a.out[0].data, a.in[0].data, a.in[0].desc->bytes());
}

void CudaBackend::add(const KernelArgs &a) {
  cu::add(stream, F(a.in[0]), F(a.in[1]), F(a.out[0]), a.out[0].numel());
}

void CudaBackend::divide(const KernelArgs &a) {
  cu::divScalar(stream, F(a.in[0]), F(a.in[1]), F(a.out[0]), a.out[0].numel());
}

void CudaBackend::sqrtElements(const KernelArgs &a) {
  cu::sqrtElements(stream, F(a.in[0]), F(a.out[0]), a.out[0].numel());
}

void CudaBackend::swiglu(const KernelArgs &a) {
  cu::swiglu(stream, V(a.in[0]), V(a.in[1]), VOut(a.out[0]), a.out[0].numel());
}

void CudaBackend::swigluGrad(const KernelArgs &a) {
  cu::swigluGrad(stream, F(a.in[0]), V(a.in[1]), V(a.in[2]), F(a.out[0]),
                 F(a.out[1]), a.out[0].numel());
}

void CudaBackend::gelu(const KernelArgs &a) {
  cu::gelu(stream, attrS(a, "approximate") == "tanh", V(a.in[0]), VOut(a.out[0]),
           a.out[0].numel());
}

void CudaBackend::dropout(const KernelArgs &a) {
  double p = attrF(a, "p");
  cu::dropout(stream, V(a.in[0]), a.in[1].as<int64_t>(),
              static_cast<uint64_t>(attrI(a, "stream")), dropoutThreshold(p),
              static_cast<float>(1 / (1 - p)), VOut(a.out[0]), a.out[0].numel());
}

void CudaBackend::geluGrad(const KernelArgs &a) {
  cu::geluGrad(stream, attrS(a, "approximate") == "tanh", F(a.in[0]), V(a.in[1]),
               F(a.out[0]), a.out[0].numel());
}

// split / concat: the parts of `whole` along `axis`, as 2-D copies.
// split / concat: the parts of `whole` along `axis`, as 2-D copies.
void CudaBackend::moveParts(const KernelArgs &a, const TensorRef &whole,
                            const std::vector<TensorRef> &parts, bool toParts) {
  int64_t axis = attrI(a, "axis"), outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i)
    outer *= whole.dim(i);
  for (int64_t i = axis + 1; i < whole.rank(); ++i)
    inner *= whole.dim(i);
  int64_t e = artifact::dtypeBytes(whole.dtype());
  int64_t full = whole.dim(axis) * inner * e, at = 0;
  for (const TensorRef &part : parts) {
    int64_t w = part.dim(axis) * inner * e;
    char *p = static_cast<char *>(part.data),
         *f = static_cast<char *>(whole.data) + at;
    if (w > 0 && outer > 0)
      check(toParts ? cudaMemcpy2DAsync(p, w, f, full, w, outer,
                                        cudaMemcpyDefault, stream)
                    : cudaMemcpy2DAsync(f, full, p, w, w, outer,
                                        cudaMemcpyDefault, stream),
            toParts ? "split" : "concat");
    at += w;
  }
}

void CudaBackend::split(const KernelArgs &a) {
  moveParts(a, a.in[0], a.out, true);
}

void CudaBackend::concat(const KernelArgs &a) {
  moveParts(a, a.out[0], a.in, false);
}

void CudaBackend::packFlat(const KernelArgs &a) {
  char *y = static_cast<char *>(a.out[0].data);
  const nlohmann::json &offsets = a.attrs->at("offsets");
  int64_t at = 0;
  for (size_t i = 0; i < a.in.size(); ++i) {
    int64_t offset = offsets.at(i).get<int64_t>(), n = a.in[i].numel();
    if (offset > at)
      check(cudaMemsetAsync(y + at * 4, 0, (offset - at) * 4, stream),
            "pack_flat");
    check(cudaMemcpyAsync(y + offset * 4, a.in[i].data, n * 4,
                          cudaMemcpyDefault, stream),
          "pack_flat");
    at = offset + n;
  }
  if (a.out[0].numel() > at)
    check(cudaMemsetAsync(y + at * 4, 0, (a.out[0].numel() - at) * 4, stream),
          "pack_flat");
}

void CudaBackend::maskedSum(const KernelArgs &a) {
  int64_t cols = a.in[1].dim(-1);
  cu::maskedSum(stream, V(a.in[0]), V(a.in[1]), F(a.out[0]), a.out[0].numel(), cols,
                a.in[0].numel() == cols && a.out[0].numel() > 1);
}

void CudaBackend::maskedSumGrad(const KernelArgs &a) {
  int64_t cols = a.in[1].dim(-1), rows = a.in[0].numel();
  cu::maskedSumGrad(stream, F(a.in[0]), F(a.in[1]), F(a.out[0]), rows, cols,
                    a.out[0].numel() == cols && rows > 1);
}

void CudaBackend::embedding(const KernelArgs &a) {
  cu::embedding(stream, status, F(a.in[0]), idx(a.in[1]), F(a.out[0]),
                a.in[0].dim(0), a.in[0].dim(1), a.in[1].numel());
}

void CudaBackend::embeddingGrad(const KernelArgs &a) {
  cu::embeddingGrad(stream, F(a.in[0]), idx(a.in[1]), F(a.out[0]), a.out[0].dim(0),
                    a.out[0].dim(1), a.in[1].numel(), a.scratch);
}

void CudaBackend::rmsNorm(const KernelArgs &a) {
  cu::rmsNorm(stream, F(a.in[0]), F(a.in[1]), VOut(a.out[0]), rowsOf(a.in[0]),
              a.in[0].dim(-1), static_cast<float>(attrF(a, "eps")));
}

void CudaBackend::rmsNormGrad(const KernelArgs &a) {
  cu::rmsNormGrad(stream, F(a.in[0]), F(a.in[1]), F(a.in[2]), F(a.out[0]),
                  F(a.out[1]), rowsOf(a.in[1]), a.in[1].dim(-1),
                  static_cast<float>(attrF(a, "eps")), a.scratch);
}

void CudaBackend::layerNorm(const KernelArgs &a) {
  cu::layerNorm(stream, F(a.in[0]), F(a.in[1]), F(a.in[2]), VOut(a.out[0]),
                rowsOf(a.in[0]), a.in[0].dim(-1),
                static_cast<float>(attrF(a, "eps")));
}

void CudaBackend::layerNormGrad(const KernelArgs &a) {
  cu::layerNormGrad(stream, F(a.in[0]), F(a.in[1]), F(a.in[2]), F(a.out[0]),
                    F(a.out[1]), F(a.out[2]), rowsOf(a.in[1]),
                    a.in[1].dim(-1), static_cast<float>(attrF(a, "eps")),
                    a.scratch);
}

// Products read bf16 activations directly and round fp32 ones (weights,
// gradients) into scratch; a bf16 result comes out of the product.
const void *CudaBackend::asBf16(const TensorRef &t, char *&scratch) {
  if (t.dtype() == DType::BF16)
    return t.data;
  char *p = scratch;
  scratch += cu::align256(2 * t.numel());
  cu::toBf16(stream, F(t), p, t.numel());
  return p;
}

void CudaBackend::linear(const KernelArgs &a) {
  const TensorRef &x = a.in[0], &w = a.in[1], &y = a.out[0];
  int64_t m = rowsOf(x), k = x.dim(-1), n = w.dim(0);
  bool yBf16 = y.dtype() == DType::BF16;
  char *scratch = static_cast<char *>(a.scratch);
  const void *xb = asBf16(x, scratch), *wb = asBf16(w, scratch);
  cu::gemm(matmul, stream, false, true, m, n, k, xb, k, wb, k, 0.0f, y.data,
           n, 1.0f, yBf16);
  if (a.in.size() > 2 && a.in[2])
    cu::addBias(stream, VOut(y), F(a.in[2]), m, n);
}

void CudaBackend::linearGrad(const KernelArgs &a) {
  const TensorRef &dy = a.in[0], &x = a.in[1], &w = a.in[2];
  int64_t m = rowsOf(x), k = x.dim(-1), n = w.dim(0);
  char *scratch = static_cast<char *>(a.scratch);
  const void *dyb = asBf16(dy, scratch), *wb = asBf16(w, scratch),
             *xb = asBf16(x, scratch);
  cu::gemm(matmul, stream, false, false, m, k, n, dyb, n, wb, k, 0.0f,
           F(a.out[0]), k);
  // With an accumulator (in[3]): dW = acc + dy^T x, by the product itself.
  bool accumulate = a.in.size() > 3 && a.in[3];
  if (accumulate)
    copy(a.out[1].data, a.in[3].data, a.out[1].desc->bytes());
  cu::gemm(matmul, stream, true, false, n, k, m, dyb, n, xb, k,
           accumulate ? 1.0f : 0.0f, F(a.out[1]), k);
  if (a.out.size() > 2)
    cu::columnSum(stream, F(dy), F(a.out[2]), m, n, scratch);
}

void CudaBackend::rope(const KernelArgs &a) {
  cu::RopeScaling sc;
  if (a.attrs->contains("scaling")) {
    const auto &j = a.attrs->at("scaling");
    sc.factor = j.at("factor");
    sc.lowFreqFactor = j.at("low_freq_factor");
    sc.highFreqFactor = j.at("high_freq_factor");
    sc.originalMax = j.at("original_max_position_embeddings").get<double>();
  }
  const TensorRef &x = a.in[0];
  cu::rope(stream, V(x), idx(a.in[1]), VOut(a.out[0]), a.in[1].numel(), x.dim(-2),
           x.dim(-1), attrF(a, "theta"), sc, attrB(a, "inverse"));
}

// bf16 q, k, v go to the tensor-core kernels (see widens()).
void CudaBackend::attention(const KernelArgs &a) {
  cu::AttentionShape sh =
      attentionShape(a, a.in[0], a.in[1], a.in[3], a.in[4]);
  if (a.in[0].dtype() == DType::BF16)
    cu::attentionBf16(stream, status, sh, V(a.in[0]), V(a.in[1]), V(a.in[2]),
                      VOut(a.out[0]), F(a.out[1]));
  else
    cu::attention(stream, status, sh, F(a.in[0]), F(a.in[1]), F(a.in[2]),
                  F(a.out[0]), F(a.out[1]));
}

void CudaBackend::attentionGrad(const KernelArgs &a) {
  cu::AttentionShape sh =
      attentionShape(a, a.in[1], a.in[2], a.in[6], a.in[7]);
  if (a.in[1].dtype() == DType::BF16)
    cu::attentionBf16Grad(stream, status, sh, V(a.in[0]), V(a.in[1]), V(a.in[2]),
                          V(a.in[3]), V(a.in[4]), F(a.in[5]), F(a.out[0]),
                          F(a.out[1]), F(a.out[2]), a.scratch);
  else
    cu::attentionGrad(stream, status, sh, F(a.in[0]), F(a.in[1]), F(a.in[2]),
                      F(a.in[3]), F(a.in[4]), F(a.in[5]), F(a.out[0]),
                      F(a.out[1]), F(a.out[2]), a.scratch);
}

void CudaBackend::cacheWrite(const KernelArgs &a) {
  const TensorRef &cache = a.in[0], &x = a.in[1];
  cu::cacheWrite(stream, status, F(cache), F(x), idx(a.in[2]), F(a.out[0]), cache.dim(0),
                 x.dim(1), cache.dim(1), cache.dim(2) * cache.dim(3));
}

void CudaBackend::cachedAttention(const KernelArgs &a) {
  const TensorRef &q = a.in[0], &kc = a.in[1];
  cu::CachedAttentionShape sh;
  sh.batch = q.dim(0);
  sh.tokens = q.dim(1);
  sh.hq = q.dim(2);
  sh.d = q.dim(3);
  sh.slots = kc.dim(1);
  sh.hkv = kc.dim(2);
  sh.scale = static_cast<float>(attrF(a, "scale"));
  sh.mask = idx(a.in[3]);
  sh.positions = idx(a.in[4]);
  cu::cachedAttention(stream, status, sh, F(q), F(kc), F(a.in[2]), F(a.out[0]), a.scratch);
}

void CudaBackend::crossEntropy(const KernelArgs &a) {
  const TensorRef &logits = a.in[0];
  cu::crossEntropy(stream, status, F(logits), idx(a.in[1]), F(a.out[0]),
                   rowsOf(logits), logits.dim(-1), attrI(a, "ignore_index"),
                   a.scratch);
}

void CudaBackend::crossEntropyGrad(const KernelArgs &a) {
  const TensorRef &logits = a.in[1];
  cu::logitsGrad(stream, status, F(logits), idx(a.in[2]),
                 {F(a.in[0]), 0, 1.0f}, {F(a.out[0]), false}, rowsOf(logits),
                 logits.dim(-1), attrI(a, "ignore_index"));
}

void CudaBackend::logProbs(const KernelArgs &a) {
  const TensorRef &logits = a.in[0];
  cu::logProbs(stream, status, F(logits), idx(a.in[1]), F(a.out[0]),
               rowsOf(logits), logits.dim(-1), attrI(a, "ignore_index"));
}

void CudaBackend::logProbsGrad(const KernelArgs &a) {
  const TensorRef &logits = a.in[1];
  cu::logitsGrad(stream, status, F(logits), idx(a.in[2]),
                 {F(a.in[0]), 1, -1.0f}, {F(a.out[0]), false}, rowsOf(logits),
                 logits.dim(-1), attrI(a, "ignore_index"));
}

void CudaBackend::fusedLinearCrossEntropy(const KernelArgs &a) {
  cu::fusedLinearForward(matmul, stream, status, fusedLinear(a, 0), nullptr,
                         F(a.out[0]), a.scratch);
}

void CudaBackend::fusedLinearLogProbs(const KernelArgs &a) {
  cu::fusedLinearForward(matmul, stream, status, fusedLinear(a, 0), F(a.out[0]),
                         nullptr, a.scratch);
}

void CudaBackend::fusedLinearCrossEntropyGrad(const KernelArgs &a) {
  cu::fusedLinearBackward(matmul, stream, status, fusedLinear(a, 1),
                          {F(a.in[0]), 0, 1.0f}, F(a.out[0]), F(a.out[1]),
                          a.scratch);
}

void CudaBackend::fusedLinearLogProbsGrad(const KernelArgs &a) {
  cu::fusedLinearBackward(matmul, stream, status, fusedLinear(a, 1),
                          {F(a.in[0]), 1, -1.0f}, F(a.out[0]), F(a.out[1]),
                          a.scratch);
}

void CudaBackend::dpoLoss(const KernelArgs &a) {
  cu::dpoLoss(stream, dpoOf(a, 0), F(a.out[0]), F(a.out[1]), F(a.out[2]));
}

void CudaBackend::dpoLossGrad(const KernelArgs &a) {
  cu::dpoLossGrad(stream, dpoOf(a, 1), F(a.in[0]), F(a.out[0]), F(a.out[1]));
}

void CudaBackend::ktoKl(const KernelArgs &a) {
  cu::ktoKl(stream, F(a.in[0]), F(a.in[1]), F(a.in[2]), F(a.out[0]), a.in[0].numel());
}

void CudaBackend::ktoLoss(const KernelArgs &a) {
  cu::ktoLoss(stream, ktoOf(a, 0), F(a.out[0]), F(a.out[1]), F(a.out[2]));
}

void CudaBackend::ktoLossGrad(const KernelArgs &a) {
  cu::ktoLossGrad(stream, ktoOf(a, 1), F(a.in[0]), F(a.out[0]));
}

void CudaBackend::grpoLoss(const KernelArgs &a) {
  cu::grpoLoss(stream, grpoOf(a, 0), F(a.out[0]));
}

void CudaBackend::grpoLossGrad(const KernelArgs &a) {
  cu::grpoLossGrad(stream, grpoOf(a, 1), F(a.in[0]), F(a.out[0]));
}

void CudaBackend::ppoLoss(const KernelArgs &a) {
  cu::ppoLoss(stream, ppoOf(a, 0), F(a.out[0]));
}

void CudaBackend::ppoLossGrad(const KernelArgs &a) {
  cu::ppoLossGrad(stream, ppoOf(a, 1), F(a.in[0]), F(a.out[0]), F(a.out[1]));
}

void CudaBackend::rlooLoss(const KernelArgs &a) {
  cu::rlooLoss(stream, rlooOf(a, 0), F(a.out[0]));
}

void CudaBackend::rlooLossGrad(const KernelArgs &a) {
  cu::rlooLossGrad(stream, rlooOf(a, 1), F(a.in[0]), F(a.out[0]));
}

void CudaBackend::gradNorm(const KernelArgs &a) {
  std::vector<const float *> ptrs;
  std::vector<int64_t> sizes;
  for (const TensorRef &g : a.in) {
    ptrs.push_back(F(g));
    sizes.push_back(g.numel());
  }
  cu::gradNorm(stream, ptrs.data(), sizes.data(), static_cast<int>(ptrs.size()),
               attrB(a, "squared"), F(a.out[0]), a.scratch);
}

void CudaBackend::lrSchedule(const KernelArgs &a) {
  cu::LrSchedule l;
  l.base = attrF(a, "base_lr");
  l.warmup = static_cast<double>(attrI(a, "warmup_steps"));
  l.total = static_cast<double>(attrI(a, "total_steps"));
  l.kind = attrLrSchedule(a);
  cu::lrSchedule(stream, l, idx(a.in[0]), F(a.out[0]));
}

void CudaBackend::adamw(const KernelArgs &a) {
  bool clip = a.in.size() > 6 && a.in[6];
  cu::adamw(stream, attrAdamW(a), F(a.in[0]), F(a.in[1]), F(a.in[2]),
            F(a.in[3]), F(a.in[4]), idx(a.in[5]), clip ? F(a.in[6]) : nullptr,
            clip ? static_cast<float>(attrF(a, "max_grad_norm")) : 0.0f,
            F(a.out[0]), F(a.out[1]), F(a.out[2]), a.out[0].numel());
}

} // namespace

std::unique_ptr<Backend> makeCudaBackend(int device) {
  return std::make_unique<CudaBackend>(device);
}

} // namespace trlc

//===- CpuBackend.cpp - the CPU backend: dispatch, bf16 staging -----------===//
//
// The reference backend. Memory is plain host memory; copy() is memmove.
// Each call dispatches through a table generated from trlc/Kernels.def to
// the kernel's f32 or f64 instantiation (runtime/cpu/kernels.h). A call
// with bf16 tensors runs on f32 copies of them in a staging buffer the
// backend keeps (grown once to the largest call), and its bf16 outputs
// are rounded back to nearest even.
//
//===----------------------------------------------------------------------===//

#include "cpu/common.h"

#include <sys/mman.h>

#include <cstdlib>
#include <iterator>
#include <map>
#include <memory>
#include <optional>

namespace trlc {
namespace {

using artifact::DType;

struct Entry {
  void (*f32)(const KernelArgs &);
  void (*f64)(const KernelArgs &);
};

constexpr Entry kKernelTable[] = {
#define TRLC_KERNEL(Id, name, impl, minIn, maxIn, minOut, maxOut)              \
  {&cpu::impl<float>, &cpu::impl<double>},
#include "trlc/Kernels.def"
};
static_assert(std::size(kKernelTable) == kBackendKernels);

/// The float type a call computes in: that of its first float tensor
/// (f32 for bf16 storage).
std::optional<DType> floatType(const KernelArgs &a) {
  for (const auto *list : {&a.out, &a.in})
    for (const TensorRef &t : *list) {
      if (t && (t.dtype() == DType::F32 || t.dtype() == DType::F64))
        return t.dtype();
      if (t && t.dtype() == DType::BF16)
        return DType::F32;
    }
  return std::nullopt;
}

class CpuBackend : public Backend {
public:
  explicit CpuBackend(int threads) : threads(threads) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
  }
  std::string name() const override { return "cpu"; }
  void *allocate(int64_t bytes) override {
    void *p = std::aligned_alloc(64, std::max<int64_t>(64, (bytes + 63) / 64 * 64));
    if (p) {
      std::memset(p, 0, bytes);
      held.add(p, bytes);
    }
    return p;
  }
  void release(void *ptr) override {
    held.remove(ptr);
    std::free(ptr);
  }
  int64_t allocatedPeakBytes() const override { return held.peak(); }
  void copy(void *dst, const void *src, int64_t bytes) override {
    std::memmove(dst, src, bytes);
  }
  ScratchTarget scratchTarget() const override {
    return {ScratchTarget::Cpu, threads};
  }
  void run(Kernel kernel, const KernelArgs &args) override {
    if (isCollective(kernel))
      throw KernelError(std::string("the CPU backend does not run collective '") +
                        kernelName(kernel) + "'");
    const Entry &entry = kKernelTable[static_cast<int>(kernel)];
    auto type = floatType(args);
    if (!type)
      throw KernelError(std::string("kernel '") + kernelName(kernel) +
                        "' has no float tensor");
    if (stagesBf16(kernel, args, ScratchTarget::Cpu)) {
      runStaged(entry.f32, args);
      return;
    }
    (*type == DType::F64 ? entry.f64 : entry.f32)(args);
  }
  void synchronize() override {}

private:
  /// Widens the call's bf16 buffers into `staging`, runs the f32 kernel on
  /// the copies, and rounds its bf16 outputs back.
  void runStaged(void (*kernel)(const KernelArgs &), const KernelArgs &args) {
    Bf16Staging plan(args, 64);
    if (static_cast<int64_t>(staging.size()) * 4 < plan.bytes())
      staging.resize(plan.bytes() / 4);
    char *base = reinterpret_cast<char *>(staging.data());
    for (const Bf16Staging::Buffer &b : plan.buffers()) {
      const uint16_t *src = static_cast<const uint16_t *>(b.data);
      float *dst = reinterpret_cast<float *>(base + b.offset);
#pragma omp parallel for schedule(static)
      for (int64_t j = 0; j < b.elements; ++j)
        dst[j] = bf16ToFloat(src[j]);
    }
    std::vector<artifact::TensorDesc> descs;
    KernelArgs wide = plan.redirect(args, base, descs);
    kernel(wide);
    for (size_t i = 0; i < args.out.size(); ++i) {
      const TensorRef &t = args.out[i];
      if (!t || t.dtype() != DType::BF16)
        continue;
      const float *src = wide.out[i].as<float>();
      uint16_t *dst = t.as<uint16_t>();
      int64_t n = t.numel();
#pragma omp parallel for schedule(static)
      for (int64_t j = 0; j < n; ++j)
        dst[j] = floatToBf16(src[j]);
    }
  }

  int threads;
  HeldBytes held;
  std::vector<float> staging; // fp32 copies of a call's bf16 tensors
};

/// TRLC_GUARD_DEVICE_MEMORY=1: the CPU backend's memory is out of the
/// host's reach as a GPU's is. It is mapped PROT_NONE except while a kernel
/// or copy() runs, so host code that touches the arena directly instead of
/// through copy() crashes here, where the tests run, rather than on a GPU.
/// Gloo collectives read the arena directly, so a process of a larger world
/// (WORLD_SIZE > 1) runs unguarded.
class GuardedBackend : public Backend {
public:
  explicit GuardedBackend(std::unique_ptr<Backend> inner) : inner(std::move(inner)) {}
  ~GuardedBackend() override {
    for (auto &[p, n] : maps)
      munmap(p, n);
  }
  std::string name() const override { return inner->name(); }
  void *allocate(int64_t bytes) override {
    size_t n = (std::max<int64_t>(bytes, 1) + 4095) / 4096 * 4096;
    void *p = mmap(nullptr, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      return nullptr;
    maps[p] = n;
    held.add(p, bytes);
    return p;
  }
  void release(void *ptr) override {
    auto it = maps.find(ptr);
    if (it == maps.end())
      return;
    munmap(ptr, it->second);
    held.remove(ptr);
    maps.erase(it);
  }
  void *allocateHost(int64_t bytes) override { return inner->allocateHost(bytes); }
  void releaseHost(void *ptr) override { inner->releaseHost(ptr); }
  void copy(void *dst, const void *src, int64_t bytes) override {
    Open open(*this);
    inner->copy(dst, src, bytes);
  }
  ScratchTarget scratchTarget() const override { return inner->scratchTarget(); }
  void run(Kernel kernel, const KernelArgs &args) override {
    Open open(*this);
    inner->run(kernel, args);
  }
  void synchronize() override { inner->synchronize(); }
  int64_t allocatedPeakBytes() const override { return held.peak(); }

private:
  /// The mappings are readable and writable while one of these lives.
  struct Open {
    explicit Open(GuardedBackend &b) : b(b) { b.protect(PROT_READ | PROT_WRITE); }
    ~Open() { b.protect(PROT_NONE); }
    GuardedBackend &b;
  };
  void protect(int how) {
    for (auto &[p, n] : maps)
      if (mprotect(p, n, how) != 0)
        throw KernelError("TRLC_GUARD_DEVICE_MEMORY: mprotect failed");
  }
  std::unique_ptr<Backend> inner;
  std::map<void *, size_t> maps;
  HeldBytes held;
};

} // namespace

std::unique_ptr<Backend> makeCpuBackend(int threads) {
  auto cpu = std::make_unique<CpuBackend>(std::max(1, threads));
  const char *guard = std::getenv("TRLC_GUARD_DEVICE_MEMORY");
  const char *world = std::getenv("WORLD_SIZE");
  if (guard && *guard && std::string(guard) != "0" && (!world || std::atoi(world) <= 1))
    return std::make_unique<GuardedBackend>(std::move(cpu));
  return cpu;
}

} // namespace trlc

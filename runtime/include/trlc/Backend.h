//===- Backend.h - where kernels run: the runtime's one device interface --===//
//
// The executor talks to a device only through this interface: allocate the
// arena once, copy bytes in and out, run a kernel call of the plan,
// synchronize. Every backend runs every kernel of trlc/Kernels.def (its
// dispatch table is generated from it); it says where it runs so that the
// executor can reserve the scratch its calls need up front
// (trlc/Kernels.h: scratchBytes).
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_RUNTIME_BACKEND_H
#define TRLC_RUNTIME_BACKEND_H

#include "trlc/Artifact.h"
#include "trlc/Kernels.h"
#include "trlc/PreferenceMath.h"
#include "trlc/ScalarMath.h"

#include <algorithm>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace trlc {

/// A tensor of the plan at its place in device memory.
struct TensorRef {
  void *data = nullptr;
  const artifact::TensorDesc *desc = nullptr;

  template <typename T> T *as() const { return static_cast<T *>(data); }
  int64_t numel() const { return desc->numel(); }
  int64_t rank() const { return static_cast<int64_t>(desc->shape.size()); }
  int64_t dim(int64_t i) const {
    return desc->shape[i < 0 ? desc->shape.size() + i : i];
  }
  artifact::DType dtype() const { return desc->dtype; }
  explicit operator bool() const { return data != nullptr; }
};

/// A kernel failure the user can act on (bad dtype, unsupported shape).
struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct KernelArgs {
  std::vector<TensorRef> in;   // absent optional operands are null refs
  std::vector<TensorRef> out;
  const nlohmann::json *attrs = nullptr;
  void *scratch = nullptr;     // scratchBytes(call) bytes, reserved up front
};

// What every backend reads of a call: its attributes, a tensor's rows.
inline double attrF(const KernelArgs &a, const char *k) { return a.attrs->at(k).get<double>(); }
inline int64_t attrI(const KernelArgs &a, const char *k) { return a.attrs->at(k).get<int64_t>(); }
inline bool attrB(const KernelArgs &a, const char *k) {
  return a.attrs->contains(k) && a.attrs->at(k).get<bool>();
}
inline std::string attrS(const KernelArgs &a, const char *k) {
  return a.attrs->at(k).get<std::string>();
}
/// lr_schedule's `schedule` attribute.
inline LrScheduleKind attrLrSchedule(const KernelArgs &a) {
  std::string kind = attrS(a, "schedule");
  return kind == "constant" ? LrScheduleKind::Constant
         : kind == "linear" ? LrScheduleKind::Linear
                            : LrScheduleKind::Cosine;
}
/// dpo_loss's and kto_loss's `loss_type`, in the dialect's order.
inline DpoKind attrDpoKind(const KernelArgs &a) {
  static const char *const names[] = {"sigmoid", "hinge", "ipo", "robust", "apo_zero", "apo_down"};
  std::string t = attrS(a, "loss_type");
  for (int k = 0; k < 6; ++k)
    if (t == names[k])
      return static_cast<DpoKind>(k);
  throw KernelError("dpo_loss: unknown loss_type '" + t + "'");
}
inline KtoKind attrKtoKind(const KernelArgs &a) {
  std::string t = a.attrs->contains("loss_type") ? attrS(a, "loss_type") : "kto";
  if (t == "kto")
    return KtoKind::Kto;
  if (t == "apo_zero_unpaired")
    return KtoKind::ApoZeroUnpaired;
  throw KernelError("kto_loss: unknown loss_type '" + t + "'");
}
/// adamw's hyperparameter attributes.
inline AdamWHyper attrAdamW(const KernelArgs &a) {
  return {attrF(a, "beta1"), attrF(a, "beta2"), attrF(a, "eps"), attrF(a, "weight_decay")};
}
/// True when one of the call's tensors is stored as `dtype` (a backend
/// widens bf16 storage for kernels that compute on fp32 only).
inline bool hasTensorOf(const KernelArgs &a, artifact::DType dtype) {
  for (const auto *list : {&a.in, &a.out})
    for (const TensorRef &t : *list)
      if (t && t.dtype() == dtype)
        return true;
  return false;
}
/// Rows of a tensor seen as [rows, last dimension].
inline int64_t rowsOf(const TensorRef &t) { return t.numel() / t.dim(-1); }

/// Whether a backend on `device` runs `kernel` on fp32 copies of the
/// call's bf16 tensors, because its kernel does not read or write them in
/// bf16 itself (the CPU's kernels compute on f32 and f64 only; the CUDA
/// kernels read some operands in bf16).
bool stagesBf16(Kernel kernel, const KernelArgs &args, ScratchTarget::Device device);

/// The fp32 copies of a call's bf16 tensors: one per distinct buffer (an
/// operand that is also an output, in place, is widened once), each at an
/// `align`-rounded offset of one staging area.
class Bf16Staging {
public:
  Bf16Staging(const KernelArgs &args, int64_t align);
  struct Buffer {
    const void *data; // the bf16 tensor
    int64_t elements;
    int64_t offset; // of its fp32 copy in the staging area
  };
  const std::vector<Buffer> &buffers() const { return buffers_; }
  int64_t bytes() const { return bytes_; }
  /// `args` with every bf16 tensor replaced by its fp32 copy in the
  /// staging area at `base`; `descs` holds the copies' descriptions.
  KernelArgs redirect(const KernelArgs &args, char *base,
                      std::vector<artifact::TensorDesc> &descs) const;

private:
  int64_t offsetOf(const void *data) const;
  int64_t align;
  std::vector<Buffer> buffers_;
  int64_t bytes_ = 0;
};

/// The bytes a backend's live allocations hold, and the most they have
/// held at once (for allocatedPeakBytes()).
class HeldBytes {
public:
  void add(void *ptr, int64_t bytes) {
    sizes[ptr] = bytes;
    held += bytes;
    peak_ = std::max(peak_, held);
  }
  void remove(void *ptr) {
    auto it = sizes.find(ptr);
    if (it != sizes.end()) {
      held -= it->second;
      sizes.erase(it);
    }
  }
  int64_t peak() const { return peak_; }

private:
  std::map<void *, int64_t> sizes;
  int64_t held = 0, peak_ = 0;
};


class Backend {
public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  /// Zero-filled memory the kernels run on; null when out of memory. The
  /// host may not be able to address it (a GPU's): it reads and writes it
  /// only through copy().
  virtual void *allocate(int64_t bytes) = 0;
  virtual void release(void *ptr) = 0;
  /// Host memory the device copies to and from (offloaded activations):
  /// pinned on a GPU.
  virtual void *allocateHost(int64_t bytes);
  virtual void releaseHost(void *ptr);
  /// Copies between host and device memory (or within the device), in
  /// order with the kernels; visible to the host after synchronize(). The
  /// host side may be reused as soon as copy() returns.
  virtual void copy(void *dst, const void *src, int64_t bytes) = 0;
  /// What the pure scratch function sizes this backend's calls for.
  virtual ScratchTarget scratchTarget() const = 0;
  /// Runs one call; args.scratch holds scratchBytes(call, plan,
  /// scratchTarget()) bytes.
  virtual void run(Kernel kernel, const KernelArgs &args) = 0;
  /// Waits for everything issued; reports an error a kernel recorded on
  /// the device (a token id outside the vocabulary) as a KernelError.
  virtual void synchronize() = 0;
  /// Whole-program replay (CUDA graphs): between beginRecording() and
  /// endRecording() the kernels run() is given are recorded, not run.
  /// endRecording returns an id for replay(), or -1 and the reason when the
  /// recording failed (the kernels must then be issued again).
  virtual bool canRecord() const { return false; }
  virtual void beginRecording() {}
  virtual int endRecording(std::string &why) {
    why = name() + " backend does not record";
    return -1;
  }
  virtual void replay(int id) {}
  /// The most bytes allocate() has held at once (the measured high-water
  /// mark of the backend's memory; the plan says what it should be).
  virtual int64_t allocatedPeakBytes() const = 0;
};

/// The CPU backend: OpenBLAS for matrix products, OpenMP for the rest.
/// Results are deterministic for a fixed thread count.
std::unique_ptr<Backend> makeCpuBackend(int threads);

/// The CUDA backend on device `device` (runtime/cuda/): throws KernelError
/// when this build has no CUDA or no GPU is visible.
std::unique_ptr<Backend> makeCudaBackend(int device);

} // namespace trlc

#endif // TRLC_RUNTIME_BACKEND_H

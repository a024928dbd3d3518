//===- Generate.cpp - generation's programs: prefill and decode -----------===//
//
// Generation runs the model with a KV cache (ModelBuilder::KvCache) in two
// programs over the same [B, T] cache, T the step's sequence bound:
//   @prefill  input_ids, position_ids, attention_mask [B, P] (P <= T, the
//             longest prompt the programs take, less one): a batch of
//             prompts, right-padded, without their last token; writes
//             every layer's keys and values at the slots of their positions
//             (slot = position) and returns nothing else.
//   @decode   input_ids, position_ids [B, 1] (one token per row, its
//             position) and attention_mask [B, T] (the cache slots holding
//             real tokens, the new one included): writes the token's keys and
//             values, attends over the cache and returns the next-token
//             logits [B, 1, V].
// A row's tokens sit at their own positions whatever the other rows'
// lengths, so prompts of different lengths share a batch without padding
// between prompt and completion. The cache is persistent state between the
// two programs; the lowering places it in the activation region (training
// never runs during generation), so it adds to the plan's peak only where
// generation's own needs exceed training's.
//
//===----------------------------------------------------------------------===//

#include "frontend/methods/Methods.h"

#include <algorithm>

using namespace mlir;
using namespace mlir::trl;

namespace trlc {

namespace {

/// Returns the updated caches as state results (and `logits`, if given, as
/// the output) and types `fn` accordingly.
void finish(ModelBuilder &m, func::FuncOp fn, ModelBuilder::KvCache &cache, Value logits) {
  OpBuilder &b = m.b;
  SmallVector<Value> results;
  if (logits)
    results.push_back(logits);
  for (auto &[key, v] : cache.written)
    results.push_back(v);
  b.create<func::ReturnOp>(m.loc, results);
  fn.setType(b.getFunctionType(fn.front().getArgumentTypes(), ValueRange(results).getTypes()));
  unsigned i = 0;
  if (logits)
    fn.setResultAttr(i++, "trl.output", b.getStringAttr("logits"));
  for (auto &[key, v] : cache.written)
    fn.setResultAttr(i++, "trl.state", b.getStringAttr(key));
  fn->setAttr("trl.generation", b.getUnitAttr());
}

func::FuncOp newProgram(ModelBuilder &m, ModuleOp module, const char *name) {
  OpBuilder &b = m.b;
  b.setInsertionPointToEnd(module.getBody());
  auto fn = b.create<func::FuncOp>(m.loc, name, b.getFunctionType({}, {}));
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  return fn;
}

} // namespace

void buildGeneration(ModelBuilder &m, ModuleOp module, int64_t longestPrompt) {
  int64_t batch = m.stepShape.batch, slots = m.stepShape.sequenceBound;
  int64_t prefillLen = std::clamp<int64_t>(longestPrompt - 1, 1, slots);
  {
    func::FuncOp fn = newProgram(m, module, "prefill");
    ModelBuilder::KvCache cache{fn, slots, /*prefill=*/true, Value(), {}};
    auto type = m.tensor({batch, prefillLen}, m.i64);
    Value ids = m.input(fn, "input_ids", type);
    Value positions = m.input(fn, "position_ids", type);
    Value mask = m.input(fn, "attention_mask", type);
    m.kvCache = &cache;
    m.forward(ids, positions, mask, batch);  // only the caches are kept
    m.kvCache = nullptr;
    finish(m, fn, cache, Value());
  }
  {
    func::FuncOp fn = newProgram(m, module, "decode");
    auto one = m.tensor({batch, 1}, m.i64);
    Value ids = m.input(fn, "input_ids", one);
    Value positions = m.input(fn, "position_ids", one);
    Value slotMask = m.input(fn, "attention_mask", m.tensor({batch, slots}, m.i64));
    ModelBuilder::KvCache cache{fn, slots, /*prefill=*/false, slotMask, {}};
    m.kvCache = &cache;
    auto [hidden, head] = m.forward(ids, positions, Value(), batch);
    m.kvCache = nullptr;
    finish(m, fn, cache, m.linear(hidden, head));
  }
}

} // namespace trlc

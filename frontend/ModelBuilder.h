//===- ModelBuilder.h - the model's forward pass as `trl` ops ---*- C++ -*-===//
//
// What every method's graph builder (frontend/methods/) builds on: the
// step's batch inputs, the forward pass of the recipe's model (llama family
// or gpt2) for the current parameter set ("policy" or the frozen
// "reference"), and per-token log-probabilities. Parameters are read with
// `trl.param` under their Hugging Face checkpoint names.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_FRONTEND_MODELBUILDER_H
#define TRLC_FRONTEND_MODELBUILDER_H

#include "dialect/TrlDialect.h"
#include "frontend/Recipe.h"
#include "frontend/StepShape.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

#include <string>
#include <utility>

namespace trlc {

class ModelBuilder {
public:
  ModelBuilder(mlir::MLIRContext &ctx, const Recipe &recipe, const StepShape &stepShape);

  mlir::RankedTensorType tensor(llvm::ArrayRef<int64_t> shape, mlir::Type elt) {
    return mlir::RankedTensorType::get(shape, elt);
  }
  /// An f32 activation type.
  mlir::RankedTensorType act(llvm::ArrayRef<int64_t> shape) { return tensor(shape, f32); }

  /// A batch input of `fn` named `name` (trl.input); [rows, sequence bound]
  /// inputs also carry the bound and its source (trl.seq_bound).
  mlir::Value input(mlir::func::FuncOp fn, const std::string &name,
                    mlir::RankedTensorType type);

  /// The token tensors every method's batch has, named `prefix` + name:
  ///   input_ids      [B, S] i64   token ids, padded with the pad id
  ///   position_ids   [B, S] i64   0.. per example (per document once packed)
  ///   attention_mask [B, S] i64   1 on real tokens
  ///   labels         [B, S] i64   next-token targets already shifted; -100
  ///                               is ignored (prompt, padding, last position)
  struct TokenInputs {
    mlir::Value ids, positions, mask, labels;
  };
  TokenInputs tokenInputs(mlir::func::FuncOp fn, int64_t rows, const std::string &prefix = "");

  /// Final hidden states [B, S, H] and the output head's weight of the
  /// current parameter set.
  std::pair<mlir::Value, mlir::Value> forward(mlir::Value ids, mlir::Value positions,
                                              mlir::Value mask, int64_t batch);
  mlir::Value linear(mlir::Value x, mlir::Value w, mlir::Value bias = {});
  /// A sequence-classification model's score [B] (a reward model:
  /// `score.weight` [1, H] over the final hidden states), read at the
  /// position `last` [B, S] marks with 1, as transformers reads it at each
  /// row's last non-padding token.
  mlir::Value sequenceScores(const TokenInputs &in, mlir::Value last, int64_t batch);
  /// A value model's per-position values [B, S] (PPO: the score head over
  /// every final hidden state).
  mlir::Value tokenValues(const TokenInputs &in, int64_t batch);
  /// Prepended to every parameter name (PPO's value model lives in the
  /// trained set as "value_model.<its checkpoint names>").
  std::string paramPrefix;
  /// Per-token log-probabilities [B, S] of the batch's labels, of the
  /// logits divided by `temperature` (GRPO's, as TRL computes them; the
  /// hidden states are divided, which is the same for the bias-free head).
  mlir::Value tokenLogProbs(const TokenInputs &in, int64_t batch, double temperature = 1.0);

  /// The parameter set `param` reads: "policy" (trained) or "reference".
  void useParameters(const std::string &set) { paramSet = set; }

  /// Generation (frontend/methods/Generate.cpp): while set, forward() keeps
  /// every layer's keys and values in a KV cache of `slots` slots per row,
  /// persistent state "kv:LAYER.k" / "kv:LAYER.v" [B, slots, Hkv, D] read
  /// as arguments of `fn`. Each new token is written at the slot of its
  /// position. A prefill attends among its own tokens (the prompt's causal
  /// attention, `mask` its padding); a decoding step attends over the cache,
  /// `slotMask` [B, slots] naming the slots that hold real tokens.
  struct KvCache {
    mlir::func::FuncOp fn;
    int64_t slots = 0;
    bool prefill = false;
    mlir::Value slotMask;
    /// The updated caches, by state key, in layer order.
    llvm::SmallVector<std::pair<std::string, mlir::Value>> written;
  };
  KvCache *kvCache = nullptr;

  mlir::MLIRContext &ctx;
  mlir::OpBuilder b;
  const Recipe &recipe;
  const StepShape &stepShape;
  mlir::Location loc;
  mlir::Type f32, i64;

private:
  mlir::Value param(const std::string &name, llvm::ArrayRef<int64_t> shape,
                    bool transposed = false);
  mlir::Value reshape(mlir::Value x, llvm::ArrayRef<int64_t> shape);
  mlir::Value add(mlir::Value a, mlir::Value c);
  mlir::Value rmsNorm(mlir::Value x, mlir::Value w);
  mlir::Value layerNorm(mlir::Value x, const std::string &prefix);
  mlir::Value attention(mlir::Value q, mlir::Value k, mlir::Value v, mlir::Value mask,
                        int64_t batch);
  /// attention(), or with a KV cache its cached form (see KvCache).
  mlir::Value attend(mlir::Value q, mlir::Value k, mlir::Value v, mlir::Value mask,
                     mlir::Value positions, int64_t batch, int64_t layer);
  mlir::Value rope(mlir::Value x, mlir::Value positions);
  /// The op before the insertion point (null at the block's start): a
  /// decoder layer's ops are the ones built after it.
  mlir::Operation *lastBuilt();
  /// Tags the ops built after `before` (but parameter reads) `trl.layer` =
  /// the parameter prefix and `layer` ("3", PPO's "value_model.3"), for
  /// trl-offload-remat's layer checkpointing; the policy's and the
  /// reference's layer l share the tag, so CSE still merges what they
  /// compute alike. -1: "" (not a layer: the final norm).
  void tagLayer(mlir::Operation *before, int64_t layer);
  mlir::Value llamaForward(mlir::Value ids, mlir::Value positions, mlir::Value mask,
                           int64_t batch);
  mlir::Value gpt2Forward(mlir::Value ids, mlir::Value positions, mlir::Value mask,
                          int64_t batch);

  const ModelConfig &cfg;
  int64_t seqLen;
  std::string paramSet = "policy";
};

} // namespace trlc

#endif // TRLC_FRONTEND_MODELBUILDER_H

//===- Methods.h - each method's part of the training step ------*- C++ -*-===//
//
// One file per method (TRL's trainer of the same name): the extra batch
// inputs the method needs, its loss over the model's outputs
// (ModelBuilder), and any program besides train_step. A method's twin in
// the runtime (runtime/methods/) fills those inputs.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_FRONTEND_METHODS_METHODS_H
#define TRLC_FRONTEND_METHODS_METHODS_H

#include "frontend/ModelBuilder.h"

#include "mlir/IR/BuiltinOps.h"

namespace trlc {

/// What a method's train_step returns: the loss, then named metrics
/// (`trl.output`) the runtime logs.
struct StepResults {
  mlir::Value loss;
  llvm::SmallVector<std::pair<std::string, mlir::Value>> metrics;
};

/// SFT: cross entropy of the completion tokens, summed and divided by the
/// trainable tokens of the whole accumulated batch (num_items_in_batch).
StepResults buildSftLoss(ModelBuilder &m, mlir::func::FuncOp fn);
/// Generation (greedy evaluation, `trlc generate`, the online methods):
/// `@prefill` and `@decode` over a KV cache of the step's sequence bound
/// (Generate.cpp); prompts of at most `longestPrompt` tokens.
void buildGeneration(ModelBuilder &m, mlir::ModuleOp module, int64_t longestPrompt);

/// DPO: policy and reference sequence log-probabilities of the chosen and
/// rejected completions, TRL's loss types and rpo_alpha; metrics the
/// rewards and the policy's log-probabilities of each.
StepResults buildDpoLoss(ModelBuilder &m, mlir::func::FuncOp fn);
/// Online DPO: DPO's loss over the two sampled completions of each prompt,
/// chosen then rejected, with beta an input (scheduled over epochs).
StepResults buildOnlineDpoLoss(ModelBuilder &m, mlir::func::FuncOp fn);
/// DPO with precompute_ref_log_probs: `@ref_logps`, the reference's
/// log-probabilities of a batch's chosen and rejected completions, run
/// over the dataset before training.
void buildDpoRefLogps(ModelBuilder &m, mlir::ModuleOp module);

/// Reward modelling: the one-score head's scores of the chosen and
/// rejected sequences and the Bradley-Terry loss between them; metrics the
/// two scores.
StepResults buildRewardLoss(ModelBuilder &m, mlir::func::FuncOp fn);

/// KTO: completions with their desirable/undesirable labels and, for
/// loss_type kto, the KL estimate's mismatched pairs; metrics the rewards,
/// the policy's log-probabilities and the KL.
StepResults buildKtoLoss(ModelBuilder &m, mlir::func::FuncOp fn);
/// KTO with precompute_ref_log_probs: `@ref_logps` (the examples' and,
/// for loss_type kto, the KL pairs' reference log-probabilities).
void buildKtoRefLogps(ModelBuilder &m, mlir::ModuleOp module);

/// GRPO: the clipped policy objective over generated completions.
StepResults buildGrpoLoss(ModelBuilder &m, mlir::func::FuncOp fn);
/// RLOO: the clipped objective over whole completions (trl.rloo_loss).
StepResults buildRlooLoss(ModelBuilder &m, mlir::func::FuncOp fn);
/// RLOO's forward passes over the generated rows before training, as TRL
/// runs them: @old_token_logps (the policy's per-token log-probabilities,
/// with the training step's numerics: the old log-probabilities) and, with
/// beta > 0, @ref_token_logps (the reference's, for the KL in the reward).
void buildRlooLogps(ModelBuilder &m, mlir::ModuleOp module);
/// GRPO with num_iterations > 1: @old_token_logps alone (the later
/// iterations' old log-probabilities, from the policy that sampled).
void buildOldLogps(ModelBuilder &m, mlir::ModuleOp module);

/// PPO: the clipped policy and value losses of one rollout (trl.ppo_loss),
/// the policy and the value model ("value_model." parameters) trained
/// together.
StepResults buildPpoLoss(ModelBuilder &m, mlir::func::FuncOp fn);
/// PPO's rollout programs: @old_token_logps, @ref_token_logps and
/// @values (the value model's per-position values).
void buildPpoPrograms(ModelBuilder &m, mlir::ModuleOp module);

/// The online methods' reward models: `@reward_model_K` per model of
/// reward_funcs, scoring `rows` generated rows of the step's sequence bound.
void buildRewardModels(mlir::MLIRContext &ctx, const Recipe &recipe, const StepShape &shape,
                       int64_t rows, mlir::ModuleOp module);

} // namespace trlc

#endif // TRLC_FRONTEND_METHODS_METHODS_H

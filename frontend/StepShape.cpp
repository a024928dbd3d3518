//===- StepShape.cpp - the static shape of one training step --------------===//

#include "frontend/StepShape.h"

namespace trlc {

StepShape recipeStepShape(const Recipe &recipe) {
  StepShape s;
  s.batch = recipe.train.perDeviceTrainBatchSize;
  if (isOnline(recipe.method)) {
    s.sequenceBound = *recipe.data.maxPromptLength + *recipe.data.maxCompletionLength;
    s.boundSource = "max_prompt_length + max_completion_length";
  } else {
    s.sequenceBound = *recipe.data.maxLength;
    s.boundSource = "max_length";
  }
  return s;
}

} // namespace trlc

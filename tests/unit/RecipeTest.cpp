//===- RecipeTest.cpp - recipe parsing, defaults and errors ---------------===//

#include "frontend/Recipe.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

using namespace trlc;

namespace {

// A minimal valid recipe; malformed cases below are written out in full so
// that each error's line and column can be read off the test.
const char *kMinimal = R"(method = "sft"
[model.config]
hidden_size = 64
intermediate_size = 128
num_hidden_layers = 2
num_attention_heads = 4
vocab_size = 32
[data]
train = "data.jsonl"
)";

Recipe parseOk(const std::string &text,
               const std::vector<std::string> &overrides = {}) {
  auto r = parseRecipe(text, "r.toml", overrides);
  EXPECT_TRUE(static_cast<bool>(r)) << (r ? "" : r.error().message);
  return r ? *r : Recipe{};
}

TEST(Recipe, SftDefaultsAreTrl) {
  Recipe r = parseOk(kMinimal);
  EXPECT_EQ(r.method, Method::SFT);
  EXPECT_EQ(r.data.maxLength, 1024);
  EXPECT_EQ(r.data.truncationMode, "keep_start");
  EXPECT_FALSE(r.data.packing);
  EXPECT_EQ(r.data.packingStrategy, "bfd");
  EXPECT_FALSE(r.data.completionOnlyLoss.has_value());  // auto, as in TRL
  EXPECT_DOUBLE_EQ(r.train.learningRate, 2e-5);
  EXPECT_EQ(r.train.lrSchedulerType, "linear");
  EXPECT_EQ(r.train.perDeviceTrainBatchSize, 8);
  EXPECT_DOUBLE_EQ(r.train.numTrainEpochs, 3.0);
  EXPECT_DOUBLE_EQ(r.train.maxGradNorm, 1.0);
  EXPECT_EQ(r.train.seed, 42);
  EXPECT_EQ(r.memory.zeroStage, 0);
  EXPECT_FALSE(r.memory.budgetBytes.has_value());
  EXPECT_EQ(r.output.outputDir, "runs/r");
  EXPECT_EQ(r.output.loggingSteps, 10);
  EXPECT_EQ(r.model.dtype, "bf16");
}

TEST(Recipe, MethodDependentDefaults) {
  std::string dpo = kMinimal;
  dpo.replace(dpo.find("\"sft\""), 5, "\"dpo\"");
  Recipe r = parseOk(dpo);
  EXPECT_DOUBLE_EQ(r.train.learningRate, 1e-6);
  EXPECT_EQ(r.data.truncationMode, "keep_end");
  EXPECT_EQ(r.data.maxPromptLength, 512);
  EXPECT_FALSE(r.data.maxCompletionLength.has_value());
  EXPECT_DOUBLE_EQ(r.dpo.beta, 0.1);
  EXPECT_EQ(r.dpo.lossType, "sigmoid");

  std::string grpo = kMinimal;
  grpo.replace(grpo.find("\"sft\""), 5, "\"grpo\"");
  grpo += "[grpo]\nreward_funcs = \"accuracy\"\n";  // a reward is required
  r = parseOk(grpo);
  EXPECT_EQ(r.grpo.rewardFuncs, std::vector<std::string>{"accuracy"});
  EXPECT_EQ(r.grpo.rewardWeights, std::vector<double>{1.0});
  EXPECT_EQ(r.grpo.scaleRewards, "group");
  EXPECT_DOUBLE_EQ(r.grpo.temperature, 1.0);
  EXPECT_EQ(r.grpo.topK, 0);
  EXPECT_EQ(r.grpo.numGenerations, 8);
  EXPECT_EQ(r.grpo.maxCompletionLength, 512);
  EXPECT_DOUBLE_EQ(r.grpo.epsilonHigh, 0.2);  // defaults to epsilon
  EXPECT_DOUBLE_EQ(r.grpo.beta, 0.0);
  EXPECT_EQ(r.grpo.lossType, "dapo");
  EXPECT_DOUBLE_EQ(r.train.learningRate, 1e-6);

  // RLOOConfig's and OnlineDPOConfig's defaults.
  std::string rloo = kMinimal;
  rloo.replace(rloo.find("\"sft\""), 5, "\"rloo\"");
  rloo += "[rloo]\nreward_funcs = \"accuracy\"\n";
  r = parseOk(rloo);
  EXPECT_DOUBLE_EQ(r.train.learningRate, 1e-6);
  EXPECT_EQ(r.grpo.numGenerations, 2);
  EXPECT_DOUBLE_EQ(r.grpo.beta, 0.05);
  EXPECT_EQ(r.grpo.maxCompletionLength, 256);

  std::string online = kMinimal;
  online.replace(online.find("\"sft\""), 5, "\"online_dpo\"");
  online += "[online_dpo]\nreward_funcs = \"accuracy\"\n";
  r = parseOk(online);
  EXPECT_DOUBLE_EQ(r.train.learningRate, 5e-7);
  EXPECT_EQ(r.grpo.numGenerations, 2);
  EXPECT_EQ(r.grpo.maxCompletionLength, 64);  // max_new_tokens
  EXPECT_DOUBLE_EQ(r.grpo.temperature, 0.9);
  EXPECT_EQ(r.onlineDpo.betas, std::vector<double>{0.1});
  EXPECT_EQ(r.onlineDpo.lossType, "sigmoid");
  EXPECT_FALSE(r.onlineDpo.missingEosPenalty.has_value());
  std::string ppo = kMinimal;
  ppo.replace(ppo.find("\"sft\""), 5, "\"ppo\"");
  ppo += "[ppo]\nreward_funcs = \"accuracy\"\n";
  Recipe p = parseOk(ppo);  // PPOConfig's defaults
  EXPECT_DOUBLE_EQ(p.train.learningRate, 3e-6);
  EXPECT_EQ(p.grpo.maxCompletionLength, 53);  // response_length
  EXPECT_DOUBLE_EQ(p.grpo.temperature, 0.7);
  EXPECT_EQ(p.ppo.numPpoEpochs, 4);
  EXPECT_DOUBLE_EQ(p.ppo.klCoef, 0.05);
  EXPECT_EQ(p.ppo.klEstimator, "k1");
  EXPECT_DOUBLE_EQ(p.ppo.vfCoef, 0.1);
  EXPECT_DOUBLE_EQ(p.ppo.lam, 0.95);
  EXPECT_DOUBLE_EQ(p.ppo.gamma, 1.0);
  EXPECT_EQ(p.ppo.valueModelConfig.hiddenSize, 64);  // the policy's, without a reward model
  r = parseOk(online + "beta = [0.1, 0.05]\nmissing_eos_penalty = 1.0\n");
  EXPECT_EQ(r.onlineDpo.betas, (std::vector<double>{0.1, 0.05}));
  EXPECT_EQ(r.onlineDpo.missingEosPenalty, 1.0);

  // RewardConfig's: max_length 1024 (longer pairs dropped), no prompt or
  // completion limits, no truncation mode.
  std::string reward = kMinimal;
  reward.replace(reward.find("\"sft\""), 5, "\"reward\"");
  r = parseOk(reward);
  EXPECT_EQ(r.method, Method::Reward);
  EXPECT_DOUBLE_EQ(r.train.learningRate, 1e-4);
  EXPECT_EQ(r.data.maxLength, 1024);
  EXPECT_FALSE(r.data.maxPromptLength.has_value());
  EXPECT_FALSE(r.data.maxCompletionLength.has_value());
  EXPECT_EQ(r.data.truncationMode, "");
}

TEST(Recipe, PeftDefaults) {
  // No [peft] table: no LoRA, and no [peft] defaults in the resolved recipe.
  Recipe r = parseOk(kMinimal);
  EXPECT_FALSE(r.peft.enabled);
  EXPECT_EQ(r.resolvedToml.find("[peft]"), std::string::npos);
  // LoraConfig's defaults, PEFT's target modules for llama.
  r = parseOk(std::string(kMinimal) + "[peft]\n");
  EXPECT_TRUE(r.peft.enabled);
  EXPECT_EQ(r.peft.r, 8);
  EXPECT_DOUBLE_EQ(r.peft.loraAlpha, 8.0);
  EXPECT_EQ(r.peft.targetModules, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_FALSE(r.peft.useRslora);
  EXPECT_TRUE(r.peft.initLoraWeights);
  r = parseOk(std::string(kMinimal) + "[peft]\ntarget_modules = \"all-linear\"\n");
  EXPECT_EQ(r.peft.targetModules.size(), 7u);
}

TEST(Recipe, ModelConfigDefaults) {
  Recipe r = parseOk(kMinimal);
  const ModelConfig &c = r.model.config;
  EXPECT_EQ(c.family, ModelFamily::Llama);
  EXPECT_EQ(c.numKvHeads, 4);
  EXPECT_EQ(c.headDim, 16);
  EXPECT_DOUBLE_EQ(c.ropeTheta, 10000.0);
  EXPECT_FALSE(c.tieWordEmbeddings);
  // embed + 2 layers * (attn 4*64*64 + mlp 3*64*128 + 2 norms) + norm + head
  EXPECT_EQ(c.numParameters(),
            32 * 64 + 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 64 + 32 * 64);
}

TEST(Recipe, SetOverridesAnyKey) {
  Recipe r = parseOk(kMinimal, {"train.learning_rate=1e-4", "data.packing=true",
                                "data.packing_strategy=bfd_split",
                                "model.config.num_key_value_heads=2",
                                "memory.budget=20GiB", "output.output_dir=out"});
  EXPECT_DOUBLE_EQ(r.train.learningRate, 1e-4);
  EXPECT_TRUE(r.data.packing);
  EXPECT_EQ(r.data.packingStrategy, "bfd_split");
  EXPECT_EQ(r.model.config.numKvHeads, 2);
  EXPECT_EQ(r.memory.budgetBytes, int64_t(20) << 30);
  EXPECT_EQ(r.output.outputDir, "out");
}

TEST(Recipe, SeedAliasIsAccepted) {
  Recipe r = parseOk(std::string(kMinimal) + "[memory]\nuse_liger_loss = true\n");
  EXPECT_TRUE(r.memory.useLigerKernel);
}

TEST(Recipe, PrintConfigShowsEveryDefaultAndReparses) {
  Recipe r = parseOk(kMinimal);
  for (const char *key : {"max_length = 1024", "truncation_mode = \"keep_start\"",
                          "learning_rate = 2e-05", "zero_stage = 0",
                          "budget = \"auto\"", "logging_steps = 10",
                          "loss_type = \"nll\"", "num_key_value_heads = 4"})
    EXPECT_NE(r.resolvedToml.find(key), std::string::npos) << key;
  auto again = parseRecipe(r.resolvedToml, "resolved.toml");
  ASSERT_TRUE(static_cast<bool>(again)) << again.error().message;
  EXPECT_EQ(again->resolvedToml.substr(again->resolvedToml.find('\n')),
            r.resolvedToml.substr(r.resolvedToml.find('\n')));
}

TEST(Recipe, ModelDirectoryConfigJson) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("trlc-model-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << R"({
  "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
  "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
  "rope_theta": 1000000.0, "tie_word_embeddings": true,
  "eos_token_id": [7, 8], "sliding_window": 4096, "unknown_future_key": 1
})";
  std::string text = "method = \"sft\"\n[model]\npath = \"" + dir.string() +
                     "\"\n[data]\ntrain = \"d.jsonl\"\n";
  Recipe r = parseOk(text);
  EXPECT_EQ(r.model.config.family, ModelFamily::Qwen2);
  EXPECT_TRUE(r.model.config.attentionBias);  // qwen2 always has qkv bias
  EXPECT_EQ(r.model.config.eosTokenId, 7);
  EXPECT_DOUBLE_EQ(r.model.config.ropeTheta, 1e6);

  std::ofstream(dir / "config.json") << "{\n  \"model_type\": \"llama\",\n  \"hidden_size\": \"64\"\n}";
  auto bad = parseRecipe(text, "r.toml");
  ASSERT_FALSE(static_cast<bool>(bad));
  EXPECT_EQ(bad.error().message,
            (dir / "config.json").string() +
                ":3:3: error: config.json hidden_size must be an integer, got \"64\"");
  fs::remove_all(dir);
}

struct BadRecipe {
  const char *name;
  std::string text;
  std::vector<std::string> overrides;
  std::string error;
};

std::string withModel(const std::string &rest) {
  return "method = \"sft\"\n[model.config]\nhidden_size = 64\nintermediate_size = 128\n"
         "num_hidden_layers = 2\nnum_attention_heads = 4\nvocab_size = 32\n" +
         rest;
}

// Lines 1-7 are the method and model of withModel(); line 8 is the first of
// `rest`.
std::vector<BadRecipe> badRecipes() {
  return {
      {"syntax", "method = \"sft\n", {}, "r.toml:1:14: error: Error while parsing string: unescaped control characters other than TAB (U+0009) are explicitly prohibited"},
      {"missing_method", "[data]\ntrain = \"d.jsonl\"\n", {}, "r.toml: error: missing required key 'method' (one of \"sft\", \"dpo\", \"kto\", \"grpo\", \"rloo\", \"online_dpo\", \"ppo\", \"reward\"); add for example method = \"sft\" at the top of the recipe"},
      {"bad_method", "method = \"orpo\"\n", {}, "r.toml:1:10: error: method must be one of \"sft\", \"dpo\", \"kto\", \"grpo\", \"rloo\", \"online_dpo\", \"ppo\" or \"reward\", got \"orpo\"; did you mean \"grpo\"?"},
      {"method_type", "method = 1\n", {}, "r.toml:1:10: error: method must be a string, got an integer (1)"},
      {"unknown_section", withModel("[trainer]\nseed = 1\n"), {}, "r.toml:8:2: error: unknown top-level key 'trainer'; did you mean 'train'?"},
      {"key_without_section", withModel("[data]\ntrain = \"d.jsonl\"\n").insert(15, "learning_rate = 1.0\n"), {}, "r.toml:2:1: error: unknown top-level key 'learning_rate'; 'learning_rate' belongs in [train]"},
      {"unknown_key_typo", withModel("[data]\ntrain = \"d.jsonl\"\n[train]\nlerning_rate = 1e-4\n"), {}, "r.toml:11:1: error: unknown key 'lerning_rate' in [train]; did you mean 'learning_rate'?"},
      {"key_in_wrong_section", withModel("[data]\ntrain = \"d.jsonl\"\nseed = 3\n"), {}, "r.toml:10:1: error: unknown key 'seed' in [data]; 'seed' belongs in [train]"},
      {"wrong_type_int", withModel("[data]\ntrain = \"d.jsonl\"\nmax_length = \"1024\"\n"), {}, "r.toml:10:14: error: [data] max_length must be an integer, got a string (\"1024\")"},
      {"wrong_type_float", withModel("[data]\ntrain = \"d.jsonl\"\n[train]\nlearning_rate = \"fast\"\n"), {}, "r.toml:11:17: error: [train] learning_rate must be a number, got a string (\"fast\")"},
      {"wrong_type_bool", withModel("[data]\ntrain = \"d.jsonl\"\npacking = 1\n"), {}, "r.toml:10:11: error: [data] packing must be true or false, got an integer (1)"},
      {"out_of_range", withModel("[data]\ntrain = \"d.jsonl\"\nmax_length = 0\n"), {}, "r.toml:10:14: error: [data] max_length must be in [1, 16777216], got 0"},
      {"negative_lr", withModel("[data]\ntrain = \"d.jsonl\"\n[train]\nlearning_rate = -1e-5\n"), {}, "r.toml:11:17: error: [train] learning_rate must be in [0, 10], got -1e-05"},
      {"zero_stage_5", withModel("[data]\ntrain = \"d.jsonl\"\n[memory]\nzero_stage = 5\n"), {}, "r.toml:11:14: error: [memory] zero_stage must be in [0, 3], got 5"},
      {"bad_enum", withModel("[data]\ntrain = \"d.jsonl\"\ntruncation_mode = \"keep_middle\"\n"), {}, "r.toml:10:19: error: [data] truncation_mode must be one of \"keep_start\" or \"keep_end\", got \"keep_middle\""},
      {"enum_typo", withModel("[data]\ntrain = \"d.jsonl\"\npacking = true\npacking_strategy = \"bdf\"\n"), {}, "r.toml:11:20: error: [data] packing_strategy must be one of \"bfd\", \"bfd_split\" or \"wrapped\", got \"bdf\"; did you mean \"bfd\"?"},
      {"packing_strategy_without_packing", withModel("[data]\ntrain = \"d.jsonl\"\npacking_strategy = \"bfd_split\"\n"), {}, "r.toml:10:20: error: [data] packing_strategy has no effect without packing; add packing = true or remove it"},
      {"method_table_mismatch", withModel("[data]\ntrain = \"d.jsonl\"\n[dpo]\nbeta = 0.2\n"), {}, "r.toml:10:1: error: table [dpo] does not apply to method = \"sft\"; remove it or set method = \"dpo\""},
      {"key_for_other_method", withModel("[data]\ntrain = \"d.jsonl\"\nmax_prompt_length = 128\n"), {}, "r.toml:10:21: error: [data] max_prompt_length applies to method dpo, kto, grpo, rloo, online_dpo, ppo only (this recipe has method = \"sft\")"},
      {"missing_data", withModel(""), {}, "r.toml: error: missing required table [data] with train = \"FILE.jsonl\""},
      {"missing_train", withModel("[data]\nmax_length = 64\n"), {}, "r.toml:8:1: error: missing required key 'train' in [data]: the JSONL training file(s)"},
      {"empty_train_list", withModel("[data]\ntrain = []\n"), {}, "r.toml:9:9: error: [data] train must list at least one file"},
      {"missing_model", "method = \"sft\"\n[data]\ntrain = \"d.jsonl\"\n", {}, "r.toml: error: missing the model: add a [model] table with path = \"DIR\" or a [model.config] table"},
      {"path_and_config", "method = \"sft\"\n[model]\npath = \"m\"\n[model.config]\nhidden_size = 8\n[data]\ntrain = \"d.jsonl\"\n", {}, "r.toml:4:1: error: [model] has both path and [model.config]; use path for a Hugging Face model directory or [model.config] to train from scratch, not both"},
      {"model_path_missing_dir", "method = \"sft\"\n[model]\npath = \"/nonexistent/model\"\n[data]\ntrain = \"d.jsonl\"\n", {}, "r.toml:3:8: error: [model] path '/nonexistent/model' is not a directory; give a Hugging Face model directory holding config.json"},
      {"config_missing_key", "method = \"sft\"\n[model.config]\nhidden_size = 64\n[data]\ntrain = \"d.jsonl\"\n", {}, "r.toml:2:1: error: missing required key 'intermediate_size'"},
      {"config_unknown_key", withModel("hiden_act = \"silu\"\n[data]\ntrain = \"d.jsonl\"\n"), {}, "r.toml:8:13: error: unknown key 'hiden_act' in [model.config]; did you mean 'hidden_act'?"},
      {"config_heads", withModel("num_key_value_heads = 3\n[data]\ntrain = \"d.jsonl\"\n"), {}, "r.toml:8:23: error: [model.config] num_attention_heads (4) must be a multiple of num_key_value_heads (3)"},
      {"config_model_type", withModel("model_type = \"bert\"\n[data]\ntrain = \"d.jsonl\"\n"), {}, "r.toml:8:14: error: model_type \"bert\" is not supported; trlc builds llama, qwen2, qwen3, mistral and gpt2"},
      {"config_rope_scaling", withModel("rope_scaling = { rope_type = \"yarn\", factor = 4.0 }\n[data]\ntrain = \"d.jsonl\"\n"), {}, "r.toml:8:30: error: rope_scaling type \"yarn\" is not supported; trlc implements \"default\" and \"llama3\""},
      {"init_seed_with_path", "method = \"sft\"\n[model]\npath = \"m\"\ninit_seed = 3\n[data]\ntrain = \"d.jsonl\"\n", {}, "r.toml:4:13: error: [model] init_seed applies to models trained from scratch ([model.config]); a model loaded from [model] path keeps its weights"},
      {"warmup_both", withModel("[data]\ntrain = \"d.jsonl\"\n[train]\nwarmup_ratio = 0.1\nwarmup_steps = 10\n"), {}, "r.toml:12:16: error: [train] warmup_steps and warmup_ratio are both set; keep one of them"},
      {"generation_key_for_sft", withModel("[data]\ntrain = \"d.jsonl\"\n[memory]\nds3_gather_for_generation = false\n"), {}, "r.toml:11:29: error: [memory] ds3_gather_for_generation applies to the online methods (grpo, rloo, online_dpo, ppo) only; remove it"},
      {"alias_and_canonical", withModel("[data]\ntrain = \"d.jsonl\"\n[memory]\nuse_liger_loss = true\nuse_liger_kernel = true\n"), {}, "r.toml:11:18: error: set either [memory] use_liger_loss or [memory] use_liger_kernel (an alias of it), not both"},
      {"bad_budget", withModel("[data]\ntrain = \"d.jsonl\"\n[memory]\nbudget = \"20 gigs\"\n"), {}, "r.toml:11:10: error: [memory] budget must be \"auto\" or a size such as \"20GiB\", \"512MiB\" or \"8GB\", got \"20 gigs\""},
      {"section_not_table", withModel("[data]\ntrain = \"d.jsonl\"\n").insert(15, "train = 3\n"), {}, "r.toml:2:9: error: 'train' must be a table ([train]), got an integer"},
      {"prompt_longer_than_max", "method = \"dpo\"\n[model.config]\nhidden_size = 64\nintermediate_size = 128\nnum_hidden_layers = 2\nnum_attention_heads = 4\nvocab_size = 32\n[data]\ntrain = \"d.jsonl\"\nmax_length = 128\nmax_prompt_length = 256\n", {}, "r.toml:11:21: error: [data] max_prompt_length (256) must be smaller than max_length (128), or every example would be dropped"},
      {"grpo_generations", "method = \"grpo\"\n[model.config]\nhidden_size = 64\nintermediate_size = 128\nnum_hidden_layers = 2\nnum_attention_heads = 4\nvocab_size = 32\n[data]\ntrain = \"d.jsonl\"\n[train]\nper_device_train_batch_size = 12\n[grpo]\nnum_generations = 8\n", {}, "r.toml:13:19: error: the generation batch (per_device_train_batch_size x gradient_accumulation_steps = 12) must be a multiple of [grpo] num_generations (8)"},
      {"set_unknown_key", kMinimal, {"train.lerning_rate=1"}, "--set train.lerning_rate=1: error: unknown key 'train.lerning_rate'; did you mean 'train.learning_rate'?"},
      {"set_bad_value", kMinimal, {"data.max_length=-3"}, "--set data.max_length=-3: error: [data] max_length must be in [1, 16777216], got -3"},
      {"set_malformed", kMinimal, {"learning_rate"}, "--set learning_rate: error: expected section.key=value, for example --set train.learning_rate=1e-4"},
  };
}

class MalformedRecipe : public ::testing::TestWithParam<BadRecipe> {};

TEST_P(MalformedRecipe, ReportsExactErrorAndPosition) {
  const BadRecipe &c = GetParam();
  auto r = parseRecipe(c.text, "r.toml", c.overrides);
  ASSERT_FALSE(static_cast<bool>(r)) << "recipe was accepted:\n" << c.text;
  EXPECT_EQ(r.error().message, c.error);
}

INSTANTIATE_TEST_SUITE_P(
    Recipe, MalformedRecipe, ::testing::ValuesIn(badRecipes()),
    [](const ::testing::TestParamInfo<BadRecipe> &info) {
      return std::string(info.param.name);
    });

TEST(Recipe, AtLeastTwentyFiveMalformedCases) {
  EXPECT_GE(badRecipes().size(), 25u);
}

TEST(Recipe, UnreadableFile) {
  auto r = loadRecipe("/nonexistent/recipe.toml");
  ASSERT_FALSE(static_cast<bool>(r));
  EXPECT_EQ(r.error().message,
            "/nonexistent/recipe.toml: error: cannot read the recipe (no such file)");
}

} // namespace

//===- ModelConfig.cpp - Hugging Face config.json, normalised -------------===//
//
// Both sources (a config.json file and an inline [model.config] table) are
// read as JSON; a locator maps each key back to its line and column.
//
//===----------------------------------------------------------------------===//

#include "frontend/ModelConfig.h"
#include "trlc/Files.h"
#include "frontend/Suggest.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <functional>
#include <set>
#include <sstream>

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace trlc {

const char *familyName(ModelFamily family) {
  switch (family) {
  case ModelFamily::Llama: return "llama";
  case ModelFamily::Qwen2: return "qwen2";
  case ModelFamily::Qwen3: return "qwen3";
  case ModelFamily::Mistral: return "mistral";
  case ModelFamily::GPT2: return "gpt2";
  }
  return "?";
}

int64_t ModelConfig::numParameters() const {
  int64_t h = hiddenSize, layers = numLayers;
  int64_t q = numHeads * headDim, kv = numKvHeads * headDim;
  int64_t embed = vocabSize * h;
  int64_t head = tieWordEmbeddings ? 0 : vocabSize * h;
  if (family == ModelFamily::GPT2) {
    int64_t perLayer = 2 * 2 * h            // ln_1, ln_2
                       + h * 3 * h + 3 * h  // c_attn
                       + h * h + h          // attn c_proj
                       + h * intermediateSize + intermediateSize  // c_fc
                       + intermediateSize * h + h;                // c_proj
    return embed + maxPositionEmbeddings * h + layers * perLayer + 2 * h + head;
  }
  int64_t attn = h * q + 2 * h * kv + q * h;
  if (attentionBias)
    attn += q + 2 * kv;
  if (qkNorm)
    attn += 2 * headDim;
  int64_t mlp = 3 * h * intermediateSize;
  int64_t perLayer = attn + mlp + 2 * h;
  return embed + layers * perLayer + h + head;
}

namespace {

using Locator = std::function<Error(const std::string &key, const std::string &msg)>;

/// Reads typed keys from a JSON object, remembering the first error.
class Reader {
public:
  Reader(const json &obj, Locator locate, std::string context)
      : obj(obj), locate(std::move(locate)), context(std::move(context)) {}

  std::optional<Error> error;

  bool has(const std::string &key) const {
    return obj.contains(key) && !obj[key].is_null();
  }

  int64_t integer(const std::string &key, std::optional<int64_t> def,
                  int64_t lo = 1) {
    used.insert(key);
    if (!has(key)) {
      if (!def)
        fail(key, "missing required key '" + key + "'", /*atKey=*/false);
      return def.value_or(0);
    }
    const json &v = obj[key];
    if (!v.is_number_integer()) {
      fail(key, name(key) + " must be an integer, got " + v.dump());
      return 0;
    }
    int64_t x = v.get<int64_t>();
    if (x < lo)
      fail(key, name(key) + " must be >= " + std::to_string(lo) + ", got " +
                    std::to_string(x));
    return x;
  }

  double number(const std::string &key, double def, bool positive = true) {
    used.insert(key);
    if (!has(key))
      return def;
    const json &v = obj[key];
    if (!v.is_number()) {
      fail(key, name(key) + " must be a number, got " + v.dump());
      return def;
    }
    double x = v.get<double>();
    if (positive && !(x > 0))
      fail(key, name(key) + " must be > 0, got " + v.dump());
    return x;
  }

  bool boolean(const std::string &key, bool def) {
    used.insert(key);
    if (!has(key))
      return def;
    const json &v = obj[key];
    if (!v.is_boolean()) {
      fail(key, name(key) + " must be true or false, got " + v.dump());
      return def;
    }
    return v.get<bool>();
  }

  std::string string(const std::string &key, std::optional<std::string> def) {
    used.insert(key);
    if (!has(key)) {
      if (!def)
        fail(key, "missing required key '" + key + "'", /*atKey=*/false);
      return def.value_or("");
    }
    const json &v = obj[key];
    if (!v.is_string()) {
      fail(key, name(key) + " must be a string, got " + v.dump());
      return "";
    }
    return v.get<std::string>();
  }

  /// Token ids may be an integer, null, or a list (Llama-3 lists several
  /// EOS ids; the first is the one appended to completions).
  std::optional<int64_t> tokenId(const std::string &key) {
    used.insert(key);
    if (!has(key))
      return std::nullopt;
    const json &v = obj[key];
    if (v.is_number_integer() && v.get<int64_t>() >= 0)
      return v.get<int64_t>();
    if (v.is_array() && !v.empty() && v[0].is_number_integer())
      return v[0].get<int64_t>();
    fail(key, name(key) + " must be a token id or a list of them, got " +
                  v.dump());
    return std::nullopt;
  }

  void ignore(const std::string &key) { used.insert(key); }

  /// Reports the first key that nothing read (strict sources only).
  void rejectUnused() {
    if (error)
      return;
    std::vector<std::string> known(used.begin(), used.end());
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      if (used.count(it.key()))
        continue;
      std::string msg = "unknown key '" + it.key() + "' in " + context;
      if (auto best = closestMatch(it.key(), known))
        msg += "; did you mean '" + *best + "'?";
      fail(it.key(), msg);
      return;
    }
  }

  void fail(const std::string &key, const std::string &msg, bool atKey = true) {
    if (!error)
      error = locate(atKey ? key : "", msg);
  }

  std::string name(const std::string &key) const {
    return context + " " + key;
  }

private:
  const json &obj;
  Locator locate;
  std::string context;
  std::set<std::string> used;
};

const char *const kFamilies[] = {"llama", "qwen2", "qwen3", "mistral", "gpt2"};

std::optional<Error> readRopeScaling(Reader &r, const json &obj,
                                     const Locator &locate,
                                     ModelConfig &config) {
  r.ignore("rope_scaling");
  if (!r.has("rope_scaling"))
    return std::nullopt;
  const json &rs = obj["rope_scaling"];
  if (!rs.is_object())
    return locate("rope_scaling", "rope_scaling must be a table (or null), got " +
                                      rs.dump());
  Locator inner = [&](const std::string &key, const std::string &msg) {
    return locate(key.empty() ? "rope_scaling" : key, msg);
  };
  Reader sr(rs, inner, "rope_scaling");
  std::string type = sr.has("rope_type") ? sr.string("rope_type", "default")
                                         : sr.string("type", "default");
  if (type == "default") {
    sr.ignore("factor");
    return sr.error;
  }
  if (type != "llama3")
    return locate("rope_type", "rope_scaling type \"" + type +
                                   "\" is not supported; trlc implements "
                                   "\"default\" and \"llama3\"");
  RopeScaling s;
  s.factor = sr.number("factor", s.factor);
  s.lowFreqFactor = sr.number("low_freq_factor", s.lowFreqFactor);
  s.highFreqFactor = sr.number("high_freq_factor", s.highFreqFactor);
  s.originalMaxPositionEmbeddings = sr.integer(
      "original_max_position_embeddings", s.originalMaxPositionEmbeddings);
  if (sr.error)
    return sr.error;
  if (s.highFreqFactor <= s.lowFreqFactor)
    return locate("high_freq_factor",
                  "rope_scaling high_freq_factor must be greater than "
                  "low_freq_factor");
  config.ropeScaling = s;
  return std::nullopt;
}

Expected<ModelConfig> readConfig(const json &obj, const Locator &locate,
                                 const std::string &context, bool strict,
                                 std::optional<std::string> defaultType) {
  Reader r(obj, locate, context);
  ModelConfig c;
  std::string type = r.string("model_type", defaultType);
  if (r.error)
    return *r.error;
  bool knownFamily = false;
  for (unsigned i = 0; i < std::size(kFamilies); ++i)
    if (type == kFamilies[i]) {
      c.family = static_cast<ModelFamily>(i);
      knownFamily = true;
    }
  if (!knownFamily) {
    std::string msg = "model_type \"" + type +
                      "\" is not supported; trlc builds llama, qwen2, qwen3, "
                      "mistral and gpt2";
    return locate("model_type", msg);
  }
  // Keys every Hugging Face config carries that do not change the graph.
  for (const char *k : {"architectures", "torch_dtype", "transformers_version",
                        "use_cache", "initializer_range", "_name_or_path"})
    r.ignore(k);
  c.initializerRange = r.number("initializer_range", 0.02);

  if (c.family == ModelFamily::GPT2) {
    c.vocabSize = r.integer("vocab_size", std::nullopt);
    c.maxPositionEmbeddings = r.integer("n_positions", std::nullopt);
    c.hiddenSize = r.integer("n_embd", std::nullopt);
    c.numLayers = r.integer("n_layer", std::nullopt);
    c.numHeads = r.integer("n_head", std::nullopt);
    c.numKvHeads = c.numHeads;
    c.intermediateSize = r.has("n_inner") ? r.integer("n_inner", std::nullopt)
                                          : 4 * c.hiddenSize;
    r.ignore("n_inner");
    c.normEps = r.number("layer_norm_epsilon", 1e-5);
    c.hiddenAct = r.string("activation_function", "gelu_new");
    c.tieWordEmbeddings = r.boolean("tie_word_embeddings", true);
    c.attentionBias = true;
    c.bosTokenId = r.tokenId("bos_token_id");
    c.eosTokenId = r.tokenId("eos_token_id");
    c.padTokenId = r.tokenId("pad_token_id");
    if (r.error)
      return *r.error;
    if (c.hiddenAct != "gelu_new" && c.hiddenAct != "gelu" &&
        c.hiddenAct != "gelu_pytorch_tanh")
      return locate("activation_function",
                    context + " activation_function \"" + c.hiddenAct +
                        "\" is not supported; use \"gelu_new\", "
                        "\"gelu_pytorch_tanh\" or \"gelu\"");
    if (!c.tieWordEmbeddings)
      return locate("tie_word_embeddings",
                    "gpt2 ties its output head to the token embedding; "
                    "tie_word_embeddings = false is not supported");
    if (c.hiddenSize % c.numHeads != 0)
      return locate("n_head", context + " n_embd (" +
                                  std::to_string(c.hiddenSize) +
                                  ") must be a multiple of n_head (" +
                                  std::to_string(c.numHeads) + ")");
    c.headDim = c.hiddenSize / c.numHeads;
  } else {
    c.hiddenSize = r.integer("hidden_size", std::nullopt);
    c.intermediateSize = r.integer("intermediate_size", std::nullopt);
    c.numLayers = r.integer("num_hidden_layers", std::nullopt);
    c.numHeads = r.integer("num_attention_heads", std::nullopt);
    c.vocabSize = r.integer("vocab_size", std::nullopt);
    if (r.error)
      return *r.error;
    c.numKvHeads = r.integer("num_key_value_heads", c.numHeads);
    bool explicitHeadDim = r.has("head_dim");
    c.headDim = explicitHeadDim ? r.integer("head_dim", std::nullopt)
                                : c.hiddenSize / c.numHeads;
    r.ignore("head_dim");
    c.maxPositionEmbeddings = r.integer("max_position_embeddings", 2048);
    c.normEps = r.number("rms_norm_eps", 1e-6);
    c.ropeTheta = r.number("rope_theta", 10000.0);
    c.tieWordEmbeddings = r.boolean("tie_word_embeddings", false);
    // Qwen2 always has q/k/v biases; llama, mistral and qwen3 follow the
    // attention_bias flag.
    c.attentionBias = c.family == ModelFamily::Qwen2
                          ? true
                          : r.boolean("attention_bias", false);
    if (c.family == ModelFamily::Qwen2)
      r.ignore("attention_bias");
    c.qkNorm = c.family == ModelFamily::Qwen3;
    c.hiddenAct = r.string("hidden_act", "silu");
    c.bosTokenId = r.tokenId("bos_token_id");
    c.eosTokenId = r.tokenId("eos_token_id");
    c.padTokenId = r.tokenId("pad_token_id");
    for (const char *k : {"sliding_window", "use_sliding_window",
                          "max_window_layers", "attention_dropout",
                          "mlp_bias", "pretraining_tp", "rope_type"})
      r.ignore(k);
    if (r.error)
      return *r.error;
    if (auto err = readRopeScaling(r, obj, locate, c))
      return *err;
    if (c.hiddenAct != "silu")
      return locate("hidden_act", context + " hidden_act \"" + c.hiddenAct +
                                      "\" is not supported; the llama family "
                                      "uses \"silu\" (SwiGLU)");
    if (c.numHeads % c.numKvHeads != 0)
      return locate("num_key_value_heads",
                    context + " num_attention_heads (" +
                        std::to_string(c.numHeads) +
                        ") must be a multiple of num_key_value_heads (" +
                        std::to_string(c.numKvHeads) + ")");
    if (!explicitHeadDim && c.hiddenSize % c.numHeads != 0)
      return locate("num_attention_heads",
                    context + " hidden_size (" + std::to_string(c.hiddenSize) +
                        ") must be a multiple of num_attention_heads (" +
                        std::to_string(c.numHeads) + "), or set head_dim");
    if (c.headDim % 2 != 0)
      return locate(explicitHeadDim ? "head_dim" : "num_attention_heads",
                    context + " head_dim (" + std::to_string(c.headDim) +
                        ") must be even for rotary embeddings");
  }
  for (auto [key, id] : {std::pair{"bos_token_id", c.bosTokenId},
                         std::pair{"eos_token_id", c.eosTokenId},
                         std::pair{"pad_token_id", c.padTokenId}})
    if (!r.error && id && *id >= c.vocabSize)
      return locate(key, context + " " + key + " " + std::to_string(*id) +
                             " is outside the vocabulary (vocab_size " +
                             std::to_string(c.vocabSize) + "); use an id below " +
                             std::to_string(c.vocabSize));
  if (strict)
    r.rejectUnused();
  if (r.error)
    return *r.error;
  return c;
}

json tomlToJson(const toml::node &node) {
  if (auto t = node.as_table()) {
    json obj = json::object();
    for (auto &&[k, v] : *t)
      obj[std::string(k.str())] = tomlToJson(v);
    return obj;
  }
  if (auto a = node.as_array()) {
    json arr = json::array();
    for (const toml::node &e : *a)
      arr.push_back(tomlToJson(e));
    return arr;
  }
  if (auto i = node.as_integer())
    return i->get();
  if (auto f = node.as_floating_point())
    return f->get();
  if (auto b = node.as_boolean())
    return b->get();
  if (auto s = node.as_string())
    return s->get();
  return nullptr;
}

/// Finds `"key"` in JSON text for a line:col; good enough for messages.
std::string jsonPosition(const std::string &text, const std::string &key) {
  size_t at = key.empty() ? std::string::npos : text.find("\"" + key + "\"");
  if (at == std::string::npos)
    return "";
  size_t line = 1, col = 1;
  for (size_t i = 0; i < at; ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return ":" + std::to_string(line) + ":" + std::to_string(col);
}

} // namespace

Expected<ModelConfig> configFromJsonFile(const fs::path &file) {
  std::ifstream in(file, std::ios::binary);
  if (!in)
    return Error{file.string() + ": error: cannot read the model config (" +
                 (pathExists(file) ? "permission denied" : "no such file") +
                 "); a Hugging Face model directory holds config.json"};
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  json obj = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (obj.is_discarded() || !obj.is_object())
    return Error{file.string() + ": error: not a valid JSON object"};
  Locator locate = [&](const std::string &key, const std::string &msg) {
    return Error{file.string() + jsonPosition(text, key) + ": error: " + msg};
  };
  return readConfig(obj, locate, "config.json", /*strict=*/false, std::nullopt);
}

Expected<ModelConfig> configFromToml(const toml::table &table,
                                     const Diag &diag) {
  json obj = tomlToJson(table);
  Locator locate = [&](const std::string &key, const std::string &msg) {
    const toml::node *node = key.empty() ? nullptr : table.get(key);
    if (!node)
      if (auto rs = table["rope_scaling"].as_table())
        node = rs->get(key);
    return node ? diag.at(*node, msg) : diag.at(table.source(), msg);
  };
  return readConfig(obj, locate, "[model.config]", /*strict=*/true,
                    std::string("llama"));
}

std::string printModelConfig(const ModelConfig &c, bool fromPath) {
  std::ostringstream os;
  const char *p = fromPath ? "# " : "";
  os << (fromPath ? "# [model.config] as read from config.json\n"
                  : "[model.config]\n");
  os << p << "model_type = \"" << familyName(c.family) << "\"\n";
  if (c.family == ModelFamily::GPT2) {
    os << p << "vocab_size = " << c.vocabSize << "\n"
       << p << "n_positions = " << c.maxPositionEmbeddings << "\n"
       << p << "n_embd = " << c.hiddenSize << "\n"
       << p << "n_layer = " << c.numLayers << "\n"
       << p << "n_head = " << c.numHeads << "\n"
       << p << "n_inner = " << c.intermediateSize << "\n"
       << p << "layer_norm_epsilon = " << c.normEps << "\n"
       << p << "activation_function = \"" << c.hiddenAct << "\"\n";
  } else {
    os << p << "hidden_size = " << c.hiddenSize << "\n"
       << p << "intermediate_size = " << c.intermediateSize << "\n"
       << p << "num_hidden_layers = " << c.numLayers << "\n"
       << p << "num_attention_heads = " << c.numHeads << "\n"
       << p << "num_key_value_heads = " << c.numKvHeads << "\n"
       << p << "head_dim = " << c.headDim << "\n"
       << p << "vocab_size = " << c.vocabSize << "\n"
       << p << "max_position_embeddings = " << c.maxPositionEmbeddings << "\n"
       << p << "rms_norm_eps = " << c.normEps << "\n"
       << p << "rope_theta = " << c.ropeTheta << "\n"
       << p << "tie_word_embeddings = "
       << (c.tieWordEmbeddings ? "true" : "false") << "\n"
       << p << "attention_bias = " << (c.attentionBias ? "true" : "false")
       << "\n"
       << p << "hidden_act = \"" << c.hiddenAct << "\"\n";
    if (c.ropeScaling)
      os << p << "rope_scaling = { rope_type = \"llama3\", factor = "
         << c.ropeScaling->factor
         << ", low_freq_factor = " << c.ropeScaling->lowFreqFactor
         << ", high_freq_factor = " << c.ropeScaling->highFreqFactor
         << ", original_max_position_embeddings = "
         << c.ropeScaling->originalMaxPositionEmbeddings << " }\n";
  }
  os << p << "initializer_range = " << c.initializerRange << "\n";
  if (c.bosTokenId)
    os << p << "bos_token_id = " << *c.bosTokenId << "\n";
  if (c.eosTokenId)
    os << p << "eos_token_id = " << *c.eosTokenId << "\n";
  if (c.padTokenId)
    os << p << "pad_token_id = " << *c.padTokenId << "\n";
  os << "# parameters: " << c.numParameters() << "\n";
  return os.str();
}

} // namespace trlc

namespace trlc {

std::string configToHfJson(const ModelConfig &c) {
  json j;
  auto ids = [&](json &out) {
    if (c.bosTokenId) out["bos_token_id"] = *c.bosTokenId;
    if (c.eosTokenId) out["eos_token_id"] = *c.eosTokenId;
    if (c.padTokenId) out["pad_token_id"] = *c.padTokenId;
  };
  if (c.family == ModelFamily::GPT2) {
    j = {{"architectures", {"GPT2LMHeadModel"}},
         {"model_type", "gpt2"},
         {"n_embd", c.hiddenSize},
         {"n_layer", c.numLayers},
         {"n_head", c.numHeads},
         {"n_inner", c.intermediateSize},
         {"n_positions", c.maxPositionEmbeddings},
         {"vocab_size", c.vocabSize},
         {"layer_norm_epsilon", c.normEps},
         {"activation_function", c.hiddenAct},
         {"initializer_range", c.initializerRange},
         {"tie_word_embeddings", true},
         {"resid_pdrop", 0.0}, {"embd_pdrop", 0.0}, {"attn_pdrop", 0.0}};
    ids(j);
    return j.dump(2) + "\n";
  }
  static const std::map<ModelFamily, const char *> arch = {
      {ModelFamily::Llama, "LlamaForCausalLM"},
      {ModelFamily::Qwen2, "Qwen2ForCausalLM"},
      {ModelFamily::Qwen3, "Qwen3ForCausalLM"},
      {ModelFamily::Mistral, "MistralForCausalLM"}};
  j = {{"architectures", {arch.at(c.family)}},
       {"model_type", familyName(c.family)},
       {"hidden_size", c.hiddenSize},
       {"intermediate_size", c.intermediateSize},
       {"num_hidden_layers", c.numLayers},
       {"num_attention_heads", c.numHeads},
       {"num_key_value_heads", c.numKvHeads},
       {"head_dim", c.headDim},
       {"vocab_size", c.vocabSize},
       {"max_position_embeddings", c.maxPositionEmbeddings},
       {"rms_norm_eps", c.normEps},
       {"rope_theta", c.ropeTheta},
       {"tie_word_embeddings", c.tieWordEmbeddings},
       {"hidden_act", c.hiddenAct},
       {"initializer_range", c.initializerRange},
       {"attention_dropout", 0.0}};
  if (c.family == ModelFamily::Llama || c.family == ModelFamily::Qwen3)
    j["attention_bias"] = c.attentionBias;
  if (c.ropeScaling)
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", c.ropeScaling->factor},
        {"low_freq_factor", c.ropeScaling->lowFreqFactor},
        {"high_freq_factor", c.ropeScaling->highFreqFactor},
        {"original_max_position_embeddings",
         c.ropeScaling->originalMaxPositionEmbeddings}};
  ids(j);
  return j.dump(2) + "\n";
}

} // namespace trlc

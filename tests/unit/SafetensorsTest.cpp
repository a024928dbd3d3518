//===- SafetensorsTest.cpp - safetensors round trips and header checks ----===//

#include "trlc/Artifact.h"
#include "trlc/Safetensors.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

using namespace trlc;
namespace fs = std::filesystem;

namespace {

class SafetensorsTest : public ::testing::Test {
protected:
  fs::path dir = fs::temp_directory_path() /
                 ("trlc-st-" + std::to_string(::getpid()) + "-" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
  void SetUp() override { fs::create_directories(dir); }
  void TearDown() override { fs::remove_all(dir); }

  /// A file with `header` JSON and `data` bytes.
  std::string raw(const std::string &header, const std::string &data,
                  int64_t lengthOverride = -1) {
    std::string path = (dir / "t.safetensors").string();
    std::ofstream out(path, std::ios::binary);
    uint64_t n = lengthOverride >= 0 ? lengthOverride : header.size();
    out.write(reinterpret_cast<const char *>(&n), 8);
    out << header << data;
    return path;
  }
  std::string readError(const std::string &path) {
    std::map<std::string, safetensors::Tensor> t;
    std::string error;
    EXPECT_FALSE(safetensors::readFile(path, t, error));
    return error;
  }
};

TEST_F(SafetensorsTest, RoundTripsF32Bf16AndF16) {
  std::vector<float> a = {1.0f, -2.5f, 0.1f, 3e-5f, 65504.0f, -0.0f};
  for (const char *dtype : {"F32", "BF16", "F16"}) {
    std::string path = (dir / (std::string(dtype) + ".safetensors")).string(), error;
    ASSERT_TRUE(safetensors::writeFile(path, {{"w", {2, 3}, a.data()}}, error, dtype)) << error;
    std::map<std::string, safetensors::Tensor> t;
    ASSERT_TRUE(safetensors::readFile(path, t, error)) << error;
    EXPECT_EQ(t["w"].shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(t["w"].dtype, dtype);
    double tol = std::string(dtype) == "F32" ? 0 : std::string(dtype) == "BF16" ? 1e-2 : 1e-3;
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_NEAR(t["w"].data[i], a[i], tol * std::fabs(a[i]) + 1e-7) << dtype << " " << i;
  }
  EXPECT_EQ(safetensors::floatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(safetensors::floatToF16(1.0f), 0x3c00);
  EXPECT_EQ(safetensors::f16ToFloat(0x3555), 0.333251953125f);
}

TEST_F(SafetensorsTest, ChecksEveryHeaderFieldAgainstTheFile) {
  EXPECT_NE(readError(raw("", "", 0).substr(0, 0) + (dir / "missing").string())
                .find("cannot open"), std::string::npos);
  {
    std::string path = (dir / "short").string();
    std::ofstream(path) << "abc";
    EXPECT_NE(readError(path).find("too short"), std::string::npos);
  }
  EXPECT_NE(readError(raw("{}", "", 1000)).find("does not fit in the file"), std::string::npos);
  EXPECT_NE(readError(raw("[1]", "")).find("not a JSON object"), std::string::npos);
  EXPECT_NE(readError(raw(R"({"w": {"dtype": "F32", "shape": [2]}})", "")).find("needs dtype, shape and data_offsets"),
            std::string::npos);
  EXPECT_NE(readError(raw(R"({"w": {"dtype": "I8", "shape": [2], "data_offsets": [0, 2]}})", "ab"))
                .find("dtype I8 is not supported"), std::string::npos);
  EXPECT_NE(readError(raw(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", "abcd"))
                .find("outside the data section"), std::string::npos);
  EXPECT_NE(readError(raw(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", "abcdefgh"))
                .find("dtype x shape needs 12"), std::string::npos);
  EXPECT_NE(readError(raw(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                              "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", "abcdefgh"))
                .find("overlap"), std::string::npos);
  EXPECT_NE(readError(raw(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}})", ""))
                .find("negative dimension"), std::string::npos);
}

TEST_F(SafetensorsTest, ReadsShardedCheckpoints) {
  std::vector<float> a = {1, 2}, b = {3};
  std::string error;
  ASSERT_TRUE(safetensors::writeFile((dir / "s1.safetensors").string(), {{"a", {2}, a.data()}}, error));
  ASSERT_TRUE(safetensors::writeFile((dir / "s2.safetensors").string(), {{"b", {1}, b.data()}}, error));
  std::ofstream(dir / "model.safetensors.index.json")
      << R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})";
  std::map<std::string, safetensors::Tensor> t;
  ASSERT_TRUE(safetensors::readModelDir(dir.string(), t, error)) << error;
  EXPECT_EQ(t["a"].data, a);
  EXPECT_EQ(t["b"].data, b);
}

TEST_F(SafetensorsTest, PlanReaderRefusesOtherVersionsAndBadIndices) {
  artifact::Plan plan;
  plan.arenaBytes = 128;
  plan.tensors.push_back({0, {4}, artifact::DType::F32});
  artifact::Program prog;
  prog.calls.push_back({Kernel::Fill, {}, {0}, {{"value", 0.0}}});
  plan.programs["p"] = prog;
  auto write = [&](const nlohmann::json &j) { std::ofstream(dir / "plan.json") << j.dump(); };
  std::string error;
  artifact::Plan back;
  write(plan.toJson());
  ASSERT_TRUE(artifact::readPlan(dir.string(), back, error)) << error;
  EXPECT_STREQ(kernelName(back.programs["p"].calls[0].kernel), "fill");

  nlohmann::json j = plan.toJson();
  j["format_version"] = 1;
  write(j);
  EXPECT_FALSE(artifact::readPlan(dir.string(), back, error));
  EXPECT_NE(error.find("plan format version 1 is not version " +
                       std::to_string(artifact::kFormatVersion)),
            std::string::npos)
      << error;

  j = plan.toJson();
  j["tensors"][0]["offset"] = 128;
  write(j);
  EXPECT_FALSE(artifact::readPlan(dir.string(), back, error));
  EXPECT_NE(error.find("outside the arena"), std::string::npos) << error;

  j = plan.toJson();
  j["programs"]["p"]["calls"][0]["out"] = {7};
  write(j);
  EXPECT_FALSE(artifact::readPlan(dir.string(), back, error));
  EXPECT_NE(error.find("writes a tensor that does not exist"), std::string::npos) << error;

  // Calls name a kernel of trlc/Kernels.def and match its arity.
  j = plan.toJson();
  j["programs"]["p"]["calls"][0]["kernel"] = "fil";
  write(j);
  EXPECT_FALSE(artifact::readPlan(dir.string(), back, error));
  EXPECT_NE(error.find("unknown kernel 'fil'"), std::string::npos) << error;
  j = plan.toJson();
  j["programs"]["p"]["calls"][0]["out"] = nlohmann::json::array();
  write(j);
  EXPECT_FALSE(artifact::readPlan(dir.string(), back, error));
  EXPECT_NE(error.find("call 'fill' has 0 inputs and 0 outputs"), std::string::npos) << error;
}

} // namespace

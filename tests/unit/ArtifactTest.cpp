//===- ArtifactTest.cpp - the runtime's artifact manifest reader ----------===//

#include "trlc/Artifact.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace trlc::artifact;

namespace {

class ManifestTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("trlc-artifact-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  void write(const std::string &text) {
    std::ofstream(dir / kManifestFile) << text;
  }
  std::string valid(int version = kFormatVersion) {
    return R"({"format": "trlc-artifact", "format_version": )" +
           std::to_string(version) +
           R"(, "recipe": "r.toml", "recipe_hash": "00ff", "method": "sft",
              "model_type": "llama", "world_size": 1, "batch_size": 8,
              "sequence_bound": 1024, "parameters": 1234, "plan_hash": "00",
              "files": {"data/train.bin": "01"}})";
  }

  fs::path dir;
};

TEST_F(ManifestTest, ReadsAValidManifest) {
  write(valid());
  Manifest m;
  std::string error;
  ASSERT_TRUE(readManifest(dir.string(), m, error)) << error;
  EXPECT_EQ(m.formatVersion, kFormatVersion);
  EXPECT_EQ(m.method, "sft");
  EXPECT_EQ(m.modelType, "llama");
  EXPECT_EQ(m.batchSize, 8);
  EXPECT_EQ(m.sequenceBound, 1024);
  EXPECT_EQ(m.parameters, 1234);
}

TEST_F(ManifestTest, RefusesAnotherFormatVersion) {
  write(valid(kFormatVersion + 1));
  Manifest m;
  std::string error;
  EXPECT_FALSE(readManifest(dir.string(), m, error));
  EXPECT_EQ(error, (dir / kManifestFile).string() +
                       ": error: artifact format version " +
                       std::to_string(kFormatVersion + 1) +
                       " is not supported by this runtime (version " +
                       std::to_string(kFormatVersion) +
                       "); recompile the recipe with this trlc");
}

TEST_F(ManifestTest, RefusesMissingFieldsAndBadJson) {
  Manifest m;
  std::string error;
  write("{not json");
  EXPECT_FALSE(readManifest(dir.string(), m, error));
  EXPECT_NE(error.find("not valid JSON"), std::string::npos) << error;

  write(R"({"format": "trlc-artifact", "format_version": )" +
        std::to_string(kFormatVersion) + "}");
  EXPECT_FALSE(readManifest(dir.string(), m, error));
  EXPECT_NE(error.find("missing string \"recipe\""), std::string::npos) << error;

  write(R"({"format": "other", "format_version": 1})");
  EXPECT_FALSE(readManifest(dir.string(), m, error));
  EXPECT_NE(error.find("not a trlc artifact manifest"), std::string::npos);
}

TEST_F(ManifestTest, RefusesADirectoryWithoutManifest) {
  Manifest m;
  std::string error;
  EXPECT_FALSE(readManifest(dir.string(), m, error));
  EXPECT_NE(error.find("is not a trlc artifact"), std::string::npos) << error;
  EXPECT_FALSE(readManifest((dir / "absent").string(), m, error));
  EXPECT_NE(error.find("not a trlc artifact directory"), std::string::npos);
}

TEST(ContentHash, IsFnv1a64) {
  // Reference values of 64-bit FNV-1a.
  EXPECT_EQ(contentHash(""), "cbf29ce484222325");
  EXPECT_EQ(contentHash("a"), "af63dc4c8601ec8c");
  EXPECT_NE(contentHash("max_length = 16"), contentHash("max_length = 17"));
}

} // namespace

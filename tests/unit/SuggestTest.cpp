//===- SuggestTest.cpp - "did you mean" -----------------------------------===//

#include "frontend/Suggest.h"

#include <gtest/gtest.h>

using namespace trlc;

TEST(Suggest, EditDistance) {
  EXPECT_EQ(editDistance("learning_rate", "learning_rate"), 0u);
  EXPECT_EQ(editDistance("lerning_rate", "learning_rate"), 1u);
  EXPECT_EQ(editDistance("ab", "ba"), 1u);  // transposition
  EXPECT_EQ(editDistance("", "abc"), 3u);
}

TEST(Suggest, ClosestMatchOnlyWhenClose) {
  std::vector<std::string> keys = {"max_length", "max_prompt_length", "packing"};
  EXPECT_EQ(closestMatch("max_lenght", keys), "max_length");
  EXPECT_EQ(closestMatch("pakcing", keys), "packing");
  EXPECT_EQ(closestMatch("temperature", keys), std::nullopt);
}

//===- Suggest.h - "did you mean" for misspelled names ----------*- C++ -*-===//

#ifndef TRLC_FRONTEND_SUGGEST_H
#define TRLC_FRONTEND_SUGGEST_H

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace trlc {

/// Edit distance (insertions, deletions, substitutions, transpositions).
size_t editDistance(std::string_view a, std::string_view b);

/// The candidate closest to `word`, if it is close enough to be a likely
/// misspelling (distance at most a third of the word's length, minimum 2).
std::optional<std::string> closestMatch(std::string_view word,
                                        const std::vector<std::string> &candidates);

} // namespace trlc

#endif // TRLC_FRONTEND_SUGGEST_H

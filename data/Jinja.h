//===- Jinja.h - the Jinja subset chat templates use ------------*- C++ -*-===//
//
// Renders Hugging Face chat templates the way transformers does: jinja2
// with trim_blocks and lstrip_blocks, loop controls, the `generation`
// block (assistant masks), `raise_exception`, `namespace`, and a `tojson`
// that writes json.dumps(ensure_ascii=False) text. Supported: text,
// {{ }}, {% %} and {# #} with whitespace control; for (with else, filters
// `if`, loop.*, tuple unpacking), if/elif/else, set (names, namespace
// attributes and block set), macro and call, break/continue, generation;
// literals, lists, dicts, tuples, arithmetic, comparisons, `in`, `~`, and/
// or/not, conditional expressions, slices, attribute/item access, the
// common filters, tests and string/dict/list methods. Anything else is a
// TemplateError naming the line.
//
//===----------------------------------------------------------------------===//

#ifndef TRLC_DATA_JINJA_H
#define TRLC_DATA_JINJA_H

#include <nlohmann/json.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace trlc::data::jinja {

struct TemplateError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Node;

class Template {
public:
  /// Parses `source`; `where` names it in messages. Throws TemplateError.
  Template(const std::string &source, const std::string &where);
  ~Template();
  Template(Template &&) noexcept;

  struct Output {
    std::string text;
    /// [begin, end) byte ranges rendered inside {% generation %} blocks.
    std::vector<std::pair<size_t, size_t>> generation;
  };
  /// Renders with the variables of `context` (a JSON object).
  Output render(const nlohmann::ordered_json &context) const;

private:
  std::string where_;
  std::vector<std::unique_ptr<Node>> body_;
};

} // namespace trlc::data::jinja

#endif // TRLC_DATA_JINJA_H

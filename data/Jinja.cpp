//===- Jinja.cpp - the Jinja subset chat templates use --------------------===//

#include "data/Jinja.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <sstream>

namespace trlc::data::jinja {
namespace {

// ===================================================================== values

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;
struct Macro;

struct Value {
  enum Kind { Undefined, None, Bool, Int, Float, String, ListK, DictK, MacroK } kind = Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;
  bool isNamespace = false;
  const Macro *macro = nullptr;

  static Value none() { Value v; v.kind = None; return v; }
  static Value boolean(bool x) { Value v; v.kind = Bool; v.b = x; return v; }
  static Value integer(int64_t x) { Value v; v.kind = Int; v.i = x; return v; }
  static Value real(double x) { Value v; v.kind = Float; v.f = x; return v; }
  static Value str(std::string x) { Value v; v.kind = String; v.s = std::move(x); return v; }
  static Value makeList(List l = {}) {
    Value v; v.kind = ListK; v.list = std::make_shared<List>(std::move(l)); return v;
  }
  static Value makeDict(Dict d = {}) {
    Value v; v.kind = DictK; v.dict = std::make_shared<Dict>(std::move(d)); return v;
  }

  bool isNumber() const { return kind == Int || kind == Float || kind == Bool; }
  double number() const { return kind == Float ? f : kind == Int ? double(i) : double(b); }
  const Value *get(const std::string &key) const {
    if (kind != DictK)
      return nullptr;
    for (auto &[k, v] : *dict)
      if (k == key)
        return &v;
    return nullptr;
  }
  void set(const std::string &key, Value v) {
    for (auto &[k, old] : *dict)
      if (k == key) {
        old = std::move(v);
        return;
      }
    dict->emplace_back(key, std::move(v));
  }
};

Value fromJson(const nlohmann::ordered_json &j) {
  switch (j.type()) {
  case nlohmann::ordered_json::value_t::null: return Value::none();
  case nlohmann::ordered_json::value_t::boolean: return Value::boolean(j.get<bool>());
  case nlohmann::ordered_json::value_t::number_integer:
  case nlohmann::ordered_json::value_t::number_unsigned: return Value::integer(j.get<int64_t>());
  case nlohmann::ordered_json::value_t::number_float: return Value::real(j.get<double>());
  case nlohmann::ordered_json::value_t::string: return Value::str(j.get<std::string>());
  case nlohmann::ordered_json::value_t::array: {
    List l;
    for (const auto &e : j)
      l.push_back(fromJson(e));
    return Value::makeList(std::move(l));
  }
  case nlohmann::ordered_json::value_t::object: {
    Dict d;
    for (auto it = j.begin(); it != j.end(); ++it)
      d.emplace_back(it.key(), fromJson(it.value()));
    return Value::makeDict(std::move(d));
  }
  default: return Value();
  }
}

bool truthy(const Value &v) {
  switch (v.kind) {
  case Value::Undefined: case Value::None: return false;
  case Value::Bool: return v.b;
  case Value::Int: return v.i != 0;
  case Value::Float: return v.f != 0;
  case Value::String: return !v.s.empty();
  case Value::ListK: return !v.list->empty();
  case Value::DictK: return !v.dict->empty();
  case Value::MacroK: return true;
  }
  return false;
}

/// Python's repr of a float.
std::string floatRepr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[32];
  for (int prec = 1; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, x);
    if (std::strtod(buf, nullptr) == x)
      break;
  }
  std::string s = buf;
  // Python writes 1e+16 as 1e+16 and 100.0 as 100.0.
  if (s.find_first_of(".en") == std::string::npos)
    s += ".0";
  return s;
}

std::string pyRepr(const Value &v);

std::string pyStrRepr(const std::string &s) {
  bool hasSingle = s.find('\'') != std::string::npos;
  bool hasDouble = s.find('"') != std::string::npos;
  char q = hasSingle && !hasDouble ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == q || c == '\\') { out += '\\'; out += c; }
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else out += c;
  }
  return out + q;
}

/// Python's str().
std::string toString(const Value &v) {
  switch (v.kind) {
  case Value::Undefined: return "";
  case Value::None: return "None";
  case Value::Bool: return v.b ? "True" : "False";
  case Value::Int: return std::to_string(v.i);
  case Value::Float: return floatRepr(v.f);
  case Value::String: return v.s;
  default: return pyRepr(v);
  }
}

std::string pyRepr(const Value &v) {
  switch (v.kind) {
  case Value::String: return pyStrRepr(v.s);
  case Value::ListK: {
    std::string out = "[";
    for (size_t k = 0; k < v.list->size(); ++k)
      out += (k ? ", " : "") + pyRepr((*v.list)[k]);
    return out + "]";
  }
  case Value::DictK: {
    if (v.isNamespace)
      return "<Namespace>";
    std::string out = "{";
    bool first = true;
    for (auto &[k, e] : *v.dict) {
      out += (first ? "" : ", ") + pyStrRepr(k) + ": " + pyRepr(e);
      first = false;
    }
    return out + "}";
  }
  case Value::MacroK: return "<Macro>";
  default: return toString(v);
  }
}

void jsonString(std::string &out, const std::string &s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\n': out += "\\n"; break;
    case '\r': out += "\\r"; break;
    case '\t': out += "\\t"; break;
    case '\b': out += "\\b"; break;
    case '\f': out += "\\f"; break;
    default:
      if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      } else {
        out += c;
      }
    }
  }
  out += '"';
}

/// json.dumps(v, ensure_ascii=False, indent=indent, sort_keys=sortKeys).
void toJson(std::string &out, const Value &v, int indent, bool sortKeys, int depth) {
  auto newline = [&](int d) {
    if (indent < 0) return;
    out += '\n';
    out.append(size_t(indent) * d, ' ');
  };
  switch (v.kind) {
  case Value::Undefined: case Value::None: out += "null"; return;
  case Value::Bool: out += v.b ? "true" : "false"; return;
  case Value::Int: out += std::to_string(v.i); return;
  case Value::Float:
    out += std::isnan(v.f) ? "NaN" : std::isinf(v.f) ? (v.f > 0 ? "Infinity" : "-Infinity")
                                                     : floatRepr(v.f);
    return;
  case Value::String: jsonString(out, v.s); return;
  case Value::ListK: {
    if (v.list->empty()) { out += "[]"; return; }
    out += '[';
    for (size_t k = 0; k < v.list->size(); ++k) {
      if (k) out += indent < 0 ? ", " : ",";
      newline(depth + 1);
      toJson(out, (*v.list)[k], indent, sortKeys, depth + 1);
    }
    newline(depth);
    out += ']';
    return;
  }
  case Value::DictK: {
    if (v.dict->empty()) { out += "{}"; return; }
    std::vector<const std::pair<std::string, Value> *> items;
    for (auto &e : *v.dict) items.push_back(&e);
    if (sortKeys)
      std::stable_sort(items.begin(), items.end(),
                       [](auto *a, auto *b) { return a->first < b->first; });
    out += '{';
    for (size_t k = 0; k < items.size(); ++k) {
      if (k) out += indent < 0 ? ", " : ",";
      newline(depth + 1);
      jsonString(out, items[k]->first);
      out += ": ";
      toJson(out, items[k]->second, indent, sortKeys, depth + 1);
    }
    newline(depth);
    out += '}';
    return;
  }
  case Value::MacroK: out += "null"; return;
  }
}

bool equal(const Value &a, const Value &b) {
  if (a.isNumber() && b.isNumber())
    return a.number() == b.number();
  if (a.kind != b.kind) {
    bool an = a.kind == Value::None || a.kind == Value::Undefined;
    bool bn = b.kind == Value::None || b.kind == Value::Undefined;
    return an && bn && a.kind == b.kind;
  }
  switch (a.kind) {
  case Value::Undefined: case Value::None: return true;
  case Value::String: return a.s == b.s;
  case Value::ListK:
    if (a.list->size() != b.list->size()) return false;
    for (size_t k = 0; k < a.list->size(); ++k)
      if (!equal((*a.list)[k], (*b.list)[k])) return false;
    return true;
  case Value::DictK:
    if (a.dict->size() != b.dict->size()) return false;
    for (auto &[k, v] : *a.dict) {
      const Value *o = b.get(k);
      if (!o || !equal(v, *o)) return false;
    }
    return true;
  default: return false;
  }
}

// ===================================================================== lexer

struct Tok {
  enum Kind { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, Str, Int, Float, Op, End } kind;
  std::string text;
  int line;
};

bool isBlank(char c) { return c == ' ' || c == '\t'; }

std::vector<Tok> lex(const std::string &src, const std::string &where) {
  std::vector<Tok> out;
  size_t i = 0;
  int line = 1;
  auto err = [&](const std::string &m) -> TemplateError {
    return TemplateError(where + ":" + std::to_string(line) + ": error: " + m);
  };
  auto countLines = [&](size_t from, size_t to) {
    for (size_t k = from; k < to; ++k)
      if (src[k] == '\n') ++line;
  };
  while (i < src.size()) {
    // Text up to the next tag.
    size_t next = i;
    while (true) {
      next = src.find('{', next);
      if (next == std::string::npos || next + 1 >= src.size()) { next = std::string::npos; break; }
      char c = src[next + 1];
      if (c == '{' || c == '%' || c == '#') break;
      ++next;
    }
    size_t textEnd = next == std::string::npos ? src.size() : next;
    std::string text = src.substr(i, textEnd - i);
    if (next != std::string::npos) {
      char kind = src[next + 1];
      char mod = next + 2 < src.size() ? src[next + 2] : 0;
      if (mod == '-') {
        size_t k = text.size();
        while (k > 0 && std::isspace(static_cast<unsigned char>(text[k - 1]))) --k;
        text.resize(k);
      } else if ((kind == '%' || kind == '#') && mod != '+') {
        // lstrip_blocks: drop blanks between the line start and the tag.
        size_t k = text.size();
        while (k > 0 && isBlank(text[k - 1])) --k;
        bool lineStart = k > 0 ? text[k - 1] == '\n' : (i == 0 || src[i - 1] == '\n');
        if (lineStart) text.resize(k);
      }
    }
    if (!text.empty())
      out.push_back({Tok::Text, text, line});
    countLines(i, textEnd);
    if (next == std::string::npos)
      break;

    char kind = src[next + 1];
    i = next + 2;
    if (i < src.size() && (src[i] == '-' || src[i] == '+')) ++i;
    if (kind == '#') {
      size_t end = src.find("#}", i);
      if (end == std::string::npos)
        throw err("unclosed comment");
      bool strip = end > 0 && src[end - 1] == '-';
      countLines(i, end + 2);
      i = end + 2;
      if (strip) {
        while (i < src.size() && std::isspace(static_cast<unsigned char>(src[i]))) {
          if (src[i] == '\n') ++line;
          ++i;
        }
      } else if (i < src.size() && src[i] == '\n') {  // trim_blocks
        ++i; ++line;
      }
      continue;
    }
    // raw blocks are passed through untouched.
    if (kind == '%') {
      size_t k = i;
      while (k < src.size() && isBlank(src[k])) ++k;
      auto word = [&](size_t at) {
        return at < src.size() &&
               (std::isalnum(static_cast<unsigned char>(src[at])) || src[at] == '_');
      };
      if (src.compare(k, 3, "raw") == 0 && !word(k + 3)) {
        size_t close = src.find("%}", k);
        if (close == std::string::npos)
          throw err("unclosed raw block");
        // The first {% endraw %} tag after it (whitespace control allowed).
        size_t open = std::string::npos, fin = std::string::npos;
        for (size_t from = close + 2; (open = src.find("{%", from)) != std::string::npos;
             from = open + 2) {
          size_t q = open + 2;
          if (q < src.size() && (src[q] == '-' || src[q] == '+')) ++q;
          while (q < src.size() && std::isspace(static_cast<unsigned char>(src[q]))) ++q;
          if (src.compare(q, 6, "endraw") != 0 || word(q + 6))
            continue;
          q += 6;
          while (q < src.size() && std::isspace(static_cast<unsigned char>(src[q]))) ++q;
          if (q < src.size() && (src[q] == '-' || src[q] == '+')) ++q;
          if (src.compare(q, 2, "%}") == 0) {
            fin = q;
            break;
          }
        }
        if (fin == std::string::npos)
          throw err("unclosed raw block (no {% endraw %})");
        out.push_back({Tok::Text, src.substr(close + 2, open - close - 2), line});
        countLines(i, fin + 2);
        i = fin + 2;
        continue;
      }
    }
    out.push_back({kind == '{' ? Tok::VarBegin : Tok::BlockBegin, "", line});
    const char *closer = kind == '{' ? "}}" : "%}";
    int tagLine = line;
    // Expression tokens.
    while (true) {
      while (i < src.size() && std::isspace(static_cast<unsigned char>(src[i]))) {
        if (src[i] == '\n') ++line;
        ++i;
      }
      if (i >= src.size()) {
        line = tagLine;
        throw err(std::string("this tag is not closed with '") + closer + "'");
      }
      if ((src[i] == '-' && src.compare(i + 1, 2, closer) == 0) ||
          src.compare(i, 2, closer) == 0) {
        bool strip = src[i] == '-';
        i += strip ? 3 : 2;
        out.push_back({kind == '{' ? Tok::VarEnd : Tok::BlockEnd, "", line});
        if (strip) {
          while (i < src.size() && std::isspace(static_cast<unsigned char>(src[i]))) {
            if (src[i] == '\n') ++line;
            ++i;
          }
        } else if (kind == '%' && i < src.size() && src[i] == '\n') {  // trim_blocks
          ++i; ++line;
        }
        break;
      }
      char c = src[i];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t b = i;
        while (i < src.size() && (std::isalnum(static_cast<unsigned char>(src[i])) || src[i] == '_')) ++i;
        out.push_back({Tok::Name, src.substr(b, i - b), line});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t b = i;
        bool isFloat = false;
        while (i < src.size() && (std::isdigit(static_cast<unsigned char>(src[i])) || src[i] == '_')) ++i;
        if (i + 1 < src.size() && src[i] == '.' && std::isdigit(static_cast<unsigned char>(src[i + 1]))) {
          isFloat = true;
          ++i;
          while (i < src.size() && std::isdigit(static_cast<unsigned char>(src[i]))) ++i;
        }
        if (i < src.size() && (src[i] == 'e' || src[i] == 'E')) {
          isFloat = true;
          ++i;
          if (src[i] == '+' || src[i] == '-') ++i;
          while (i < src.size() && std::isdigit(static_cast<unsigned char>(src[i]))) ++i;
        }
        std::string num = src.substr(b, i - b);
        num.erase(std::remove(num.begin(), num.end(), '_'), num.end());
        out.push_back({isFloat ? Tok::Float : Tok::Int, num, line});
      } else if (c == '"' || c == '\'') {
        std::string s;
        ++i;
        while (i < src.size() && src[i] != c) {
          if (src[i] == '\\' && i + 1 < src.size()) {
            char e = src[++i];
            switch (e) {
            case 'n': s += '\n'; break;
            case 't': s += '\t'; break;
            case 'r': s += '\r'; break;
            case '\\': s += '\\'; break;
            case '\'': s += '\''; break;
            case '"': s += '"'; break;
            default: s += '\\'; s += e;
            }
            ++i;
            continue;
          }
          if (src[i] == '\n') ++line;
          s += src[i++];
        }
        if (i >= src.size())
          throw err("unterminated string literal");
        ++i;
        out.push_back({Tok::Str, s, line});
      } else {
        static const char *ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%",
                                    "~", "<", ">", "(", ")", "[", "]", "{", "}", ",", ".",
                                    ":", "|", "=", nullptr};
        bool found = false;
        for (const char **op = ops; *op; ++op) {
          size_t n = std::strlen(*op);
          if (src.compare(i, n, *op) == 0) {
            out.push_back({Tok::Op, *op, line});
            i += n;
            found = true;
            break;
          }
        }
        if (!found)
          throw err(std::string("unexpected character '") + c + "' in a tag");
      }
    }
  }
  out.push_back({Tok::End, "", line});
  return out;
}

} // namespace

// ======================================================================= AST

struct Expr;
using ExprP = std::unique_ptr<Expr>;

struct Expr {
  enum Kind { Literal, Name, ListE, DictE, Attr, Item, Slice, Call, Filter, Test, Unary, Binary,
              Cond, And, Or, Not } kind;
  int line = 0;
  Value literal;
  std::string name;  // Name, Attr, Filter, Test, Unary/Binary op
  std::vector<ExprP> args;  // operands / list items / call args
  std::vector<std::pair<std::string, ExprP>> kwargs;
  bool negated = false;  // `is not`
};

struct Node {
  enum Kind { Text, Print, For, If, Set, SetBlock, Macro, CallBlock, Generation, Break, Continue }
      kind;
  int line = 0;
  std::string text;
  ExprP expr;                       // Print, If cond, For iterable, Set value
  ExprP target;                     // Set target (Name or Attr)
  std::vector<std::string> names;   // For loop variables, Macro params
  std::vector<ExprP> defaults;      // Macro param defaults (nullable)
  ExprP filter;                     // For `if` filter
  std::vector<std::unique_ptr<Node>> body, orelse;
  // If: chains via orelse holding a single If node for elif.
};

namespace {

struct Macro {
  const Node *node;
};

// ==================================================================== parser

class Parser {
public:
  Parser(std::vector<Tok> toks, std::string where) : t_(std::move(toks)), where_(std::move(where)) {}

  std::vector<std::unique_ptr<Node>> parseAll() {
    std::vector<std::unique_ptr<Node>> body;
    std::string end = parseBody(body, {});
    if (!end.empty())
      throw err("unexpected '{% " + end + " %}'");
    return body;
  }

private:
  std::vector<Tok> t_;
  size_t p_ = 0;
  std::string where_;

  TemplateError err(const std::string &m) const {
    return TemplateError(where_ + ":" + std::to_string(t_[p_].line) + ": error: " + m);
  }
  const Tok &peek(size_t k = 0) const { return t_[std::min(p_ + k, t_.size() - 1)]; }
  bool isOp(const char *op, size_t k = 0) const {
    return peek(k).kind == Tok::Op && peek(k).text == op;
  }
  bool isName(const char *n, size_t k = 0) const {
    return peek(k).kind == Tok::Name && peek(k).text == n;
  }
  void expectOp(const char *op) {
    if (!isOp(op))
      throw err(std::string("expected '") + op + "'");
    ++p_;
  }
  std::string expectName() {
    if (peek().kind != Tok::Name)
      throw err("expected a name");
    return t_[p_++].text;
  }
  void expectBlockEnd() {
    if (peek().kind != Tok::BlockEnd)
      throw err("expected '%}'");
    ++p_;
  }

  /// Parses nodes until a block tag whose keyword is in `ends`; returns
  /// that keyword (the tag's name is consumed, not its arguments).
  std::string parseBody(std::vector<std::unique_ptr<Node>> &body,
                        std::initializer_list<const char *> ends) {
    while (true) {
      const Tok &tok = peek();
      if (tok.kind == Tok::End) {
        if (ends.size())
          throw err(std::string("missing '{% ") + *ends.begin() + " %}'");
        return "";
      }
      if (tok.kind == Tok::Text) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Text;
        n->text = tok.text;
        body.push_back(std::move(n));
        ++p_;
        continue;
      }
      nodes_ = 0;  // the limits are per tag
      if (tok.kind == Tok::VarBegin) {
        ++p_;
        auto n = std::make_unique<Node>();
        n->kind = Node::Print;
        n->line = tok.line;
        n->expr = parseExpr();
        if (peek().kind != Tok::VarEnd)
          throw err("expected '}}'");
        ++p_;
        body.push_back(std::move(n));
        continue;
      }
      if (tok.kind != Tok::BlockBegin)
        throw err("unexpected token");
      ++p_;
      std::string kw = expectName();
      for (const char *e : ends)
        if (kw == e)
          return kw;
      body.push_back(parseStatement(kw, tok.line));
    }
  }

  std::unique_ptr<Node> parseStatement(const std::string &kw, int line) {
    auto n = std::make_unique<Node>();
    n->line = line;
    if (kw == "for") {
      n->kind = Node::For;
      n->names.push_back(expectName());
      while (isOp(",")) {
        ++p_;
        n->names.push_back(expectName());
      }
      if (!isName("in"))
        throw err("expected 'in' in for");
      ++p_;
      n->expr = parseCondExpr(false);
      if (isName("if")) {
        ++p_;
        n->filter = parseOr();
      }
      if (isName("recursive"))
        throw err("recursive loops are not supported");
      expectBlockEnd();
      std::string end = parseBody(n->body, {"endfor", "else"});
      if (end == "else") {
        expectBlockEnd();
        parseBody(n->orelse, {"endfor"});
      }
      expectBlockEnd();
      return n;
    }
    if (kw == "if") {
      n->kind = Node::If;
      n->expr = parseExpr();
      expectBlockEnd();
      std::string end = parseBody(n->body, {"endif", "elif", "else"});
      if (end == "elif") {
        n->orelse.push_back(parseStatement("if", peek().line));
        return n;  // the nested if consumed the endif
      }
      if (end == "else") {
        expectBlockEnd();
        parseBody(n->orelse, {"endif"});
      }
      expectBlockEnd();
      return n;
    }
    if (kw == "set") {
      std::string name = expectName();
      ExprP target = std::make_unique<Expr>();
      target->kind = Expr::Name;
      target->name = name;
      if (isOp(".")) {
        ++p_;
        auto attr = std::make_unique<Expr>();
        attr->kind = Expr::Attr;
        attr->name = expectName();
        attr->args.push_back(std::move(target));
        target = std::move(attr);
      }
      n->target = std::move(target);
      if (peek().kind == Tok::BlockEnd) {
        ++p_;
        n->kind = Node::SetBlock;
        parseBody(n->body, {"endset"});
        expectBlockEnd();
        return n;
      }
      n->kind = Node::Set;
      expectOp("=");
      n->expr = parseExpr();
      expectBlockEnd();
      return n;
    }
    if (kw == "macro") {
      n->kind = Node::Macro;
      n->text = expectName();
      expectOp("(");
      while (!isOp(")")) {
        n->names.push_back(expectName());
        if (isOp("=")) {
          ++p_;
          n->defaults.push_back(parseExpr());
        } else {
          n->defaults.push_back(nullptr);
        }
        if (isOp(",")) ++p_;
      }
      ++p_;
      expectBlockEnd();
      parseBody(n->body, {"endmacro"});
      if (peek().kind == Tok::Name) ++p_;
      expectBlockEnd();
      return n;
    }
    if (kw == "generation") {
      n->kind = Node::Generation;
      expectBlockEnd();
      parseBody(n->body, {"endgeneration"});
      expectBlockEnd();
      return n;
    }
    if (kw == "break" || kw == "continue") {
      n->kind = kw == "break" ? Node::Break : Node::Continue;
      expectBlockEnd();
      return n;
    }
    throw err("'{% " + kw + " %}' is not supported by trlc's template interpreter");
  }

  // One tag's expression may hold kMaxNodes nodes and nest kMaxNesting
  // brackets: evaluating (and freeing) an expression recurses over its
  // depth, which a hostile template must not turn into a stack overflow.
  static constexpr int kMaxNodes = 500, kMaxNesting = 200;
  int nodes_ = 0, nesting_ = 0;

  ExprP make(Expr::Kind k) {
    if (++nodes_ > kMaxNodes)
      throw err("this tag's expression is too large (over " + std::to_string(kMaxNodes) +
                " operations); split it over several tags");
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = peek().line;
    return e;
  }

public:
  ExprP parseExpr() { return parseCondExpr(true); }

private:
  ExprP parseCondExpr(bool allowCond) {
    Nest guard = nest();
    ExprP e = parseOr();
    while (allowCond && isName("if")) {
      ++p_;
      auto c = make(Expr::Cond);
      ExprP cond = parseOr();
      ExprP other;
      if (isName("else")) {
        ++p_;
        other = parseCondExpr(true);
      }
      c->args.push_back(std::move(cond));
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(other));
      e = std::move(c);
    }
    return e;
  }
  ExprP parseOr() {
    ExprP e = parseAnd();
    while (isName("or")) {
      ++p_;
      auto o = make(Expr::Or);
      o->args.push_back(std::move(e));
      o->args.push_back(parseAnd());
      e = std::move(o);
    }
    return e;
  }
  ExprP parseAnd() {
    ExprP e = parseNot();
    while (isName("and")) {
      ++p_;
      auto o = make(Expr::And);
      o->args.push_back(std::move(e));
      o->args.push_back(parseNot());
      e = std::move(o);
    }
    return e;
  }
  /// Counts one level of parser recursion (brackets, unary operators).
  struct Nest {
    int &n;
    ~Nest() { --n; }
  };
  Nest nest() {
    if (++nesting_ > kMaxNesting) {
      --nesting_;
      throw err("expression nested too deeply (over " + std::to_string(kMaxNesting) +
                " levels)");
    }
    return Nest{nesting_};
  }
  ExprP parseNot() {
    Nest guard = nest();
    if (isName("not")) {
      ++p_;
      auto o = make(Expr::Not);
      o->args.push_back(parseNot());
      return o;
    }
    return parseCompare();
  }
  ExprP parseCompare() {
    ExprP e = parseMath1();
    while (true) {
      std::string op;
      if (peek().kind == Tok::Op &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
           peek().text == ">" || peek().text == "<=" || peek().text == ">=")) {
        op = peek().text;
        ++p_;
      } else if (isName("in")) {
        op = "in";
        ++p_;
      } else if (isName("not") && isName("in", 1)) {
        op = "not in";
        p_ += 2;
      } else {
        return e;
      }
      auto b = make(Expr::Binary);
      b->name = op;
      b->args.push_back(std::move(e));
      b->args.push_back(parseMath1());
      e = std::move(b);
    }
  }
  ExprP binary(ExprP lhs, const std::string &op, ExprP rhs) {
    auto b = make(Expr::Binary);
    b->name = op;
    b->args.push_back(std::move(lhs));
    b->args.push_back(std::move(rhs));
    return b;
  }
  ExprP parseMath1() {
    ExprP e = parseConcat();
    while (isOp("+") || isOp("-")) {
      std::string op = t_[p_++].text;
      e = binary(std::move(e), op, parseConcat());
    }
    return e;
  }
  ExprP parseConcat() {
    ExprP e = parseMath2();
    while (isOp("~")) {
      ++p_;
      e = binary(std::move(e), "~", parseMath2());
    }
    return e;
  }
  ExprP parseMath2() {
    ExprP e = parsePow();
    while (isOp("*") || isOp("/") || isOp("//") || isOp("%")) {
      std::string op = t_[p_++].text;
      e = binary(std::move(e), op, parsePow());
    }
    return e;
  }
  ExprP parsePow() {
    ExprP e = parseUnary();
    while (isOp("**")) {
      ++p_;
      e = binary(std::move(e), "**", parseUnary());
    }
    return e;
  }
  ExprP parseUnary() {
    Nest guard = nest();
    if (isOp("-") || isOp("+")) {
      std::string op = t_[p_++].text;
      auto u = make(Expr::Unary);
      u->name = op;
      u->args.push_back(parseUnary());
      return parseFilters(std::move(u));
    }
    return parseFilters(parsePostfix(parsePrimary()));
  }
  void parseArgs(Expr &call) {
    expectOp("(");
    while (!isOp(")")) {
      if (peek().kind == Tok::Name && isOp("=", 1)) {
        std::string k = t_[p_].text;
        p_ += 2;
        call.kwargs.emplace_back(k, parseExpr());
      } else {
        call.args.push_back(parseExpr());
      }
      if (isOp(","))
        ++p_;
      else if (!isOp(")"))
        throw err("expected ',' or ')' in the arguments");
    }
    ++p_;
  }
  ExprP parseFilters(ExprP e) {
    while (true) {
      if (isOp("|")) {
        ++p_;
        auto f = make(Expr::Filter);
        f->name = expectName();
        f->args.push_back(std::move(e));
        if (isOp("("))
          parseArgs(*f);
        e = parsePostfix(std::move(f));
      } else if (isName("is")) {
        ++p_;
        auto t = make(Expr::Test);
        if (isName("not")) {
          ++p_;
          t->negated = true;
        }
        t->name = expectName();
        t->args.push_back(std::move(e));
        if (isOp("("))
          parseArgs(*t);
        else if (peek().kind == Tok::Str || peek().kind == Tok::Int ||
                 peek().kind == Tok::Float ||
                 (peek().kind == Tok::Name && !isName("and") && !isName("or") &&
                  !isName("else") && !isName("if") && !isName("in") && !isName("not")))
          t->args.push_back(parsePrimary());
        e = std::move(t);
      } else {
        return e;
      }
    }
  }
  ExprP parsePostfix(ExprP e) {
    while (true) {
      if (isOp(".")) {
        ++p_;
        auto a = make(Expr::Attr);
        if (peek().kind == Tok::Int)
          a->name = t_[p_++].text;
        else
          a->name = expectName();
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (isOp("[")) {
        ++p_;
        ExprP lo, hi, step;
        bool slice = false;
        if (!isOp(":"))
          lo = parseExpr();
        if (isOp(":")) {
          slice = true;
          ++p_;
          if (!isOp("]") && !isOp(":"))
            hi = parseExpr();
          if (isOp(":")) {
            ++p_;
            if (!isOp("]"))
              step = parseExpr();
          }
        }
        expectOp("]");
        auto s = make(slice ? Expr::Slice : Expr::Item);
        s->args.push_back(std::move(e));
        s->args.push_back(std::move(lo));
        if (slice) {
          s->args.push_back(std::move(hi));
          s->args.push_back(std::move(step));
        }
        e = std::move(s);
      } else if (isOp("(")) {
        auto c = make(Expr::Call);
        c->args.push_back(std::move(e));
        parseArgs(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }
  ExprP parsePrimary() {
    const Tok &tok = peek();
    if (tok.kind == Tok::Str) {
      std::string s;
      while (peek().kind == Tok::Str)  // adjacent literals concatenate
        s += t_[p_++].text;
      auto e = make(Expr::Literal);
      e->literal = Value::str(s);
      return e;
    }
    if (tok.kind == Tok::Int || tok.kind == Tok::Float) {
      auto e = make(Expr::Literal);
      try {
        e->literal = tok.kind == Tok::Int ? Value::integer(std::stoll(tok.text))
                                          : Value::real(std::stod(tok.text));
      } catch (const std::logic_error &) {  // out of range
        throw err("the number " + tok.text.substr(0, 40) + " is out of range");
      }
      ++p_;
      return e;
    }
    if (tok.kind == Tok::Name) {
      ++p_;
      auto e = make(Expr::Literal);
      if (tok.text == "true" || tok.text == "True") e->literal = Value::boolean(true);
      else if (tok.text == "false" || tok.text == "False") e->literal = Value::boolean(false);
      else if (tok.text == "none" || tok.text == "None") e->literal = Value::none();
      else {
        e->kind = Expr::Name;
        e->name = tok.text;
      }
      return e;
    }
    if (isOp("(")) {
      ++p_;
      ExprP e = parseExpr();
      if (isOp(",")) {  // tuple
        auto l = make(Expr::ListE);
        l->args.push_back(std::move(e));
        while (isOp(",")) {
          ++p_;
          if (isOp(")")) break;
          l->args.push_back(parseExpr());
        }
        e = std::move(l);
      }
      expectOp(")");
      return e;
    }
    if (isOp("[")) {
      ++p_;
      auto l = make(Expr::ListE);
      while (!isOp("]")) {
        l->args.push_back(parseExpr());
        if (isOp(",")) ++p_;
        else if (!isOp("]")) throw err("expected ',' or ']'");
      }
      ++p_;
      return l;
    }
    if (isOp("{")) {
      ++p_;
      auto d = make(Expr::DictE);
      while (!isOp("}")) {
        d->args.push_back(parseExpr());
        expectOp(":");
        d->args.push_back(parseExpr());
        if (isOp(",")) ++p_;
        else if (!isOp("}")) throw err("expected ',' or '}'");
      }
      ++p_;
      return d;
    }
    throw err("expected an expression");
  }
};

// ================================================================ evaluation

struct LoopControl { bool isBreak; };

class Renderer {
public:
  Renderer(const std::string &where, Template::Output &out) : where_(where), out_(out) {}
  // A template can make a container hold itself ({% set ns.x = ns %},
  // l.append(l)); shared ownership would then never free it. Every container
  // that received a container is emptied when rendering ends, which breaks
  // any such cycle.
  ~Renderer() {
    for (auto &l : holders_.lists) l->clear();
    for (auto &d : holders_.dicts) d->clear();
  }

  std::vector<std::map<std::string, Value>> scopes;

  void run(const std::vector<std::unique_ptr<Node>> &body) {
    for (const auto &n : body)
      exec(*n);
  }

private:
  const std::string &where_;
  Template::Output &out_;
  std::vector<std::unique_ptr<Macro>> macros_;
  struct {
    std::vector<std::shared_ptr<List>> lists;
    std::vector<std::shared_ptr<Dict>> dicts;
  } holders_;
  static bool isContainer(const Value &v) {
    return v.kind == Value::ListK || v.kind == Value::DictK;
  }

  [[noreturn]] void fail(int line, const std::string &m) const {
    throw TemplateError(where_ + ":" + std::to_string(line) + ": error: " + m);
  }

  Value lookup(const std::string &name) const {
    for (auto it = scopes.rbegin(); it != scopes.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end())
        return f->second;
    }
    return Value();
  }

  // A template renders one example: bounded work, output and recursion,
  // so a hostile one fails with a message instead of hanging the compile.
  static constexpr int64_t kMaxSteps = 10'000'000, kMaxText = int64_t(64) << 20,
                           kMaxRange = 1'000'000;
  static constexpr int kMaxMacroDepth = 64;
  int64_t steps_ = 0;
  int macroDepth_ = 0;

  void checkText(int line) {
    if (static_cast<int64_t>(out_.text.size()) > kMaxText)
      fail(line, "the rendered text exceeds " + std::to_string(kMaxText >> 20) + " MiB");
  }

  void exec(const Node &n) {
    if (++steps_ > kMaxSteps)
      fail(n.line, "the template runs too long (over " + std::to_string(kMaxSteps) +
                       " steps for one example)");
    switch (n.kind) {
    case Node::Text: out_.text += n.text; checkText(n.line); return;
    case Node::Print: out_.text += toString(eval(*n.expr)); checkText(n.line); return;
    case Node::If:
      if (truthy(eval(*n.expr)))
        run(n.body);
      else
        run(n.orelse);
      return;
    case Node::For: execFor(n); return;
    case Node::Set: assign(n, eval(*n.expr)); return;
    case Node::SetBlock: {
      std::string saved = std::move(out_.text);
      out_.text.clear();
      run(n.body);
      std::string captured = std::move(out_.text);
      out_.text = std::move(saved);
      assign(n, Value::str(captured));
      return;
    }
    case Node::Macro: {
      macros_.push_back(std::make_unique<Macro>(Macro{&n}));
      Value v;
      v.kind = Value::MacroK;
      v.macro = macros_.back().get();
      scopes.back()[n.text] = v;
      return;
    }
    case Node::Generation: {
      size_t begin = out_.text.size();
      run(n.body);
      out_.generation.emplace_back(begin, out_.text.size());
      return;
    }
    case Node::Break: throw LoopControl{true};
    case Node::Continue: throw LoopControl{false};
    default: fail(n.line, "unsupported statement");
    }
  }

  void assign(const Node &n, Value v) {
    const Expr &t = *n.target;
    if (t.kind == Expr::Name) {
      scopes.back()[t.name] = std::move(v);
      return;
    }
    Value ns = eval(*t.args[0]);
    if (ns.kind != Value::DictK || !ns.isNamespace)
      fail(n.line, "'{% set x.attr %}' needs x to be a namespace()");
    if (isContainer(v))
      holders_.dicts.push_back(ns.dict);
    ns.set(t.name, std::move(v));
  }

  std::vector<Value> iterate(const Value &v, int line) {
    switch (v.kind) {
    case Value::Undefined: case Value::None: return {};
    case Value::ListK: return *v.list;
    case Value::DictK: {
      std::vector<Value> keys;
      for (auto &[k, e] : *v.dict) keys.push_back(Value::str(k));
      return keys;
    }
    case Value::String: {
      std::vector<Value> chars;
      for (size_t i = 0; i < v.s.size();) {
        unsigned char c = v.s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
        chars.push_back(Value::str(v.s.substr(i, n)));
        i += n;
      }
      return chars;
    }
    default: fail(line, "cannot iterate over a " + typeName(v));
    }
  }

  void execFor(const Node &n) {
    std::vector<Value> items = iterate(eval(*n.expr), n.line);
    if (n.filter) {
      std::vector<Value> kept;
      for (Value &item : items) {
        scopes.emplace_back();
        bind(n, item);
        if (truthy(eval(*n.filter)))
          kept.push_back(item);
        scopes.pop_back();
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      run(n.orelse);
      return;
    }
    int64_t len = items.size();
    for (int64_t k = 0; k < len; ++k) {
      scopes.emplace_back();
      bind(n, items[k]);
      Value loop = Value::makeDict({
          {"index", Value::integer(k + 1)}, {"index0", Value::integer(k)},
          {"revindex", Value::integer(len - k)}, {"revindex0", Value::integer(len - k - 1)},
          {"first", Value::boolean(k == 0)}, {"last", Value::boolean(k == len - 1)},
          {"length", Value::integer(len)},
          {"previtem", k > 0 ? items[k - 1] : Value()},
          {"nextitem", k + 1 < len ? items[k + 1] : Value()}});
      scopes.back()["loop"] = loop;
      bool stop = false;
      try {
        run(n.body);
      } catch (const LoopControl &c) {
        stop = c.isBreak;
      }
      scopes.pop_back();
      if (stop)
        break;
    }
  }

  void bind(const Node &n, const Value &item) {
    if (n.names.size() == 1) {
      scopes.back()[n.names[0]] = item;
      return;
    }
    std::vector<Value> parts = iterate(item, n.line);
    if (parts.size() != n.names.size())
      fail(n.line, "cannot unpack " + std::to_string(parts.size()) + " values into " +
                       std::to_string(n.names.size()) + " loop variables");
    for (size_t k = 0; k < parts.size(); ++k)
      scopes.back()[n.names[k]] = parts[k];
  }

  static std::string typeName(const Value &v) {
    switch (v.kind) {
    case Value::Undefined: return "undefined value";
    case Value::None: return "None";
    case Value::Bool: return "bool";
    case Value::Int: return "int";
    case Value::Float: return "float";
    case Value::String: return "string";
    case Value::ListK: return "list";
    case Value::DictK: return "dict";
    default: return "macro";
    }
  }

  Value attr(const Value &obj, const std::string &name, int line) {
    if (obj.kind == Value::Undefined)
      fail(line, "'" + name + "' of an undefined value");
    if (obj.kind == Value::DictK) {
      if (const Value *v = obj.get(name))
        return *v;
      return Value();
    }
    if (obj.kind == Value::ListK && !name.empty() && std::isdigit(static_cast<unsigned char>(name[0]))) {
      size_t k = std::stoul(name);
      return k < obj.list->size() ? (*obj.list)[k] : Value();
    }
    return Value();
  }

  Value item(const Value &obj, const Value &key, int line) {
    if (obj.kind == Value::Undefined)
      fail(line, "subscript of an undefined value");
    if (obj.kind == Value::DictK) {
      if (const Value *v = obj.get(toString(key)))
        return *v;
      return Value();
    }
    if ((obj.kind == Value::ListK || obj.kind == Value::String) && key.kind == Value::Int) {
      int64_t n = obj.kind == Value::ListK ? obj.list->size() : obj.s.size();
      int64_t k = key.i < 0 ? key.i + n : key.i;
      if (k < 0 || k >= n)
        return Value();
      return obj.kind == Value::ListK ? (*obj.list)[k] : Value::str(obj.s.substr(k, 1));
    }
    return Value();
  }

  Value slice(const Value &obj, const Expr &e) {
    int64_t n = obj.kind == Value::ListK ? obj.list->size()
                : obj.kind == Value::String ? obj.s.size() : -1;
    if (n < 0)
      fail(e.line, "cannot slice a " + typeName(obj));
    auto num = [&](const ExprP &x, std::optional<int64_t> dflt) -> std::optional<int64_t> {
      if (!x) return dflt;
      Value v = eval(*x);
      if (v.kind == Value::None) return dflt;
      return v.i;
    };
    int64_t step = num(e.args[3], 1).value();
    if (step == 0)
      fail(e.line, "slice step cannot be zero");
    auto clamp = [&](std::optional<int64_t> v, int64_t lo, int64_t hi) {
      int64_t x = *v < 0 ? *v + n : *v;
      return std::max(lo, std::min(hi, x));
    };
    int64_t start = e.args[1] ? clamp(num(e.args[1], 0), step > 0 ? 0 : -1, step > 0 ? n : n - 1)
                              : (step > 0 ? 0 : n - 1);
    int64_t stop = e.args[2] ? clamp(num(e.args[2], 0), step > 0 ? 0 : -1, step > 0 ? n : n - 1)
                             : (step > 0 ? n : -1);
    List l;
    std::string s;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
      if (obj.kind == Value::ListK) l.push_back((*obj.list)[k]);
      else s += obj.s[k];
    }
    return obj.kind == Value::ListK ? Value::makeList(std::move(l)) : Value::str(s);
  }

  Value binaryOp(const std::string &op, const Value &a, const Value &b, int line) {
    if (op == "~")
      return Value::str(toString(a) + toString(b));
    if (op == "==") return Value::boolean(equal(a, b));
    if (op == "!=") return Value::boolean(!equal(a, b));
    if (op == "in" || op == "not in") {
      bool found = false;
      if (b.kind == Value::String)
        found = b.s.find(toString(a)) != std::string::npos;
      else if (b.kind == Value::ListK)
        found = std::any_of(b.list->begin(), b.list->end(),
                            [&](const Value &x) { return equal(x, a); });
      else if (b.kind == Value::DictK)
        found = b.get(toString(a)) != nullptr;
      else if (b.kind != Value::Undefined && b.kind != Value::None)
        fail(line, "'in' needs a string, list or dict on the right, not a " + typeName(b));
      return Value::boolean(op == "in" ? found : !found);
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int c;
      if (a.kind == Value::String && b.kind == Value::String)
        c = a.s.compare(b.s);
      else if (a.isNumber() && b.isNumber())
        c = a.number() < b.number() ? -1 : a.number() > b.number() ? 1 : 0;
      else
        fail(line, "cannot compare a " + typeName(a) + " with a " + typeName(b));
      return Value::boolean(op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0);
    }
    if (op == "+" && a.kind == Value::String && b.kind == Value::String)
      return Value::str(a.s + b.s);
    if (op == "+" && a.kind == Value::ListK && b.kind == Value::ListK) {
      List l = *a.list;
      l.insert(l.end(), b.list->begin(), b.list->end());
      return Value::makeList(std::move(l));
    }
    if (op == "*" && a.kind == Value::String && b.kind == Value::Int) {
      if (a.s.empty() || b.i <= 0)
        return Value::str("");
      if (b.i > kMaxText / static_cast<int64_t>(a.s.size()))
        fail(line, "a string repeated to more than " + std::to_string(kMaxText >> 20) + " MiB");
      std::string s;
      for (int64_t k = 0; k < b.i; ++k) s += a.s;
      return Value::str(s);
    }
    if (!a.isNumber() || !b.isNumber())
      fail(line, "unsupported operand types for " + op + ": " + typeName(a) + " and " + typeName(b));
    bool ints = a.kind != Value::Float && b.kind != Value::Float;
    int64_t x = a.kind == Value::Bool ? a.b : a.i, y = b.kind == Value::Bool ? b.b : b.i;
    double fx = a.number(), fy = b.number();
    int64_t r = 0;
    auto overflow = [&] { fail(line, "integer overflow in " + op + " (beyond 64 bits)"); };
    if (op == "+") {
      if (ints && __builtin_add_overflow(x, y, &r)) overflow();
      return ints ? Value::integer(r) : Value::real(fx + fy);
    }
    if (op == "-") {
      if (ints && __builtin_sub_overflow(x, y, &r)) overflow();
      return ints ? Value::integer(r) : Value::real(fx - fy);
    }
    if (op == "*") {
      if (ints && __builtin_mul_overflow(x, y, &r)) overflow();
      return ints ? Value::integer(r) : Value::real(fx * fy);
    }
    if (op == "/") {
      if (fy == 0) fail(line, "division by zero");
      return Value::real(fx / fy);
    }
    if (op == "//" || op == "%") {
      if (fy == 0) fail(line, "division by zero");
      if (ints) {
        if (x == INT64_MIN && y == -1) overflow();
        int64_t q = x / y, r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) { --q; r += y; }
        return Value::integer(op == "//" ? q : r);
      }
      double q = std::floor(fx / fy);
      return Value::real(op == "//" ? q : fx - q * fy);
    }
    if (op == "**") {
      if (!ints || y < 0)
        return Value::real(std::pow(fx, fy));
      int64_t result = 1, base = x;  // by squaring, every product checked
      for (int64_t k = y; k > 0; k >>= 1) {
        if ((k & 1) && __builtin_mul_overflow(result, base, &result)) overflow();
        if (k > 1 && __builtin_mul_overflow(base, base, &base)) overflow();
      }
      return Value::integer(result);
    }
    fail(line, "unknown operator " + op);
  }

  static std::string strip(const std::string &s, const std::string &chars, bool left, bool right) {
    size_t b = 0, e = s.size();
    auto in = [&](char c) {
      return chars.empty() ? std::isspace(static_cast<unsigned char>(c)) != 0
                           : chars.find(c) != std::string::npos;
    };
    if (left) while (b < e && in(s[b])) ++b;
    if (right) while (e > b && in(s[e - 1])) --e;
    return s.substr(b, e - b);
  }

  Value callMethod(const Value &obj, const std::string &name, const std::vector<Value> &args,
                   int line) {
    auto arg = [&](size_t k) -> const Value & {
      if (k >= args.size()) fail(line, "'" + name + "' needs more arguments");
      return args[k];
    };
    if (obj.kind == Value::String) {
      const std::string &s = obj.s;
      if (name == "strip" || name == "lstrip" || name == "rstrip") {
        std::string chars = args.empty() || args[0].kind == Value::None ? "" : toString(args[0]);
        return Value::str(strip(s, chars, name != "rstrip", name != "lstrip"));
      }
      if (name == "startswith") return Value::boolean(s.rfind(toString(arg(0)), 0) == 0);
      if (name == "endswith") {
        std::string x = toString(arg(0));
        return Value::boolean(s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0);
      }
      if (name == "upper" || name == "lower") {
        std::string r = s;
        for (char &c : r) c = name == "upper" ? std::toupper(static_cast<unsigned char>(c))
                                              : std::tolower(static_cast<unsigned char>(c));
        return Value::str(r);
      }
      if (name == "title" || name == "capitalize") return filter(name, obj, {}, {}, line);
      if (name == "replace") return filter("replace", obj, {arg(0), arg(1)}, {}, line);
      if (name == "split") {
        List parts;
        if (args.empty() || args[0].kind == Value::None) {
          std::istringstream in(s);
          std::string w;
          while (in >> w) parts.push_back(Value::str(w));
        } else {
          std::string sep = toString(args[0]);
          if (sep.empty()) fail(line, "empty separator");
          size_t b = 0, p;
          while ((p = s.find(sep, b)) != std::string::npos) {
            parts.push_back(Value::str(s.substr(b, p - b)));
            b = p + sep.size();
          }
          parts.push_back(Value::str(s.substr(b)));
        }
        return Value::makeList(std::move(parts));
      }
      if (name == "find") return Value::integer(int64_t(s.find(toString(arg(0)))) == int64_t(std::string::npos) ? -1 : int64_t(s.find(toString(arg(0)))));
      if (name == "count") {
        std::string x = toString(arg(0));
        int64_t c = 0;
        for (size_t p = s.find(x); !x.empty() && p != std::string::npos; p = s.find(x, p + x.size())) ++c;
        return Value::integer(c);
      }
      if (name == "join") {
        std::string r;
        std::vector<Value> items = iterate(arg(0), line);
        for (size_t k = 0; k < items.size(); ++k) r += (k ? s : "") + toString(items[k]);
        return Value::str(r);
      }
    }
    if (obj.kind == Value::DictK) {
      if (name == "items") {
        List l;
        for (auto &[k, v] : *obj.dict) l.push_back(Value::makeList({Value::str(k), v}));
        return Value::makeList(std::move(l));
      }
      if (name == "keys" || name == "values") {
        List l;
        for (auto &[k, v] : *obj.dict) l.push_back(name == "keys" ? Value::str(k) : v);
        return Value::makeList(std::move(l));
      }
      if (name == "get") {
        if (const Value *v = obj.get(toString(arg(0)))) return *v;
        return args.size() > 1 ? args[1] : Value::none();
      }
    }
    if (obj.kind == Value::ListK) {
      if (name == "append") {
        if (isContainer(arg(0)))
          holders_.lists.push_back(obj.list);
        obj.list->push_back(arg(0));
        return Value::none();
      }
      if (name == "index") {
        for (size_t k = 0; k < obj.list->size(); ++k)
          if (equal((*obj.list)[k], arg(0))) return Value::integer(k);
        fail(line, "value not in list");
      }
    }
    fail(line, "a " + typeName(obj) + " has no method '" + name + "'");
  }

  Value filter(const std::string &name, const Value &v, const std::vector<Value> &args,
               const std::vector<std::pair<std::string, Value>> &kwargs, int line) {
    auto kw = [&](const char *k, size_t pos) -> const Value * {
      for (auto &[n, x] : kwargs) if (n == k) return &x;
      return pos < args.size() ? &args[pos] : nullptr;
    };
    if (name == "trim") return Value::str(strip(toString(v), "", true, true));
    if (name == "length" || name == "count") {
      if (v.kind == Value::String) {
        int64_t n = 0;
        for (unsigned char c : v.s) n += (c & 0xC0) != 0x80;
        return Value::integer(n);
      }
      if (v.kind == Value::ListK) return Value::integer(v.list->size());
      if (v.kind == Value::DictK) return Value::integer(v.dict->size());
      if (v.kind == Value::Undefined) return Value::integer(0);
      fail(line, "a " + typeName(v) + " has no length");
    }
    if (name == "tojson") {
      const Value *ind = kw("indent", 0);
      const Value *sk = kw("sort_keys", 1);
      std::string out;
      toJson(out, v, ind && ind->kind == Value::Int ? int(ind->i) : -1, sk && truthy(*sk), 0);
      return Value::str(out);
    }
    if (name == "upper" || name == "lower") return callMethod(Value::str(toString(v)), name, {}, line);
    if (name == "capitalize") {
      std::string s = toString(v);
      for (size_t k = 0; k < s.size(); ++k)
        s[k] = k == 0 ? std::toupper(static_cast<unsigned char>(s[k])) : std::tolower(static_cast<unsigned char>(s[k]));
      return Value::str(s);
    }
    if (name == "title") {
      std::string s = toString(v);
      bool start = true;
      for (char &c : s) {
        c = start ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c));
        start = !std::isalnum(static_cast<unsigned char>(c));
      }
      return Value::str(s);
    }
    if (name == "string") return Value::str(toString(v));
    if (name == "int") {
      if (v.kind == Value::Int) return v;
      if (v.kind == Value::Float) return Value::integer(int64_t(v.f));
      try { return Value::integer(std::stoll(toString(v))); } catch (...) { return Value::integer(0); }
    }
    if (name == "float") return Value::real(v.isNumber() ? v.number() : std::atof(toString(v).c_str()));
    if (name == "abs") return v.kind == Value::Int ? Value::integer(std::llabs(v.i)) : Value::real(std::fabs(v.number()));
    if (name == "default" || name == "d") {
      const Value *dflt = kw("default_value", 0);
      const Value *boolean = kw("boolean", 1);
      bool useDefault = v.kind == Value::Undefined || (boolean && truthy(*boolean) && !truthy(v));
      return useDefault ? (dflt ? *dflt : Value::str("")) : v;
    }
    if (name == "first" || name == "last") {
      std::vector<Value> items = iterate(v, line);
      if (items.empty()) return Value();
      return name == "first" ? items.front() : items.back();
    }
    if (name == "list") return Value::makeList(iterate(v, line));
    if (name == "reverse") {
      if (v.kind == Value::String) {
        std::vector<Value> chars = iterate(v, line);
        std::string s;
        for (auto it = chars.rbegin(); it != chars.rend(); ++it) s += it->s;
        return Value::str(s);
      }
      std::vector<Value> items = iterate(v, line);
      std::reverse(items.begin(), items.end());
      return Value::makeList(std::move(items));
    }
    if (name == "join") {
      const Value *sep = kw("d", 0);
      const Value *attribute = kw("attribute", 1);
      std::string r, s = sep ? toString(*sep) : "";
      std::vector<Value> items = iterate(v, line);
      for (size_t k = 0; k < items.size(); ++k)
        r += (k ? s : "") + toString(attribute ? attr(items[k], toString(*attribute), line) : items[k]);
      return Value::str(r);
    }
    if (name == "replace") {
      if (args.size() < 2) fail(line, "replace needs two arguments");
      std::string s = toString(v), from = toString(args[0]), to = toString(args[1]), r;
      if (from.empty()) return Value::str(s);
      size_t b = 0, p;
      while ((p = s.find(from, b)) != std::string::npos) {
        r += s.substr(b, p - b) + to;
        b = p + from.size();
      }
      return Value::str(r + s.substr(b));
    }
    if (name == "items") return callMethod(v, "items", {}, line);
    if (name == "safe" || name == "e" || name == "escape") return name == "safe" ? v : v;
    if (name == "indent") {
      const Value *w = kw("width", 0);
      const Value *first = kw("first", 1);
      std::string pad(w ? size_t(w->i) : 4, ' '), s = toString(v), r;
      bool atStart = first && truthy(*first);
      for (char c : s) {
        if (atStart && c != '\n') r += pad;
        atStart = false;
        r += c;
        if (c == '\n') atStart = true;
      }
      return Value::str(r);
    }
    if (name == "map" || name == "selectattr" || name == "rejectattr" || name == "select" ||
        name == "reject") {
      std::vector<Value> items = iterate(v, line);
      List out;
      if (name == "map") {
        const Value *a = kw("attribute", 99);
        for (const Value &x : items) {
          if (a) out.push_back(attr(x, toString(*a), line));
          else if (!args.empty()) out.push_back(filter(toString(args[0]), x, {}, {}, line));
          else fail(line, "map needs attribute= or a filter name");
        }
        return Value::makeList(std::move(out));
      }
      bool keep = name == "selectattr" || name == "select";
      bool byAttr = name == "selectattr" || name == "rejectattr";
      for (const Value &x : items) {
        Value subject = byAttr ? attr(x, toString(arg(args, 0, line)), line) : x;
        bool ok;
        size_t testPos = byAttr ? 1 : 0;
        if (args.size() > testPos) {
          std::vector<Value> rest(args.begin() + testPos + 1, args.end());
          ok = test(toString(args[testPos]), subject, rest, line);
        } else {
          ok = truthy(subject);
        }
        if (ok == keep) out.push_back(x);
      }
      return Value::makeList(std::move(out));
    }
    if (name == "unique") {
      List out;
      for (const Value &x : iterate(v, line))
        if (std::none_of(out.begin(), out.end(), [&](const Value &y) { return equal(x, y); }))
          out.push_back(x);
      return Value::makeList(std::move(out));
    }
    if (name == "dictsort") {
      if (v.kind != Value::DictK) fail(line, "dictsort needs a dict");
      Dict d = *v.dict;
      std::stable_sort(d.begin(), d.end(), [](auto &a, auto &b) { return a.first < b.first; });
      List out;
      for (auto &[k, x] : d) out.push_back(Value::makeList({Value::str(k), x}));
      return Value::makeList(std::move(out));
    }
    if (name == "sum") {
      Value acc = Value::integer(0);
      for (const Value &x : iterate(v, line)) acc = binaryOp("+", acc, x, line);
      return acc;
    }
    if (name == "min" || name == "max") {
      std::vector<Value> items = iterate(v, line);
      if (items.empty()) return Value();
      Value best = items[0];
      for (const Value &x : items)
        if (truthy(binaryOp(name == "min" ? "<" : ">", x, best, line))) best = x;
      return best;
    }
    if (name == "round") {
      double x = v.number();
      return Value::real(std::nearbyint(x));
    }
    if (name == "wordcount") return Value::integer(callMethod(Value::str(toString(v)), "split", {}, line).list->size());
    fail(line, "the filter '" + name + "' is not supported by trlc's template interpreter");
  }

  const Value &arg(const std::vector<Value> &args, size_t k, int line) {
    if (k >= args.size()) fail(line, "missing argument");
    return args[k];
  }

  bool test(const std::string &name, const Value &v, const std::vector<Value> &args, int line) {
    if (name == "defined") return v.kind != Value::Undefined;
    if (name == "undefined") return v.kind == Value::Undefined;
    if (name == "none") return v.kind == Value::None;
    if (name == "string") return v.kind == Value::String;
    if (name == "number") return v.kind == Value::Int || v.kind == Value::Float;
    if (name == "integer") return v.kind == Value::Int;
    if (name == "float") return v.kind == Value::Float;
    if (name == "boolean") return v.kind == Value::Bool;
    if (name == "true") return v.kind == Value::Bool && v.b;
    if (name == "false") return v.kind == Value::Bool && !v.b;
    if (name == "mapping") return v.kind == Value::DictK;
    if (name == "sequence") return v.kind == Value::ListK || v.kind == Value::String || v.kind == Value::DictK;
    if (name == "iterable") return v.kind == Value::ListK || v.kind == Value::String || v.kind == Value::DictK;
    if (name == "callable") return v.kind == Value::MacroK;
    if (name == "odd") return v.kind == Value::Int && (v.i % 2 != 0);
    if (name == "even") return v.kind == Value::Int && v.i % 2 == 0;
    if (name == "divisibleby") return v.kind == Value::Int && arg(args, 0, line).i != 0 && v.i % args[0].i == 0;
    if (name == "eq" || name == "equalto" || name == "==") return equal(v, arg(args, 0, line));
    if (name == "ne" || name == "!=") return !equal(v, arg(args, 0, line));
    if (name == "in") return truthy(binaryOp("in", v, arg(args, 0, line), line));
    if (name == "lower") return v.kind == Value::String && toString(filter("lower", v, {}, {}, line)) == v.s;
    if (name == "upper") return v.kind == Value::String && toString(filter("upper", v, {}, {}, line)) == v.s;
    for (const char *op : {"lt", "gt", "le", "ge"}) {
      if (name == op) {
        static const std::map<std::string, std::string> sym = {{"lt", "<"}, {"gt", ">"}, {"le", "<="}, {"ge", ">="}};
        return truthy(binaryOp(sym.at(name), v, arg(args, 0, line), line));
      }
    }
    fail(line, "the test '" + name + "' is not supported by trlc's template interpreter");
  }

  Value callMacro(const Macro &m, const std::vector<Value> &args,
                  const std::vector<std::pair<std::string, Value>> &kwargs, int line) {
    const Node &n = *m.node;
    std::map<std::string, Value> frame;
    for (size_t k = 0; k < n.names.size(); ++k) {
      Value v;
      if (k < args.size()) v = args[k];
      else if (n.defaults[k]) v = eval(*n.defaults[k]);
      frame[n.names[k]] = v;
    }
    for (auto &[k, v] : kwargs) {
      if (std::find(n.names.begin(), n.names.end(), k) == n.names.end())
        fail(line, "macro '" + n.text + "' has no parameter '" + k + "'");
      frame[k] = v;
    }
    if (macroDepth_ >= kMaxMacroDepth)
      fail(line, "macro '" + n.text + "' calls nest deeper than " +
                     std::to_string(kMaxMacroDepth) + " (endless recursion?)");
    std::string saved = std::move(out_.text);
    out_.text.clear();
    auto savedGen = out_.generation.size();
    scopes.push_back(std::move(frame));
    ++macroDepth_;
    run(n.body);
    --macroDepth_;
    scopes.pop_back();
    std::string result = std::move(out_.text);
    out_.text = std::move(saved);
    out_.generation.resize(savedGen);
    return Value::str(result);
  }

public:
  Value eval(const Expr &e) {
    switch (e.kind) {
    case Expr::Literal: return e.literal;
    case Expr::Name: return lookup(e.name);
    case Expr::ListE: {
      List l;
      for (const auto &a : e.args) l.push_back(eval(*a));
      return Value::makeList(std::move(l));
    }
    case Expr::DictE: {
      Value d = Value::makeDict();
      for (size_t k = 0; k < e.args.size(); k += 2)
        d.set(toString(eval(*e.args[k])), eval(*e.args[k + 1]));
      return d;
    }
    case Expr::Attr: return attr(eval(*e.args[0]), e.name, e.line);
    case Expr::Item: return item(eval(*e.args[0]), eval(*e.args[1]), e.line);
    case Expr::Slice: return slice(eval(*e.args[0]), e);
    case Expr::Unary: {
      Value v = eval(*e.args[0]);
      if (!v.isNumber()) fail(e.line, "bad operand for unary " + e.name + ": " + typeName(v));
      if (e.name == "+") return v;
      return v.kind == Value::Float ? Value::real(-v.f) : Value::integer(-(v.kind == Value::Bool ? v.b : v.i));
    }
    case Expr::Binary: return binaryOp(e.name, eval(*e.args[0]), eval(*e.args[1]), e.line);
    case Expr::And: {
      Value a = eval(*e.args[0]);
      return truthy(a) ? eval(*e.args[1]) : a;
    }
    case Expr::Or: {
      Value a = eval(*e.args[0]);
      return truthy(a) ? a : eval(*e.args[1]);
    }
    case Expr::Not: return Value::boolean(!truthy(eval(*e.args[0])));
    case Expr::Cond:
      if (truthy(eval(*e.args[0]))) return eval(*e.args[1]);
      return e.args[2] ? eval(*e.args[2]) : Value();
    case Expr::Filter: {
      Value v = eval(*e.args[0]);
      std::vector<Value> args;
      for (size_t k = 1; k < e.args.size(); ++k) args.push_back(eval(*e.args[k]));
      std::vector<std::pair<std::string, Value>> kwargs;
      for (auto &[k, x] : e.kwargs) kwargs.emplace_back(k, eval(*x));
      return filter(e.name, v, args, kwargs, e.line);
    }
    case Expr::Test: {
      Value v = eval(*e.args[0]);
      std::vector<Value> args;
      for (size_t k = 1; k < e.args.size(); ++k) args.push_back(eval(*e.args[k]));
      bool r = test(e.name, v, args, e.line);
      return Value::boolean(e.negated ? !r : r);
    }
    case Expr::Call: {
      const Expr &callee = *e.args[0];
      std::vector<Value> args;
      for (size_t k = 1; k < e.args.size(); ++k) args.push_back(eval(*e.args[k]));
      std::vector<std::pair<std::string, Value>> kwargs;
      for (auto &[k, x] : e.kwargs) kwargs.emplace_back(k, eval(*x));
      if (callee.kind == Expr::Attr) {
        Value obj = eval(*callee.args[0]);
        if (obj.kind == Value::DictK && obj.get(callee.name) && obj.get(callee.name)->kind == Value::MacroK)
          return callMacro(*obj.get(callee.name)->macro, args, kwargs, e.line);
        return callMethod(obj, callee.name, args, e.line);
      }
      if (callee.kind == Expr::Name) {
        Value f = lookup(callee.name);
        if (f.kind == Value::MacroK)
          return callMacro(*f.macro, args, kwargs, e.line);
        if (f.kind == Value::Undefined) {
          if (callee.name == "raise_exception")
            throw TemplateError(where_ + ":" + std::to_string(e.line) +
                                ": error: the chat template raised: " +
                                (args.empty() ? "" : toString(args[0])));
          if (callee.name == "namespace") {
            Value ns = Value::makeDict();
            ns.isNamespace = true;
            if (!args.empty() && args[0].kind == Value::DictK)
              for (auto &[k, v] : *args[0].dict) ns.set(k, v);
            for (auto &[k, v] : kwargs) ns.set(k, v);
            return ns;
          }
          if (callee.name == "range") {
            int64_t start = 0, stop, step = 1;
            if (args.size() == 1) stop = args[0].i;
            else if (args.size() >= 2) { start = args[0].i; stop = args[1].i; if (args.size() > 2) step = args[2].i; }
            else fail(e.line, "range needs arguments");
            if (step == 0) fail(e.line, "range step cannot be zero");
            // The count in wide arithmetic: no overflow, at most kMaxRange.
            __int128 span = step > 0 ? (__int128)stop - start : (__int128)start - stop;
            __int128 mag = step > 0 ? (__int128)step : -(__int128)step;
            __int128 count = span <= 0 ? 0 : (span + mag - 1) / mag;
            if (count > kMaxRange)
              fail(e.line, "range of " + std::to_string((long long)std::min<__int128>(count, INT64_MAX)) +
                               " values; trlc's templates allow " + std::to_string(kMaxRange));
            List l;
            for (__int128 k = 0; k < count; ++k) l.push_back(Value::integer(int64_t(start + k * step)));
            return Value::makeList(std::move(l));
          }
          if (callee.name == "dict") {
            Value d = Value::makeDict();
            for (auto &[k, v] : kwargs) d.set(k, v);
            return d;
          }
          if (callee.name == "strftime_now")
            fail(e.line, "strftime_now() makes the rendered text depend on the date; pass "
                         "date_string in the recipe's chat template variables instead");
        }
      }
      fail(e.line, "this value cannot be called");
    }
    }
    fail(e.line, "bad expression");
  }
};

} // namespace

Template::Template(const std::string &source, const std::string &where) : where_(where) {
  // jinja2's keep_trailing_newline=False: one final newline is dropped.
  std::string src = source;
  if (!src.empty() && src.back() == '\n')
    src.pop_back();
  Parser parser(lex(src, where), where);
  body_ = parser.parseAll();
}
Template::~Template() = default;
Template::Template(Template &&) noexcept = default;

Template::Output Template::render(const nlohmann::ordered_json &context) const {
  Output out;
  Renderer r(where_, out);
  r.scopes.emplace_back();
  for (auto it = context.begin(); it != context.end(); ++it)
    r.scopes.back()[it.key()] = fromJson(it.value());
  try {
    r.run(body_);
  } catch (const LoopControl &) {
    throw TemplateError(where_ + ": error: break or continue outside a loop");
  }
  return out;
}

} // namespace trlc::data::jinja

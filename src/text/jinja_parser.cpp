// The template parser: tokens to statements and expressions, with jinja2's grammar and operator precedence
// (lowest first): `x if c else y`, or, and, not, comparisons and in, + -, ~, * / // %, **, unary - +, then
// postfix (.attr, [item], [a:b:c], call) and filters and tests (`|f`, `is t`), which bind tighter than any operator.
// Filters and tests are resolved here. As in jinja2 3.x, an unknown one is an error when the template is parsed,
// naming it and its line, unless it sits inside an `if` (or an inline if-expression), where the error waits until
// the branch runs: templates may guard optional features that way.
#include <algorithm>
#include <initializer_list>

#include "text/jinja_ast.hpp"
#include "text/jinja_lexer.hpp"

namespace inferno::text::jinja {
namespace {

bool is_end_tag(std::string_view name) {
  static constexpr std::string_view kEndTags[] = {"endfor", "endif",   "else",      "elif",          "endmacro",
                                                  "endset", "endcall", "endfilter", "endgeneration", "endraw"};
  for (auto tag : kEndTags)
    if (name == tag) return true;
  return false;
}

bool is_reserved_name(std::string_view name) {
  return name == "true" || name == "false" || name == "none" || name == "True" || name == "False" || name == "None";
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  std::shared_ptr<Program> run() {
    auto program = std::make_shared<Program>();
    program->body = parse_body({}, nullptr, "", 0);
    for (const auto& use : unknown_names_)
      if (!use.deferred) syntax_error(use.line, use.what);
    return program;
  }

 private:
  std::vector<Token> tokens_;
  size_t index_ = 0;
  int nesting_ = 0;
  int loop_depth_ = 0;  // break/continue are allowed only inside a for body
  // Whether the code being parsed sits directly in an `if` (jinja2's "soft frame"): loops, macros and blocks inside
  // it start afresh.
  bool in_if_ = false;
  struct UnknownName {  // a filter or test that does not exist
    std::string what;
    int line;
    bool deferred;  // to render time
  };
  std::vector<UnknownName> unknown_names_;

  // Sets in_if_ for the life of a block and restores it after.
  struct InIf {
    Parser& parser;
    bool saved;
    InIf(Parser& p, bool value) : parser(p), saved(p.in_if_) { p.in_if_ = value; }
    ~InIf() { parser.in_if_ = saved; }
  };

  struct NestingGuard {
    Parser& parser;
    explicit NestingGuard(Parser& p, int line) : parser(p) {
      if (++parser.nesting_ > kMaxTemplateNesting)
        syntax_error(line, "template nested deeper than " + std::to_string(kMaxTemplateNesting) + " levels");
    }
    ~NestingGuard() { --parser.nesting_; }
  };

  static int depth_of(const ExprPtr& e) { return e ? e->depth : 0; }
  static int depth_of(const Arguments& args) {
    int deepest = std::max(depth_of(args.star_args), depth_of(args.star_kwargs));
    for (const auto& e : args.positional) deepest = std::max(deepest, e->depth);
    for (const auto& [name, e] : args.keyword) deepest = std::max(deepest, e->depth);
    return deepest;
  }
  // Gives `node` its depth, one more than its deepest part's, and refuses a tree deeper than kMaxTemplateNesting:
  // a chain built in a loop (`x|f|f|f...`, `a.b.c...`, `a + b + c...`) grows the tree without recursing here, but
  // evaluating and destroying the tree recurse as deep as it is.
  template <typename Node>
  std::unique_ptr<Node> deepened(std::unique_ptr<Node> node, int deepest_part) {
    node->depth = deepest_part + 1;
    if (node->depth > kMaxTemplateNesting)
      syntax_error(node->line,
                   "expression nested deeper than " + std::to_string(kMaxTemplateNesting) +
                       " levels (operators, filters, attributes, items and calls each add one)");
    return node;
  }

  const Token& peek(size_t ahead = 0) const {
    size_t i = std::min(index_ + ahead, tokens_.size() - 1);
    return tokens_[i];
  }
  const Token& next() {
    const Token& t = tokens_[index_];
    if (index_ + 1 < tokens_.size()) ++index_;
    return t;
  }
  bool at_op(std::string_view op, size_t ahead = 0) const {
    return peek(ahead).type == TokenType::Operator && peek(ahead).text == op;
  }
  bool at_name(std::string_view name, size_t ahead = 0) const {
    return peek(ahead).type == TokenType::Name && peek(ahead).text == name;
  }
  bool skip_op(std::string_view op) {
    if (!at_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(std::string_view name) {
    if (!at_name(name)) return false;
    next();
    return true;
  }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case TokenType::Text: return "template text";
      case TokenType::VariableBegin: return "'{{'";
      case TokenType::VariableEnd: return "'}}'";
      case TokenType::BlockBegin: return "'{%'";
      case TokenType::BlockEnd: return "'%}'";
      case TokenType::String: return "a string";
      case TokenType::End: return "the end of the template";
      default: return "'" + t.text + "'";
    }
  }

  [[noreturn]] void unexpected(const std::string& expected) const {
    syntax_error(peek().line, "expected " + expected + ", got " + describe(peek()));
  }

  void expect_op(std::string_view op) {
    if (!skip_op(op)) unexpected("'" + std::string(op) + "'");
  }
  std::string expect_name(const std::string& what) {
    if (peek().type != TokenType::Name) unexpected(what);
    return next().text;
  }
  void expect_block_end(std::string_view tag) {
    if (peek().type != TokenType::BlockEnd) unexpected("'%}' to end the '" + std::string(tag) + "' tag");
    next();
  }

  // ---- statements ----

  // Parses statements until one of `end_tags` (whose name it consumes, storing it in *found) or, for the top level
  // (no end tags), the end of the template.
  Body parse_body(std::initializer_list<std::string_view> end_tags, std::string* found, std::string_view block,
                  int opened_line) {
    Body body;
    auto expected_list = [&] {
      std::string list;
      for (auto tag : end_tags) list += (list.empty() ? "'" : " or '") + std::string(tag) + "'";
      return list;
    };
    while (true) {
      const Token& t = peek();
      switch (t.type) {
        case TokenType::Text:
          body.push_back(std::make_unique<TextStmt>(t.line, t.text));
          next();
          break;
        case TokenType::VariableBegin: {
          int line = next().line;
          auto value = parse_tuple(true, false);
          if (peek().type != TokenType::VariableEnd) unexpected("'}}'");
          next();
          body.push_back(std::make_unique<OutputStmt>(line, std::move(value)));
          break;
        }
        case TokenType::BlockBegin: {
          if (peek(1).type != TokenType::Name) {
            next();
            unexpected("a tag name after '{%'");
          }
          const std::string& name = peek(1).text;
          for (auto tag : end_tags) {
            if (name == tag) {
              next();
              next();
              *found = name;
              return body;
            }
          }
          if (is_end_tag(name)) {
            std::string message = "unexpected '" + name + "'";
            if (!block.empty())
              message += " inside the '" + std::string(block) + "' block opened at line " +
                         std::to_string(opened_line) + " (expected " + expected_list() + ")";
            syntax_error(peek(1).line, message);
          }
          body.push_back(parse_statement());
          break;
        }
        case TokenType::End:
          if (end_tags.size() == 0) return body;
          syntax_error(t.line, "unclosed '" + std::string(block) + "' block opened at line " +
                                   std::to_string(opened_line) + ": the template ended before " + expected_list());
        default: unexpected("template text or a tag");
      }
    }
  }

  std::unique_ptr<Stmt> parse_statement() {
    next();  // {%
    const Token& tag = next();
    const int line = tag.line;
    const std::string name = tag.text;
    NestingGuard guard(*this, line);
    if (name == "for") return parse_for(line);
    if (name == "if") return parse_if(line);
    if (name == "set") return parse_set(line);
    if (name == "macro") return parse_macro(line);
    if (name == "call") return parse_call_block(line);
    if (name == "filter") return parse_filter_block(line);
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) syntax_error(line, "'" + name + "' outside a for loop");
      expect_block_end(name);
      return std::make_unique<LoopControlStmt>(line, name == "break" ? Flow::Break : Flow::Continue);
    }
    if (name == "generation") {  // transformers' tag marking assistant output; it renders its body unchanged
      expect_block_end(name);
      auto stmt = std::make_unique<BodyStmt>(line);
      InIf body_scope(*this, false);
      std::string found;
      stmt->body = parse_body({"endgeneration"}, &found, "generation", line);
      expect_block_end("endgeneration");
      return stmt;
    }
    if (name == "raw") syntax_error(line, "malformed 'raw' tag (expected '{% raw %}')");
    static constexpr std::string_view kUnsupported[] = {"extends", "block",      "include", "import", "from",
                                                        "with",    "autoescape", "do",      "trans",  "pluralize"};
    for (auto unsupported : kUnsupported)
      if (name == unsupported) syntax_error(line, "unsupported tag '" + name + "'");
    syntax_error(line, "unknown tag '" + name + "'");
  }

  AssignTarget parse_assign_target(bool allow_attribute) {
    AssignTarget target;
    const bool parenthesized = skip_op("(");
    auto take_name = [&] {
      int line = peek().line;
      std::string name = expect_name("a variable name");
      if (is_reserved_name(name)) syntax_error(line, "cannot assign to '" + name + "'");
      target.names.push_back(name);
    };
    take_name();
    if (allow_attribute && !parenthesized && skip_op(".")) {
      target.attribute = expect_name("an attribute name after '.'");
      return target;
    }
    while (skip_op(",")) {
      target.unpack = true;
      if (peek().type != TokenType::Name || at_name("in")) break;  // trailing comma
      take_name();
    }
    if (parenthesized) expect_op(")");
    return target;
  }

  std::unique_ptr<Stmt> parse_for(int line) {
    auto stmt = std::make_unique<ForStmt>(line);
    stmt->target = parse_assign_target(false);
    if (!skip_name("in")) unexpected("'in' in the for tag");
    stmt->iterable = parse_tuple(false, false);
    InIf loop_scope(*this, false);
    if (skip_name("if")) stmt->condition = parse_expression(true);
    if (at_name("recursive")) syntax_error(peek().line, "unsupported construct: recursive for loops");
    expect_block_end("for");
    std::string found;
    ++loop_depth_;
    stmt->body = parse_body({"endfor", "else"}, &found, "for", line);
    --loop_depth_;
    if (found == "else") {
      expect_block_end("else");
      stmt->otherwise = parse_body({"endfor"}, &found, "for", line);
    }
    expect_block_end("endfor");
    return stmt;
  }

  std::unique_ptr<Stmt> parse_if(int line) {
    auto stmt = std::make_unique<IfStmt>(line);
    InIf if_scope(*this, true);
    std::string found = "if";
    while (true) {
      auto condition = parse_tuple(false, false);
      expect_block_end(found);
      Body body = parse_body({"elif", "else", "endif"}, &found, "if", line);
      stmt->branches.emplace_back(std::move(condition), std::move(body));
      if (found == "elif") continue;
      if (found == "else") {
        expect_block_end("else");
        stmt->otherwise = parse_body({"endif"}, &found, "if", line);
      }
      break;
    }
    expect_block_end("endif");
    return stmt;
  }

  std::unique_ptr<Stmt> parse_set(int line) {
    AssignTarget target = parse_assign_target(true);
    if (skip_op("=")) {
      auto stmt = std::make_unique<SetStmt>(line);
      stmt->target = std::move(target);
      stmt->value = parse_tuple(true, false);
      expect_block_end("set");
      return stmt;
    }
    auto stmt = std::make_unique<SetBlockStmt>(line);
    stmt->target = std::move(target);
    InIf block_scope(*this, false);
    while (skip_op("|")) stmt->filters.push_back(parse_filter_call());
    expect_block_end("set");
    std::string found;
    stmt->body = parse_body({"endset"}, &found, "set", line);
    expect_block_end("endset");
    return stmt;
  }

  void parse_params(MacroDef& macro) {
    expect_op("(");
    bool have_default = false;
    while (!skip_op(")")) {
      if (!macro.params.empty()) {
        expect_op(",");
        if (skip_op(")")) break;
      }
      int line = peek().line;
      std::string name = expect_name("a parameter name");
      ExprPtr default_value;
      if (skip_op("=")) {
        default_value = parse_expression(true);
        have_default = true;
      } else if (have_default) {
        syntax_error(line, "parameter '" + name + "' without a default follows one with a default");
      }
      macro.params.emplace_back(std::move(name), std::move(default_value));
    }
  }

  // The body of a macro or call block: break/continue of an enclosing loop do not reach into it.
  Body parse_macro_body(std::string_view end_tag, std::string_view block, int line) {
    InIf body_scope(*this, false);
    const int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    std::string found;
    Body body = parse_body({end_tag}, &found, block, line);
    loop_depth_ = saved_loop_depth;
    expect_block_end(end_tag);
    return body;
  }

  std::unique_ptr<Stmt> parse_macro(int line) {
    auto macro = std::make_shared<MacroDef>();
    macro->line = line;
    macro->name = expect_name("a macro name");
    InIf macro_scope(*this, false);
    parse_params(*macro);
    expect_block_end("macro");
    macro->body = parse_macro_body("endmacro", "macro", line);
    auto stmt = std::make_unique<MacroStmt>(line);
    stmt->macro = std::move(macro);
    return stmt;
  }

  std::unique_ptr<Stmt> parse_call_block(int line) {
    auto caller = std::make_shared<MacroDef>();
    caller->name = "caller";
    caller->line = line;
    if (at_op("(")) parse_params(*caller);
    ExprPtr call = parse_expression(true);
    auto* call_expr = dynamic_cast<CallExpr*>(call.get());
    if (!call_expr) syntax_error(line, "the 'call' tag needs a macro call, as in {% call name(args) %}");
    expect_block_end("call");
    caller->body = parse_macro_body("endcall", "call", line);
    auto stmt = std::make_unique<CallBlockStmt>(line);
    stmt->caller = std::move(caller);
    call.release();
    stmt->call.reset(call_expr);
    return stmt;
  }

  std::unique_ptr<Stmt> parse_filter_block(int line) {
    auto stmt = std::make_unique<FilterBlockStmt>(line);
    InIf block_scope(*this, false);
    do {
      stmt->filters.push_back(parse_filter_call());
    } while (skip_op("|"));
    expect_block_end("filter");
    std::string found;
    stmt->body = parse_body({"endfilter"}, &found, "filter", line);
    expect_block_end("endfilter");
    return stmt;
  }

  // ---- expressions ----

  bool at_tuple_end() const {
    TokenType type = peek().type;
    return type == TokenType::VariableEnd || type == TokenType::BlockEnd || at_op(")");
  }

  // Comma-separated expressions: one alone is itself, several (or one with a trailing comma) a tuple.
  ExprPtr parse_tuple(bool with_condexpr, bool explicit_parentheses) {
    const int line = peek().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (at_tuple_end()) break;
      items.push_back(parse_expression(with_condexpr));
      if (!at_op(",")) break;
      is_tuple = true;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parentheses) unexpected("an expression");
    }
    auto tuple = std::make_unique<ListExpr>(line, true);
    tuple->items = std::move(items);
    int deepest = 0;
    for (const auto& item : tuple->items) deepest = std::max(deepest, item->depth);
    return deepened(std::move(tuple), deepest);
  }

  ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

  ExprPtr parse_condexpr() {
    const size_t first_unknown = unknown_names_.size();
    InIf keep(*this, in_if_);
    ExprPtr expr = parse_or();
    while (at_name("if")) {
      // Every part of an inline if-expression, the one already parsed included, may use unknown names.
      for (size_t i = first_unknown; i < unknown_names_.size(); ++i) unknown_names_[i].deferred = true;
      in_if_ = true;
      auto conditional = std::make_unique<ConditionalExpr>(next().line);
      conditional->condition = parse_or();
      if (at_name("else")) {
        NestingGuard guard(*this, next().line);
        conditional->else_value = parse_condexpr();
      }
      conditional->then_value = std::move(expr);
      const int deepest = std::max({depth_of(conditional->condition), depth_of(conditional->then_value),
                                    depth_of(conditional->else_value)});
      expr = deepened(std::move(conditional), deepest);
    }
    return expr;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (at_name("or")) {
      int line = next().line;
      ExprPtr right = parse_and();
      const int deepest = std::max(left->depth, right->depth);
      left = deepened(std::make_unique<LogicalExpr>(line, false, std::move(left), std::move(right)), deepest);
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (at_name("and")) {
      int line = next().line;
      ExprPtr right = parse_not();
      const int deepest = std::max(left->depth, right->depth);
      left = deepened(std::make_unique<LogicalExpr>(line, true, std::move(left), std::move(right)), deepest);
    }
    return left;
  }

  ExprPtr parse_not() {
    if (at_name("not")) {
      int line = next().line;
      NestingGuard guard(*this, line);
      ExprPtr operand = parse_not();
      const int deepest = operand->depth;
      return deepened(std::make_unique<UnaryExpr>(line, "not", std::move(operand)), deepest);
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const int line = peek().line;
    ExprPtr first = parse_math1();
    std::vector<std::pair<std::string, ExprPtr>> rest;
    while (true) {
      if (at_op("==") || at_op("!=") || at_op("<") || at_op(">") || at_op("<=") || at_op(">=")) {
        std::string op = next().text;
        rest.emplace_back(op, parse_math1());
      } else if (skip_name("in")) {
        rest.emplace_back("in", parse_math1());
      } else if (at_name("not") && at_name("in", 1)) {
        next();
        next();
        rest.emplace_back("not in", parse_math1());
      } else {
        break;
      }
    }
    if (rest.empty()) return first;
    auto compare = std::make_unique<CompareExpr>(line);
    compare->first = std::move(first);
    compare->rest = std::move(rest);
    int deepest = compare->first->depth;
    for (const auto& [op, e] : compare->rest) deepest = std::max(deepest, e->depth);
    return deepened(std::move(compare), deepest);
  }

  ExprPtr binary(int line, std::string op, ExprPtr left, ExprPtr right) {
    const int deepest = std::max(left->depth, right->depth);
    return deepened(std::make_unique<BinaryExpr>(line, std::move(op), std::move(left), std::move(right)), deepest);
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (at_op("+") || at_op("-")) {
      const Token& op = next();
      left = binary(op.line, op.text, std::move(left), parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (at_op("~")) {
      int line = next().line;
      left = binary(line, "~", std::move(left), parse_math2());
    }
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const Token& op = next();
      left = binary(op.line, op.text, std::move(left), parse_pow());
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (at_op("**")) {
      int line = next().line;
      left = binary(line, "**", std::move(left), parse_unary(true));
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    const int line = peek().line;
    NestingGuard guard(*this, line);
    ExprPtr node;
    if (at_op("-") || at_op("+")) {
      std::string op = next().text;
      ExprPtr operand = parse_unary(false);
      const int deepest = operand->depth;
      node = deepened(std::make_unique<UnaryExpr>(line, op, std::move(operand)), deepest);
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    const int line = t.line;
    switch (t.type) {
      case TokenType::Name: {
        std::string name = next().text;
        if (name == "true" || name == "True") return std::make_unique<Literal>(line, Value(true));
        if (name == "false" || name == "False") return std::make_unique<Literal>(line, Value(false));
        if (name == "none" || name == "None") return std::make_unique<Literal>(line, Value());
        return std::make_unique<NameExpr>(line, std::move(name));
      }
      case TokenType::String: {
        std::string s;
        while (peek().type == TokenType::String) s += next().text;  // "a" "b" is "ab", as in Python
        return std::make_unique<Literal>(line, Value(std::move(s)));
      }
      case TokenType::Integer: return std::make_unique<Literal>(line, Value(next().integer));
      case TokenType::Float: return std::make_unique<Literal>(line, Value(next().real));
      case TokenType::Operator:
        if (t.text == "(") {
          next();
          ExprPtr inner = parse_tuple(true, true);
          expect_op(")");
          return inner;
        }
        if (t.text == "[") return parse_list();
        if (t.text == "{") return parse_dict();
        break;
      default: break;
    }
    unexpected("an expression");
  }

  ExprPtr parse_list() {
    auto list = std::make_unique<ListExpr>(next().line, false);
    while (!skip_op("]")) {
      if (!list->items.empty()) {
        expect_op(",");
        if (skip_op("]")) break;
      }
      list->items.push_back(parse_expression(true));
    }
    int deepest = 0;
    for (const auto& item : list->items) deepest = std::max(deepest, item->depth);
    return deepened(std::move(list), deepest);
  }

  ExprPtr parse_dict() {
    auto dict = std::make_unique<DictExpr>(next().line);
    while (!skip_op("}")) {
      if (!dict->entries.empty()) {
        expect_op(",");
        if (skip_op("}")) break;
      }
      ExprPtr key = parse_expression(true);
      expect_op(":");
      dict->entries.emplace_back(std::move(key), parse_expression(true));
    }
    int deepest = 0;
    for (const auto& [key, value] : dict->entries) deepest = std::max({deepest, key->depth, value->depth});
    return deepened(std::move(dict), deepest);
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (at_op(".") || at_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (at_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (at_op("|")) {
        auto filter = std::make_unique<FilterExpr>(next().line);
        filter->filter = parse_filter_call();
        filter->subject = std::move(node);
        const int deepest = std::max(filter->subject->depth, depth_of(filter->filter.args));
        node = deepened(std::move(filter), deepest);
      } else if (at_name("is")) {
        node = parse_test(std::move(node));
      } else if (at_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    const int line = peek().line;
    if (skip_op(".")) {
      const Token& t = peek();
      const int deepest = node->depth;
      if (t.type == TokenType::Name)
        return deepened(std::make_unique<AttributeExpr>(line, std::move(node), next().text), deepest);
      if (t.type == TokenType::Integer)
        return deepened(std::make_unique<ItemExpr>(line, std::move(node),
                                                   std::make_unique<Literal>(line, Value(next().integer))),
                        deepest);
      unexpected("an attribute name or index after '.'");
    }
    expect_op("[");
    ExprPtr start;
    if (!at_op(":")) {
      start = parse_expression(true);
      if (at_op(",")) syntax_error(peek().line, "unsupported construct: subscripts with several indices");
      if (skip_op("]")) {
        const int deepest = std::max(node->depth, start->depth);
        return deepened(std::make_unique<ItemExpr>(line, std::move(node), std::move(start)), deepest);
      }
    }
    auto slice = std::make_unique<SliceExpr>(line);
    slice->object = std::move(node);
    slice->start = std::move(start);
    expect_op(":");
    if (!at_op("]") && !at_op(":")) slice->stop = parse_expression(true);
    if (skip_op(":") && !at_op("]")) slice->step = parse_expression(true);
    expect_op("]");
    const int deepest = std::max({depth_of(slice->object), depth_of(slice->start), depth_of(slice->stop),
                                  depth_of(slice->step)});
    return deepened(std::move(slice), deepest);
  }

  Arguments parse_call_args() {
    Arguments args;
    expect_op("(");
    bool first = true;
    while (!skip_op(")")) {
      if (!first) {
        expect_op(",");
        if (skip_op(")")) break;
      }
      first = false;
      if (skip_op("*")) {
        args.star_args = parse_expression(true);
      } else if (skip_op("**")) {
        args.star_kwargs = parse_expression(true);
      } else if (peek().type == TokenType::Name && at_op("=", 1)) {
        std::string name = next().text;
        next();
        args.keyword.emplace_back(std::move(name), parse_expression(true));
      } else {
        if (!args.keyword.empty() || args.star_kwargs)
          syntax_error(peek().line, "positional argument follows keyword argument");
        args.positional.push_back(parse_expression(true));
      }
    }
    return args;
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto call = std::make_unique<CallExpr>(peek().line);
    call->callee = std::move(callee);
    call->args = parse_call_args();
    const int deepest = std::max(call->callee->depth, depth_of(call->args));
    return deepened(std::move(call), deepest);
  }

  std::string parse_dotted_name(const std::string& what) {
    std::string name = expect_name(what);
    while (skip_op(".")) name += "." + expect_name(what);
    return name;
  }

  FilterCall parse_filter_call() {
    FilterCall filter;
    filter.line = peek().line;
    filter.name = parse_dotted_name("a filter name");
    filter.fn = find_filter(filter.name);
    if (!filter.fn) unknown_names_.push_back({"unknown filter '" + filter.name + "'", filter.line, in_if_});
    if (at_op("(")) filter.args = parse_call_args();
    return filter;
  }

  ExprPtr parse_test(ExprPtr subject) {
    auto test = std::make_unique<TestExpr>(next().line);  // is
    test->negated = skip_name("not");
    test->name = parse_dotted_name("a test name");
    test->fn = find_test(test->name);
    if (!test->fn) unknown_names_.push_back({"unknown test '" + test->name + "'", test->line, in_if_});
    test->subject = std::move(subject);
    const Token& t = peek();
    if (at_op("(")) {
      test->args = parse_call_args();
    } else if ((t.type == TokenType::Name || t.type == TokenType::String || t.type == TokenType::Integer ||
                t.type == TokenType::Float || at_op("[") || at_op("{")) &&
               !at_name("else") && !at_name("or") && !at_name("and")) {
      // One argument without parentheses: `x is divisibleby 3`, `x is sameas none`.
      if (at_name("is")) syntax_error(t.line, "tests cannot be chained with 'is'");
      test->args.positional.push_back(parse_postfix(parse_primary()));
    }
    const int deepest = std::max(test->subject->depth, depth_of(test->args));
    return deepened(std::move(test), deepest);
  }
};

}  // namespace

std::shared_ptr<Program> parse(std::string_view source) {
  return Parser(tokenize(source)).run();
}

}  // namespace inferno::text::jinja

#pragma once
// The parsed form of a template (expressions and statements) and the Renderer that evaluates it. Each node knows
// its line, so that every error can say where it happened.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "text/jinja_internal.hpp"

namespace inferno::text::jinja {

// ---- expressions ----

struct Expr {
  explicit Expr(int line) : line(line) {}
  virtual ~Expr() = default;
  virtual Value eval(Renderer& r) const = 0;
  int line;
  int depth = 1;  // of the tree under this node, this node included; set and bounded by the parser
};
using ExprPtr = std::unique_ptr<Expr>;

struct Arguments {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
  ExprPtr star_args;    // *list
  ExprPtr star_kwargs;  // **dict
  CallArgs evaluate(Renderer& r) const;
};

struct Literal : Expr {
  Literal(int line, Value value) : Expr(line), value(std::move(value)) {}
  Value eval(Renderer& r) const override;
  Value value;
};

struct ListExpr : Expr {
  ListExpr(int line, bool tuple) : Expr(line), tuple(tuple) {}
  Value eval(Renderer& r) const override;
  std::vector<ExprPtr> items;
  bool tuple;
};

struct DictExpr : Expr {
  using Expr::Expr;
  Value eval(Renderer& r) const override;
  std::vector<std::pair<ExprPtr, ExprPtr>> entries;
};

struct NameExpr : Expr {
  NameExpr(int line, std::string name) : Expr(line), name(std::move(name)) {}
  Value eval(Renderer& r) const override;
  std::string name;
};

struct AttributeExpr : Expr {  // object.name
  AttributeExpr(int line, ExprPtr object, std::string name)
      : Expr(line), object(std::move(object)), name(std::move(name)) {}
  Value eval(Renderer& r) const override;
  ExprPtr object;
  std::string name;
};

struct ItemExpr : Expr {  // object[key]
  ItemExpr(int line, ExprPtr object, ExprPtr key) : Expr(line), object(std::move(object)), key(std::move(key)) {}
  Value eval(Renderer& r) const override;
  ExprPtr object, key;
};

struct SliceExpr : Expr {  // object[start:stop:step], each part optional
  using Expr::Expr;
  Value eval(Renderer& r) const override;
  ExprPtr object, start, stop, step;
};

struct CallExpr : Expr {
  using Expr::Expr;
  Value eval(Renderer& r) const override;
  ExprPtr callee;
  Arguments args;
};

struct FilterCall {  // `| name(args)`, resolved when parsed
  std::string name;
  FilterFn fn = nullptr;  // null for an unknown filter that fails only if it runs (inside an if)
  Arguments args;
  int line = 0;
  Value apply(Renderer& r, const Value& subject) const;
};

struct FilterExpr : Expr {
  using Expr::Expr;
  Value eval(Renderer& r) const override;
  ExprPtr subject;
  FilterCall filter;
};

struct TestExpr : Expr {  // subject is [not] name(args)
  using Expr::Expr;
  Value eval(Renderer& r) const override;
  ExprPtr subject;
  std::string name;
  TestFn fn = nullptr;  // null for an unknown test that fails only if it runs (inside an if)
  Arguments args;
  bool negated = false;
};

struct UnaryExpr : Expr {  // not x, -x, +x
  UnaryExpr(int line, std::string op, ExprPtr operand) : Expr(line), op(std::move(op)), operand(std::move(operand)) {}
  Value eval(Renderer& r) const override;
  std::string op;
  ExprPtr operand;
};

struct BinaryExpr : Expr {  // + - * / // % ** ~
  BinaryExpr(int line, std::string op, ExprPtr left, ExprPtr right)
      : Expr(line), op(std::move(op)), left(std::move(left)), right(std::move(right)) {}
  Value eval(Renderer& r) const override;
  std::string op;
  ExprPtr left, right;
};

struct LogicalExpr : Expr {  // and / or, returning an operand as Python does
  LogicalExpr(int line, bool is_and, ExprPtr left, ExprPtr right)
      : Expr(line), is_and(is_and), left(std::move(left)), right(std::move(right)) {}
  Value eval(Renderer& r) const override;
  bool is_and;
  ExprPtr left, right;
};

struct CompareExpr : Expr {  // a < b <= c, chained as in Python; also in / not in
  using Expr::Expr;
  Value eval(Renderer& r) const override;
  ExprPtr first;
  std::vector<std::pair<std::string, ExprPtr>> rest;
};

struct ConditionalExpr : Expr {  // a if cond else b; without else, Undefined
  using Expr::Expr;
  Value eval(Renderer& r) const override;
  ExprPtr condition, then_value, else_value;
};

// ---- statements ----

enum class Flow { Normal, Break, Continue };

struct Stmt {
  explicit Stmt(int line) : line(line) {}
  virtual ~Stmt() = default;
  virtual Flow exec(Renderer& r) const = 0;
  int line;
};
using Body = std::vector<std::unique_ptr<Stmt>>;

struct TextStmt : Stmt {
  TextStmt(int line, std::string text) : Stmt(line), text(std::move(text)) {}
  Flow exec(Renderer& r) const override;
  std::string text;
};

struct OutputStmt : Stmt {  // {{ value }}
  OutputStmt(int line, ExprPtr value) : Stmt(line), value(std::move(value)) {}
  Flow exec(Renderer& r) const override;
  ExprPtr value;
};

struct IfStmt : Stmt {
  using Stmt::Stmt;
  Flow exec(Renderer& r) const override;
  std::vector<std::pair<ExprPtr, Body>> branches;  // if, elif...
  Body otherwise;
};

struct AssignTarget {
  std::vector<std::string> names;  // one name, or several to unpack
  bool unpack = false;
  std::string attribute;  // set ns.attribute = ...: names[0] is the namespace
  void assign(Renderer& r, const Value& value) const;
};

struct ForStmt : Stmt {
  using Stmt::Stmt;
  Flow exec(Renderer& r) const override;
  AssignTarget target;
  ExprPtr iterable;
  ExprPtr condition;  // for x in xs if condition
  Body body, otherwise;
};

struct SetStmt : Stmt {  // {% set target = value %}
  using Stmt::Stmt;
  Flow exec(Renderer& r) const override;
  AssignTarget target;
  ExprPtr value;
};

struct SetBlockStmt : Stmt {  // {% set target | filters %}body{% endset %}
  using Stmt::Stmt;
  Flow exec(Renderer& r) const override;
  AssignTarget target;
  std::vector<FilterCall> filters;
  Body body;
};

struct MacroDef {
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // default value or null
  Body body;
  int line = 0;
};

struct MacroStmt : Stmt {  // {% macro name(params) %}body{% endmacro %}
  using Stmt::Stmt;
  Flow exec(Renderer& r) const override;
  std::shared_ptr<MacroDef> macro;
};

struct CallBlockStmt : Stmt {  // {% call(params) callee(args) %}body{% endcall %}: body becomes caller()
  using Stmt::Stmt;
  Flow exec(Renderer& r) const override;
  std::shared_ptr<MacroDef> caller;
  std::unique_ptr<CallExpr> call;
};

struct FilterBlockStmt : Stmt {  // {% filter name(args) %}body{% endfilter %}
  using Stmt::Stmt;
  Flow exec(Renderer& r) const override;
  std::vector<FilterCall> filters;
  Body body;
};

struct BodyStmt : Stmt {  // a body rendered in place: {% generation %}...{% endgeneration %}
  using Stmt::Stmt;
  Flow exec(Renderer& r) const override;
  Body body;
};

struct LoopControlStmt : Stmt {  // break, continue
  LoopControlStmt(int line, Flow flow) : Stmt(line), flow(flow) {}
  Flow exec(Renderer& r) const override {
    (void)r;
    return flow;
  }
  Flow flow;
};

struct Program {
  Body body;
};

std::shared_ptr<Program> parse(std::string_view source);

// ---- rendering ----

struct Scope {
  explicit Scope(std::shared_ptr<Scope> parent) : parent(std::move(parent)) {}
  const Value* lookup(std::string_view name) const {
    for (const Scope* s = this; s; s = s->parent.get())
      if (const Value* v = s->vars.find(name)) return v;
    return nullptr;
  }
  std::shared_ptr<Scope> parent;
  Dict vars;
};

class Renderer {
 public:
  Renderer(std::shared_ptr<Scope> root, std::string& out) : scope(std::move(root)), out(&out) {}
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  // Evaluates or executes a node; failures gain the node's line and become inferno::Error.
  Value eval(const Expr& e);
  Flow exec(const Body& body);
  // Renders a body into a string of its own, in `body_scope`.
  std::string capture(const Body& body, std::shared_ptr<Scope> body_scope);
  void write(std::string_view text);
  void count_step();  // a loop iteration or a macro call, against kMaxSteps

  // Counts an evaluation or body in progress against kMaxRenderDepth.
  struct DepthGuard {
    explicit DepthGuard(Renderer& r);
    ~DepthGuard() { --r.depth; }
    Renderer& r;
  };

  std::shared_ptr<Scope> scope;
  std::string* out;
  int call_depth = 0;
  int depth = 0;
  uint64_t steps = 0;
  RenderBudget budget;
  ActiveBudget active_budget{budget};
};

}  // namespace inferno::text::jinja

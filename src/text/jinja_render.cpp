// Evaluation of expressions and execution of statements, with jinja2's semantics: Python arithmetic and
// comparisons, jinja2's Undefined (prints as "", is falsy, fails on use as a value), and its scoping: a for loop
// body is a fresh scope each iteration (so a plain `set` inside a loop does not outlive it, hence namespace()),
// `if` opens no scope, and a macro sees the scope it was defined in as it is when called.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cmath>

#include "text/jinja_ast.hpp"

namespace inferno::text::jinja {

namespace {

std::string located(int line, const char* what) {
  return "chat template line " + std::to_string(line) + ": " + what;
}

// Restores the renderer's scope (and output) when leaving a block, also on exceptions.
struct ScopeGuard {
  Renderer& r;
  std::shared_ptr<Scope> saved_scope;
  std::string* saved_out;
  explicit ScopeGuard(Renderer& r) : r(r), saved_scope(r.scope), saved_out(r.out) {}
  ~ScopeGuard() {
    r.scope = std::move(saved_scope);
    r.out = saved_out;
  }
};

bool is_integral(const Value& v) {
  return v.is_int() || v.is_bool();
}
bool is_numeric(const Value& v) {
  return is_integral(v) || v.is_float();
}
int64_t integral(const Value& v) {
  return v.is_bool() ? int64_t(v.as_bool()) : v.as_int();
}
double real(const Value& v) {
  return v.is_bool() ? double(v.as_bool()) : v.as_double();
}

[[noreturn]] void unsupported_operands(std::string_view op, const Value& a, const Value& b) {
  if (op == "+" && a.is_string()) throw EvalError("can only concatenate str (not \"" + type_name(b) + "\") to str");
  throw EvalError("unsupported operand type(s) for " + std::string(op) + ": '" + type_name(a) + "' and '" +
                  type_name(b) + "'");
}

// Python integers do not overflow; these do, so an operation past 64 bits fails instead of wrapping.
using CheckedOp = bool (*)(int64_t, int64_t, int64_t*);
int64_t checked(CheckedOp op, int64_t a, int64_t b) {
  int64_t result;
  if (op(a, b, &result)) throw EvalError("integer overflow (values beyond 64 bits are not supported)");
  return result;
}
bool add_overflows(int64_t a, int64_t b, int64_t* r) {
  return __builtin_add_overflow(a, b, r);
}
bool sub_overflows(int64_t a, int64_t b, int64_t* r) {
  return __builtin_sub_overflow(a, b, r);
}
bool mul_overflows(int64_t a, int64_t b, int64_t* r) {
  return __builtin_mul_overflow(a, b, r);
}

Value repeat(const Value& sequence, int64_t times) {
  if (sequence.is_generator()) throw EvalError("unsupported operand type(s) for *: 'generator' and 'int'");
  if (times <= 0) return sequence.is_string() ? Value("") : Value::list({});
  if (sequence.is_string()) {
    const std::string& s = sequence.as_string();
    if (!s.empty()) check_string_size(uint64_t(times) > kMaxStringBytes / s.size() ? SIZE_MAX : s.size() * size_t(times));
    std::string out;
    out.reserve(s.size() * size_t(times));
    for (int64_t i = 0; i < times; ++i) out += s;
    return Value(std::move(out));
  }
  const auto& items = sequence.as_list();
  if (!items.empty() && uint64_t(times) > uint64_t(kMaxRangeLength) / items.size())
    throw EvalError("list repetition longer than " + std::to_string(kMaxRangeLength) + " items");
  Value::List out;
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
  return sequence.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

// Python's float // and %: the quotient rounds toward negative infinity and the remainder takes the divisor's sign.
std::pair<double, double> float_divmod(double a, double b) {
  double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0) {
    if ((b < 0) != (mod < 0)) {
      mod += b;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, b);
  }
  double floor_div;
  if (div != 0) {
    floor_div = std::floor(div);
    if (div - floor_div > 0.5) floor_div += 1.0;
  } else {
    floor_div = std::copysign(0.0, a / b);
  }
  return {floor_div, mod};
}

}  // namespace

Value arithmetic(std::string_view op, const Value& a, const Value& b) {
  const bool ints = is_integral(a) && is_integral(b);
  const bool numbers = is_numeric(a) && is_numeric(b);
  if (op == "+") {
    if (ints) return checked(add_overflows, integral(a), integral(b));
    if (numbers) return real(a) + real(b);
    if (a.is_string() && b.is_string()) {
      check_string_size(a.as_string().size() + b.as_string().size());
      return a.as_string() + b.as_string();
    }
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple() && !a.is_generator() && !b.is_generator()) {
      Value::List items = a.as_list();
      items.insert(items.end(), b.as_list().begin(), b.as_list().end());
      return a.is_tuple() ? Value::tuple(std::move(items)) : Value::list(std::move(items));
    }
  } else if (op == "-") {
    if (ints) return checked(sub_overflows, integral(a), integral(b));
    if (numbers) return real(a) - real(b);
  } else if (op == "*") {
    if (ints) return checked(mul_overflows, integral(a), integral(b));
    if (numbers) return real(a) * real(b);
    if ((a.is_string() || a.is_list()) && is_integral(b)) return repeat(a, integral(b));
    if (is_integral(a) && (b.is_string() || b.is_list())) return repeat(b, integral(a));
  } else if (op == "/") {
    if (numbers) {
      if (real(b) == 0) throw EvalError("division by zero");
      return real(a) / real(b);
    }
  } else if (op == "//" || op == "%") {
    if (op == "%" && a.is_string()) return percent_format(a.as_string(), b);
    if (ints) {
      int64_t x = integral(a), y = integral(b);
      if (y == 0) throw EvalError("integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) throw EvalError("integer overflow (values beyond 64 bits are not supported)");
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        q -= 1;
        m += y;
      }
      return op == "//" ? q : m;
    }
    if (numbers) {
      if (real(b) == 0) throw EvalError(op == "//" ? "float floor division by zero" : "float modulo");
      auto [q, m] = float_divmod(real(a), real(b));
      return op == "//" ? q : m;
    }
  } else if (op == "**") {
    if (ints && integral(b) >= 0) {
      int64_t base = integral(a), exponent = integral(b), power = 1;
      while (exponent > 0) {  // square and multiply, every step checked
        if (exponent & 1) power = checked(mul_overflows, power, base);
        exponent >>= 1;
        if (exponent) base = checked(mul_overflows, base, base);
      }
      return power;
    }
    if (numbers) {
      if (real(a) == 0 && real(b) < 0) throw EvalError("0.0 cannot be raised to a negative power");
      return std::pow(real(a), real(b));
    }
  }
  unsupported_operands(op, a, b);
}

namespace {

// The `loop` variable. Like jinja2's LoopContext it is one object per loop, updated in place each iteration (so it
// is a namespace here: shared and mutable), which also spares building one per iteration.
struct Loop {
  Value object;
  std::shared_ptr<size_t> index0 = std::make_shared<size_t>(0);  // shared with loop.cycle

  explicit Loop(size_t length) {
    Dict attributes;
    for (const char* key : {"index", "index0", "revindex", "revindex0", "first", "last", "length", "depth", "depth0",
                            "previtem", "nextitem"})
      attributes.set(key, Value());
    attributes.set("length", int64_t(length));
    attributes.set("depth", int64_t(1));
    attributes.set("depth0", int64_t(0));
    attributes.set("cycle", make_function("loop.cycle", [index0 = index0](Renderer&, CallArgs& args) {
                     if (args.positional.empty()) throw EvalError("no items for cycling given");
                     return args.positional[*index0 % args.positional.size()];
                   }));
    object = Value::namespace_object(std::move(attributes));
  }

  void update(size_t i, const Value::List& items) {
    const size_t n = items.size();
    *index0 = i;
    object.set("index", int64_t(i + 1));
    object.set("index0", int64_t(i));
    object.set("revindex", int64_t(n - i));
    object.set("revindex0", int64_t(n - i - 1));
    object.set("first", i == 0);
    object.set("last", i + 1 == n);
    object.set("previtem", i > 0 ? items[i - 1] : Value::undefined("there is no previous item"));
    object.set("nextitem", i + 1 < n ? items[i + 1] : Value::undefined("there is no next item"));
  }
};

// A macro sees the scope it was defined in. It holds that scope weakly: the scope holds the macro (its name is a
// variable there), and a strong reference back would be a cycle that is never freed.
class Macro : public Callable {
 public:
  Macro(std::shared_ptr<const MacroDef> def, const std::shared_ptr<Scope>& closure)
      : Callable(def->name), def_(std::move(def)), closure_(closure) {}

  Value call(Renderer& r, CallArgs& args) const override {
    if (r.call_depth >= kMaxCallDepth) throw EvalError("macro calls nested too deeply in '" + name() + "'");
    r.count_step();
    std::shared_ptr<Scope> closure = closure_.lock();
    if (!closure) throw EvalError("macro '" + name() + "' called after the block that defined it ended");
    auto scope = std::make_shared<Scope>(std::move(closure));
    const auto& params = def_->params;
    std::vector<bool> given(params.size(), false);
    Value::List varargs;
    for (size_t i = 0; i < args.positional.size(); ++i) {
      if (i < params.size()) {
        scope->vars.set(params[i].first, args.positional[i]);
        given[i] = true;
      } else {
        varargs.push_back(args.positional[i]);
      }
    }
    Dict kwargs;
    for (auto& [key, value] : args.keyword) {
      auto it = std::find_if(params.begin(), params.end(), [&name = key](const auto& p) { return p.first == name; });
      if (it == params.end()) {
        if (key == "caller")
          scope->vars.set("caller", value);
        else
          kwargs.set(key, value);
        continue;
      }
      size_t index = size_t(it - params.begin());
      if (given[index]) throw EvalError("macro '" + name() + "' got multiple values for argument '" + key + "'");
      scope->vars.set(key, value);
      given[index] = true;
    }
    ScopeGuard guard(r);
    r.scope = scope;
    ++r.call_depth;
    struct DepthGuard {
      Renderer& r;
      ~DepthGuard() { --r.call_depth; }
    } depth_guard{r};
    for (size_t i = 0; i < params.size(); ++i) {
      if (given[i]) continue;
      // Defaults are evaluated in the macro's own scope, so they may use the parameters before them.
      scope->vars.set(params[i].first, params[i].second
                                           ? r.eval(*params[i].second)
                                           : Value::undefined("parameter '" + params[i].first + "' was not provided"));
    }
    scope->vars.set("varargs", Value::tuple(std::move(varargs)));
    scope->vars.set("kwargs", Value::dict(std::move(kwargs)));
    return Value(r.capture(def_->body, scope));
  }

 private:
  std::shared_ptr<const MacroDef> def_;
  std::weak_ptr<Scope> closure_;
};

}  // namespace

// ---- Renderer ----

Renderer::DepthGuard::DepthGuard(Renderer& r) : r(r) {
  if (++r.depth > kMaxRenderDepth)
    throw EvalError("evaluation nested deeper than " + std::to_string(kMaxRenderDepth) +
                    " levels (expressions, blocks and macro calls)");
}

Value Renderer::eval(const Expr& e) {
  try {
    DepthGuard guard(*this);
    return e.eval(*this);
  } catch (const EvalError& error) {
    throw Error(located(e.line, error.what()));
  }
}

Flow Renderer::exec(const Body& body) {
  DepthGuard guard(*this);
  for (const auto& stmt : body) {
    Flow flow;
    try {
      flow = stmt->exec(*this);
    } catch (const EvalError& error) {
      throw Error(located(stmt->line, error.what()));
    }
    if (flow != Flow::Normal) return flow;
  }
  return Flow::Normal;
}

std::string Renderer::capture(const Body& body, std::shared_ptr<Scope> body_scope) {
  std::string buffer;
  ScopeGuard guard(*this);
  scope = std::move(body_scope);
  out = &buffer;
  exec(body);
  return buffer;
}

void Renderer::write(std::string_view text) {
  if (out->size() + text.size() > kMaxStringBytes)
    throw EvalError("rendered text longer than " + std::to_string(kMaxStringBytes >> 20) + " MiB");
  out->append(text);
}

void Renderer::count_step() {
  if (++steps > kMaxSteps)
    throw EvalError("more than " + std::to_string(kMaxSteps) + " loop iterations and macro calls in one render");
}

// ---- expressions ----

CallArgs Arguments::evaluate(Renderer& r) const {
  CallArgs args;
  for (const auto& e : positional) args.positional.push_back(r.eval(*e));
  if (star_args) {
    for (auto& item : iterate(r.eval(*star_args))) args.positional.push_back(std::move(item));
  }
  for (const auto& [name, e] : keyword) args.keyword.emplace_back(name, r.eval(*e));
  if (star_kwargs) {
    Value extra = r.eval(*star_kwargs);
    if (!extra.is_dict()) throw EvalError("argument after ** must be a mapping, not " + type_name(extra));
    for (const auto& entry : extra.as_dict().entries()) args.keyword.push_back(entry);
  }
  return args;
}

Value Literal::eval(Renderer&) const {
  return value;
}

Value ListExpr::eval(Renderer& r) const {
  Value::List values;
  for (const auto& item : items) values.push_back(r.eval(*item));
  return tuple ? Value::tuple(std::move(values)) : Value::list(std::move(values));
}

Value DictExpr::eval(Renderer& r) const {
  Dict dict;
  for (const auto& [key_expr, value_expr] : entries) {
    Value key = r.eval(*key_expr);
    if (!key.is_string()) throw EvalError("dict keys must be strings here, got '" + type_name(key) + "'");
    dict.set(key.as_string(), r.eval(*value_expr));
  }
  return Value::dict(std::move(dict));
}

Value NameExpr::eval(Renderer& r) const {
  if (const Value* v = r.scope->lookup(name)) return *v;
  return Value::undefined("'" + name + "' is undefined");
}

Value AttributeExpr::eval(Renderer& r) const {
  Value v = r.eval(*object);
  if (v.is_undefined()) fail_undefined(v);
  return get_attribute(v, name);
}

Value ItemExpr::eval(Renderer& r) const {
  Value v = r.eval(*object);
  Value k = r.eval(*key);
  if (v.is_undefined()) fail_undefined(v);
  return get_item(v, k);
}

Value SliceExpr::eval(Renderer& r) const {
  Value v = r.eval(*object);
  auto part = [&](const ExprPtr& e) { return e ? r.eval(*e) : Value(); };
  Value a = part(start), b = part(stop), c = part(step);
  if (v.is_undefined()) fail_undefined(v);
  return slice(v, a, b, c);
}

Value CallExpr::eval(Renderer& r) const {
  Value f = r.eval(*callee);
  CallArgs a = args.evaluate(r);
  return call_value(r, f, a);
}

Value FilterCall::apply(Renderer& r, const Value& subject) const {
  if (!fn) throw EvalError("unknown filter '" + name + "'");
  CallArgs a = args.evaluate(r);
  return fn(r, subject, a);
}

Value FilterExpr::eval(Renderer& r) const {
  return filter.apply(r, r.eval(*subject));
}

Value TestExpr::eval(Renderer& r) const {
  if (!fn) throw EvalError("unknown test '" + name + "'");
  Value v = r.eval(*subject);
  CallArgs a = args.evaluate(r);
  return fn(r, v, a) != negated;
}

Value UnaryExpr::eval(Renderer& r) const {
  Value v = r.eval(*operand);
  if (op == "not") return !truthy(v);
  if (v.is_undefined()) fail_undefined(v);
  if (!is_numeric(v)) throw EvalError("bad operand type for unary " + op + ": '" + type_name(v) + "'");
  if (op == "+") return v.is_bool() ? Value(integral(v)) : v;
  if (v.is_float()) return -v.as_double();
  return checked(sub_overflows, 0, integral(v));
}

Value BinaryExpr::eval(Renderer& r) const {
  Value a = r.eval(*left);
  Value b = r.eval(*right);
  if (op == "~") {
    std::string s = to_str(a);
    std::string t = to_str(b);
    check_string_size(s.size() + t.size());
    return s + t;
  }
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  return arithmetic(op, a, b);
}

Value LogicalExpr::eval(Renderer& r) const {
  Value a = r.eval(*left);
  if (truthy(a) != is_and) return a;
  return r.eval(*right);
}

Value CompareExpr::eval(Renderer& r) const {
  Value a = r.eval(*first);
  for (const auto& [op, e] : rest) {
    Value b = r.eval(*e);
    bool holds;
    if (op == "==")
      holds = equals(a, b);
    else if (op == "!=")
      holds = !equals(a, b);
    else if (op == "in")
      holds = contains(b, a);
    else if (op == "not in")
      holds = !contains(b, a);
    else {
      int c = compare(a, b, op);
      holds = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
    }
    if (!holds) return false;
    a = std::move(b);
  }
  return true;
}

Value ConditionalExpr::eval(Renderer& r) const {
  if (truthy(r.eval(*condition))) return r.eval(*then_value);
  if (else_value) return r.eval(*else_value);
  return Value::undefined("the inline if-expression on line " + std::to_string(line) +
                          " evaluated to false and no else section was defined");
}

// ---- statements ----

Flow TextStmt::exec(Renderer& r) const {
  r.write(text);
  return Flow::Normal;
}

Flow OutputStmt::exec(Renderer& r) const {
  r.write(to_str(r.eval(*value)));
  return Flow::Normal;
}

Flow IfStmt::exec(Renderer& r) const {
  for (const auto& [condition, body] : branches)
    if (truthy(r.eval(*condition))) return r.exec(body);
  return r.exec(otherwise);
}

void AssignTarget::assign(Renderer& r, const Value& value) const {
  if (!attribute.empty()) {
    const Value* object = r.scope->lookup(names[0]);
    if (!object || !object->is_namespace())
      throw EvalError("cannot set '" + names[0] + "." + attribute + "': only namespace() objects take attributes");
    if (value.holds_namespace())
      throw EvalError("cannot set '" + names[0] + "." + attribute + "': a namespace cannot hold a namespace");
    Value shared = *object;  // a namespace's copies share its attributes
    shared.set(attribute, value);
    return;
  }
  if (!unpack) {
    r.scope->vars.set(names[0], value);
    return;
  }
  if (value.is_undefined()) fail_undefined(value);
  Value::List items = iterate(value);
  if (items.size() > names.size())
    throw EvalError("too many values to unpack (expected " + std::to_string(names.size()) + ")");
  if (items.size() < names.size())
    throw EvalError("not enough values to unpack (expected " + std::to_string(names.size()) + ", got " +
                    std::to_string(items.size()) + ")");
  for (size_t i = 0; i < names.size(); ++i) r.scope->vars.set(names[i], items[i]);
}

Flow ForStmt::exec(Renderer& r) const {
  // A list is looped over in place (the value keeps it alive); anything else is first turned into one.
  const Value source = r.eval(*iterable);
  Value::List converted;
  const Value::List* all = &converted;
  if (source.is_list())
    all = &source.as_list();
  else
    converted = iterate(source);
  ScopeGuard guard(r);
  const std::shared_ptr<Scope> outer = r.scope;
  Value::List kept;
  if (condition) {  // the loop only sees the items that pass, so loop.length and loop.last count those
    for (const auto& item : *all) {
      r.count_step();
      r.scope = std::make_shared<Scope>(outer);
      target.assign(r, item);
      if (truthy(r.eval(*condition))) kept.push_back(item);
    }
    all = &kept;
  }
  const Value::List& items = *all;
  if (items.empty()) {
    r.scope = std::make_shared<Scope>(outer);
    return r.exec(otherwise);  // a break here belongs to an enclosing loop
  }
  Loop loop(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    r.count_step();
    r.scope = std::make_shared<Scope>(outer);
    target.assign(r, items[i]);
    loop.update(i, items);
    r.scope->vars.set("loop", loop.object);
    if (r.exec(body) == Flow::Break) break;
  }
  return Flow::Normal;
}

Flow SetStmt::exec(Renderer& r) const {
  target.assign(r, r.eval(*value));
  return Flow::Normal;
}

Flow SetBlockStmt::exec(Renderer& r) const {
  Value v(r.capture(body, r.scope));
  for (const auto& filter : filters) v = filter.apply(r, v);
  target.assign(r, v);
  return Flow::Normal;
}

Flow MacroStmt::exec(Renderer& r) const {
  r.scope->vars.set(macro->name, Value::function(std::make_shared<Macro>(macro, r.scope)));
  return Flow::Normal;
}

Flow CallBlockStmt::exec(Renderer& r) const {
  Value callee = r.eval(*call->callee);
  CallArgs args = call->args.evaluate(r);
  args.keyword.emplace_back("caller", Value::function(std::make_shared<Macro>(caller, r.scope)));
  r.write(to_str(call_value(r, callee, args)));
  return Flow::Normal;
}

Flow FilterBlockStmt::exec(Renderer& r) const {
  Value v(r.capture(body, r.scope));
  for (const auto& filter : filters) v = filter.apply(r, v);
  r.write(to_str(v));
  return Flow::Normal;
}

Flow BodyStmt::exec(Renderer& r) const {
  return r.exec(body);
}

}  // namespace inferno::text::jinja

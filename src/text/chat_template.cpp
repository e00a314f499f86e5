// ChatTemplate: parse once, render with the variables transformers' apply_chat_template provides; and reading the
// template and special tokens out of tokenizer_config.json.
#include "text/chat_template.hpp"

#include "text/jinja_ast.hpp"

namespace inferno::text {

ChatTemplate::ChatTemplate(std::string source) : source_(std::move(source)), program_(jinja::parse(source_)) {}

std::string ChatTemplate::render(const Value& messages, bool add_generation_prompt, const Value& extra_context) const {
  auto globals = std::make_shared<jinja::Scope>(nullptr);
  globals->vars = jinja::make_globals();
  auto context = std::make_shared<jinja::Scope>(globals);
  // transformers always passes tools and documents (None when not given), so templates see them as defined.
  context->vars.set("tools", Value());
  context->vars.set("documents", Value());
  if (!extra_context.is_null() && !extra_context.is_undefined()) {
    if (!extra_context.is_dict())
      throw Error("chat template: the extra context must be a dict of variables, got " +
                  jinja::type_name(extra_context));
    for (const auto& [name, value] : extra_context.as_dict().entries()) context->vars.set(name, value);
  }
  context->vars.set("messages", messages);
  context->vars.set("add_generation_prompt", add_generation_prompt);
  std::string out;
  jinja::Renderer renderer(context, out);
  try {
    renderer.exec(program_->body);
  } catch (const jinja::EvalError& e) {  // only a failure outside every node could get here
    throw Error(std::string("chat template: ") + e.what());
  }
  return out;
}

namespace {
Value parse_config(std::string_view json) {
  Value config;
  try {
    config = Value::from_json(json);
  } catch (const Error& e) {
    throw Error(std::string("tokenizer_config.json: ") + e.what());
  }
  if (!config.is_dict()) throw Error("tokenizer_config.json: expected a JSON object at the top level");
  return config;
}
}  // namespace

std::optional<std::string> chat_template_from_tokenizer_config(std::string_view json) {
  Value config = parse_config(json);
  const Value* chat_template = config.find("chat_template");
  if (!chat_template || chat_template->is_null()) return std::nullopt;
  if (chat_template->is_string()) return chat_template->as_string();
  if (!chat_template->is_list())
    throw Error("tokenizer_config.json: chat_template must be a string or a list of {name, template}");
  if (chat_template->as_list().empty()) return std::nullopt;
  for (const auto& entry : chat_template->as_list()) {
    const Value* name = entry.find("name");
    const Value* text = entry.find("template");
    if (!name || !name->is_string() || !text || !text->is_string())
      throw Error("tokenizer_config.json: each chat_template entry needs string fields 'name' and 'template'");
    if (name->as_string() == "default") return text->as_string();
  }
  throw Error("tokenizer_config.json: chat_template holds several named templates but none is called 'default'");
}

Value special_tokens_from_tokenizer_config(std::string_view json) {
  Value config = parse_config(json);
  Value tokens = Value::dict();
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
    const Value* token = config.find(key);
    if (!token || token->is_null()) continue;
    if (token->is_string()) {
      tokens.set(key, *token);
      continue;
    }
    const Value* content = token->find("content");  // an AddedToken object
    if (!content || !content->is_string())
      throw Error(std::string("tokenizer_config.json: ") + key +
                  " must be a string or an object with a string 'content'");
    tokens.set(key, *content);
  }
  return tokens;
}

}  // namespace inferno::text

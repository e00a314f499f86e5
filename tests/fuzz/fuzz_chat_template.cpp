// libFuzzer target: any bytes as a chat template and the messages it renders. The input is the template text, then
// a NUL byte and the messages as JSON (without the NUL, one user message). Bad input must be refused with
// inferno::Error only (a template's raise_exception is one); any other exception, crash, sanitizer report, leak,
// timeout or memory blow-up is a bug, since a tokenizer_config.json reaches the interpreter from any model.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "text/chat_template.hpp"
#include "util/error.hpp"

using inferno::text::ChatTemplate;
using inferno::text::Value;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find('\0');
  const std::string_view source = input.substr(0, split);
  const std::string_view messages_json =
      split == std::string_view::npos ? R"([{"role": "user", "content": "Hi"}])" : input.substr(split + 1);
  Value messages;
  try {
    messages = Value::from_json(messages_json);
  } catch (const inferno::Error&) {
    messages = Value::list({Value::dict({{"role", "user"}, {"content", std::string(messages_json)}})});
  }
  try {
    const ChatTemplate chat_template{std::string(source)};
    const Value context = Value::dict({{"bos_token", "<s>"}, {"eos_token", "</s>"}});
    chat_template.render(messages, true, context);
    chat_template.render(messages, false, Value());
  } catch (const inferno::Error&) {
  }
  return 0;
}

#include "text/tokenizer_json.hpp"

#include <simdjson.h>

#include <algorithm>
#include <functional>
#include <string_view>

#include "io/regular_file.hpp"
#include "util/error.hpp"

namespace inferno::text {
namespace {

namespace dom = simdjson::dom;

// Ids above this are surely a broken file, not a vocabulary (the largest real ones hold about 256K tokens);
// refusing them keeps a bad file from causing a huge allocation.
constexpr int64_t max_token_id = 4 * 1024 * 1024;

// A JSON value with the path that leads to it, so that every error names the file and the field.
class Json {
 public:
  Json(dom::element element, std::string path, const std::string& file)
      : element_(element), path_(std::move(path)), file_(&file) {}

  [[noreturn]] void error(std::string_view what) const {
    fail(*file_ + ": field '" + path_ + "' " + std::string(what));
  }
  const std::string& path() const { return path_; }

  bool is_null() const { return element_.is_null(); }
  bool is_string() const { return element_.is_string(); }
  bool is_object() const { return element_.is_object(); }
  bool is_array() const { return element_.is_array(); }

  // A member, or nullopt when the key is absent (a present null is returned as a null value).
  std::optional<Json> find(std::string_view key) const {
    dom::object object;
    if (element_.get_object().get(object)) error("must be an object");
    // A key written twice takes its last value, as Python's json does (simdjson's at_key gives the first).
    std::optional<dom::element> found;
    for (auto [name, value] : object)
      if (name == key) found = value;
    if (!found) return std::nullopt;
    const dom::element value = *found;
    return Json(value, path_.empty() ? std::string(key) : path_ + "." + std::string(key), *file_);
  }
  // A member that must be present and not null.
  Json at(std::string_view key) const {
    auto value = find(key);
    if (!value || value->is_null()) error("has no member '" + std::string(key) + "'");
    return *value;
  }
  std::string_view str() const {
    std::string_view s;
    if (element_.get_string().get(s)) error("must be a string");
    return s;
  }
  bool boolean() const {
    bool b = false;
    if (element_.get_bool().get(b)) error("must be true or false");
    return b;
  }
  int64_t integer() const {
    int64_t i = 0;
    if (element_.get_int64().get(i)) error("must be an integer");
    return i;
  }
  std::vector<Json> items() const {
    dom::array array;
    if (element_.get_array().get(array)) error("must be an array");
    std::vector<Json> out;
    size_t index = 0;
    for (dom::element e : array) out.emplace_back(e, path_ + "[" + std::to_string(index++) + "]", *file_);
    return out;
  }
  void for_each_member(const std::function<void(std::string_view, const Json&)>& f) const {
    dom::object object;
    if (element_.get_object().get(object)) error("must be an object");
    for (dom::key_value_pair member : object) f(member.key, Json(member.value, path_ + "." + std::string(member.key), *file_));
  }
  dom::element raw() const { return element_; }

  // Optional members with defaults.
  bool boolean_or(std::string_view key, bool fallback) const {
    auto v = find(key);
    return v && !v->is_null() ? v->boolean() : fallback;
  }
  std::string string_or(std::string_view key, std::string_view fallback) const {
    auto v = find(key);
    return v && !v->is_null() ? std::string(v->str()) : std::string(fallback);
  }

 private:
  dom::element element_;
  std::string path_;
  const std::string* file_;
};

struct Document {
  simdjson::padded_string text;
  dom::parser parser;
  dom::element root;
};

// transformers writes model_max_length as a 31-digit integer, which simdjson 3.0 refuses to parse. Integer
// literals too long for 64 bits get a ".0" so they parse as floating point (no field we read is one of them).
std::string widen_big_integers(std::string_view json) {
  std::string out;
  out.reserve(json.size() + 16);
  bool in_string = false;
  size_t i = 0;
  while (i < json.size()) {
    const char c = json[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < json.size()) out += json[++i];
      else if (c == '"') in_string = false;
      ++i;
      continue;
    }
    if (c == '"') in_string = true;
    if ((c >= '0' && c <= '9') || c == '-') {
      size_t end = i + 1;
      while (end < json.size() && ((json[end] >= '0' && json[end] <= '9') || json[end] == '.' || json[end] == 'e' ||
                                   json[end] == 'E' || json[end] == '+' || json[end] == '-'))
        ++end;
      const std::string_view number = json.substr(i, end - i);
      out += number;
      if (number.size() > 19 && number.find_first_of(".eE") == std::string_view::npos) out += ".0";
      i = end;
      continue;
    }
    out += c;
    ++i;
  }
  return out;
}

void load(Document& doc, const std::filesystem::path& path) {
  doc.text = simdjson::padded_string(io::read_regular_file(path));
  auto error = doc.parser.parse(doc.text).get(doc.root);
  if (error == simdjson::NUMBER_ERROR) {
    doc.text = simdjson::padded_string(widen_big_integers(std::string_view(doc.text)));
    error = doc.parser.parse(doc.text).get(doc.root);
  }
  if (error) fail(path.string() + ": not valid JSON (" + simdjson::error_message(error) + ")");
  if (!doc.root.is_object()) fail(path.string() + ": the top level must be a JSON object");
}

// A "pattern" of Split / Replace: {"String": "..."} or {"Regex": "..."}.
std::pair<std::string, bool> read_pattern(const Json& pattern) {
  if (auto s = pattern.find("String")) return {std::string(s->str()), false};
  if (auto r = pattern.find("Regex")) return {std::string(r->str()), true};
  pattern.error("must hold \"String\" or \"Regex\"");
}

PrependScheme read_prepend_scheme(const Json& object) {
  PrependScheme scheme = PrependScheme::Always;
  if (auto v = object.find("prepend_scheme"); v && !v->is_null()) {
    const std::string_view s = v->str();
    if (s == "always") scheme = PrependScheme::Always;
    else if (s == "first") scheme = PrependScheme::First;
    else if (s == "never") scheme = PrependScheme::Never;
    else v->error("must be \"always\", \"first\" or \"never\"");
  }
  // The older form of the same setting.
  if (auto v = object.find("add_prefix_space"); v && !v->is_null() && !v->boolean()) scheme = PrependScheme::Never;
  return scheme;
}

std::string read_replacement_char(const Json& object) {
  const Json r = object.at("replacement");
  const std::string_view s = r.str();
  if (s.empty()) r.error("must be one character");
  return std::string(s);
}

void read_normalizer(const Json& n, std::vector<NormalizerStep>& steps) {
  const std::string_view type = n.at("type").str();
  if (type == "Sequence") {
    for (const Json& item : n.at("normalizers").items()) read_normalizer(item, steps);
  } else if (type == "Prepend") {
    steps.push_back({NormalizerStep::Kind::Prepend, "", false, std::string(n.at("prepend").str())});
  } else if (type == "Replace") {
    auto [pattern, is_regex] = read_pattern(n.at("pattern"));
    steps.push_back({NormalizerStep::Kind::Replace, pattern, is_regex, std::string(n.at("content").str())});
  } else if (type == "NFC") {
    steps.push_back({NormalizerStep::Kind::Nfc, "", false, ""});
  } else if (type == "NFD") {
    steps.push_back({NormalizerStep::Kind::Nfd, "", false, ""});
  } else if (type == "NFKC") {
    steps.push_back({NormalizerStep::Kind::Nfkc, "", false, ""});
  } else if (type == "NFKD") {
    steps.push_back({NormalizerStep::Kind::Nfkd, "", false, ""});
  } else {
    n.error("has unsupported normalizer type \"" + std::string(type) + "\"");
  }
}

void read_pre_tokenizer(const Json& p, std::vector<PreTokenizerStep>& steps) {
  const std::string_view type = p.at("type").str();
  if (type == "Sequence") {
    for (const Json& item : p.at("pretokenizers").items()) read_pre_tokenizer(item, steps);
  } else if (type == "Split") {
    PreTokenizerStep step{PreTokenizerStep::Kind::Split};
    std::tie(step.pattern, step.pattern_is_regex) = read_pattern(p.at("pattern"));
    const Json behavior = p.at("behavior");
    const std::string_view b = behavior.str();
    if (b == "Removed") step.behavior = SplitBehavior::Removed;
    else if (b == "Isolated") step.behavior = SplitBehavior::Isolated;
    else if (b == "MergedWithPrevious") step.behavior = SplitBehavior::MergedWithPrevious;
    else if (b == "MergedWithNext") step.behavior = SplitBehavior::MergedWithNext;
    else if (b == "Contiguous") step.behavior = SplitBehavior::Contiguous;
    else behavior.error("has unknown split behavior \"" + std::string(b) + "\"");
    step.invert = p.boolean_or("invert", false);
    steps.push_back(std::move(step));
  } else if (type == "ByteLevel") {
    PreTokenizerStep step{PreTokenizerStep::Kind::ByteLevel};
    step.add_prefix_space = p.boolean_or("add_prefix_space", true);
    step.use_regex = p.boolean_or("use_regex", true);
    steps.push_back(std::move(step));
  } else if (type == "Metaspace") {
    PreTokenizerStep step{PreTokenizerStep::Kind::Metaspace};
    step.replacement = read_replacement_char(p);
    step.prepend_scheme = read_prepend_scheme(p);
    step.split = p.boolean_or("split", true);
    steps.push_back(std::move(step));
  } else {
    p.error("has unsupported pre-tokenizer type \"" + std::string(type) + "\"");
  }
}

void read_decoder(const Json& d, std::vector<DecoderStep>& steps) {
  const std::string_view type = d.at("type").str();
  if (type == "Sequence") {
    for (const Json& item : d.at("decoders").items()) read_decoder(item, steps);
  } else if (type == "Replace") {
    const Json pattern_json = d.at("pattern");
    auto [pattern, is_regex] = read_pattern(pattern_json);
    if (is_regex) pattern_json.error("is a regex; only plain-text Replace decoders are supported");
    if (pattern.empty()) pattern_json.error("must not be empty");
    DecoderStep step{DecoderStep::Kind::Replace};
    step.pattern = pattern;
    step.content = std::string(d.at("content").str());
    steps.push_back(std::move(step));
  } else if (type == "ByteFallback") {
    steps.push_back({DecoderStep::Kind::ByteFallback});
  } else if (type == "Fuse") {
    steps.push_back({DecoderStep::Kind::Fuse});
  } else if (type == "Strip") {
    DecoderStep step{DecoderStep::Kind::Strip};
    const Json content = d.at("content");
    step.content = std::string(content.str());
    if (step.content.empty()) content.error("must be one character");
    const int64_t start = d.at("start").integer(), stop = d.at("stop").integer();
    if (start < 0 || stop < 0) d.error("has a negative start or stop");
    step.start = size_t(start);
    step.stop = size_t(stop);
    steps.push_back(std::move(step));
  } else if (type == "ByteLevel") {
    steps.push_back({DecoderStep::Kind::ByteLevel});
  } else if (type == "Metaspace") {
    DecoderStep step{DecoderStep::Kind::Metaspace};
    step.content = read_replacement_char(d);
    step.prepend_scheme = read_prepend_scheme(d);
    steps.push_back(std::move(step));
  } else {
    d.error("has unsupported decoder type \"" + std::string(type) + "\"");
  }
}

// Looks a token string up among the added tokens, then the model vocabulary.
std::optional<int32_t> find_token(const TokenizerSpec& spec, std::string_view token) {
  for (const AddedTokenSpec& a : spec.added_tokens)
    if (a.content == token) return a.id;
  auto it = std::find(spec.vocab.begin(), spec.vocab.end(), token);
  if (it != spec.vocab.end() && !token.empty()) return int32_t(it - spec.vocab.begin());
  return std::nullopt;
}

int32_t token_id_or_fail(const TokenizerSpec& spec, const Json& where, std::string_view token) {
  auto id = find_token(spec, token);
  if (!id) where.error("names token \"" + std::string(token) + "\", which is not in the vocabulary");
  return *id;
}

void read_post_processor(const Json& p, TokenizerSpec& spec) {
  const std::string_view type = p.at("type").str();
  if (type == "Sequence") {
    for (const Json& item : p.at("processors").items()) read_post_processor(item, spec);
  } else if (type == "ByteLevel") {
    // Only adjusts offsets: nothing to do for ids.
  } else if (type == "TemplateProcessing") {
    // special_tokens: name -> {"ids": [...]}; single: the template for one sequence.
    const Json special_tokens = p.at("special_tokens");
    bool seen_sequence = false;
    std::vector<int32_t> prefix, suffix;
    for (const Json& piece : p.at("single").items()) {
      if (auto special = piece.find("SpecialToken")) {
        const Json name = special->at("id");
        auto entry = special_tokens.find(name.str());
        if (!entry) name.error("names a special token missing from special_tokens");
        for (const Json& id : entry->at("ids").items()) {
          const int64_t value = id.integer();
          if (value < 0 || value > max_token_id) id.error("is not a valid token id");
          (seen_sequence ? suffix : prefix).push_back(int32_t(value));
        }
      } else if (piece.find("Sequence")) {
        seen_sequence = true;
      } else {
        piece.error("must hold \"SpecialToken\" or \"Sequence\"");
      }
    }
    spec.prefix_ids.insert(spec.prefix_ids.end(), prefix.begin(), prefix.end());
    spec.suffix_ids.insert(spec.suffix_ids.begin(), suffix.begin(), suffix.end());
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    // "cls": [token, id], "sep": [token, id]: [CLS] text [SEP].
    auto id_of = [&](std::string_view key) {
      const std::vector<Json> pair = p.at(key).items();
      if (pair.size() != 2) p.at(key).error("must be [token, id]");
      return int32_t(pair[1].integer());
    };
    spec.prefix_ids.push_back(id_of("cls"));
    spec.suffix_ids.insert(spec.suffix_ids.begin(), id_of("sep"));
  } else {
    p.error("has unsupported post-processor type \"" + std::string(type) + "\"");
  }
}

void read_model(const Json& model, TokenizerSpec& spec) {
  if (auto type = model.find("type"); type && !type->is_null() && type->str() != "BPE")
    type->error("is \"" + std::string(type->str()) + "\"; only BPE models are supported");
  for (const char* unsupported : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (auto v = model.find(unsupported); v && !v->is_null())
      v->error("is set; BPE with word prefixes or suffixes is not supported");
  if (auto v = model.find("dropout"); v && !v->is_null()) {
    double dropout = 0;
    if (v->raw().get_double().get(dropout)) v->error("must be a number");
    if (dropout != 0) v->error("is set; BPE dropout (random tokenization) is not supported");
  }
  if (auto v = model.find("unk_token"); v && !v->is_null()) spec.bpe.unk_token = std::string(v->str());
  spec.bpe.fuse_unk = model.boolean_or("fuse_unk", false);
  spec.bpe.byte_fallback = model.boolean_or("byte_fallback", false);
  spec.bpe.ignore_merges = model.boolean_or("ignore_merges", false);

  // The vocabulary is big (128K entries for Llama 3): read it with the raw DOM, not the path-building wrapper.
  const Json vocab = model.at("vocab");
  dom::object vocab_object;
  if (vocab.raw().get_object().get(vocab_object)) vocab.error("must be an object of token: id");
  int64_t max_id = -1;
  for (dom::key_value_pair member : vocab_object) {
    int64_t id = 0;
    if (member.value.get_int64().get(id) || id < 0 || id > max_token_id)
      vocab.error("has token \"" + std::string(member.key) + "\" with an id that is not a valid token id");
    max_id = std::max(max_id, id);
  }
  spec.vocab.assign(size_t(max_id + 1), std::string());
  for (dom::key_value_pair member : vocab_object) {
    const int64_t id = int64_t(member.value.get_int64());
    if (member.key.empty()) vocab.error("has an empty token");
    if (!spec.vocab[id].empty())
      vocab.error("gives id " + std::to_string(id) + " to both \"" + spec.vocab[id] + "\" and \"" +
                  std::string(member.key) + "\"");
    spec.vocab[id] = std::string(member.key);
  }

  const Json merges = model.at("merges");
  dom::array merges_array;
  if (merges.raw().get_array().get(merges_array)) merges.error("must be an array");
  spec.merges.reserve(merges_array.size());
  size_t index = 0;
  for (dom::element merge : merges_array) {
    std::string_view line;
    if (!merge.get_string().get(line)) {
      // The older form: "left right".
      if (line.substr(0, 8) == "#version") continue;
      const size_t space = line.find(' ');
      if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos)
        merges.error("entry " + std::to_string(index) + " (\"" + std::string(line) + "\") is not two tokens");
      spec.merges.emplace_back(std::string(line.substr(0, space)), std::string(line.substr(space + 1)));
    } else {
      dom::array pair;
      std::string_view left, right;
      if (merge.get_array().get(pair) || pair.size() != 2 || pair.at(0).get_string().get(left) ||
          pair.at(1).get_string().get(right))
        merges.error("entry " + std::to_string(index) + " is neither \"a b\" nor [\"a\", \"b\"]");
      spec.merges.emplace_back(std::string(left), std::string(right));
    }
    ++index;
  }
}

AddedTokenSpec read_added_token_flags(const Json& t) {
  AddedTokenSpec a;
  a.content = std::string(t.at("content").str());
  a.special = t.boolean_or("special", false);
  a.lstrip = t.boolean_or("lstrip", false);
  a.rstrip = t.boolean_or("rstrip", false);
  a.normalized = t.boolean_or("normalized", !a.special);
  a.single_word = t.boolean_or("single_word", false);
  return a;
}

// bos_token / eos_token in tokenizer_config.json: a string, an AddedToken object {"content": ...}, or null.
std::optional<std::string> read_token_name(const Json& config, std::string_view key) {
  auto v = config.find(key);
  if (!v || v->is_null()) return std::nullopt;
  if (v->is_string()) return std::string(v->str());
  if (v->is_object()) return std::string(v->at("content").str());
  v->error("must be a string or an object with \"content\"");
}

void read_config(const Json& config, TokenizerSpec& spec) {
  spec.bos_token = read_token_name(config, "bos_token");
  spec.eos_token = read_token_name(config, "eos_token");

  if (auto t = config.find("chat_template"); t && !t->is_null()) {
    if (t->is_string()) {
      spec.chat_template = std::string(t->str());
    } else {
      // A list of named templates: the one called "default" is the chat template.
      for (const Json& entry : t->items())
        if (entry.at("name").str() == "default") spec.chat_template = std::string(entry.at("template").str());
    }
  }

  // transformers adds tokens listed here that the tokenizer does not have yet.
  if (auto decoder = config.find("added_tokens_decoder"); decoder && !decoder->is_null()) {
    decoder->for_each_member([&](std::string_view key, const Json& t) {
      int64_t id = -1;
      try {
        id = std::stoll(std::string(key));
      } catch (const std::exception&) {
      }
      if (id < 0 || id > max_token_id) t.error("is keyed by something that is not a token id");
      AddedTokenSpec added = read_added_token_flags(t);
      added.id = int32_t(id);
      const bool known = std::any_of(spec.added_tokens.begin(), spec.added_tokens.end(), [&](const AddedTokenSpec& a) {
        return a.content == added.content || a.id == added.id;
      });
      if (!known) spec.added_tokens.push_back(std::move(added));
    });
  }

  // transformers (5.x) rebuilds the post-processor from these flags when the config states either of them:
  // [bos] text [eos], each present only if its flag is true.
  const auto add_bos = config.find("add_bos_token"), add_eos = config.find("add_eos_token");
  const bool has_add_bos = add_bos && !add_bos->is_null(), has_add_eos = add_eos && !add_eos->is_null();
  if (has_add_bos || has_add_eos) {
    spec.prefix_ids.clear();
    spec.suffix_ids.clear();
    if (has_add_bos && add_bos->boolean() && spec.bos_token)
      spec.prefix_ids.push_back(token_id_or_fail(spec, *add_bos, *spec.bos_token));
    if (has_add_eos && add_eos->boolean() && spec.eos_token)
      spec.suffix_ids.push_back(token_id_or_fail(spec, *add_eos, *spec.eos_token));
  }
}

}  // namespace

TokenizerSpec read_tokenizer_json(const std::filesystem::path& tokenizer_json,
                                  const std::filesystem::path& tokenizer_config_json) {
  TokenizerSpec spec;
  const std::string file = tokenizer_json.string();
  spec.source = file;
  {
    Document doc;
    load(doc, tokenizer_json);
    const Json root(doc.root, "", file);

    read_model(root.at("model"), spec);

    if (auto added = root.find("added_tokens"); added && !added->is_null()) {
      for (const Json& t : added->items()) {
        AddedTokenSpec a = read_added_token_flags(t);
        const int64_t id = t.at("id").integer();
        if (id < 0 || id > max_token_id) t.error("has an id that is not a valid token id");
        a.id = int32_t(id);
        if (a.content.empty()) t.error("has empty content");
        spec.added_tokens.push_back(std::move(a));
      }
    }
    if (auto n = root.find("normalizer"); n && !n->is_null()) read_normalizer(*n, spec.normalizer);
    if (auto p = root.find("pre_tokenizer"); p && !p->is_null()) read_pre_tokenizer(*p, spec.pre_tokenizer);
    if (auto p = root.find("post_processor"); p && !p->is_null()) read_post_processor(*p, spec);
    if (auto d = root.find("decoder"); d && !d->is_null()) {
      spec.has_decoder = true;
      read_decoder(*d, spec.decoder);
    }
  }

  std::error_code ec;
  if (!tokenizer_config_json.empty() && std::filesystem::exists(tokenizer_config_json, ec)) {
    spec.source += " + " + tokenizer_config_json.string();
    const std::string config_file = tokenizer_config_json.string();
    Document doc;
    load(doc, tokenizer_config_json);
    read_config(Json(doc.root, "", config_file), spec);
  }
  return spec;
}

}  // namespace inferno::text

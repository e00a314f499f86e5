// Tokenizers from GGUF vocabularies: the brown-8m model's own SentencePiece vocabulary against its references, the
// same vocabulary against its tokenizer.json and against llama.cpp's SentencePiece algorithm written out plainly,
// a byte-level BPE vocabulary packed into a GGUF file from Llama 3's tokenizer.json, and broken vocabularies.
#include <simdjson.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/gguf.hpp"
#include "io/gguf_builder.hpp"
#include "json_cases.hpp"
#include "test_support.hpp"
#include "text/tokenizer.hpp"
#include "text/tokenizer_gguf.hpp"
#include "text/utf8.hpp"
#include "util/error.hpp"

namespace {

using inferno::io::GgufFile;
using inferno::testing::GgufBuilder;
using inferno::testing::Rng;
using inferno::text::GgufTokenType;
using inferno::text::StreamingDecoder;
using inferno::text::Tokenizer;
namespace fs = std::filesystem;
namespace dom = simdjson::dom;
using inferno::testing::error_of;
using inferno::testing::ints;
using inferno::testing::JsonFile;
using inferno::testing::load_json;
using inferno::testing::str;

const char* const kMetaspace = "\xE2\x96\x81";

void check_error(const std::function<void()>& f, std::initializer_list<std::string> needles) {
  const std::string message = error_of(f);
  INFO("error message: " << message);
  for (const std::string& needle : needles) CHECK_MESSAGE(message.find(needle) != std::string::npos, needle);
}

std::string stream_decode(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
  StreamingDecoder decoder(tok, skip_special);
  std::string text;
  for (int32_t id : ids) {
    const std::string piece = decoder.push(id);
    CHECK_MESSAGE(inferno::text::utf8::is_valid(piece), "streamed piece is not valid UTF-8 after id " << id);
    text += piece;
  }
  return text + decoder.finish();
}

const fs::path brown_gguf() { return inferno::testing::data_path("gguf/brown-8m-q8_0/model.gguf"); }

const GgufFile& brown_file() {
  static const GgufFile file(brown_gguf());
  return file;
}
const Tokenizer& brown_tokenizer() {
  static const Tokenizer tok = inferno::text::tokenizer_from_gguf(brown_file());
  return tok;
}
// The same vocabulary as Hugging Face's tokenizer.json (the demo model ships it).
const Tokenizer& brown_tokenizer_json() {
  static const Tokenizer tok = Tokenizer::from_dir(inferno::testing::root_dir() / "models/brown-8m-bf16");
  return tok;
}

// llama.cpp's SentencePiece tokenization (llama-vocab.cpp: tokenizer_st_partition, then llm_tokenizer_spm_session
// on each piece of text), written out directly and slowly: split on CONTROL / USER_DEFINED / UNKNOWN tokens,
// longest first; put a space before each piece of text (it is the first, or follows a special token); spaces
// become "▁"; merge the adjacent pair whose concatenation is a token of the highest score, leftmost among equals,
// until none is left; symbols that are not tokens become their <0xAB> byte tokens.
class LlamaCppSpm {
 public:
  explicit LlamaCppSpm(const GgufFile& file)
      : tokens_(file.get_array<std::string>("tokenizer.ggml.tokens")),
        scores_(file.get_array<float>("tokenizer.ggml.scores")),
        types_(file.get_array<int32_t>("tokenizer.ggml.token_type")) {
    for (size_t id = 0; id < tokens_.size(); ++id) {
      id_of_[tokens_[id]] = int32_t(id);
      const auto type = GgufTokenType(types_[id]);
      if (type == GgufTokenType::Control || type == GgufTokenType::UserDefined || type == GgufTokenType::Unknown)
        specials_.push_back(int32_t(id));
    }
    std::stable_sort(specials_.begin(), specials_.end(),
                     [&](int32_t a, int32_t b) { return tokens_[a].size() > tokens_[b].size(); });
  }

  std::vector<int32_t> encode(const std::string& text) const {
    struct Fragment {
      int32_t token;  // -1: text
      std::string text;
    };
    std::vector<Fragment> fragments = {{-1, text}};
    for (int32_t special : specials_) {
      const std::string& s = tokens_[special];
      std::vector<Fragment> split;
      for (const Fragment& f : fragments) {
        if (f.token >= 0) {
          split.push_back(f);
          continue;
        }
        size_t start = 0, at;
        while ((at = f.text.find(s, start)) != std::string::npos) {
          if (at > start) split.push_back({-1, f.text.substr(start, at - start)});
          split.push_back({special, ""});
          start = at + s.size();
        }
        if (start < f.text.size()) split.push_back({-1, f.text.substr(start)});
      }
      fragments = std::move(split);
    }
    std::vector<int32_t> ids;
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        ids.push_back(f.token);
        continue;
      }
      std::string escaped;
      for (char c : " " + f.text) escaped += c == ' ' ? std::string(kMetaspace) : std::string(1, c);
      merge(escaped, ids);
    }
    return ids;
  }

 private:
  void merge(const std::string& text, std::vector<int32_t>& ids) const {
    std::vector<std::string> symbols;
    for (size_t pos = 0; pos < text.size();) {
      size_t len = 1;
      while (pos + len < text.size() && (uint8_t(text[pos + len]) & 0xC0) == 0x80) ++len;
      symbols.push_back(text.substr(pos, len));
      pos += len;
    }
    while (true) {
      int best = -1;
      float best_score = 0;
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        const auto it = id_of_.find(symbols[i] + symbols[i + 1]);
        if (it == id_of_.end()) continue;
        if (best < 0 || scores_[it->second] > best_score) {
          best = int(i);
          best_score = scores_[it->second];
        }
      }
      if (best < 0) break;
      symbols[best] += symbols[best + 1];
      symbols.erase(symbols.begin() + best + 1);
    }
    for (const std::string& s : symbols) {
      if (auto it = id_of_.find(s); it != id_of_.end()) {
        ids.push_back(it->second);
        continue;
      }
      for (unsigned char byte : s) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", byte);
        ids.push_back(id_of_.at(name));
      }
    }
  }

  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::vector<int32_t> types_;
  std::map<std::string, int32_t> id_of_;
  std::vector<int32_t> specials_;
};

const LlamaCppSpm& brown_reference() {
  static const LlamaCppSpm reference(brown_file());
  return reference;
}

// Whether SentencePiece's view of the text (a space in front, spaces as "▁") has a run of two or more spaces.
bool has_space_run(const std::string& text) {
  return text.find("  ") != std::string::npos || (!text.empty() && text[0] == ' ');
}

void append_code_point(std::string& s, uint32_t cp) { inferno::text::utf8::append(s, cp); }

// Short random texts: words, digits, punctuation, accented/CJK/emoji characters, and (when `space_runs`) runs of
// spaces, tabs and newlines.
std::string random_text(Rng& rng, bool space_runs) {
  static const std::string punctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
  static const std::pair<uint32_t, uint32_t> scripts[] = {
      {0xC0, 0xFF}, {0x3B1, 0x3C9}, {0x4E00, 0x4FFF}, {0x1F600, 0x1F64F}, {0x1D400, 0x1D4FF}};
  std::string text;
  for (int words = rng.integer(1, 10); words > 0; --words) {
    const int kind = rng.integer(0, 9);
    if (kind < 5) {
      for (int i = rng.integer(1, 9); i > 0; --i) text += char((rng.integer(0, 5) == 0 ? 'A' : 'a') + rng.integer(0, 25));
    } else if (kind < 6) {
      for (int i = rng.integer(1, 5); i > 0; --i) text += char('0' + rng.integer(0, 9));
    } else if (kind < 7) {
      text += punctuation[size_t(rng.integer(0, int(punctuation.size()) - 1))];
    } else {
      const auto& [lo, hi] = scripts[rng.integer(0, 4)];
      for (int i = rng.integer(1, 3); i > 0; --i) append_code_point(text, uint32_t(rng.integer(int(lo), int(hi))));
    }
    if (space_runs && rng.integer(0, 3) == 0) {
      static const char* runs[] = {"  ", "   ", "\t", "\n", "\n\n", " \n ", "    "};
      text += runs[rng.integer(0, 6)];
    } else if (words > 1) {
      text += rng.integer(0, 4) == 0 ? "\n" : " ";
    }
  }
  return text;
}

}  // namespace

TEST_CASE("brown-8m GGUF vocabulary: reference texts give the prompt ids, greedy ids the greedy text") {
  const Tokenizer& tok = brown_tokenizer();
  const inferno::text::GgufTokenizer info = inferno::text::read_gguf_tokenizer(brown_file());
  CHECK(info.model == "llama");
  CHECK(info.pre == "default");
  CHECK(info.add_bos);
  CHECK_FALSE(info.add_eos);
  CHECK(info.add_space_prefix);  // absent from the file: llama.cpp's default for SentencePiece
  CHECK(info.bos_id == 1);
  CHECK(info.eos_id == 2);
  CHECK(info.unk_id == 0);
  CHECK_FALSE(info.pad_id.has_value());
  CHECK(tok.vocab_size() == 32000);
  CHECK(tok.bos_id() == 1);
  CHECK(tok.eos_ids() == std::vector<int32_t>{2});
  CHECK(tok.bos_token() == "<s>");
  CHECK(tok.is_special(0));
  CHECK(tok.is_special(2));
  CHECK_FALSE(tok.is_special(3));  // <0x00>: a byte token, not an added one
  CHECK_FALSE(tok.chat_template().has_value());

  auto ref = load_json(inferno::testing::data_path("gguf/brown-8m-q8_0/reference.json"));
  dom::array texts = ref->root["texts"], prompts = ref->root["prompts"], greedy = ref->root["greedy"],
             greedy_text = ref->root["greedy_text"];
  REQUIRE(texts.size() == prompts.size());
  REQUIRE(greedy.size() == greedy_text.size());
  REQUIRE(texts.size() > 0);
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string text = str(texts.at(i));
    INFO("text: " << text);
    const std::vector<int32_t> prompt = ints(prompts.at(i));
    CHECK(tok.encode(text) == prompt);
    CHECK(brown_reference().encode(text) == std::vector<int32_t>(prompt.begin() + 1, prompt.end()));
    CHECK(tok.decode(prompt) == text);
  }
  for (size_t i = 0; i < greedy.size(); ++i) {
    const std::vector<int32_t> ids = ints(greedy.at(i));
    CHECK(tok.decode(ids) == str(greedy_text.at(i)));
    CHECK(stream_decode(tok, ids, true) == str(greedy_text.at(i)));
  }
}

// Where llama.cpp and Hugging Face differ on this vocabulary: runs of spaces. The GGUF lists the whitespace pieces
// "▁▁" (259), "▁▁▁▁" (260), ... as normal tokens whose scores (-259, -260, ...) are among the highest, so
// llama.cpp merges spaces first: " Hello" -> "▁▁" "Hello". Its tokenizer.json (Hugging Face's conversion, which
// took them for user-defined pieces) ranks their merges after all others: " Hello" -> "▁" "▁Hello". Both spell
// the same text; on text without a run of two spaces (the prepended one included) they agree.
TEST_CASE("spm32k: the GGUF vocabulary against its tokenizer.json and llama.cpp's algorithm on tokenizer_cases.json") {
  const Tokenizer& gguf = brown_tokenizer();
  const Tokenizer& json = brown_tokenizer_json();
  auto cases = load_json(inferno::testing::data_path("hf-llama/tokenizer_cases.json"));
  dom::array list = cases->root["spm32k"];
  REQUIRE(list.size() > 0);
  int agreeing = 0, differing = 0;
  for (dom::element c : list) {
    const std::string text = str(c["text"]);
    const std::vector<int32_t> ids = ints(c["ids"]), ids_with_special = ints(c["ids_with_special"]);
    const std::string decoded = str(c["decoded"]);
    INFO("text: \"" << text << "\"");
    const std::vector<int32_t> mine = gguf.encode(text, false);
    CHECK(mine == brown_reference().encode(text));
    if (!has_space_run(text)) {
      CHECK(mine == ids);
      CHECK(gguf.encode(text, true) == ids_with_special);
      ++agreeing;
    } else {
      // Known difference (see above): the ids differ only in how whitespace runs are cut; the text is the same.
      if (mine != ids) ++differing;
      CHECK(gguf.decode(mine, false) == decoded);
      CHECK(gguf.encode(text, true).front() == 1);
    }
    // Decoding is the same pipeline in both: any ids give the same text, specials kept or skipped.
    CHECK(gguf.decode(ids, false) == decoded);
    CHECK(stream_decode(gguf, ids, false) == decoded);
    CHECK(gguf.decode(ids_with_special, true) == json.decode(ids_with_special, true));
    CHECK(stream_decode(gguf, ids_with_special, true) == gguf.decode(ids_with_special, true));
  }
  MESSAGE("spm32k cases: " << agreeing << " equal to tokenizer.json, " << differing
                           << " cut differently at runs of spaces (llama.cpp's score order)");
  CHECK(agreeing > 15);
}

TEST_CASE("spm32k: random text through the GGUF vocabulary, llama.cpp's algorithm and tokenizer.json") {
  INFERNO_SEED_INFO();
  Rng rng(17);
  const Tokenizer& gguf = brown_tokenizer();
  const Tokenizer& json = brown_tokenizer_json();
  for (int trial = 0; trial < 300; ++trial) {
    const bool space_runs = trial % 2 == 1;
    const std::string text = random_text(rng, space_runs);
    INFO("text: \"" << text << "\"");
    const std::vector<int32_t> ids = gguf.encode(text, false);
    CHECK(ids == brown_reference().encode(text));
    if (!has_space_run(text)) CHECK(ids == json.encode(text, false));
    CHECK(gguf.decode(ids) == text);
    CHECK(stream_decode(gguf, ids, true) == text);
  }
  // Random ids, bytes and specials included: streaming equals full decode, and both equal tokenizer.json's.
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int32_t> ids;
    for (int i = rng.integer(0, 30); i > 0; --i)
      ids.push_back(rng.integer(0, 3) == 0 ? rng.integer(0, 258) : rng.integer(0, gguf.vocab_size() - 1));
    for (bool skip : {true, false}) {
      INFO("ids: " << doctest::toString(ids) << " skip_special_tokens " << skip);
      CHECK(gguf.decode(ids, skip) == json.decode(ids, skip));
      CHECK(stream_decode(gguf, ids, skip) == gguf.decode(ids, skip));
    }
  }
}

namespace {

// Llama 3's tokenizer.json packed into a GGUF vocabulary the way llama.cpp's converter does it: every token by id
// (the BPE vocabulary, then the added tokens), CONTROL for special added tokens, the merges as "left right".
struct Llama3Vocabulary {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;
  std::string chat_template;
};

const Llama3Vocabulary& llama3_vocabulary() {
  static const Llama3Vocabulary vocabulary = [] {
    const fs::path dir = inferno::testing::tokenizer_dir("llama3");
    REQUIRE_MESSAGE(fs::exists(dir / "tokenizer.json"),
                    "tokenizer files missing in " << dir.string() << ": run tools/fetch-tokenizers.sh");
    auto json = load_json(dir / "tokenizer.json");
    Llama3Vocabulary v;
    for (dom::key_value_pair kv : dom::object(json->root["model"]["vocab"])) {
      const size_t id = size_t(int64_t(kv.value));
      if (v.tokens.size() <= id) v.tokens.resize(id + 1);
      v.tokens[id] = std::string(kv.key);
    }
    v.types.assign(v.tokens.size(), int32_t(GgufTokenType::Normal));
    for (dom::element a : dom::array(json->root["added_tokens"])) {
      const size_t id = size_t(int64_t(a["id"]));
      if (v.tokens.size() <= id) {
        v.tokens.resize(id + 1);
        v.types.resize(id + 1, int32_t(GgufTokenType::Normal));
      }
      v.tokens[id] = str(a["content"]);
      v.types[id] = int32_t(bool(a["special"]) ? GgufTokenType::Control : GgufTokenType::UserDefined);
    }
    for (dom::element m : dom::array(json->root["model"]["merges"])) v.merges.push_back(str(m));
    // tokenizer_config.json holds a 31-digit integer that the DOM parser refuses: read the one field on demand.
    simdjson::ondemand::parser parser;
    simdjson::padded_string text;
    REQUIRE(!simdjson::padded_string::load((dir / "tokenizer_config.json").string()).get(text));
    simdjson::ondemand::document config = parser.iterate(text);
    std::string_view chat_template;
    REQUIRE(!config["chat_template"].get_string().get(chat_template));
    v.chat_template = std::string(chat_template);
    return v;
  }();
  return vocabulary;
}

// A GGUF file holding Llama 3's vocabulary; `edit` adds or changes keys before it is written.
GgufFile llama3_gguf(const std::string& pre, const std::function<void(GgufBuilder&)>& edit = {}) {
  const Llama3Vocabulary& v = llama3_vocabulary();
  GgufBuilder b;
  b.string("general.architecture", "llama");
  b.string("tokenizer.ggml.model", "gpt2");
  b.string("tokenizer.ggml.pre", pre);
  b.strings("tokenizer.ggml.tokens", v.tokens);
  b.numbers("tokenizer.ggml.token_type", inferno::testing::kGgufI32, v.types);
  b.strings("tokenizer.ggml.merges", v.merges);
  b.u32("tokenizer.ggml.bos_token_id", 128000);
  b.u32("tokenizer.ggml.eos_token_id", 128001);
  b.string("tokenizer.chat_template", v.chat_template);
  if (edit) edit(b);
  return GgufFile::from_bytes(b.build(), "llama3-vocab.gguf");
}

const Tokenizer& llama3_json_tokenizer() {
  static const Tokenizer tok = Tokenizer::from_dir(inferno::testing::tokenizer_dir("llama3"));
  return tok;
}

}  // namespace

TEST_CASE("gpt2 vocabulary: Llama 3's tokenizer in a GGUF file tokenizes tokenizer_cases.json like tokenizer.json") {
  // This tokenizer.json's post-processor adds no BOS; the file says so with add_bos_token = false.
  const GgufFile file = llama3_gguf("llama-bpe", [](GgufBuilder& b) { b.boolean("tokenizer.ggml.add_bos_token", false); });
  const inferno::text::GgufTokenizer info = inferno::text::read_gguf_tokenizer(file);
  CHECK(info.model == "gpt2");
  CHECK(info.pre == "llama-bpe");
  CHECK_FALSE(info.add_bos);
  CHECK(info.bos_id == 128000);
  const Tokenizer tok = Tokenizer::from_spec(info.spec);
  const Tokenizer& json = llama3_json_tokenizer();
  CHECK(tok.vocab_size() == json.vocab_size());
  CHECK(tok.bos_token() == "<|begin_of_text|>");
  CHECK(tok.eos_token() == "<|end_of_text|>");
  CHECK(tok.eos_ids() == json.eos_ids());
  CHECK(tok.chat_template() == json.chat_template());
  CHECK(tok.is_special(128009));

  auto cases = load_json(inferno::testing::data_path("hf-llama/tokenizer_cases.json"));
  dom::array list = cases->root["llama3"];
  REQUIRE(list.size() > 0);
  for (dom::element c : list) {
    const std::string text = str(c["text"]);
    const std::vector<int32_t> ids = ints(c["ids"]);
    const std::string decoded = str(c["decoded"]);
    INFO("text: \"" << text << "\"");
    CHECK(tok.encode(text, false) == ids);
    CHECK(tok.encode(text, true) == ints(c["ids_with_special"]));
    CHECK(tok.decode(ids, false) == decoded);
    CHECK(stream_decode(tok, ids, false) == decoded);
    CHECK(stream_decode(tok, ids, true) == tok.decode(ids, true));
  }

  INFERNO_SEED_INFO();
  Rng rng(29);
  for (int trial = 0; trial < 200; ++trial) {
    const std::string text = random_text(rng, true);
    INFO("text: \"" << text << "\"");
    const std::vector<int32_t> ids = tok.encode(text);
    CHECK(ids == json.encode(text));
    CHECK(tok.decode(ids) == text);
  }

  // Without add_bos_token, a Llama 3 vocabulary gets BOS as llama.cpp gives it; add_eos_token adds EOS.
  const Tokenizer with_bos = inferno::text::tokenizer_from_gguf(
      llama3_gguf("llama3", [](GgufBuilder& b) { b.boolean("tokenizer.ggml.add_eos_token", true); }));
  const std::vector<int32_t> hello = json.encode("Hello world", false);
  std::vector<int32_t> expected = {128000};
  expected.insert(expected.end(), hello.begin(), hello.end());
  expected.push_back(128001);
  CHECK(with_bos.encode("Hello world") == expected);
}

TEST_CASE("gpt2 vocabulary: the gpt-2 and default pre-tokenizers") {
  // GPT-2's split and Llama 3's cut plain words the same way ("Hello", " world", ","): the same ids here.
  const Tokenizer gpt2 = inferno::text::tokenizer_from_gguf(llama3_gguf("gpt-2"));
  const Tokenizer& json = llama3_json_tokenizer();
  for (const std::string text : {"Hello world, this is a test.", "The quick brown fox jumps over the lazy dog"})
    CHECK(gpt2.encode(text) == json.encode(text));
  // Newline runs differ: Llama 3 keeps "\n\n" together (one token), GPT-2's split cuts it into two "\n".
  const std::vector<int32_t> newline = json.encode("\n", false);
  REQUIRE(newline.size() == 1);
  CHECK(json.encode("Hello\n\nworld", false).size() == 3);
  CHECK(gpt2.encode("Hello\n\nworld", false) ==
        std::vector<int32_t>{json.encode("Hello", false)[0], newline[0], newline[0], json.encode("world", false)[0]});
  CHECK(gpt2.decode(gpt2.encode("Hello\n\nworld")) == "Hello\n\nworld");

  INFERNO_SEED_INFO();
  Rng rng(31);
  const Tokenizer fallback = inferno::text::tokenizer_from_gguf(llama3_gguf("default"));
  for (int trial = 0; trial < 50; ++trial) {
    const std::string text = random_text(rng, true);
    INFO("text: \"" << text << "\"");
    CHECK(fallback.decode(fallback.encode(text)) == text);
    CHECK(gpt2.decode(gpt2.encode(text)) == text);
  }
  // Punctuation runs are split off before anything else, digits in threes after the GPT-2 split.
  const std::vector<int32_t> ids = fallback.encode("abc!!def 1234567");
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(fallback.decode(std::vector<int32_t>{id}));
  CHECK(std::find(pieces.begin(), pieces.end(), "!!") != pieces.end());
  CHECK(pieces.back() == "7");
}

TEST_CASE("SentencePiece options: add_space_prefix, add_eos_token, user-defined tokens, merges from scores") {
  // A tiny hand-made vocabulary: <unk> <s> </s>, the 256 byte tokens, then pieces with scores.
  auto make = [](const std::function<void(GgufBuilder&)>& edit, std::vector<std::pair<std::string, float>> pieces,
                 std::vector<std::pair<std::string, int32_t>> extra = {}) {
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
    std::vector<float> scores = {0, 0, 0};
    std::vector<int32_t> types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      tokens.push_back(name);
      scores.push_back(0);
      types.push_back(6);
    }
    for (const auto& [piece, score] : pieces) {
      tokens.push_back(piece);
      scores.push_back(score);
      types.push_back(1);
    }
    for (const auto& [piece, type] : extra) {
      tokens.push_back(piece);
      scores.push_back(0);
      types.push_back(type);
    }
    GgufBuilder b;
    b.string("tokenizer.ggml.model", "llama");
    b.strings("tokenizer.ggml.tokens", tokens);
    b.numbers("tokenizer.ggml.scores", inferno::testing::kGgufF32, scores);
    b.numbers("tokenizer.ggml.token_type", inferno::testing::kGgufI32, types);
    if (edit) edit(b);
    return GgufFile::from_bytes(b.build(), "tiny-spm.gguf");
  };
  const std::string m = kMetaspace;
  const std::vector<std::pair<std::string, float>> pieces = {
      {m, -1}, {"a", -2}, {"b", -3}, {"c", -4}, {"ab", -5}, {"bc", -6}, {m + "a", -7}, {m + "ab", -8}};
  const int32_t first = 3 + 256;  // id of the first piece
  auto id = [&](const std::string& piece) {
    for (size_t i = 0; i < pieces.size(); ++i)
      if (pieces[i].first == piece) return first + int32_t(i);
    return -1;
  };

  // Higher score first: "ab" (-5) before "bc" (-6), "▁a" (-7) never, "▁ab" (-8) after "ab".
  const GgufFile plain = make({}, pieces);
  const Tokenizer tok = inferno::text::tokenizer_from_gguf(plain);
  CHECK(tok.encode("abc") == std::vector<int32_t>{1, id(m + "ab"), id("c")});
  CHECK(tok.encode("abc", false) == LlamaCppSpm(plain).encode("abc"));
  CHECK(tok.decode(tok.encode("abc")) == "abc");
  // "bc" above "ab": "a" "bc", then nothing joins "▁a"+"bc".
  auto swapped = pieces;
  swapped[4].second = -6;
  swapped[5].second = -5;
  const GgufFile swapped_file = make({}, swapped);
  CHECK(inferno::text::tokenizer_from_gguf(swapped_file).encode("abc", false) ==
        std::vector<int32_t>{id(m + "a"), id("bc")});
  CHECK(inferno::text::tokenizer_from_gguf(swapped_file).encode("abc", false) == LlamaCppSpm(swapped_file).encode("abc"));
  // A character outside the vocabulary is spelled in bytes.
  CHECK(tok.encode("a\xC3\xA9", false) == std::vector<int32_t>{id(m + "a"), 3 + 0xC3, 3 + 0xA9});

  // Without the prefix space, and with EOS added.
  const Tokenizer bare = inferno::text::tokenizer_from_gguf(make([](GgufBuilder& b) {
    b.boolean("tokenizer.ggml.add_space_prefix", false);
    b.boolean("tokenizer.ggml.add_eos_token", true);
  }, pieces));
  CHECK(bare.encode("abc") == std::vector<int32_t>{1, id("ab"), id("c"), 2});
  CHECK(bare.encode(" abc", false) == std::vector<int32_t>{id(m + "ab"), id("c")});
  CHECK(bare.decode(bare.encode(" abc", false)) == " abc");  // no leading space removed either

  // User-defined tokens are matched in the text and kept when decoding without specials; control ones vanish.
  const GgufFile with_extra = make({}, pieces, {{"<tool>", 4}, {"<ctl>", 3}});
  const Tokenizer extra = inferno::text::tokenizer_from_gguf(with_extra);
  const int32_t tool = first + int32_t(pieces.size()), ctl = tool + 1;
  CHECK(extra.encode("ab<tool>c<ctl>", false) ==
        std::vector<int32_t>{id(m + "ab"), tool, id(m), id("c"), ctl});
  CHECK(extra.encode("ab<tool>c<ctl>", false) == LlamaCppSpm(with_extra).encode("ab<tool>c<ctl>"));
  CHECK_FALSE(extra.is_special(tool));
  CHECK(extra.is_special(ctl));
  CHECK(extra.decode(extra.encode("ab<tool>c<ctl>")) == "ab<tool> c");
}

TEST_CASE("broken GGUF vocabularies give errors naming the file and the key") {
  auto spm = [](const std::function<void(GgufBuilder&)>& edit) {
    GgufBuilder b;
    b.string("general.architecture", "llama");
    if (edit) edit(b);
    return GgufFile::from_bytes(b.build(), "bad-vocab.gguf");
  };
  auto vocab = [](GgufBuilder& b) {
    b.string("tokenizer.ggml.model", "llama");
    b.strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"});
  };
  using inferno::text::read_gguf_tokenizer;
  check_error([&] { read_gguf_tokenizer(spm({})); }, {"bad-vocab.gguf", "no tokenizer", "tokenizer.ggml.model"});
  check_error([&] { read_gguf_tokenizer(spm([](GgufBuilder& b) { b.string("tokenizer.ggml.model", "bert"); })); },
              {"bad-vocab.gguf", "'tokenizer.ggml.model'", "'bert' is not supported"});
  check_error([&] { read_gguf_tokenizer(spm([](GgufBuilder& b) { b.string("tokenizer.ggml.model", "llama"); })); },
              {"bad-vocab.gguf", "no metadata key 'tokenizer.ggml.tokens'"});
  check_error([&] {
    read_gguf_tokenizer(spm([&](GgufBuilder& b) {
      vocab(b);
      b.numbers("tokenizer.ggml.scores", inferno::testing::kGgufF32, std::vector<float>{0, 0});
    }));
  }, {"'tokenizer.ggml.scores'", "2 scores for 4 tokens"});
  check_error([&] {
    read_gguf_tokenizer(spm([&](GgufBuilder& b) {
      vocab(b);
      b.numbers("tokenizer.ggml.scores", inferno::testing::kGgufF32, std::vector<float>{0, 0, NAN, 0});
    }));
  }, {"'tokenizer.ggml.scores'", "token 2 is NaN"});
  check_error([&] {
    read_gguf_tokenizer(spm([&](GgufBuilder& b) {
      vocab(b);
      b.strings("tokenizer.ggml.token_type", {"normal"});
    }));
  }, {"'tokenizer.ggml.token_type'", "expected an array of int32"});
  check_error([&] {
    read_gguf_tokenizer(spm([&](GgufBuilder& b) {
      vocab(b);
      b.u32("tokenizer.ggml.bos_token_id", 4);
    }));
  }, {"'tokenizer.ggml.bos_token_id'", "token id 4 is outside the vocabulary of 4"});
  check_error([&] {
    read_gguf_tokenizer(spm([&](GgufBuilder& b) {
      vocab(b);
      b.string("tokenizer.ggml.eos_token_id", "2");
    }));
  }, {"'tokenizer.ggml.eos_token_id'", "expected uint32"});
  check_error([&] {
    inferno::text::tokenizer_from_gguf(spm([&](GgufBuilder& b) {
      b.string("tokenizer.ggml.model", "llama");
      b.strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a", "a"});
    }));
  }, {"bad-vocab.gguf", "appears twice"});

  auto gpt2 = [](GgufBuilder& b) {
    b.string("tokenizer.ggml.model", "gpt2");
    b.strings("tokenizer.ggml.tokens", {"a", "b", "ab"});
  };
  check_error([&] { read_gguf_tokenizer(spm(gpt2)); }, {"bad-vocab.gguf", "needs its merges", "tokenizer.ggml.merges"});
  check_error([&] {
    read_gguf_tokenizer(spm([&](GgufBuilder& b) {
      gpt2(b);
      b.strings("tokenizer.ggml.merges", {"a b", "ab"});
    }));
  }, {"'tokenizer.ggml.merges'", "element 1", "\"ab\""});
  check_error([&] {
    read_gguf_tokenizer(spm([&](GgufBuilder& b) {
      gpt2(b);
      b.strings("tokenizer.ggml.merges", {"a b"});
      b.string("tokenizer.ggml.pre", "qwen2");
    }));
  }, {"'tokenizer.ggml.pre'", "'qwen2' is not supported"});
  check_error([&] {
    read_gguf_tokenizer(spm([&](GgufBuilder& b) {
      gpt2(b);
      b.strings("tokenizer.ggml.merges", {"a b"});
      b.string("tokenizer.ggml.pre", "llama-bpe");  // adds BOS by default, but names none
    }));
  }, {"'tokenizer.ggml.add_bos_token'", "no BOS token"});
  check_error([&] {
    inferno::text::tokenizer_from_gguf(spm([&](GgufBuilder& b) {
      gpt2(b);
      b.strings("tokenizer.ggml.merges", {"a c"});
    }));
  }, {"bad-vocab.gguf", "merge 0", "not in the vocabulary"});
  // A gpt2 vocabulary with what it needs works.
  const Tokenizer ok = inferno::text::tokenizer_from_gguf(spm([&](GgufBuilder& b) {
    gpt2(b);
    b.strings("tokenizer.ggml.merges", {"a b"});
    b.string("tokenizer.ggml.pre", "gpt2");
  }));
  CHECK(ok.encode("ab") == std::vector<int32_t>{2});
}

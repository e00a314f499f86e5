#include "text/bpe.hpp"

#include <algorithm>
#include <cstdio>

#include "text/utf8.hpp"
#include "util/error.hpp"

namespace inferno::text {
namespace {

constexpr std::string_view metaspace = "\xE2\x96\x81";  // U+2581 "▁", SentencePiece's word-start mark

std::string byte_token(uint8_t b) {
  char name[8];
  std::snprintf(name, sizeof name, "<0x%02X>", b);
  return name;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

namespace {

uint64_t mix(uint64_t k) {  // a 64-bit finalizer (MurmurHash3's): spreads consecutive ids over the table
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}

uint64_t hash_text(std::string_view s) { return std::hash<std::string_view>{}(s); }

// At most two thirds full: probes stay short, and Llama 3's 280K merges fit in 8 MB.
size_t table_size_for(size_t entries) {
  size_t size = 16;
  while (size * 2 < entries * 3) size *= 2;
  return size;
}

}  // namespace

BpeModel::BpeModel(std::vector<std::string> tokens, const std::vector<Merge>& merges, BpeOptions options,
                   std::string_view source)
    : tokens_(std::move(tokens)), options_(std::move(options)) {
  token_slots_.assign(table_size_for(tokens_.size()), TokenSlot{0, -1});
  const size_t token_mask = token_slots_.size() - 1;
  bmp_char_ids_.assign(0x10000, -1);
  for (size_t id = 0; id < tokens_.size(); ++id) {
    const std::string& token = tokens_[id];
    if (token.empty()) continue;
    if (!utf8::is_valid(token)) fail(std::string(source) + ": token " + std::to_string(id) + " is not valid UTF-8");
    const uint64_t h = hash_text(token);
    size_t slot = h & token_mask;
    for (; token_slots_[slot].id >= 0; slot = (slot + 1) & token_mask)
      if (token_slots_[slot].hash == uint32_t(h) && tokens_[token_slots_[slot].id] == token)
        fail(std::string(source) + ": token \"" + token + "\" appears twice in the vocabulary");
    token_slots_[slot] = TokenSlot{uint32_t(h), int32_t(id)};
    size_t pos = 0;
    const uint32_t cp = utf8::decode(token, pos);
    if (pos == token.size() && cp < 0x10000) bmp_char_ids_[cp] = int32_t(id);
  }
  byte_ids_.fill(-1);
  for (int b = 0; b < 256; ++b)
    if (auto id = token_to_id(byte_token(uint8_t(b)))) byte_ids_[b] = *id;
  if (options_.unk_token) {
    unk_id_ = token_to_id(*options_.unk_token);
    if (!unk_id_) fail(std::string(source) + ": unk_token \"" + *options_.unk_token + "\" is not in the vocabulary");
  }

  // Rank = position in the list; a pair listed twice keeps its last rank, as the tokenizers library does.
  merge_slots_.assign(table_size_for(merges.size()), MergeSlot{empty_pair, 0, -1});
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const auto left_id = token_to_id(left), right_id = token_to_id(right);
    const auto merged_id = token_to_id(left + right);
    if (!left_id || !right_id || !merged_id)
      fail(std::string(source) + ": merge " + std::to_string(rank) + " (\"" + left + "\" \"" + right +
           "\") uses a token that is not in the vocabulary");
    insert_merge(pair_key(*left_id, *right_id), uint32_t(rank), *merged_id);
  }

  // Cutting before "▁" is safe when "▁" is itself a token (so it never fuses into an unknown run) and no merge
  // can join a left symbol that ends in another character to a right symbol that starts with "▁". A left symbol
  // that is an unknown or byte token may stand for any character; its string does not end in "▁" either, so the
  // test on strings covers it.
  if (token_to_id(metaspace)) {
    split_before_metaspace_ = true;
    for (const auto& [left, right] : merges)
      if (starts_with(right, metaspace) && !ends_with(left, metaspace)) {
        split_before_metaspace_ = false;
        break;
      }
  }
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  const uint64_t h = hash_text(token);
  const size_t mask = token_slots_.size() - 1;
  for (size_t slot = h & mask; token_slots_[slot].id >= 0; slot = (slot + 1) & mask)
    if (token_slots_[slot].hash == uint32_t(h) && tokens_[token_slots_[slot].id] == token) return token_slots_[slot].id;
  return std::nullopt;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= tokens_.size() || tokens_[id].empty()) return nullptr;
  return &tokens_[id];
}

void BpeModel::insert_merge(uint64_t pair, uint32_t rank, int32_t merged_id) {
  const size_t mask = merge_slots_.size() - 1;
  size_t slot = mix(pair) & mask;
  while (merge_slots_[slot].pair != empty_pair && merge_slots_[slot].pair != pair) slot = (slot + 1) & mask;
  merge_slots_[slot] = MergeSlot{pair, rank, merged_id};
}

const BpeModel::MergeSlot* BpeModel::find_merge(int32_t left, int32_t right) const {
  const uint64_t pair = pair_key(left, right);
  const size_t mask = merge_slots_.size() - 1;
  for (size_t slot = mix(pair) & mask; merge_slots_[slot].pair != empty_pair; slot = (slot + 1) & mask)
    if (merge_slots_[slot].pair == pair) return &merge_slots_[slot];
  return nullptr;
}

std::optional<int32_t> BpeModel::char_id(uint32_t cp, std::string_view text) const {
  if (cp < 0x10000) {
    if (bmp_char_ids_[cp] < 0) return std::nullopt;
    return bmp_char_ids_[cp];
  }
  return token_to_id(text);
}

void BpeModel::tokenize(std::string_view pre_token, std::vector<int32_t>& ids) const {
  if (pre_token.empty()) return;
  if (options_.ignore_merges)
    if (auto id = token_to_id(pre_token)) {
      ids.push_back(*id);
      return;
    }
  merge_word(pre_token, ids);
}

void BpeModel::split_independent(std::string_view pre_token, std::vector<std::string_view>& parts) const {
  if (!split_before_metaspace_) {
    parts.push_back(pre_token);
    return;
  }
  size_t start = 0;
  size_t pos = pre_token.find(metaspace);
  while (pos != std::string_view::npos) {
    // Cut only where "▁" follows a different character: runs of "▁" merge among themselves.
    if (pos > start && !ends_with(pre_token.substr(0, pos), metaspace)) {
      parts.push_back(pre_token.substr(start, pos - start));
      start = pos;
    }
    pos = pre_token.find(metaspace, pos + metaspace.size());
  }
  parts.push_back(pre_token.substr(start));
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& ids) const {
  // Symbols form a doubly linked list over a vector; a merged-away symbol gets byte_length 0.
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    uint32_t byte_length;
  };
  // A candidate merge of the symbol at `pos` with its right neighbour. The lowest rank goes first, and among
  // equal ranks the leftmost, which is the order of the tokenizers library.
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t left_id, right_id;  // the pair when queued: if the symbols changed since, the candidate is stale
    int32_t merged_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };

  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add_symbol = [&](int32_t id, uint32_t byte_length) {
    const int32_t index = int32_t(symbols.size());
    if (index > 0) symbols.back().next = index;
    symbols.push_back(Symbol{id, index - 1, -1, byte_length});
  };

  // Unknown characters: an unknown token that grows over consecutive unknown characters when fuse_unk is set.
  bool unk_pending = false;
  uint32_t unk_length = 0;
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t start = pos;
    const uint32_t cp = utf8::decode(word, pos);
    const std::string_view text = word.substr(start, pos - start);
    if (auto id = char_id(cp, text)) {
      if (unk_pending) add_symbol(*unk_id_, unk_length);
      unk_pending = false;
      add_symbol(*id, uint32_t(text.size()));
      continue;
    }
    if (options_.byte_fallback &&
        std::all_of(text.begin(), text.end(), [&](char b) { return byte_ids_[uint8_t(b)] >= 0; })) {
      for (char b : text) add_symbol(byte_ids_[uint8_t(b)], 1);
      continue;
    }
    if (unk_id_) {
      if (unk_pending && options_.fuse_unk) {
        unk_length += uint32_t(text.size());
      } else {
        if (unk_pending) add_symbol(*unk_id_, unk_length);
        unk_pending = true;
        unk_length = uint32_t(text.size());
      }
    }
    // Without an unknown token the character is dropped, as the tokenizers library does.
  }
  if (unk_pending) add_symbol(*unk_id_, unk_length);

  std::vector<Candidate> queue;
  queue.reserve(symbols.size());
  auto push_candidate = [&](int32_t left_pos) {
    const int32_t right_pos = symbols[left_pos].next;
    if (right_pos < 0) return;
    const int32_t left_id = symbols[left_pos].id, right_id = symbols[right_pos].id;
    if (const MergeSlot* m = find_merge(left_id, right_id)) {
      queue.push_back(Candidate{m->rank, left_pos, left_id, right_id, m->merged_id});
      std::push_heap(queue.begin(), queue.end(), std::greater<>{});
    }
  };
  for (int32_t i = 0; i + 1 < int32_t(symbols.size()); ++i) push_candidate(i);

  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), std::greater<>{});
    const Candidate top = queue.back();
    queue.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.byte_length == 0 || left.next < 0) continue;  // merged away, or now last
    Symbol& right = symbols[left.next];
    // A stale candidate: the pair changed since it was queued. (The tokenizers library looks the current pair
    // up again and compares the merged token; two different pairs of the same span can never make the same
    // token at the same position, so comparing the pair itself is the same test without a look-up.)
    if (left.id != top.left_id || right.id != top.right_id) continue;

    left.id = top.merged_id;
    left.byte_length += right.byte_length;
    right.byte_length = 0;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push_candidate(left.prev);
    push_candidate(top.pos);
  }

  for (const Symbol& s : symbols)
    if (s.byte_length != 0) ids.push_back(s.id);
}

}  // namespace inferno::text

#include "generate/grammar.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>

#include "util/error.hpp"

namespace inferno::gen {

// ---- GrammarBuilder ----

uint32_t GrammarBuilder::new_rule() {
  if (rules_.size() >= max_symbols_) fail("grammar: more than " + std::to_string(max_symbols_) + " rules");
  rules_.emplace_back();
  return uint32_t(rules_.size() - 1);
}

void GrammarBuilder::add(uint32_t rule, Sequence alternative) {
  symbol_count_ += alternative.size() + 1;
  if (symbol_count_ > max_symbols_)
    fail("grammar: the schema makes a grammar of more than " + std::to_string(max_symbols_) +
         " symbols (lower maxLength, maxItems or the number of properties)");
  rules_.at(rule).push_back(std::move(alternative));
}

Grammar::Symbol GrammarBuilder::bytes(const ByteSet& set) {
  const std::string key(reinterpret_cast<const char*>(set.bits.data()), sizeof set.bits);
  auto [it, inserted] = byte_set_index_.try_emplace(key, uint32_t(byte_sets_.size()));
  if (inserted) byte_sets_.push_back(set);
  return {Grammar::Symbol::Bytes, it->second};
}

GrammarBuilder::Sequence GrammarBuilder::literal(std::string_view text) {
  Sequence s;
  for (char c : text) s.push_back(byte(uint8_t(c)));
  return s;
}

Grammar GrammarBuilder::build(uint32_t start_rule, const std::string& what) const {
  const size_t n = rules_.size();
  if (start_rule >= n) fail("grammar: no start rule");
  // Which rules match the empty text (a fixpoint), then which rules each can enter before consuming a byte.
  std::vector<char> nullable(n, 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      if (nullable[r]) continue;
      for (const Sequence& alt : rules_[r]) {
        const bool all = std::all_of(alt.begin(), alt.end(), [&](const Grammar::Symbol& s) {
          return s.kind == Grammar::Symbol::Rule && nullable[s.index];
        });
        if (all) {
          nullable[r] = 1;
          changed = true;
          break;
        }
      }
    }
  }
  std::vector<std::vector<uint32_t>> entered(n);
  for (size_t r = 0; r < n; ++r)
    for (const Sequence& alt : rules_[r])
      for (const Grammar::Symbol& s : alt) {
        if (s.kind != Grammar::Symbol::Rule) break;
        if (s.index >= n) fail("grammar: a reference to rule " + std::to_string(s.index) + " that does not exist");
        entered[r].push_back(s.index);
        if (!nullable[s.index]) break;
      }
  // Iterative depth-first search for a cycle (colors: 0 new, 1 on the path, 2 done).
  std::vector<char> color(n, 0);
  for (size_t root = 0; root < n; ++root) {
    if (color[root]) continue;
    std::vector<std::pair<uint32_t, size_t>> path{{uint32_t(root), 0}};
    color[root] = 1;
    while (!path.empty()) {
      auto& [rule, next] = path.back();
      if (next == entered[rule].size()) {
        color[rule] = 2;
        path.pop_back();
        continue;
      }
      const uint32_t child = entered[rule][next++];
      if (color[child] == 1) fail(what + ": a $ref cycle that reaches itself before any text (left recursion)");
      if (color[child] == 0) {
        color[child] = 1;
        path.push_back({child, 0});
      }
    }
  }

  Grammar g;
  g.byte_sets = byte_sets_;
  g.start_rule = start_rule;
  g.rule_alternatives.resize(n);
  g.symbols.reserve(symbol_count_);
  for (size_t r = 0; r < n; ++r)
    for (const Sequence& alt : rules_[r]) {
      g.rule_alternatives[r].push_back(uint32_t(g.symbols.size()));
      g.symbols.insert(g.symbols.end(), alt.begin(), alt.end());
      g.symbols.push_back({Grammar::Symbol::End, 0});
    }
  return g;
}

// ---- TokenTrie ----

TokenTrie::TokenTrie(const std::vector<std::string>& token_bytes) : bytes_(token_bytes) {
  std::vector<int32_t> order;
  for (size_t id = 0; id < bytes_.size(); ++id)
    if (!bytes_[id].empty()) order.push_back(int32_t(id));
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return bytes_[a] < bytes_[b]; });
  for (int32_t id : order) max_depth_ = std::max(max_depth_, bytes_[id].size());
  if (max_depth_ > std::numeric_limits<uint16_t>::max()) fail("vocabulary: a token of more than 65535 bytes");
  token_ids_.reserve(order.size());
  nodes_.push_back({});  // the root
  // The sorted tokens, walked once: `path` holds the open nodes (one per byte of the current prefix).
  std::vector<uint32_t> path{0};
  std::string prefix;
  auto close_to = [&](size_t depth) {
    while (path.size() > depth + 1) {
      nodes_[path.back()].subtree_end = uint32_t(nodes_.size());
      path.pop_back();
      prefix.pop_back();
    }
  };
  for (int32_t id : order) {
    const std::string& b = bytes_[id];
    size_t common = 0;
    while (common < prefix.size() && common < b.size() && prefix[common] == b[common]) ++common;
    close_to(common);
    for (size_t d = common; d < b.size(); ++d) {
      Node node;
      node.depth = uint16_t(d + 1);
      node.byte = uint8_t(b[d]);
      node.tokens_begin = node.tokens_end = uint32_t(token_ids_.size());
      path.push_back(uint32_t(nodes_.size()));
      nodes_.push_back(node);
      prefix.push_back(b[d]);
    }
    // Sorted order puts every token that ends at this node right after the node was opened (equal bytes are
    // adjacent), before any longer one.
    Node& here = nodes_[path.back()];
    if (here.tokens_end != uint32_t(token_ids_.size())) here.tokens_begin = uint32_t(token_ids_.size());
    token_ids_.push_back(id);
    here.tokens_end = uint32_t(token_ids_.size());
  }
  close_to(0);
  nodes_[0].subtree_end = uint32_t(nodes_.size());
}

// ---- GrammarMatcher ----

GrammarMatcher::GrammarMatcher(std::shared_ptr<const GrammarConstraint> constraint)
    : constraint_(std::move(constraint)), grammar_(constraint_->grammar.get()) {
  if (!constraint_->grammar || !constraint_->vocabulary) fail("grammar constraint without a grammar or vocabulary");
  reset_caches();
  std::vector<uint32_t> start;
  size_t steps = 0;
  for (uint32_t alt : grammar_->rule_alternatives.at(grammar_->start_rule)) expand(alt, 0, start, steps);
  current_ = intern_state(start);
}

void GrammarMatcher::reset_caches() {
  std::vector<std::vector<uint32_t>> chains;  // the current state's stacks, bottom first, as symbols
  if (!sets_.empty())
    for (uint32_t id : sets_[current_].stacks) {
      std::vector<uint32_t> chain;
      for (uint32_t n = id; n != 0; n = nodes_[n].parent) chain.push_back(nodes_[n].symbol);
      std::reverse(chain.begin(), chain.end());
      chains.push_back(std::move(chain));
    }
  const bool had_state = !sets_.empty();
  nodes_.assign(1, Node{0, 0, 0});
  node_index_.clear();
  sets_.clear();
  set_index_.clear();
  if (!had_state) return;
  std::vector<uint32_t> stacks;
  for (const auto& chain : chains) {
    uint32_t id = 0;
    for (uint32_t symbol : chain) id = intern_node(symbol, id);
    stacks.push_back(id);
  }
  current_ = intern_state(stacks);
}

uint32_t GrammarMatcher::intern_node(uint32_t symbol, uint32_t parent) {
  const uint64_t key = (uint64_t(symbol) << 32) | parent;
  auto [it, inserted] = node_index_.try_emplace(key, uint32_t(nodes_.size()));
  if (inserted) nodes_.push_back({symbol, parent, parent ? nodes_[parent].depth + 1 : 1});
  return it->second;
}

// Follows rule references and rule ends from `symbol` (with `parent` as the continuation) down to the byte sets
// that may come next; each becomes a stack in `out`, and reaching the start rule's end adds the empty stack 0.
void GrammarMatcher::expand(uint32_t symbol, uint32_t parent, std::vector<uint32_t>& out, size_t& steps) {
  if (++steps > kMaxExpansionSteps)
    fail("grammar: one byte needs more than " + std::to_string(kMaxExpansionSteps) +
         " parse steps (the schema is too ambiguous; simplify its anyOf)");
  const Grammar::Symbol s = grammar_->symbols[symbol];
  switch (s.kind) {
    case Grammar::Symbol::End:
      if (parent == 0) out.push_back(0);
      else expand(nodes_[parent].symbol, nodes_[parent].parent, out, steps);
      return;
    case Grammar::Symbol::Bytes:
      if (parent && nodes_[parent].depth >= kMaxStackDepth) return;  // too deep: this parse is dropped
      out.push_back(intern_node(symbol, parent));
      return;
    case Grammar::Symbol::Rule: {
      // A reference in tail position continues straight to the caller's continuation, so repetition written as
      // right recursion keeps the stack flat.
      uint32_t continuation = parent;
      if (grammar_->symbols[symbol + 1].kind != Grammar::Symbol::End) {
        if (parent && nodes_[parent].depth >= kMaxStackDepth) return;
        continuation = intern_node(symbol + 1, parent);
      }
      for (uint32_t alt : grammar_->rule_alternatives[s.index]) expand(alt, continuation, out, steps);
      return;
    }
  }
}

uint32_t GrammarMatcher::intern_state(std::vector<uint32_t>& stacks) {
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
  if (stacks.size() > kMaxStacksPerState)
    fail("grammar: more than " + std::to_string(kMaxStacksPerState) +
         " parses alive at once (the schema is too ambiguous; simplify its anyOf)");
  std::string key(reinterpret_cast<const char*>(stacks.data()), stacks.size() * sizeof(uint32_t));
  auto [it, inserted] = set_index_.try_emplace(std::move(key), uint32_t(sets_.size()));
  if (inserted) {
    if (sets_.size() >= kMaxStates)
      fail("grammar: more than " + std::to_string(kMaxStates) + " parse states in one step");
    sets_.push_back(State{stacks, nullptr});
  }
  return it->second;
}

int32_t GrammarMatcher::step(uint32_t state, uint8_t byte) {
  if (!sets_[state].next) {
    sets_[state].next = std::make_unique<int32_t[]>(256);
    std::fill_n(sets_[state].next.get(), 256, kUnknown);
  }
  int32_t& cached = sets_[state].next[byte];
  if (cached != kUnknown) return cached;
  std::vector<uint32_t> out;
  size_t steps = 0;
  // sets_ may grow (and move) below: read the stacks through a copy.
  const std::vector<uint32_t> stacks = sets_[state].stacks;
  for (uint32_t id : stacks) {
    if (id == 0) continue;
    const Node node = nodes_[id];
    if (grammar_->byte_sets[grammar_->symbols[node.symbol].index].has(byte)) expand(node.symbol + 1, node.parent, out, steps);
  }
  const int32_t next = out.empty() ? kDead : int32_t(intern_state(out));
  sets_[state].next[byte] = next;
  return next;
}

bool GrammarMatcher::complete() const { return sets_[current_].stacks.front() == 0; }

bool GrammarMatcher::finished() const { return sets_[current_].stacks.size() == 1 && complete(); }

void GrammarMatcher::fill_mask(std::vector<uint8_t>& allowed) {
  if (sets_.size() > kCompactAtStates || nodes_.size() > 64 * kCompactAtStates) reset_caches();
  const TokenTrie& trie = *constraint_->vocabulary;
  allowed.assign(trie.vocab_size(), 0);
  const auto& nodes = trie.nodes();
  const auto& ids = trie.token_ids();
  walk_states_.resize(trie.max_depth() + 1);
  walk_states_[0] = int32_t(current_);
  for (uint32_t i = 1; i < nodes.size();) {
    const TokenTrie::Node& node = nodes[i];
    const int32_t next = step(uint32_t(walk_states_[node.depth - 1]), node.byte);
    if (next == kDead) {
      i = node.subtree_end;
      continue;
    }
    walk_states_[node.depth] = next;
    for (uint32_t t = node.tokens_begin; t < node.tokens_end; ++t) allowed[size_t(ids[t])] = 1;
    ++i;
  }
}

void GrammarMatcher::apply_mask(std::span<float> scores, std::span<const int32_t> eos_ids) {
  fill_mask(allowed_);
  const bool done = complete();
  bool any = false;
  for (size_t t = 0; t < scores.size(); ++t) {
    bool ok = t < allowed_.size() && allowed_[t];
    if (done && !ok) ok = std::find(eos_ids.begin(), eos_ids.end(), int32_t(t)) != eos_ids.end();
    if (!ok) scores[t] = -std::numeric_limits<float>::infinity();
    any = any || ok;
  }
  if (!any)
    fail(done ? "constrained decoding: the output is complete but the model has no end-of-sequence token to stop with"
              : "constrained decoding: no token of the vocabulary can continue the output (nesting past the depth "
                "limit of " + std::to_string(kMaxStackDepth) + " grammar levels?)");
}

bool GrammarMatcher::can_advance(std::string_view bytes) {
  int32_t state = int32_t(current_);
  for (char c : bytes) {
    state = step(uint32_t(state), uint8_t(c));
    if (state == kDead) return false;
  }
  return true;
}

bool GrammarMatcher::advance_bytes(std::string_view bytes) {
  int32_t state = int32_t(current_);
  for (char c : bytes) {
    state = step(uint32_t(state), uint8_t(c));
    if (state == kDead) return false;
  }
  current_ = uint32_t(state);
  return true;
}

bool GrammarMatcher::advance(int32_t token) {
  const TokenTrie& trie = *constraint_->vocabulary;
  if (token < 0 || size_t(token) >= trie.vocab_size()) return false;
  const std::string& b = trie.bytes_of(token);
  return !b.empty() && advance_bytes(b);
}

}  // namespace inferno::gen

#pragma once
// Constrained decoding: a context-free grammar over bytes, a matcher that follows it as tokens are chosen, and the
// mask of the vocabulary tokens that can extend the text at each step.
//
// The matcher is a pushdown automaton kept as a set of stacks (a grammar may be ambiguous, so several parses can be
// alive at once). Stacks are persistent linked lists whose nodes are interned, so two equal stacks are one id and a
// set of stacks is a sorted list of ids; sets are interned too, and the transition of a set on a byte is computed
// once and remembered. Inside a JSON string or a run of digits the set after a byte is usually a set seen before,
// so the mask walk below costs one table lookup per trie node.
//
// The mask walks a trie of the vocabulary's token bytes against the automaton: a prefix shared by many tokens is
// followed once, and a subtree whose prefix the grammar refuses is skipped whole.
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace inferno::gen {

struct ByteSet {
  std::array<uint64_t, 4> bits{};
  bool has(uint8_t b) const { return (bits[b >> 6] >> (b & 63)) & 1; }
  ByteSet& add(uint8_t b) {
    bits[b >> 6] |= uint64_t(1) << (b & 63);
    return *this;
  }
  ByteSet& add_range(uint8_t first, uint8_t last) {
    for (unsigned b = first; b <= last; ++b) add(uint8_t(b));
    return *this;
  }
};

// A grammar ready to match: every alternative of every rule flattened into one array of symbols, each alternative
// ending with an End symbol. Made by GrammarBuilder, immutable afterwards (shared by all requests that use it).
struct Grammar {
  struct Symbol {
    enum Kind : uint8_t { Bytes, Rule, End } kind = End;
    uint32_t index = 0;  // Bytes: into byte_sets; Rule: the rule
  };
  std::vector<ByteSet> byte_sets;
  std::vector<Symbol> symbols;
  std::vector<std::vector<uint32_t>> rule_alternatives;  // each rule's alternatives: where they start in symbols
  uint32_t start_rule = 0;
};

class GrammarBuilder {
 public:
  using Sequence = std::vector<Grammar::Symbol>;
  // max_symbols bounds the grammar a user's input can make; add() throws Error past it.
  explicit GrammarBuilder(size_t max_symbols) : max_symbols_(max_symbols) {}

  uint32_t new_rule();
  void add(uint32_t rule, Sequence alternative);  // an empty alternative matches the empty text
  Grammar::Symbol bytes(const ByteSet& set);
  Grammar::Symbol byte(uint8_t b) { return bytes(ByteSet().add(b)); }
  static Grammar::Symbol ref(uint32_t rule) { return {Grammar::Symbol::Rule, rule}; }
  Sequence literal(std::string_view text);
  size_t rules() const { return rules_.size(); }

  // Checks that no rule can reach itself without consuming a byte (the matcher would expand it forever): throws
  // Error naming `what` otherwise.
  Grammar build(uint32_t start_rule, const std::string& what) const;

 private:
  size_t max_symbols_;
  size_t symbol_count_ = 0;
  std::vector<std::vector<Sequence>> rules_;
  std::vector<ByteSet> byte_sets_;
  std::unordered_map<std::string, uint32_t> byte_set_index_;
};

// The vocabulary as a trie of token bytes, in preorder: a node's subtree is the nodes up to its `subtree_end`.
class TokenTrie {
 public:
  // token_bytes[id]: what the token adds to the text; empty for tokens that never match (special tokens).
  explicit TokenTrie(const std::vector<std::string>& token_bytes);
  struct Node {
    uint32_t subtree_end = 0;  // one past the last node of this subtree
    uint32_t tokens_begin = 0, tokens_end = 0;  // tokens whose bytes end here: token_ids()[begin, end)
    uint16_t depth = 0;        // bytes from the root (the root, node 0, has none)
    uint8_t byte = 0;
  };
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<int32_t>& token_ids() const { return token_ids_; }
  const std::string& bytes_of(int32_t token) const { return bytes_.at(size_t(token)); }
  size_t vocab_size() const { return bytes_.size(); }
  size_t max_depth() const { return max_depth_; }

 private:
  std::vector<Node> nodes_;
  std::vector<int32_t> token_ids_;
  std::vector<std::string> bytes_;
  size_t max_depth_ = 0;
};

// What a request decodes under: its grammar and the model's vocabulary.
struct GrammarConstraint {
  std::shared_ptr<const Grammar> grammar;
  std::shared_ptr<const TokenTrie> vocabulary;
};

// One request's parse state. Not thread-safe; one per sequence.
class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const GrammarConstraint> constraint);

  // allowed[token] = 1 for each token whose bytes can extend the text, 0 for the others (size: the vocabulary).
  // Throws Error when the grammar's caps on work are reached.
  void fill_mask(std::vector<uint8_t>& allowed);
  // Sets every token the grammar refuses to -inf; eos_ids only stay when the text is complete. Throws Error when
  // no token at all may follow (a dead end: the schema needs nesting past the depth cap).
  void apply_mask(std::span<float> scores, std::span<const int32_t> eos_ids);
  // Takes the chosen token's bytes; false (state unchanged) when the grammar refuses them.
  bool advance(int32_t token);
  bool advance_bytes(std::string_view bytes);
  // Whether the bytes could follow, leaving the state as it is.
  bool can_advance(std::string_view bytes);
  bool complete() const;  // the text so far is a whole sentence of the grammar
  bool finished() const;  // complete, and no byte may follow
  size_t cached_states() const { return sets_.size(); }

  // Bounds on what one request may hold (stack depth also bounds JSON nesting).
  static constexpr uint32_t kMaxStackDepth = 512;
  static constexpr size_t kMaxStacksPerState = 4096;
  static constexpr size_t kMaxExpansionSteps = 200000;  // per transition
  static constexpr size_t kCompactAtStates = 8192;       // caches start over past this many states
  static constexpr size_t kMaxStates = 65536;            // within one mask walk

 private:
  struct Node {
    uint32_t symbol;  // the next symbol to match at this level
    uint32_t parent;  // where to continue when this level's rule ends; 0: the start rule's end
    uint32_t depth;
  };
  struct State {
    std::vector<uint32_t> stacks;  // sorted node ids; 0 = the empty stack (the text is complete)
    std::unique_ptr<int32_t[]> next;  // per byte: the next state, kDead, or kUnknown; allocated on first use
  };
  static constexpr int32_t kDead = -1, kUnknown = -2;

  uint32_t intern_node(uint32_t symbol, uint32_t parent);
  void expand(uint32_t symbol, uint32_t parent, std::vector<uint32_t>& out, size_t& steps);
  uint32_t intern_state(std::vector<uint32_t>& stacks);
  int32_t step(uint32_t state, uint8_t byte);
  void reset_caches();

  std::shared_ptr<const GrammarConstraint> constraint_;
  const Grammar* grammar_;
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, uint32_t> node_index_;
  std::vector<State> sets_;
  std::unordered_map<std::string, uint32_t> set_index_;  // the stacks' bytes -> state
  uint32_t current_ = 0;
  std::vector<int32_t> walk_states_;  // per trie depth, during fill_mask
  std::vector<uint8_t> allowed_;
};

}  // namespace inferno::gen

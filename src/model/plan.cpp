#include "model/plan.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "util/error.hpp"

namespace inferno::model {

namespace {

// Bytes a device holds besides its layers.
uint64_t fixed_bytes(const PlanCosts& c, bool embedding, bool head) {
  uint64_t bytes = c.per_device_bytes;
  if (embedding) bytes += c.embedding_bytes;
  if (head) bytes += c.head_bytes + c.logits_bytes;
  if (embedding && head && c.tied) bytes -= c.tied_matrix_bytes;  // one matrix serves both
  return bytes;
}

}  // namespace

std::vector<uint32_t> auto_split(const PlanCosts& c, const std::vector<uint64_t>& available) {
  const size_t n = available.size();
  const uint32_t layers = uint32_t(c.layer_bytes.size());
  if (n == 0) throw Error("a split needs at least one device");
  std::vector<double> room(n);
  double total_room = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t fixed = fixed_bytes(c, i == 0, i + 1 == n);
    room[i] = available[i] > fixed ? double(available[i] - fixed) : 0.0;
    total_room += room[i];
  }
  std::vector<uint32_t> split(n, 0);
  if (total_room <= 0) {
    // Nothing has room: share the layers equally (the plan then says what does not fit).
    for (size_t i = 0; i < n; ++i) split[i] = uint32_t((uint64_t(layers) * (i + 1)) / n - (uint64_t(layers) * i) / n);
    return split;
  }
  // Boundaries at the cumulative share of the room, each layer weighted by its bytes and KV.
  std::vector<double> cost(layers);
  double total_cost = 0;
  for (uint32_t l = 0; l < layers; ++l) total_cost += cost[l] = double(c.layer_bytes[l] + c.kv_bytes_per_layer);
  double room_before = 0, cost_before = 0;
  uint32_t layer = 0;
  for (size_t i = 0; i < n; ++i) {
    room_before += room[i];
    const double target = i + 1 == n ? total_cost * 2 : total_cost * room_before / total_room;
    uint32_t count = 0;
    // Take a layer while the running cost stays nearer the target with it than without it.
    while (layer < layers && (cost_before + cost[layer] <= target ||
                              std::abs(cost_before + cost[layer] - target) < std::abs(cost_before - target))) {
      cost_before += cost[layer++];
      ++count;
    }
    split[i] = count;
  }
  return split;
}

std::vector<StagePlan> plan_stages(const PlanCosts& c, const std::vector<uint32_t>& split,
                                   const std::vector<uint64_t>& available) {
  if (split.size() != available.size())
    throw Error("--split gives " + std::to_string(split.size()) + " layer counts for " + std::to_string(available.size()) +
                " devices");
  uint64_t sum = 0;
  for (uint32_t n : split) sum += n;
  if (sum != c.layer_bytes.size())
    throw Error("--split " + split_text(split) + " places " + std::to_string(sum) + " layers; the model has " +
                std::to_string(c.layer_bytes.size()));
  std::vector<StagePlan> stages;
  uint32_t first = 0;
  for (size_t i = 0; i < split.size(); ++i) {
    StagePlan s;
    s.first = first;
    s.last = first + split[i];
    s.embedding = i == 0;
    s.head = i + 1 == split.size();
    s.available = available[i];
    for (uint32_t l = s.first; l < s.last; ++l) s.weight_bytes += c.layer_bytes[l];
    if (s.embedding) s.weight_bytes += c.embedding_bytes;
    if (s.head) s.weight_bytes += c.head_bytes;
    if (s.embedding && s.head && c.tied) s.weight_bytes -= c.tied_matrix_bytes;
    s.kv_bytes = uint64_t(split[i]) * c.kv_bytes_per_layer;
    s.activation_bytes = c.per_device_bytes + (s.head ? c.logits_bytes : 0);
    stages.push_back(s);
    first = s.last;
  }
  return stages;
}

bool all_fit(const std::vector<StagePlan>& stages) {
  return std::all_of(stages.begin(), stages.end(), [](const StagePlan& s) { return s.fits(); });
}

std::string split_text(const std::vector<uint32_t>& split) {
  std::string s;
  for (size_t i = 0; i < split.size(); ++i) s += (i ? "," : "") + std::to_string(split[i]);
  return s;
}

namespace {

// Comma-separated items, each through `parse`.
template <typename F>
void for_each_item(const std::string& text, const char* flag, F&& parse) {
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (item.empty()) throw Error(std::string(flag) + " '" + text + "': an empty item");
    parse(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
}

}  // namespace

std::vector<uint32_t> parse_split(const std::string& text) {
  std::vector<uint32_t> split;
  if (text == "auto" || text.empty()) return split;
  for_each_item(text, "--split", [&](const std::string& item) {
    if (item.size() > 9 || item.find_first_not_of("0123456789") != std::string::npos)
      throw Error("--split '" + text + "': '" + item + "' is not a layer count (give auto or N1,N2,...)");
    split.push_back(uint32_t(std::stoul(item)));
  });
  return split;
}

std::vector<uint64_t> parse_memory_sizes(const std::string& text) {
  std::vector<uint64_t> sizes;
  for_each_item(text, "--device-memory", [&](const std::string& item) {
    size_t digits = 0;
    while (digits < item.size() && (std::isdigit(static_cast<unsigned char>(item[digits])) || item[digits] == '.')) ++digits;
    const std::string number = item.substr(0, digits), unit = item.substr(digits);
    double value = 0;
    try {
      size_t used = 0;
      value = std::stod(number, &used);
      if (used != number.size()) value = -1;
    } catch (const std::exception&) {
      value = -1;
    }
    int shift = -1;
    if (unit.empty() || unit == "B") shift = 0;
    else if (unit == "K" || unit == "KiB") shift = 10;
    else if (unit == "M" || unit == "MiB") shift = 20;
    else if (unit == "G" || unit == "GiB") shift = 30;
    else if (unit == "T" || unit == "TiB") shift = 40;
    if (value < 0 || shift < 0 || !std::isfinite(value) || value * double(1ull << shift) > 1e18)
      throw Error("--device-memory '" + text + "': '" + item + "' is not a size (e.g. 80G, 24576M)");
    sizes.push_back(uint64_t(value * double(1ull << shift)));
  });
  return sizes;
}

}  // namespace inferno::model

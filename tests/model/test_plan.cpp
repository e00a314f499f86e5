// The split planner's arithmetic: layers per device, bytes per device, what fits, and its flags' parsing.
#include <numeric>

#include "model/plan.hpp"
#include "test_support.hpp"

using namespace inferno;
using namespace inferno::model;

namespace {

PlanCosts uniform(uint32_t layers, uint64_t layer_bytes) {
  PlanCosts c;
  c.layer_bytes.assign(layers, layer_bytes);
  c.embedding_bytes = 1000;
  c.head_bytes = 1100;
  c.kv_bytes_per_layer = 10;
  c.per_device_bytes = 50;
  c.logits_bytes = 70;
  return c;
}

uint32_t sum(const std::vector<uint32_t>& v) { return std::accumulate(v.begin(), v.end(), 0u); }

}  // namespace

TEST_CASE("plan_stages: contiguous layers, embedding first, head last, each device its own bytes") {
  const PlanCosts c = uniform(6, 100);
  const auto stages = plan_stages(c, {2, 0, 4}, {5000, 5000, 5000});
  REQUIRE(stages.size() == 3);
  CHECK(stages[0].first == 0);
  CHECK(stages[0].last == 2);
  CHECK(stages[1].first == 2);
  CHECK(stages[1].last == 2);  // a device with no layers still passes the hidden state on
  CHECK(stages[2].first == 2);
  CHECK(stages[2].last == 6);
  CHECK((stages[0].embedding && !stages[0].head));
  CHECK((!stages[1].embedding && !stages[1].head));
  CHECK((!stages[2].embedding && stages[2].head));
  CHECK(stages[0].weight_bytes == 2 * 100 + 1000);
  CHECK(stages[1].weight_bytes == 0);
  CHECK(stages[2].weight_bytes == 4 * 100 + 1100);
  CHECK(stages[0].kv_bytes == 20);
  CHECK(stages[2].kv_bytes == 40);
  CHECK(stages[0].activation_bytes == 50);
  CHECK(stages[2].activation_bytes == 50 + 70);
  CHECK(stages[2].total() == 400 + 1100 + 40 + 120);
  CHECK(all_fit(stages));
  // One byte short on the last device: that device, and only it, does not fit.
  const auto tight = plan_stages(c, {2, 0, 4}, {5000, 5000, stages[2].total() - 1});
  CHECK(tight[0].fits());
  CHECK(!tight[2].fits());
  CHECK(!all_fit(tight));
  CHECK_THROWS_WITH_AS(plan_stages(c, {2, 2}, {1, 1}), "--split 2,2 places 4 layers; the model has 6", Error);
  CHECK_THROWS_AS(plan_stages(c, {6}, {1, 1}), Error);
}

TEST_CASE("a tied lm_head shares the embedding's matrix on one device, and is a copy on another") {
  PlanCosts c = uniform(2, 100);
  c.tied = true;
  c.tied_matrix_bytes = 1000;
  c.head_bytes = 1000 + 8;  // the matrix + the final norm
  CHECK(plan_stages(c, {2}, {1 << 20})[0].weight_bytes == 200 + 1000 + 8);
  const auto two = plan_stages(c, {1, 1}, {1 << 20, 1 << 20});
  CHECK(two[0].weight_bytes == 100 + 1000);
  CHECK(two[1].weight_bytes == 100 + 1008);
}

TEST_CASE("auto_split: layers in proportion to each device's room; sums to the layer count") {
  const PlanCosts c = uniform(80, 1000);
  // Equal devices: halves (the fixed parts of the first and last device differ by 100 bytes only).
  CHECK(auto_split(c, {100000, 100000}) == std::vector<uint32_t>{40, 40});
  // A device with three times the room takes three times the layers.
  const uint64_t fixed0 = 50 + 1000, fixed1 = 50 + 1100 + 70;
  const auto uneven = auto_split(c, {fixed0 + 20200, fixed1 + 60600});
  CHECK(uneven == std::vector<uint32_t>{20, 60});
  CHECK(all_fit(plan_stages(c, uneven, {fixed0 + 20200, fixed1 + 60600})));
  for (size_t n = 1; n <= 5; ++n) {
    const std::vector<uint64_t> sizes(n, 30000);
    CHECK(sum(auto_split(c, sizes)) == 80);
  }
  // No room anywhere: still a split of every layer (which the plan then reports as not fitting).
  const auto none = auto_split(c, {10, 10, 10});
  CHECK(sum(none) == 80);
  // A device with no room gets no layers.
  CHECK(auto_split(c, {fixed0 + 40000, 5, fixed1 + 40000})[1] == 0);
}

TEST_CASE("--split and --device-memory parse strictly") {
  CHECK(parse_split("auto").empty());
  CHECK(parse_split("40,40") == std::vector<uint32_t>{40, 40});
  CHECK(parse_split("0,3") == std::vector<uint32_t>{0, 3});
  for (const char* bad : {"4,", ",4", "4,,4", "a", "-1,2", "1.5", "99999999999"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_split(bad), Error);
  }
  CHECK(parse_memory_sizes("80G,48G") == std::vector<uint64_t>{80ull << 30, 48ull << 30});
  CHECK(parse_memory_sizes("1.5G") == std::vector<uint64_t>{3ull << 29});
  CHECK(parse_memory_sizes("24576M,512K,1000") == std::vector<uint64_t>{24ull << 30, 512ull << 10, 1000});
  CHECK(parse_memory_sizes("1T") == std::vector<uint64_t>{1ull << 40});
  for (const char* bad : {"", "80X", "G", "80G,", "-5G", "1e30", "9999999999T"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_memory_sizes(bad), Error);
  }
}

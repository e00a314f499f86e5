// The bandwidth roofline (`inferno bench`): what it reads and that it reads all of it.
#include "kernels/bandwidth.hpp"
#include "ops_support.hpp"

using namespace inferno;
using namespace inferno::testing;

TEST_CASE("the bandwidth measurement reads past one binding's range, in whole buffers") {
  ValidationGuard guard;
  vk::Device& d = test_device();
  const auto& caps = d.caps();
  const uint64_t per_buffer = std::min(caps.max_storage_buffer_range, caps.max_memory_allocation_size) / 16 * 16;
  // Two bindings' worth and a bit: the bit is dropped (whole buffers), both buffers are read. One binding alone
  // (128 MiB on lavapipe) would partly sit in a large last-level cache.
  const uint64_t asked = 2 * per_buffer + 12345;
  REQUIRE_MESSAGE(caps.budget_bytes / 8 >= asked, "the device is too small for this test");
  const kernels::BandwidthResult r = kernels::measure_read_bandwidth(d, asked, 1);
  CHECK(r.bytes_read == 2 * per_buffer);
  CHECK(r.gpu_timed == (caps.timestamp_period_ns > 0));
  CHECK(r.bytes_per_second > 0);

  // Less than one binding: that much, rounded down to 16 bytes.
  const kernels::BandwidthResult small = kernels::measure_read_bandwidth(d, (1 << 20) + 7, 1);
  CHECK(small.bytes_read == (1 << 20));
  CHECK(small.bytes_per_second > 0);
}

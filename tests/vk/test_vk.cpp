#include <algorithm>
#include <cmath>
#include <cstring>

#include "gpu_support.hpp"
#include "io/io_test_files.hpp"
#include "kernels/fill.hpp"
#include "kernels/shader_registry.hpp"
#include "vk/recorder.hpp"

using namespace inferno;
using namespace inferno::testing;

TEST_CASE("a device is found and its capabilities are probed") {
  vk::Device& d = test_device();
  const auto& c = d.caps();
  CHECK(!c.name.empty());
  CHECK(c.subgroup_size > 0);
  CHECK(c.max_storage_buffer_range > 0);
  CHECK(c.device_local_bytes > 0);
  CHECK(c.max_push_constants >= vk::kPushConstantBytes);
  auto listing = vk::list_devices(d.instance());
  CHECK(listing.chosen >= 0);
  CHECK(listing.devices.size() >= 1);
}

TEST_CASE("a missing device index is refused by name") {
  auto instance = std::make_shared<vk::Instance>();
  CHECK_THROWS_WITH_AS(vk::Device(instance, 99), doctest::Contains("--device 99"), inferno::Error);
}

TEST_CASE("a buffer larger than the device's largest allocation is an OutOfDeviceMemory naming it") {
  vk::Device& d = test_device();
  const uint64_t held = d.allocated_bytes();
  for (auto kind : {vk::MemoryKind::Device, vk::MemoryKind::Staging}) {
    CHECK_THROWS_WITH_AS(vk::Buffer(d, d.caps().max_memory_allocation_size + 1, kind, "too big"),
                         doctest::Contains("'too big'"), inferno::OutOfDeviceMemory);
  }
  CHECK(d.allocated_bytes() == held);
}

TEST_CASE("buffers round-trip through upload and download at odd sizes and offsets") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(2);
  for (uint64_t bytes : {1ull, 13ull, 4099ull, (33ull << 20) + 7}) {  // the last one exceeds one staging chunk
    std::vector<uint8_t> data(bytes);
    for (auto& b : data) b = uint8_t(rng.integer(0, 255));
    vk::Buffer buf(test_device(), bytes + 5, vk::MemoryKind::Device, "roundtrip");
    vk::upload(test_device(), buf, 5, data.data(), bytes);
    std::vector<uint8_t> back(bytes);
    vk::download(test_device(), buf, 5, back.data(), bytes);
    CHECK(back == data);
  }
}

TEST_CASE("uploads through the staging ring land whole, after the compute work before them, at any size") {
  // lavapipe's memory is all host-visible, so upload() takes the mapping there: upload_staged runs the GPUs' path.
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(3);
  vk::Device& d = test_device();
  const uint64_t memory_before = d.allocated_bytes(), submissions_before = d.submissions();
  const uint64_t slot = vk::StagingRing::kSlotBytes;
  uint64_t pieces = 0;
  for (uint64_t bytes : {uint64_t(1), uint64_t(4099), slot, 2 * slot + 3, 3 * slot + 11}) {  // one slot, both, both again
    std::vector<uint8_t> data(bytes);
    for (auto& b : data) b = uint8_t(rng.integer(0, 255));
    vk::Buffer buf(d, bytes + 8, vk::MemoryKind::Device, "staged");
    // A fill recorded before: the upload's copies must come after it (its barrier), not be overwritten by it.
    vk::Recorder rec(d);
    rec.begin();
    kernels::record_fill(d, rec, buf, 0, (bytes + 8) / 4, 1.0f);
    rec.submit_and_wait();
    vk::upload_staged(d, buf, 3, data.data(), bytes);
    std::vector<uint8_t> back(bytes + 3);
    vk::download(d, buf, 0, back.data(), bytes + 3);
    CHECK(std::equal(data.begin(), data.end(), back.begin() + 3));
    const float one = 1.0f;
    CHECK(std::memcmp(back.data(), &one, 3) == 0);  // the bytes before the offset are the fill's
    pieces += (bytes + slot - 1) / slot;
  }
  CHECK(d.submissions() - submissions_before == pieces + 5);  // one copy a piece, one fill a size
  // The ring is the device's own: not in the account that the leak checks follow.
  CHECK(d.allocated_bytes() == memory_before);
  vk::Buffer small(d, 16, vk::MemoryKind::Device, "small");
  CHECK_THROWS_WITH_AS(vk::upload_staged(d, small, 8, std::vector<uint8_t>(9).data(), 9), doctest::Contains("small"),
                       inferno::Error);
}

TEST_CASE("out-of-range copies and absurd allocations give clear errors") {
  vk::Buffer buf(test_device(), 64, vk::MemoryKind::Device, "small");
  std::vector<uint8_t> data(100);
  CHECK_THROWS_WITH_AS(vk::upload(test_device(), buf, 0, data.data(), 100), doctest::Contains("small"), inferno::Error);
  CHECK_THROWS_WITH_AS(vk::Buffer(test_device(), uint64_t(1) << 50, vk::MemoryKind::Device, "huge"),
                       doctest::Contains("huge"), inferno::Error);
}

TEST_CASE("the recorder records several dispatches, inserts barriers only where the data flow needs them") {
  ValidationGuard guard;
  vk::Device& d = test_device();
  vk::Buffer a(d, 1000 * 4, vk::MemoryKind::Device, "a"), b(d, 1000 * 4, vk::MemoryKind::Device, "b");
  vk::Recorder rec(d, true);
  rec.begin();
  kernels::record_fill(d, rec, a, 0, 1000, 1.5f);
  kernels::record_fill(d, rec, b, 0, 1000, 2.5f);  // independent of the first: no barrier
  CHECK(rec.barrier_count() == 0);
  kernels::record_fill(d, rec, a, 10, 20, -3.f);  // writes a again: write-after-write needs a barrier
  CHECK(rec.barrier_count() == 1);
  const uint64_t submits = d.submissions();
  rec.submit_and_wait();
  CHECK(d.submissions() == submits + 1);
  auto va = read_back<float>(a, 1000), vb = read_back<float>(b, 1000);
  for (int i = 0; i < 1000; ++i) {
    CHECK(vb[i] == 2.5f);
    CHECK(va[i] == ((i >= 10 && i < 30) ? -3.f : 1.5f));
  }
  CHECK(rec.dispatch_count() == 3);
  if (d.caps().timestamp_period_ns > 0) {
    auto t = rec.timings();
    CHECK(t.size() == 3);
    CHECK(t[0].label == "fill_f32");
  }
  // Replay: the same recording again, unchanged.
  rec.submit_and_wait();
  CHECK(d.submissions() == submits + 2);
}

TEST_CASE("bindings larger than maxStorageBufferRange are refused by name") {
  vk::Device& d = test_device();
  const uint64_t limit = d.caps().max_storage_buffer_range;
  if (limit >= (uint64_t(1) << 31)) return;  // a device whose range covers any allocation: nothing to refuse
  vk::Buffer big(d, limit + 64, vk::MemoryKind::Device, "bigbuffer");
  vk::Recorder rec(d);
  rec.begin();
  CHECK_THROWS_WITH_AS(kernels::record_fill(d, rec, big, 0, (limit + 64) / 4, 0.f), doctest::Contains("bigbuffer"), inferno::Error);
}

TEST_CASE("SPIR-V binding count is read from the module") {
  const auto* fill = kernels::find_shader("fill_f32");
  REQUIRE(fill);
  CHECK(vk::spirv_binding_count({fill->words, fill->word_count}) == 1);
  CHECK(kernels::find_shader("no_such_kernel") == nullptr);
  CHECK_THROWS_WITH_AS(kernels::pipeline(test_device(), "no_such_kernel"), doctest::Contains("no_such_kernel"), inferno::Error);
}

TEST_CASE("a default run prefers a discrete GPU, then integrated, virtual, CPU, among Vulkan 1.2 devices") {
  auto device = [](const char* type, uint32_t api = VK_API_VERSION_1_3) {
    vk::Capabilities c;
    c.type = type;
    c.name = type;
    c.api_version = api;
    return c;
  };
  CHECK(vk::device_preference(device("discrete")) > vk::device_preference(device("integrated")));
  CHECK(vk::device_preference(device("integrated")) > vk::device_preference(device("virtual")));
  CHECK(vk::device_preference(device("virtual")) > vk::device_preference(device("cpu")));
  CHECK(vk::device_preference(device("cpu")) > vk::device_preference(device("other")));

  // Every order of the four kinds: the discrete one is chosen wherever it sits; without it the integrated one, ...
  std::vector<const char*> kinds = {"cpu", "discrete", "integrated", "virtual"};  // sorted, for next_permutation
  do {
    std::vector<vk::Capabilities> devices;
    for (const char* k : kinds) devices.push_back(device(k));
    for (const char* want : {"discrete", "integrated", "virtual", "cpu"}) {
      CAPTURE(want);
      const int chosen = vk::preferred_device(devices);
      REQUIRE(chosen >= 0);
      CHECK(devices[size_t(chosen)].type == want);
      devices.erase(devices.begin() + chosen);
    }
    CHECK(vk::preferred_device(devices) == -1);  // none left
  } while (std::next_permutation(kinds.begin(), kinds.end(), [](const char* a, const char* b) { return std::strcmp(a, b) < 0; }));

  // A device without Vulkan 1.2 is passed over however it ranks; of equals the first is taken.
  CHECK(vk::preferred_device({device("cpu"), device("discrete", VK_API_VERSION_1_1)}) == 0);
  CHECK(vk::preferred_device({device("discrete", VK_API_VERSION_1_0)}) == -1);
  CHECK(vk::preferred_device({device("integrated"), device("cpu"), device("integrated")}) == 0);
  CHECK(vk::preferred_device({}) == -1);
}

TEST_CASE("timeline semaphores: a submission waits for a value the host signals and signals its own; a late value is an error naming the device") {
  ValidationGuard guard;
  vk::Device& d = test_device();
  REQUIRE(d.caps().timeline_semaphore);  // Vulkan 1.2 core; lavapipe has it
  vk::TimelineSemaphore gate(d), done(d);
  CHECK(gate.value() == 0);
  std::vector<uint32_t> values(256);
  for (uint32_t i = 0; i < values.size(); ++i) values[i] = i * 7 + 1;
  vk::Buffer src(d, values.size() * 4, vk::MemoryKind::Staging, "src"), dst(d, values.size() * 4, vk::MemoryKind::Readback, "dst");
  std::memcpy(src.mapped(), values.data(), values.size() * 4);
  std::memset(dst.mapped(), 0, values.size() * 4);
  vk::Recorder rec(d);
  rec.begin();
  rec.copy(src, 0, dst, 0, values.size() * 4);
  rec.barrier_with_host();
  for (uint64_t value : {1, 2}) {
    CAPTURE(value);
    const vk::SemaphoreValue wait{&gate, value}, signal{&done, value};
    rec.submit(std::span(&wait, 1), std::span(&signal, 1));
    // Not run before the host lets it: its value is not reached, and the wait for it runs out, naming the device.
    const std::string message = error_message([&] { done.wait(value, 20'000'000); });
    CHECK(message.find(d.label()) != std::string::npos);
    CHECK(message.find("did not reach timeline value " + std::to_string(value)) != std::string::npos);
    CHECK(done.value() == value - 1);
    CHECK(std::memcmp(dst.mapped(), src.mapped(), values.size() * 4) != 0);
    gate.signal(value);
    done.wait(value);
    CHECK(done.value() == value);
    CHECK(std::memcmp(dst.mapped(), src.mapped(), values.size() * 4) == 0);
    rec.wait();
    // The replay copies what the source holds then.
    for (auto& v : values) v += 1000;
    std::memcpy(src.mapped(), values.data(), values.size() * 4);
  }
  if (!d.caps().external_timeline_fd)
    CHECK_THROWS_WITH_AS(vk::TimelineSemaphore(d, 0, true), doctest::Contains("cannot export"), Error);
}

// A submission that waited for a value the host signalled later runs on Mesa's queue thread (lavapipe), which
// releases its timeline points after the fence is signalled: semaphores freed right after the fence wait crashed that
// thread, until a semaphore waited for its queue to be idle first: without that wait this case crashes within its
// first few hundred rounds on lavapipe.
TEST_CASE("timeline semaphores destroyed right after their submission's fence, many times over") {
  ValidationGuard guard;
  vk::Device& d = test_device();
  REQUIRE(d.caps().timeline_semaphore);
  vk::Buffer src(d, 64, vk::MemoryKind::Device, "src"), dst(d, 64, vk::MemoryKind::Device, "dst");
  vk::Recorder first(d), second(d);
  for (int round = 0; round < 2000; ++round) {
    // As a split model's step: the host lets the first stage go; the second waits for the first on the queue; the
    // host waits for the second's value, then for both fences.
    vk::TimelineSemaphore gate(d), link(d), done(d);
    first.begin();
    first.copy(src, 0, dst, 0, 64);
    second.begin();
    second.copy(dst, 0, src, 0, 64);
    const vk::SemaphoreValue gate_wait{&gate, 1}, link_signal{&link, 1}, link_wait{&link, 1}, done_signal{&done, 1};
    first.submit(std::span(&gate_wait, 1), std::span(&link_signal, 1));
    second.submit(std::span(&link_wait, 1), std::span(&done_signal, 1));
    gate.signal(1);
    done.wait(1);
    first.wait();
    second.wait();  // both batches done; the semaphores go now
  }
  CHECK(d.live_allocations() >= 2);
}

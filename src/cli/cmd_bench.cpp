// `inferno bench`: prefill and decode speed against the device's measured read bandwidth (the decode roofline) and
// its measured f32 multiply-add rate (the prefill roofline: a matrix·matrix step does K multiply-adds per weight
// read), with per-kernel breakdowns of a decode step and of the prefill from GPU timestamps.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "cli/commands.hpp"
#include "util/json_writer.hpp"

namespace inferno::cli {

namespace {

struct BenchArgs {
  ModelArgs model;
  uint32_t prompt_tokens = 512, gen_tokens = 128, batch = 1, repeats = 3;
  bool json = false;
  std::string concurrency;  // "1,4,8,16": the load test instead of the single-stream measurement
  uint32_t batch_tokens = 512;
  std::string kv_budget;  // load test: the KV pool (--kv-budget PCT% | SIZE)
};

// Multiply-adds one token costs at `context` earlier positions: every projection (each weight once), and attention's
// q·k and p·v over the context. The lm_head is counted apart: prefill runs it for the last token only.
double fma_per_token(const ModelInfo& info, double context) {
  const double q = double(info.heads) * info.head_dim, kv = double(info.kv_heads) * info.head_dim;
  const double projections = info.hidden_size * (q + 2 * kv) + q * info.hidden_size +
                             3.0 * info.hidden_size * info.intermediate_size;
  return info.layers * (projections + 2 * q * context);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5))];
}

// The load test: at each level C, C clients each send `repeats` requests of -p random prompt tokens and -n new tokens
// one after another (a client sends its next request when the previous one ends) to one in-process engine with
// --parallel C. Reports aggregate output tok/s, time to first token and time per output token.
int run_concurrency(const BenchArgs& a) {
  const auto levels = parse_ids(a.concurrency, "--concurrency");
  const KvBudget budget = a.kv_budget.empty() ? KvBudget{} : parse_kv_budget_flag(a.kv_budget);
  for (int32_t c : levels)
    if (c < 1 || c > 1024) throw UsageError("bench: --concurrency levels must be from 1 to 1024");
  ModelArgs margs = a.model;
  margs.quiet = margs.quiet || a.json;
  Model model = load_model(margs);
  const ModelInfo& info = model.info();
  SessionOptions so = session_options(margs);
  std::mt19937 rng(1234);
  struct Level {
    int clients;
    double tok_per_s, ttft_median, ttft_p95, tpot_median;
  };
  std::vector<Level> rows;
  for (int32_t clients : levels) {
    EngineOptions eo;
    eo.parallel = uint32_t(clients);
    eo.ctx = so.ctx ? so.ctx : a.prompt_tokens + a.gen_tokens;
    eo.kv_dtype = so.kv_dtype;
    eo.batch_tokens = a.batch_tokens;
    eo.kv_budget_bytes = budget.bytes;
    eo.kv_budget_share = budget.share;
    eo.prefix_cache = false;  // random prompts share nothing; this measures batching alone
    Engine engine(model, eo);
    GenerateOptions options;
    options.max_new_tokens = int(a.gen_tokens);
    options.ignore_eos = true;
    auto prompt = [&] {
      std::vector<int32_t> p(a.prompt_tokens);
      for (auto& id : p) id = int32_t(rng() % info.vocab_size);
      return p;
    };
    engine.generate(prompt(), options);  // warm-up: pipelines compiled, memory touched
    std::vector<std::vector<int32_t>> prompts(size_t(clients) * a.repeats);
    for (auto& p : prompts) p = prompt();
    std::mutex mutex;
    std::vector<double> ttft, tpot;
    uint64_t generated = 0;
    std::string failure;
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (int32_t c = 0; c < clients; ++c)
      threads.emplace_back([&, c] {
        for (uint32_t r = 0; r < a.repeats; ++r) {
          const EngineResult res = engine.generate(prompts[size_t(c) * a.repeats + r], options);
          std::lock_guard lock(mutex);
          if (!res.error.empty()) failure = res.error;
          generated += res.tokens.size();
          ttft.push_back(res.first_token_seconds);
          if (res.tokens.size() > 1) tpot.push_back((res.seconds - res.first_token_seconds) / double(res.tokens.size() - 1));
        }
      });
    for (auto& t : threads) t.join();
    if (!failure.empty()) throw Error("bench: " + failure);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rows.push_back({clients, double(generated) / wall, median(ttft), percentile(ttft, 0.95), median(tpot)});
  }
  if (a.json) {
    JsonWriter j;
    j.begin_object();
    j.field("device", model.device().name).field("model", info.path.string());
    j.field("prompt_tokens", a.prompt_tokens).field("gen_tokens", a.gen_tokens).field("requests_per_client", a.repeats);
    j.key("levels").begin_array();
    for (const Level& l : rows)
      j.begin_object().field("concurrency", l.clients).field("tok_per_s", l.tok_per_s).field("ttft_median_s", l.ttft_median)
          .field("ttft_p95_s", l.ttft_p95).field("tpot_median_s", l.tpot_median).end_object();
    j.end_array();
    j.end_object();
    std::printf("%s\n", j.str().c_str());
    return 0;
  }
  std::printf("device: %s\nmodel: %s; %u prompt + %u new tokens a request, %u requests a client\n",
              model.device().name.c_str(), info.path.string().c_str(), a.prompt_tokens, a.gen_tokens, a.repeats);
  std::printf("%11s  %10s  %11s  %11s  %10s  %9s\n", "concurrency", "tok/s", "TTFT med s", "TTFT p95 s", "TPOT ms",
              "vs 1");
  for (const Level& l : rows)
    std::printf("%11d  %10.1f  %11.3f  %11.3f  %10.1f  %8.2fx\n", l.clients, l.tok_per_s, l.ttft_median, l.ttft_p95,
                1e3 * l.tpot_median, l.tok_per_s / rows.front().tok_per_s);
  return 0;
}

int run_bench(const BenchArgs& a) {
  if (!a.concurrency.empty()) return run_concurrency(a);
  if (!a.kv_budget.empty()) throw UsageError("bench: --kv-budget sizes the load test's KV pool: give --concurrency too");
  if (a.gen_tokens < 2) throw UsageError("bench: -n must be at least 2 (decode speed needs two tokens)");
  if (a.prompt_tokens < 1) throw UsageError("bench: -p must be at least 1");
  ModelArgs margs = a.model;
  margs.quiet = margs.quiet || a.json;
  // Loading: weights from the (memory-mapped) files to the device; from the page cache when they were read before.
  const auto load_start = std::chrono::steady_clock::now();
  Model model = load_model(margs);
  const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  const ModelInfo& info = model.info();
  const Bandwidth bw = measure_bandwidth(model);
  const FmaRate fma = measure_fma_rate(model);

  // Random prompt ids; each repeat changes the first token so nothing is reused from the cache.
  std::mt19937 rng(1234);
  std::vector<int32_t> prompt(a.prompt_tokens);
  for (auto& id : prompt) id = int32_t(rng() % info.vocab_size);
  GenerateOptions options;
  options.max_new_tokens = int(a.gen_tokens);
  options.ignore_eos = true;

  SessionOptions so = session_options(margs, a.batch);
  if (!so.ctx) so.ctx = a.prompt_tokens + a.gen_tokens;
  std::vector<double> prefill, decode;
  KvDtype kv = KvDtype::Auto;
  double first_token_seconds = 0;  // load + the first prompt's prefill: what a user waits for the first token
  {
    Session session(model, so);
    auto run = [&](uint32_t repeat) {
      prompt[0] = int32_t(repeat % info.vocab_size);
      if (a.batch == 1) session.generate(prompt, options);
      else session.generate_batch(std::vector<std::vector<int32_t>>(a.batch, prompt), options);
      const auto& s = session.stats();
      prefill.push_back(double(a.prompt_tokens) * a.batch / s.prefill_seconds);
      decode.push_back(double(s.new_tokens - 1) * a.batch / s.decode_seconds);
    };
    run(0);  // warm-up: pipelines compiled, memory touched
    first_token_seconds = load_seconds + session.stats().prefill_seconds;
    prefill.clear();
    decode.clear();
    for (uint32_t r = 1; r <= a.repeats; ++r) run(r);
    kv = session.kv_dtype();
  }
  // Short runs with GPU timestamps for the per-kernel breakdowns: the last recording of a one-token generation is the
  // prefill, of a two-token one a decode step.
  struct Breakdown {
    std::vector<std::pair<double, std::string>> shares;  // percent of the step's kernel time, largest first
    double total_ns = 0;
    std::vector<DeviceStepTime> devices;  // each device's part of the step
    double transfer_host_seconds = 0;     // the step's host copies of the hidden state between devices
    TransferStats transfers;              // how the boundaries were crossed in the step
  };
  auto breakdown = [&](int new_tokens) {
    SessionOptions ts = so;
    ts.timestamps = true;
    Session session(model, ts);
    GenerateOptions short_run = options;
    short_run.max_new_tokens = new_tokens;
    if (a.batch == 1) session.generate(prompt, short_run);
    else session.generate_batch(std::vector<std::vector<int32_t>>(a.batch, prompt), short_run);
    std::map<std::string, double> kernel_ns;
    Breakdown b;
    for (const auto& t : session.last_kernel_times()) {
      kernel_ns[t.name] += t.ns;
      b.total_ns += t.ns;
    }
    for (const auto& [name, ns] : kernel_ns) b.shares.push_back({b.total_ns > 0 ? 100.0 * ns / b.total_ns : 0, name});
    std::sort(b.shares.rbegin(), b.shares.rend());
    b.devices = session.last_device_times();
    b.transfers = session.transfers();
    b.transfer_host_seconds = b.transfers.last_step_host_copy_seconds;
    return b;
  };
  const Breakdown prefill_kernels = breakdown(1), decode_kernels = breakdown(2);
  const auto& shares = decode_kernels.shares;
  const double total_ns = decode_kernels.total_ns;

  // Bytes one decode step reads: every weight once, plus the KV cache at the average context of the decode.
  const double kv_bytes = kv == KvDtype::F32 ? 4 : kv == KvDtype::Q8 ? 36.0 / 32 : 2;  // a value, scales included
  const double avg_ctx = a.prompt_tokens + a.gen_tokens / 2.0;
  const double kv_read = 2.0 * info.layers * info.kv_heads * info.head_dim * kv_bytes * avg_ctx * a.batch;
  const double bytes_per_step = double(info.weight_bytes) + kv_read;
  const double decode_tps = median(decode), prefill_tps = median(prefill);
  const double gbps = decode_tps / a.batch * bytes_per_step / 1e9;
  const double bandwidth_gbps = bw.bytes_per_second / 1e9;
  const double roofline_pct = bandwidth_gbps > 0 ? 100.0 * gbps / bandwidth_gbps : 0;
  // Compute: the prefill's multiply-adds (a prompt of P tokens sees P/2 earlier positions on average, plus one lm_head
  // row a sequence), and a decode step's (every sequence one token at the decode's average context, and its lm_head).
  const double head_fma = double(info.vocab_size) * info.hidden_size;
  const double prefill_fma_per_token =
      fma_per_token(info, (a.prompt_tokens - 1) / 2.0) + head_fma / a.prompt_tokens;
  const double decode_fma_per_token = fma_per_token(info, avg_ctx) + head_fma;
  const double prefill_gfma = prefill_tps * prefill_fma_per_token / 1e9;
  const double decode_gfma = decode_tps * decode_fma_per_token / 1e9;
  const double fma_gps = fma.fma_per_second / 1e9;
  const double prefill_compute_pct = fma_gps > 0 ? 100.0 * prefill_gfma / fma_gps : 0;
  const double decode_compute_pct = fma_gps > 0 ? 100.0 * decode_gfma / fma_gps : 0;
  // A split model: each device's part of a decode step, and the hidden state's crossing of each boundary per token
  // (device copies out of one device and into the next, and the host's copies between their mapped buffers).
  const std::vector<ModelStage> stages = model.stages();
  const size_t boundaries = stages.size() - 1;
  double transfer_device_ns = 0;
  for (const DeviceStepTime& d : decode_kernels.devices) transfer_device_ns += d.transfer_device_ns;
  const double transfer_ms_per_token = (transfer_device_ns / 1e6 + decode_kernels.transfer_host_seconds * 1e3) / a.batch;
  const uint64_t transfer_bytes_per_token = uint64_t(info.hidden_size) * 4;  // f32 hidden state, each boundary

  if (a.json) {
    JsonWriter j;
    j.begin_object();
    j.field("device", model.device().name).field("model", info.path.string()).field("bandwidth_gb_per_s", bandwidth_gbps);
    j.field("weight_bytes", info.weight_bytes).field("batch", a.batch).field("kv_dtype", kv_dtype_name(kv));
    j.field("fma_rate_gfma_per_s", fma_gps);
    j.key("load").begin_object().field("seconds", load_seconds).field("gb_per_s", info.weight_bytes / 1e9 / load_seconds);
    j.field("first_token_seconds", first_token_seconds).end_object();
    j.key("prefill").begin_object().field("tokens", a.prompt_tokens).field("tok_per_s", prefill_tps);
    j.field("gfma_per_s", prefill_gfma).field("compute_pct", prefill_compute_pct).end_object();
    j.key("decode").begin_object().field("tokens", a.gen_tokens).field("tok_per_s", decode_tps).field("gb_per_s", gbps);
    j.field("roofline_pct", roofline_pct).field("roofline_tok_per_s", bw.bytes_per_second / bytes_per_step * a.batch);
    j.field("gfma_per_s", decode_gfma).field("compute_pct", decode_compute_pct);
    j.end_object();
    j.field("step_ms", 1e3 * a.batch / decode_tps).field("kernel_ms", total_ns / 1e6);
    j.key("kernels").begin_array();
    for (const auto& [share, name] : shares) j.begin_object().field("name", name).field("share_pct", share).end_object();
    j.end_array();
    j.key("devices").begin_array();
    for (size_t i = 0; i < stages.size(); ++i) {
      const ModelStage& st = stages[i];
      j.begin_object().field("index", st.device.index).field("name", st.device.name);
      j.field("first_layer", st.first_layer).field("last_layer", st.last_layer).field("weight_bytes", st.weight_bytes);
      if (i < decode_kernels.devices.size()) {
        const DeviceStepTime& d = decode_kernels.devices[i];
        j.field("decode_kernel_ms", d.kernel_ns / 1e6).field("decode_transfer_ms", d.transfer_device_ns / 1e6);
        j.field("decode_wall_ms", d.wall_ns / 1e6);
      }
      j.end_object();
    }
    j.end_array();
    j.key("transfer").begin_object().field("boundaries", uint64_t(boundaries));
    j.field("bytes_per_token_per_boundary", boundaries ? transfer_bytes_per_token : 0);
    j.field("ms_per_token", boundaries ? transfer_ms_per_token : 0.0);
    j.key("links").begin_array();
    for (const std::string& link : decode_kernels.transfers.boundaries) j.value(link);
    j.end_array();
    j.field("decode_host_waits", uint64_t(decode_kernels.transfers.last_step_host_waits));
    j.field("decode_host_copy_bytes", decode_kernels.transfers.last_step_host_copy_bytes).end_object();
    j.field("prefill_kernel_ms", prefill_kernels.total_ns / 1e6);
    j.key("prefill_kernels").begin_array();
    for (const auto& [share, name] : prefill_kernels.shares)
      j.begin_object().field("name", name).field("share_pct", share).end_object();
    j.end_array();
    j.end_object();
    std::printf("%s\n", j.str().c_str());
    return 0;
  }
  std::printf("device: %s\n", model.device().name.c_str());
  std::printf("model: %s (%.1f MB of weights), KV %s, batch %u\n", info.path.string().c_str(), info.weight_bytes / 1e6,
              kv_dtype_name(kv), a.batch);
  std::printf("load: %.2f s, %.2f GB/s of weights; first token %.2f s after loading began\n", load_seconds,
              info.weight_bytes / 1e9 / load_seconds, first_token_seconds);
  std::printf("read bandwidth: %.1f GB/s (%s)\n", bandwidth_gbps, bw.gpu_timed ? "GPU timestamps" : "wall clock");
  std::printf("multiply-add rate: %.1f GFMA/s f32 (%s)\n", fma_gps, fma.gpu_timed ? "GPU timestamps" : "wall clock");
  std::printf("prefill: %u tokens, %.1f tok/s (median of %u), %.2f GFMA/s = %.1f %% of the multiply-add rate\n",
              a.prompt_tokens, prefill_tps, a.repeats, prefill_gfma, prefill_compute_pct);
  std::printf("decode: %u tokens, %.1f tok/s, %.1f GB/s = %.1f %% of the roofline (%.1f tok/s)\n", a.gen_tokens, decode_tps,
              gbps, roofline_pct, bw.bytes_per_second / bytes_per_step * a.batch);
  std::printf("decode compute: %.2f GFMA/s = %.1f %% of the multiply-add rate\n", decode_gfma, decode_compute_pct);
  if (!shares.empty()) {
    // Wall time beyond the kernels' own is the host's: recording, submission, waiting, sampling.
    std::printf("decode step: %.2f ms wall, %.2f ms in kernels (GPU timestamps)\n", 1e3 * a.batch / decode_tps,
                total_ns / 1e6);
    std::printf("decode step by kernel (GPU time):\n");
    for (size_t i = 0; i < std::min<size_t>(shares.size(), 10); ++i)
      std::printf("  %5.1f %%  %s\n", shares[i].first, shares[i].second.c_str());
  }
  if (boundaries > 0) {
    std::printf("devices (a decode step):\n");
    for (size_t i = 0; i < stages.size(); ++i) {
      const ModelStage& st = stages[i];
      const DeviceStepTime d = i < decode_kernels.devices.size() ? decode_kernels.devices[i] : DeviceStepTime{};
      const std::string layers = st.first_layer == st.last_layer
                                     ? std::string("no layers")
                                     : "layers " + std::to_string(st.first_layer) + "-" + std::to_string(st.last_layer - 1);
      std::printf("  device %d (%s): %s, %.2f ms kernels, %.3f ms copying the hidden state, %.2f ms wall\n",
                  st.device.index, st.device.name.c_str(), layers.c_str(), d.kernel_ns / 1e6, d.transfer_device_ns / 1e6,
                  d.wall_ns / 1e6);
    }
    std::printf("transfer: %llu bytes per token per boundary, %zu boundar%s, %.3f ms per token (device and host copies)\n",
                (unsigned long long)transfer_bytes_per_token, boundaries, boundaries == 1 ? "y" : "ies",
                transfer_ms_per_token);
    for (size_t i = 0; i < decode_kernels.transfers.boundaries.size(); ++i)
      std::printf("boundary %zu: %s\n", i, decode_kernels.transfers.boundaries[i].c_str());
    std::printf("a decode step: %u host waits, %llu bytes copied by the host\n",
                decode_kernels.transfers.last_step_host_waits,
                (unsigned long long)decode_kernels.transfers.last_step_host_copy_bytes);
  }
  if (!prefill_kernels.shares.empty()) {
    std::printf("prefill of %u tokens: %.2f ms in kernels; by kernel (GPU time):\n", a.prompt_tokens,
                prefill_kernels.total_ns / 1e6);
    for (size_t i = 0; i < std::min<size_t>(prefill_kernels.shares.size(), 6); ++i)
      std::printf("  %5.1f %%  %s\n", prefill_kernels.shares[i].first, prefill_kernels.shares[i].second.c_str());
  }
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, Action& action) {
  auto a = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand("bench", "prefill and decode speed against the measured memory-bandwidth and multiply-add rooflines");
  add_model_args(*cmd, a->model);
  cmd->add_option("-p,--prompt-tokens", a->prompt_tokens, "prompt tokens for prefill (default 512)")->check(int_in(1, kMaxTokens));
  cmd->add_option("-n,--gen-tokens", a->gen_tokens, "tokens to decode (default 128; decode speed needs at least 2)")
      ->check(int_in(2, kMaxTokens));
  cmd->add_option("--batch", a->batch, "sequences decoded together (default 1)")->check(int_in(1, kMaxBatch));
  cmd->add_option("--repeats", a->repeats, "timed repeats; the median is reported (default 3)")
      ->check(int_in(1, 1000000));
  cmd->add_flag("--json", a->json, "machine-readable output");
  cmd->add_option("--concurrency", a->concurrency,
                  "load test: clients at once, e.g. 1,4,8,16 (each sends --repeats requests of -p + -n tokens to one "
                  "in-process engine)");
  cmd->add_option("--kv-budget", a->kv_budget,
                  "load test: the KV pool, a share of the device memory free after the weights (50%) or a size (2G) "
                  "(default: each level's clients × (-p + -n) tokens)");
  cmd->add_option("--batch-tokens", a->batch_tokens, "load test: rows of one engine step (default 512)")
      ->check(CLI::PositiveNumber);
  cmd->callback([&action, a] { action = [a] { return run_bench(*a); }; });
}

}  // namespace inferno::cli

#pragma once
// The server's metrics in Prometheus' text exposition format 0.0.4 (what GET /metrics answers): gauges read from
// the engine when scraped, counters and histograms of the requests that have ended. Names follow vLLM's
// ("inferno:" for "vllm:"), which Kubernetes' Gateway API Inference Extension schedules on.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace inferno::server {

// Cumulative buckets with fixed upper bounds (seconds), their sum and count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  // `name`_bucket{le=...} (cumulative, then +Inf), `name`_sum, `name`_count.
  void render(std::string& out, const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// What one generation request did, for the counters and histograms.
struct GenerationRecord {
  int prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  double first_token_seconds = -1;  // arrival to the first token; < 0: none was generated
  double seconds = 0;               // arrival to the end of the response
  std::vector<double> token_gaps;   // seconds between consecutive tokens of each choice
};

// The engine's state when scraped.
struct EngineGauges {
  size_t running = 0, waiting = 0;
  double kv_usage = 0;  // blocks held by requests / blocks in the pool, 0..1
};

class Metrics {
 public:
  Metrics();
  void request_ended(int status);  // every HTTP request the server answered, by status
  void generation_ended(const GenerationRecord& record);
  std::string render(const EngineGauges& gauges) const;

  static constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  mutable std::mutex mutex_;
  std::map<int, uint64_t> requests_by_status_;
  uint64_t prompt_tokens_ = 0, generation_tokens_ = 0, cached_tokens_ = 0;
  Histogram time_to_first_token_, time_per_output_token_, inter_token_latency_, e2e_latency_;
};

// A number as Prometheus reads it: shortest round-trip form, "+Inf", "-Inf" or "NaN".
std::string prometheus_number(double value);

}  // namespace inferno::server

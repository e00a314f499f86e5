#pragma once
// Micro-batches through the stages of a model split over devices, one thread a stage: stage i takes micro-batch k
// once stage i-1 has handed it over, so stage i works on k while stage i-1 works on k+1 (pipeline parallelism).
// Model::Pipeline (contiguous caches) and PagedPipeline (the batching engine's paged cache) cut their steps their
// own way and run the pieces through this.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace inferno::model {

// Rows a micro-batch aims at when a model has two or more stages (64, or INFERNO_PIPELINE_MICROBATCH: 0 turns the
// pipelining off; anything but 0..1000000 is an Error naming the variable).
uint32_t micro_batch_rows_from_env(uint32_t fallback);
inline constexpr uint32_t kDefaultMicroBatchRows = 64;

// Stage `stage`'s work on micro-batch `piece`: `input` is what stage - 1 gave out for it (empty for stage 0); the
// result goes to stage + 1.
using StageWork = std::function<std::vector<float>(size_t stage, size_t piece, std::vector<float> input)>;

// Runs every piece through every stage and returns the last stage's output of each piece. The first exception stops
// every stage before its next piece; it is rethrown once all threads have ended (the callers undo what the pieces
// that ran did to their caches, or drop the sequences).
std::vector<std::vector<float>> run_stage_threads(size_t stages, size_t pieces, const StageWork& work);

}  // namespace inferno::model

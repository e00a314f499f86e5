#pragma once
// What the API's other parts need of a loaded Model's internals (defined beside Model::Impl).
#include <mutex>

#include "inferno/inferno.hpp"
#include "model/llama.hpp"

namespace inferno::api {

const model::LlamaModel& llama_of(const Model& model);
// Held around all device work of the model (one command pool, one thread at a time).
std::recursive_mutex& device_lock_of(const Model& model);

}  // namespace inferno::api

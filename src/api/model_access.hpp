#pragma once
// What the API's other parts need of a loaded Model's internals (defined beside Model::Impl).
#include <mutex>

#include "generate/session.hpp"
#include "inferno/inferno.hpp"
#include "model/llama.hpp"

namespace inferno::api {

// The model (its first stage when split: hyper-parameters and config are every stage's).
const model::LlamaModel& llama_of(const Model& model);
// Every stage of the model in the order of its layers, one per device (one when not split).
std::vector<const model::LlamaModel*> stages_of(const Model& model);
// Held around all device work of the model (one command pool, one thread at a time).
std::recursive_mutex& device_lock_of(const Model& model);
// The cache dtype a KvDtype asks for; Auto: the model's default (model::default_kv_type).
kernels::KvType kv_type(KvDtype d, const model::LlamaModel& m);
// The public generation options as the engine's sessions and scheduler take them; `model_eos` where `o` names none.
gen::GenerateOptions engine_options(const GenerateOptions& o, const std::vector<int32_t>& model_eos);
// The constraint for GenerateOptions::json_schema over the model's vocabulary (null for an empty schema).
std::shared_ptr<const gen::GrammarConstraint> grammar_constraint(const Model::Impl& model, const std::string& schema);

}  // namespace inferno::api

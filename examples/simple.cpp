// simple.cpp: load a model, generate up to N tokens greedily from a prompt, and stream the text, with inferno's
// C++ API.
//
//   c++ -std=c++17 simple.cpp $(pkg-config --cflags --libs inferno) -o simple-cpp
//   ./simple-cpp MODEL_DIR "The jury said" 16
//
// The continuation goes to stdout as it is generated; the new token ids go to stderr on one line ("ids: ...").
#include <inferno/inferno.hpp>

#include <cstdlib>
#include <iostream>

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::cerr << "usage: " << argv[0] << " MODEL_DIR PROMPT [N]\n";
    return 2;
  }
  const int max_new_tokens = argc == 4 ? std::atoi(argv[3]) : 32;
  if (max_new_tokens < 1) {
    std::cerr << "simple-cpp: N must be a positive number\n";
    return 2;
  }
  try {
    inferno::ModelOptions model_options;
    model_options.quiet = true;
    inferno::Model model = inferno::Model::load(argv[1], model_options);
    const std::vector<int32_t> prompt = model.tokenize(argv[2]);

    inferno::Session session(model);
    inferno::GenerateOptions options;
    options.max_new_tokens = max_new_tokens;
    options.sampling.do_sample = false;  // greedy
    inferno::TextStream stream(model);
    const std::vector<int32_t> ids = session.generate(prompt, options, [&](int32_t token) {
      std::cout << stream.push(token) << std::flush;
      return true;  // false would stop the generation here
    });
    std::cout << stream.finish() << "\n";

    std::cerr << "ids:";
    for (int32_t id : ids) std::cerr << " " << id;
    const auto& stats = session.stats();
    std::cerr << "\n" << ids.size() << " tokens in " << stats.prefill_seconds + stats.decode_seconds << " s\n";
    return 0;
  } catch (const inferno::Error& e) {
    std::cerr << "simple-cpp: " << e.what() << "\n";
    return 1;
  }
}

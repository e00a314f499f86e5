#pragma once
// Running commands as a shell runs them, for the command-line suites: exit status, stdout and stderr.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "test_support.hpp"

namespace inferno::testing {

struct Run {
  int status = -1;  // the exit status; 128 + the signal's number when a signal ended it
  std::string out, err;
};

// The inferno binary meson names in INFERNO_BIN.
inline std::string inferno_bin() {
  const char* bin = std::getenv("INFERNO_BIN");
  REQUIRE_MESSAGE(bin, "INFERNO_BIN is not set (meson sets it)");
  return bin;
}

// Runs `ENV PROGRAM ARGS` through the shell (ARGS already shell-quoted, ENV as VAR=value words or empty) with
// `input` on stdin; stdin, stdout and stderr go through files in `scratch`, so that no pipe can fill.
inline Run run_shell(const std::string& env, const std::string& program, const std::string& args,
                     const std::string& input, const std::filesystem::path& scratch) {
  const std::filesystem::path out = scratch / "stdout", err = scratch / "stderr", in = scratch / "stdin";
  std::ofstream(in, std::ios::binary) << input;
  const std::string cmd = env + " " + program + " " + args + " <" + in.string() + " >" + out.string() + " 2>" + err.string();
  const int raw = std::system(cmd.c_str());
  Run r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  r.out = read_text(out);
  r.err = read_text(err);
  return r;
}

}  // namespace inferno::testing

#pragma once
// Python's `re.match(pattern, text)` (anchored at the start, not at the end) through PCRE2, whose syntax is the
// closest a C library offers to Python's re. compressed-tensors writes its `ignore: ["re:..."]` lists for re.match.
#include <string>

namespace inferno::util {

// Throws Error naming `where` and the pattern when it does not compile.
bool python_re_match(const std::string& pattern, const std::string& text, const std::string& where);

}  // namespace inferno::util

// GoogleTest matchers shared by the suites.
#pragma once

#include <gmock/gmock.h>

#include <string>

#include "test_util.h"

namespace tu {

// Matches an error text (a death test's stderr) that names `what` and the
// address `addr` as the allocator prints it, case-insensitively.
inline testing::Matcher<const std::string&> says(const char* what, const void* addr) {
  std::string h = hex(addr);
  std::string w = what;
  return testing::Truly([h, w](const std::string& err) {
    std::string l = lower(err);
    return l.find(h) != std::string::npos && l.find(w) != std::string::npos;
  });
}

}  // namespace tu

// platform: the memory limit of the process's control group.
//
// Reads /proc/self/cgroup, then, for the memory controller's directory and
// each of its ancestors (a parent's limit binds its children too), the
// limit files: cgroup v2 `memory.max` and `memory.high` under the unified
// mount, cgroup v1 `memory.limit_in_bytes` under the `memory` mount. The
// smallest limit found wins. Files that are missing or unreadable (no
// cgroup fs, a cgroup namespace whose paths do not match the mount, a
// sandbox) count as "no limit"; the root's huge v1 value and v2's "max"
// mean no limit too. Never allocates; a few open/read/close calls.
#pragma once
#include <cstddef>

namespace remalloc::cgroup {

struct Limits {
  size_t max;    // hard limit in bytes (v2 memory.max, v1 memory.limit_in_bytes); 0 none
  size_t high;   // v2 memory.high (throttling starts there); 0 none
  int version;   // 1, 2, or 0 when no limit was found
};

// Reads the limits now (at start-up, and whenever asked).
Limits read();

// The effective limit: the smaller of max and high that is set; 0 none.
inline size_t effective(const Limits& l) {
  if (!l.max) return l.high;
  if (!l.high) return l.max;
  return l.max < l.high ? l.max : l.high;
}

}  // namespace remalloc::cgroup

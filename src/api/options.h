// api: options. One table (name, default, type, range, unit, doc); values
// are read lazily from `environ` as REMALLOC_<NAME> (getenv may not be
// usable while preloading); a bad value (not of the type, or out of range)
// warns and keeps the default. REMALLOC_VERBOSE=1 prints every effective
// value, and reports values refused by remalloc_option_set.
#pragma once
#include <cstddef>

namespace remalloc::options {

enum Id : int {
  kVerbose,
  kStats,
  kPurgeDelay,
  kArenaSize,
  kMover,
  kMoveThreshold,
  kHugeThreshold,
  kHugepage,
  kVmaBudget,
  kAbortOnInvalid,
  kGrowInplace,
  kDirtyMax,
  kGrowHeadroom,
  kBackground,
  kDirtyRatio,
  kMemoryLimit,
  kCgroup,
  kGuardSample,
  kGuardInstall,
  kProf,
  kProfSample,
  kProfInterval,
  kProfFinal,
  kProfLeakError,
  kProfLimit,
  kProfUnwind,
  kProfPrefix,
  kMremapThreshold,
  kHugepageThreshold,
  kPrefault,
  kForeignCache,
  kNumOptions
};

// Reads the environment once (idempotent, thread-safe enough for start-up:
// every value is a plain word).
void init();
long get(Id id);
// Sets a value in range; false (the option unchanged) otherwise.
bool set(Id id, long value);
bool valid(Id id, long value);
// By name, without the REMALLOC_ prefix, case-insensitive; -1 if unknown.
int find(const char* name);
const char* name(Id id);
// Prints every option with its effective value to fd.
void print(int fd);
// Pushes the options into the lower layers' configuration.
void apply();
// The memory limit in force (bytes, 0 none): REMALLOC_MEMORY_LIMIT, else
// the cgroup's as last read (at start-up and by refresh_limits()).
size_t memory_limit();
// Re-reads the cgroup limits (when REMALLOC_CGROUP=1) and applies them.
size_t refresh_limits();
int cgroup_version();
// REMALLOC_PROF_PREFIX (a string option: get() says 0, set() refuses it).
// The transparent huge page line of REMALLOC_VERBOSE: the system's mode
// and defrag setting, and the policy in force.
void print_thp(int fd);
const char* prof_prefix();

}  // namespace remalloc::options

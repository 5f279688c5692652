// api/options.h: the options table. Every row parsed from the environment
// (REMALLOC_<NAME>, read by init() in a child process, since init reads the
// environment once per process): its default, both ends of its range, the
// values just outside it (refused with a warning, default kept); booleans
// (on/off/yes/no/true/false in any case), enums (mover auto/mremap/uffd/
// copy, stats off/text/json, prof_unwind auto/fp/libgcc), malformed numbers;
// the one string option (prof_prefix); find() with and without the
// REMALLOC_ prefix in any case; set()/valid() and what apply() pushes down.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "api/api.h"
#include "api/options.h"
#include "pages/page_heap.h"
#include "platform/os.h"
#include "platform/vma.h"
#include "prof/prof.h"

namespace {

using namespace remalloc;
using options::Id;

enum Kind { kInt, kBool, kEnum, kString };
struct Row {
  const char* name;
  Id id;
  long def;
  Kind kind;
  long min, max;
  bool startup_only = false;  // read from the environment only
};

// The table as documented (README and options.cpp); a change there must
// change this too.
const Row kRows[] = {
    {"verbose", options::kVerbose, 0, kBool, 0, 1},
    {"stats", options::kStats, 0, kEnum, 0, 2},
    {"purge_delay", options::kPurgeDelay, 100, kInt, 0, 3'600'000},
    {"arena_size", options::kArenaSize, 256, kInt, 64, 1L << 20},
    {"mover", options::kMover, -1, kEnum, -1, 2},
    {"move_threshold", options::kMoveThreshold, 128, kInt, 0, 1L << 30},
    {"huge_threshold", options::kHugeThreshold, 2048, kInt, 4, 1L << 30},
    {"hugepage", options::kHugepage, 1, kBool, 0, 1},
    {"vma_budget", options::kVmaBudget, 0, kInt, 0, 1L << 31},
    {"abort_on_invalid", options::kAbortOnInvalid, 1, kBool, 0, 1},
    {"grow_inplace", options::kGrowInplace, 1, kBool, 0, 1},
    {"dirty_max", options::kDirtyMax, 128, kInt, 0, 1L << 30},
    {"grow_headroom", options::kGrowHeadroom, 1, kBool, 0, 1},
    {"background", options::kBackground, 0, kBool, 0, 1},
    {"dirty_ratio", options::kDirtyRatio, 25, kInt, 0, 1000},
    {"memory_limit", options::kMemoryLimit, 0, kInt, 0, 1L << 30},
    {"cgroup", options::kCgroup, 1, kBool, 0, 1},
    // The secure build's sampling rate; 0..0 (nothing to set) elsewhere.
    {"guard_sample", options::kGuardSample, REMALLOC_TEST_SECURE ? 1000 : 0, kInt, 0,
     REMALLOC_TEST_SECURE ? 1L << 30 : 0},
    // The secure build's guard mechanism (start-up only); 0..0 elsewhere.
    {"guard_install", options::kGuardInstall, REMALLOC_TEST_SECURE ? 1 : 0, kBool, 0, REMALLOC_TEST_SECURE ? 1 : 0,
     true},
    // Heap profiling.
    {"prof", options::kProf, 0, kBool, 0, 1},
    {"prof_sample", options::kProfSample, 512 * 1024, kInt, 1, 1L << 40},
    {"prof_interval", options::kProfInterval, 0, kInt, 0, 1L << 40},
    {"prof_final", options::kProfFinal, 0, kBool, 0, 1},
    {"prof_leak_error", options::kProfLeakError, 0, kBool, 0, 1},
    {"prof_limit", options::kProfLimit, 90, kInt, 0, 100},
    {"prof_unwind", options::kProfUnwind, 0, kEnum, 0, 2},
    // A string (options::prof_prefix()); as a number it is 0 and cannot be set.
    {"prof_prefix", options::kProfPrefix, 0, kString, 0, 0, true},
    {"mremap_threshold", options::kMremapThreshold, 8192, kInt, 4, 1L << 30},
    {"hugepage_threshold", options::kHugepageThreshold, 2048, kInt, 2048, 1L << 30},
    {"prefault", options::kPrefault, 1, kBool, 0, 1},
    {"foreign_cache", options::kForeignCache, 64, kInt, 0, 1L << 20},
};
static_assert(sizeof kRows / sizeof kRows[0] == options::kNumOptions, "a row per option");

std::string upper(const char* s) {
  std::string u(s);
  for (char& c : u) c = char(std::toupper(static_cast<unsigned char>(c)));
  return u;
}
std::string var_of(const Row& r) { return "REMALLOC_" + upper(r.name); }

struct ChildResult {
  std::vector<long> values;  // every option's value after init()
  std::string err;           // what the child wrote to stderr
  int status = -1;
};

std::string drain(int fd) {
  std::string s;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) s.append(buf, size_t(n));
  close(fd);
  return s;
}

// In a fresh child: the environment holds exactly `env` of the REMALLOC_
// option variables, init() reads it, then `after` runs; returns every
// option's value and the child's stderr.
ChildResult init_in_child(const std::vector<std::pair<std::string, std::string>>& env,
                          const std::function<void()>& after = {}) {
  ChildResult res;
  int out[2], err[2];
  if (pipe(out) != 0 || pipe(err) != 0) {
    ADD_FAILURE() << "pipe";
    return res;
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(out[0]);
    close(err[0]);
    dup2(err[1], 2);
    for (const Row& r : kRows) unsetenv(var_of(r).c_str());
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    options::init();
    if (after) after();
    long vals[options::kNumOptions];
    for (int i = 0; i < options::kNumOptions; i++) vals[i] = options::get(Id(i));
    ssize_t w = write(out[1], vals, sizeof vals);
    _exit(w == ssize_t(sizeof vals) ? 0 : 1);
  }
  close(out[1]);
  close(err[1]);
  std::string bytes = drain(out[0]);
  res.err = drain(err[0]);
  waitpid(pid, &res.status, 0);
  EXPECT_TRUE(WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0) << "child failed; stderr: " << res.err;
  if (bytes.size() == sizeof(long) * options::kNumOptions) {
    res.values.resize(options::kNumOptions);
    std::memcpy(res.values.data(), bytes.data(), bytes.size());
  } else {
    ADD_FAILURE() << "child wrote " << bytes.size() << " bytes of values; stderr: " << res.err;
    res.values.assign(options::kNumOptions, -12345);
  }
  return res;
}

bool warned(const ChildResult& c, const std::string& var, const std::string& val) {
  return c.err.find("ignoring " + var + "=" + val + " ") != std::string::npos;
}

// ---- names ------------------------------------------------------------------

TEST(Options, FindEveryRowByNameInAnyCaseWithOrWithoutPrefix) {
  for (const Row& r : kRows) {
    SCOPED_TRACE(r.name);
    EXPECT_STREQ(options::name(r.id), r.name);
    std::string mixed(r.name);
    for (size_t i = 0; i < mixed.size(); i += 2) mixed[i] = char(std::toupper(static_cast<unsigned char>(mixed[i])));
    EXPECT_EQ(options::find(r.name), r.id);
    EXPECT_EQ(options::find(upper(r.name).c_str()), r.id);
    EXPECT_EQ(options::find(mixed.c_str()), r.id);
    EXPECT_EQ(options::find(var_of(r).c_str()), r.id);
    EXPECT_EQ(options::find(("remalloc_" + std::string(r.name)).c_str()), r.id);
    EXPECT_EQ(options::find(("ReMaLlOc_" + mixed).c_str()), r.id);
    // Near misses.
    std::string name(r.name);
    EXPECT_EQ(options::find(name.substr(0, name.size() - 1).c_str()), -1);
    EXPECT_EQ(options::find((name + "_").c_str()), -1);
    EXPECT_EQ(options::find(("REMALLOC" + name).c_str()), -1);
    EXPECT_EQ(options::find(("X_" + name).c_str()), -1);
  }
  EXPECT_EQ(options::find(nullptr), -1);
  EXPECT_EQ(options::find(""), -1);
  EXPECT_EQ(options::find("REMALLOC_"), -1);
  EXPECT_EQ(options::find("no_such_option"), -1);
}

// ---- the environment ----------------------------------------------------------

TEST(Options, DefaultsWithAnEmptyEnvironment) {
  ChildResult c = init_in_child({});
  for (const Row& r : kRows) EXPECT_EQ(c.values[r.id], r.def) << r.name;
  EXPECT_EQ(c.err, "");
}

// Both ends of every row's range are taken; one past either end is refused
// with a warning and the default kept.
TEST(Options, EveryRowTakesItsRangeFromTheEnvironment) {
  for (int end = 0; end < 2; end++) {
    std::vector<std::pair<std::string, std::string>> env;
    for (const Row& r : kRows) env.emplace_back(var_of(r), std::to_string(end ? r.max : r.min));
    ChildResult c = init_in_child(env);
    for (const Row& r : kRows) EXPECT_EQ(c.values[r.id], end ? r.max : r.min) << r.name;
    EXPECT_EQ(c.err.find("ignoring"), std::string::npos) << c.err;
  }
}

TEST(Options, OutOfRangeRefusedAndDefaultKept) {
  for (int end = 0; end < 2; end++) {
    std::vector<std::pair<std::string, std::string>> env;
    for (const Row& r : kRows)
      if (r.kind != kString) env.emplace_back(var_of(r), std::to_string(end ? r.max + 1 : r.min - 1));
    ChildResult c = init_in_child(env);
    for (const Row& r : kRows) {
      if (r.kind == kString) continue;
      EXPECT_EQ(c.values[r.id], r.def) << r.name << "=" << (end ? r.max + 1 : r.min - 1);
      EXPECT_TRUE(warned(c, var_of(r), std::to_string(end ? r.max + 1 : r.min - 1)))
          << r.name << ": no warning in: " << c.err;
    }
  }
}

TEST(Options, MalformedNumbersRefused) {
  const char* bad[] = {"", "-", "abc", "5k", "+5", " 5", "5 ", "1.5", "0x10", "--1", "99999999999999999999"};
  for (const char* v : bad) {
    ChildResult c = init_in_child({{"REMALLOC_PURGE_DELAY", v}, {"REMALLOC_DIRTY_MAX", v}});
    EXPECT_EQ(c.values[options::kPurgeDelay], 100) << "'" << v << "'";
    EXPECT_EQ(c.values[options::kDirtyMax], 128) << "'" << v << "'";
    EXPECT_TRUE(warned(c, "REMALLOC_PURGE_DELAY", v)) << "'" << v << "': " << c.err;
  }
  ChildResult c = init_in_child({{"REMALLOC_PURGE_DELAY", "0025"}, {"REMALLOC_ARENA_SIZE", "1024"}});
  EXPECT_EQ(c.values[options::kPurgeDelay], 25);
  EXPECT_EQ(c.values[options::kArenaSize], 1024);
}

// Only the exact upper-case REMALLOC_<NAME> variable counts.
TEST(Options, OtherVariablesIgnored) {
  ChildResult c = init_in_child({{"remalloc_purge_delay", "5"},
                                 {"REMALLOC_PURGE_DELAYX", "6"},
                                 {"PURGE_DELAY", "7"},
                                 {"REMALLOC_purge_delay", "8"}});
  EXPECT_EQ(c.values[options::kPurgeDelay], 100);
}

TEST(Options, Booleans) {
  const std::pair<const char*, long> words[] = {
      {"on", 1},  {"off", 0},  {"yes", 1},  {"no", 0},   {"true", 1}, {"false", 0},
      {"ON", 1},  {"Off", 0},  {"YES", 1},  {"No", 0},   {"TRUE", 1}, {"False", 0},
      {"1", 1},   {"0", 0}};
  // Booleans that can be set in this build (guard_install is 0..0 outside
  // the secure build, like guard_sample).
  auto settable = [](const Row& r) { return r.kind == kBool && r.max == 1; };
  for (const auto& [word, want] : words) {
    std::vector<std::pair<std::string, std::string>> env;
    for (const Row& r : kRows)
      if (settable(r)) env.emplace_back(var_of(r), word);
    ChildResult c = init_in_child(env);
    for (const Row& r : kRows)
      if (settable(r)) {
        EXPECT_EQ(c.values[r.id], want) << r.name << "=" << word;
      }
    EXPECT_EQ(c.err.find("ignoring"), std::string::npos) << word << ": " << c.err;
  }
  for (const char* word : {"2", "-1", "onn", "y", "n", "t", "enable", "truefalse"}) {
    std::vector<std::pair<std::string, std::string>> env;
    for (const Row& r : kRows)
      if (settable(r)) env.emplace_back(var_of(r), word);
    ChildResult c = init_in_child(env);
    for (const Row& r : kRows)
      if (settable(r)) {
        EXPECT_EQ(c.values[r.id], r.def) << r.name << "=" << word;
        EXPECT_TRUE(warned(c, var_of(r), word)) << r.name << "=" << word << ": " << c.err;
      }
  }
  // The words are for booleans only.
  ChildResult c = init_in_child({{"REMALLOC_PURGE_DELAY", "on"}, {"REMALLOC_STATS", "yes"}});
  EXPECT_EQ(c.values[options::kPurgeDelay], 100);
  EXPECT_EQ(c.values[options::kStats], 0);
}

TEST(Options, EnumMover) {
  const std::pair<const char*, long> words[] = {{"auto", -1}, {"mremap", 0}, {"uffd", 1}, {"copy", 2},
                                                {"AUTO", -1}, {"MRemap", 0}, {"UFFD", 1}, {"Copy", 2},
                                                {"-1", -1},   {"0", 0},      {"1", 1},    {"2", 2}};
  for (const auto& [word, want] : words) {
    ChildResult c = init_in_child({{"REMALLOC_MOVER", word}});
    EXPECT_EQ(c.values[options::kMover], want) << word;
    EXPECT_EQ(c.err, "") << word;
  }
  for (const char* word : {"none", "3", "-2", "mremapx", "?", ""}) {
    ChildResult c = init_in_child({{"REMALLOC_MOVER", word}});
    EXPECT_EQ(c.values[options::kMover], -1) << word;
    EXPECT_TRUE(warned(c, "REMALLOC_MOVER", word)) << word << ": " << c.err;
  }
  // The mover reaches the page heap's configuration.
  ChildResult c = init_in_child({{"REMALLOC_MOVER", "copy"}}, [&] {
    if (pages::config().mover != 2) _exit(3);
  });
  EXPECT_EQ(c.values[options::kMover], 2);
}

TEST(Options, EnumStats) {
  const std::pair<const char*, long> words[] = {{"off", 0},  {"text", 1}, {"json", 2}, {"OFF", 0},
                                                {"Text", 1}, {"JSON", 2}, {"0", 0},    {"1", 1},
                                                {"2", 2}};
  for (const auto& [word, want] : words) {
    ChildResult c = init_in_child({{"REMALLOC_STATS", word}});
    EXPECT_EQ(c.values[options::kStats], want) << word;
    EXPECT_EQ(c.err, "") << word;
  }
  for (const char* word : {"on", "3", "-1", "xml", "texts"}) {
    ChildResult c = init_in_child({{"REMALLOC_STATS", word}});
    EXPECT_EQ(c.values[options::kStats], 0) << word;
    EXPECT_TRUE(warned(c, "REMALLOC_STATS", word)) << word << ": " << c.err;
  }
}

TEST(Options, EnumProfUnwind) {
  const std::pair<const char*, long> words[] = {{"auto", 0}, {"fp", 1}, {"libgcc", 2}, {"FP", 1}, {"0", 0}, {"2", 2}};
  for (const auto& [word, want] : words) {
    ChildResult c = init_in_child({{"REMALLOC_PROF_UNWIND", word}});
    EXPECT_EQ(c.values[options::kProfUnwind], want) << word;
    EXPECT_EQ(c.err, "") << word;
  }
  ChildResult c = init_in_child({{"REMALLOC_PROF_UNWIND", "dwarf"}});
  EXPECT_EQ(c.values[options::kProfUnwind], 0);
  EXPECT_TRUE(warned(c, "REMALLOC_PROF_UNWIND", "dwarf")) << c.err;
}

// The string option: any non-empty value shorter than 1 KiB, kept as given.
TEST(Options, ProfPrefixIsAString) {
  ChildResult def = init_in_child({}, [] {
    if (std::strcmp(options::prof_prefix(), "remalloc") != 0) _exit(20);
  });
  EXPECT_EQ(def.err, "");
  ChildResult c = init_in_child({{"REMALLOC_PROF_PREFIX", "/tmp/dir/my prog"}}, [] {
    if (std::strcmp(options::prof_prefix(), "/tmp/dir/my prog") != 0) _exit(21);
    if (std::strcmp(prof::config().prefix, "/tmp/dir/my prog") != 0) _exit(22);
  });
  EXPECT_EQ(c.err, "");
  for (const std::string& bad : {std::string(""), std::string(2000, 'x')}) {
    ChildResult b = init_in_child({{"REMALLOC_PROF_PREFIX", bad}}, [] {
      if (std::strcmp(options::prof_prefix(), "remalloc") != 0) _exit(23);
    });
    EXPECT_NE(b.err.find("ignoring REMALLOC_PROF_PREFIX="), std::string::npos) << bad.size() << ": " << b.err;
  }
}

// The profiling options reach prof/.
TEST(Options, ProfilingOptionsReachProf) {
  ChildResult c = init_in_child({{"REMALLOC_PROF", "1"}, {"REMALLOC_PROF_SAMPLE", "4096"},
                                 {"REMALLOC_PROF_INTERVAL", "1000000"}, {"REMALLOC_PROF_LIMIT", "50"},
                                 {"REMALLOC_PROF_UNWIND", "fp"}, {"REMALLOC_MEMORY_LIMIT", "64"}},
                                [] {
                                  const prof::Config& p = prof::config();
                                  if (!p.active) _exit(30);
                                  if (p.sample != 4096) _exit(31);
                                  if (p.interval != 1000000) _exit(32);
                                  if (p.limit_percent != 50) _exit(33);
                                  if (p.unwind != prof::kUnwindFp) _exit(34);
                                  if (p.memory_limit != size_t{64} << 20) _exit(35);
                                  if (!options::set(options::kProf, 0) || prof::config().active) _exit(36);
                                });
  EXPECT_EQ(c.values[options::kProfSample], 4096);
}

// init() reads the environment once: later changes are not seen.
TEST(Options, InitReadsTheEnvironmentOnce) {
  ChildResult c = init_in_child({{"REMALLOC_PURGE_DELAY", "5"}}, [] {
    setenv("REMALLOC_PURGE_DELAY", "7", 1);
    options::init();
  });
  EXPECT_EQ(c.values[options::kPurgeDelay], 5);
}

// What init() took from the environment reaches the lower layers.
TEST(Options, EnvironmentReachesTheLowerLayers) {
  ChildResult c = init_in_child(
      {{"REMALLOC_PURGE_DELAY", "25"}, {"REMALLOC_VMA_BUDGET", "4321"}, {"REMALLOC_ARENA_SIZE", "100"},
       {"REMALLOC_MOVE_THRESHOLD", "64"}, {"REMALLOC_DIRTY_MAX", "7"}, {"REMALLOC_GROW_INPLACE", "off"},
       {"REMALLOC_PREFAULT", "0"}, {"REMALLOC_FOREIGN_CACHE", "5"}},
      [] {
        const pages::Config& cfg = pages::config();
        if (cfg.purge_delay_ns != 25'000'000) _exit(10);
        if (vma::budget() != 4321) _exit(11);
        if (cfg.arena_bytes != size_t{128} << 20) _exit(12);  // rounded up to 64 MiB
        if (cfg.move_threshold != size_t{64} << 10) _exit(13);
        if (cfg.dirty_max != size_t{7} << 20) _exit(14);
        if (cfg.grow_inplace) _exit(15);
        if (cfg.prefault) _exit(16);
        if (heap::foreign_total() != size_t{5} << 20) _exit(17);
        if (heap::foreign_min_heaps() != 8 * os::cpu_count()) _exit(18);
      });
  EXPECT_EQ(c.values[options::kVmaBudget], 4321);
}

// Once mlockall(MCL_FUTURE) holds, committed pages are populated at once:
// prefault stops (its calls would find the pages resident), and an option
// applied later does not bring it back.
TEST(Options, MlockallFutureTurnsPrefaultOff) {
  if (mlockall(MCL_FUTURE) != 0) GTEST_SKIP() << "mlockall(MCL_FUTURE) refused here: " << strerror(errno);
  munlockall();
  init_in_child({}, [] {
    if (!pages::config().prefault) _exit(20);  // on by default
    if (api::lock_all(MCL_FUTURE) != 0) _exit(21);
    if (pages::config().prefault) _exit(22);
    if (!options::set(options::kPurgeDelay, 50) || pages::config().prefault) _exit(23);
    munlockall();
  });
}

// ---- set() and valid() in this process -----------------------------------------

TEST(Options, ValidIsTheRangeOfEveryRow) {
  for (const Row& r : kRows) {
    EXPECT_TRUE(options::valid(r.id, r.min)) << r.name;
    EXPECT_TRUE(options::valid(r.id, r.max)) << r.name;
    EXPECT_TRUE(options::valid(r.id, r.def)) << r.name;
    EXPECT_FALSE(options::valid(r.id, r.min - 1)) << r.name;
    EXPECT_FALSE(options::valid(r.id, r.max + 1)) << r.name;
  }
}

TEST(Options, SetRefusesOutOfRangeAndKeepsTheValue) {
  for (const Row& r : kRows) {
    SCOPED_TRACE(r.name);
    long old = options::get(r.id);
    EXPECT_FALSE(options::set(r.id, r.max + 1));
    EXPECT_EQ(options::get(r.id), old);
    EXPECT_FALSE(options::set(r.id, r.min - 1));
    EXPECT_EQ(options::get(r.id), old);
    if (r.kind == kString) {
      EXPECT_FALSE(options::set(r.id, 0));
      continue;
    }
    if (r.startup_only) {
      // In range but after start-up: refused, the value kept.
      for (long v = r.min; v <= r.max; v++) EXPECT_EQ(options::set(r.id, v), v == old) << v;
      EXPECT_EQ(options::get(r.id), old);
      continue;
    }
    EXPECT_TRUE(options::set(r.id, r.max));
    EXPECT_EQ(options::get(r.id), r.max);
    EXPECT_TRUE(options::set(r.id, r.min));
    EXPECT_EQ(options::get(r.id), r.min);
    EXPECT_TRUE(options::set(r.id, old));
  }
}

TEST(Options, GuardInstallOffAtStartUpTurnsGuardsOff) {
  if (!REMALLOC_TEST_SECURE) GTEST_SKIP() << "guard_install exists only in the secure build";
  // In a child, as the environment sets it before anything asks the kernel:
  // guards are off (exit 5 otherwise).
  ChildResult off = init_in_child({{"REMALLOC_GUARD_INSTALL", "0"}}, [] {
    if (os::guards_available()) _exit(5);
  });
  ASSERT_EQ(off.values.size(), size_t(options::kNumOptions));
  EXPECT_EQ(off.values[options::kGuardInstall], 0);
  // By default guards are used wherever the kernel has them (exit 6 otherwise).
  ChildResult on = init_in_child({}, [] {
    bool kernel_has = madvise(nullptr, 0, 102 /* MADV_GUARD_INSTALL */) == 0;
    if (os::guards_available() != kernel_has) _exit(6);
  });
  ASSERT_EQ(on.values.size(), size_t(options::kNumOptions));
  EXPECT_EQ(on.values[options::kGuardInstall], 1);
}

TEST(Options, SetAppliesToTheLowerLayers) {
  long delay = options::get(options::kPurgeDelay);
  long budget = options::get(options::kVmaBudget);
  ASSERT_TRUE(options::set(options::kPurgeDelay, 3));
  EXPECT_EQ(pages::config().purge_delay_ns, 3'000'000u);
  ASSERT_TRUE(options::set(options::kVmaBudget, 777));
  EXPECT_EQ(vma::budget(), 777u);
  EXPECT_FALSE(options::set(options::kVmaBudget, -1));
  EXPECT_EQ(vma::budget(), 777u);
  options::set(options::kPurgeDelay, delay);
  options::set(options::kVmaBudget, budget);
}

// With verbose on, a refused set() says so on stderr.
TEST(Options, VerboseReportsRefusedSet) {
  ChildResult c = init_in_child({{"REMALLOC_VERBOSE", "1"}}, [] {
    if (options::set(options::kPurgeDelay, -5)) _exit(4);
  });
  EXPECT_NE(c.err.find("ignoring REMALLOC_PURGE_DELAY=-5 "), std::string::npos) << c.err;
  ChildResult quiet = init_in_child({}, [] { options::set(options::kPurgeDelay, -5); });
  EXPECT_EQ(quiet.err, "");
}

TEST(Options, PrintListsEveryRow) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  options::print(fds[1]);
  close(fds[1]);
  std::string out = drain(fds[0]);
  for (const Row& r : kRows) EXPECT_NE(out.find(std::string("   ") + r.name + " "), std::string::npos) << r.name;
  EXPECT_NE(out.find("auto"), std::string::npos) << out;
}

}  // namespace

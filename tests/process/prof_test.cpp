// Heap profiling (issue 18): the helper prof_known (tests/process/helpers)
// allocates from known functions in known proportions and checks its own
// profiles; these tests run it, read its profiles with the packaged viewers
// (jeprof from libjemalloc-dev, google-pprof from google-perftools, both in
// cmake/install-deps.sh), and run it with many threads, forks and dlopen.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

const std::string kProfHelper = REMALLOC_TEST_PROF_KNOWN;
const std::string kProfCtorlib = REMALLOC_TEST_CTORLIB2;

// A fresh directory under /tmp, removed with its files at the end.
struct ProfDir {
  std::string path;
  ProfDir() {
    char tmpl[] = "/tmp/remalloc-prof-XXXXXX";
    path = mkdtemp(tmpl) ? tmpl : "";
  }
  ~ProfDir() {
    for (const std::string& f : files()) unlink((path + "/" + f).c_str());
    rmdir(path.c_str());
  }
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    if (DIR* d = opendir(path.c_str())) {
      while (dirent* e = readdir(d))
        if (e->d_name[0] != '.') out.push_back(e->d_name);
      closedir(d);
    }
    return out;
  }
};

// The helper's "expect NAME live|total EXPECTED BOUND ESTIMATE" lines.
struct Expect {
  double expected, bound, estimate;
};
std::map<std::string, Expect> parse_expect(const std::string& out) {
  std::map<std::string, Expect> m;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    char name[128], kind[16];
    Expect e;
    if (std::sscanf(line.c_str(), "expect %127s %15s %lf %lf %lf", name, kind, &e.expected, &e.bound, &e.estimate) == 5)
      m[std::string(name) + " " + kind] = e;
  }
  return m;
}

std::string which(const std::string& prog) {
  tu::RunResult r = tu::run({"sh", "-c", "command -v " + prog}, {}, 60);
  if (!r.exited_ok()) return "";
  std::string s = r.out;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Flat MiB per function of a viewer's --text output:
//   "    36.5  42.0%  42.0%     36.5  42.0% known_malloc"
std::map<std::string, double> parse_text(const std::string& out) {
  std::map<std::string, double> m;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    double flat, flat_pct, sum_pct, cum, cum_pct;
    char name[256];
    if (std::sscanf(line.c_str(), " %lf %lf%% %lf%% %lf %lf%% %255s", &flat, &flat_pct, &sum_pct, &cum, &cum_pct,
                    name) == 6)
      m[name] += flat;
  }
  return m;
}

const char* const kKnownFns[] = {"known_malloc", "known_calloc", "known_large", "known_new", "known_memalign"};

// Stacks by frame-pointer walks (the helper is built with frame pointers)
// and by libgcc's unwinder: the same attribution.
TEST(HeapProfile, KnownFunctionsGetTheirSharesLiveAndTotal) {
  for (const char* unwind : {"fp", "libgcc"}) {
    ProfDir dir;
    ASSERT_FALSE(dir.path.empty());
    tu::RunResult r = tu::run({kProfHelper, "shares", dir.path},
                              {"REMALLOC_PROF=1", "REMALLOC_PROF_SAMPLE=16384", std::string("REMALLOC_PROF_UNWIND=") + unwind,
                               "REMALLOC_PROF_FINAL=1", "REMALLOC_PROF_PREFIX=" + dir.path + "/final"},
                              600);
    std::printf("REMALLOC_PROF_UNWIND=%s\n%s", unwind, r.out.c_str());
    EXPECT_TRUE(r.exited_ok()) << unwind << ": " << r.describe();
    EXPECT_NE(r.out.find("shares ok"), std::string::npos) << unwind << ": " << r.describe();
    EXPECT_EQ(parse_expect(r.out).size(), 10u) << r.out;
    // Every sample's stack came from the walk asked for.
    std::string walks = std::string(unwind) == "fp" ? " 0 unwinder walks" : " 0 frame-pointer walks";
    EXPECT_NE(r.err.find(walks), std::string::npos) << r.err;
  }
}

// The viewers Debian packages read the profile: each known function appears
// with the bytes the helper attributed to it (the viewers scale the same
// way), and those are within the helper's bound of what it allocated.
TEST(HeapProfile, PackagedViewersShowTheKnownFunctions) {
  std::vector<std::string> viewers;
  for (const char* v : {"jeprof", "google-pprof"})
    if (!which(v).empty()) viewers.push_back(v);
  if (viewers.empty()) GTEST_SKIP() << "neither jeprof (libjemalloc-dev) nor google-pprof (google-perftools) is installed";
  ProfDir dir;
  tu::RunResult r = tu::run({kProfHelper, "shares", dir.path}, {"REMALLOC_PROF=1", "REMALLOC_PROF_SAMPLE=16384"}, 600);
  ASSERT_TRUE(r.exited_ok()) << r.describe();
  std::map<std::string, Expect> expect = parse_expect(r.out);
  ASSERT_EQ(expect.size(), 10u) << r.out;
  std::string profile = dir.path + "/shares.heap";
  for (const std::string& viewer : viewers) {
    for (const char* kind : {"live", "total"}) {
      std::vector<std::string> argv = {viewer, "--text"};
      if (std::string(kind) == "total") argv.push_back("--alloc_space");
      argv.push_back(kProfHelper);
      argv.push_back(profile);
      tu::RunResult v = tu::run(argv, {"-LD_PRELOAD"}, 600);
      ASSERT_TRUE(v.exited_ok()) << viewer << ": " << v.describe();
      std::map<std::string, double> mib = parse_text(v.out);
      std::printf("%s --text%s:\n%s", viewer.c_str(), std::string(kind) == "total" ? " --alloc_space" : "",
                  v.out.c_str());
      for (const char* fn : kKnownFns) {
        const Expect& e = expect[std::string(fn) + " " + kind];
        ASSERT_TRUE(mib.count(fn)) << viewer << " does not show " << fn << " (" << kind << ")\n" << v.out;
        double shown = mib[fn] * 1048576.0;
        // The viewer prints MiB with one decimal.
        EXPECT_NEAR(shown, e.estimate, 0.06 * 1048576.0 + 0.01 * e.estimate)
            << viewer << " shows " << fn << " " << kind << " " << mib[fn] << " MiB, the helper read "
            << e.estimate / 1048576.0 << " MiB from the same file";
        EXPECT_NEAR(shown, e.expected, e.bound + 0.06 * 1048576.0)
            << viewer << ": " << fn << " " << kind << " is " << mib[fn] << " MiB, it allocated "
            << e.expected / 1048576.0 << " MiB (bound " << e.bound / 1048576.0 << " MiB)";
      }
    }
  }
}

// Each mover (a kernel without UFFDIO_MOVE copies instead: still a move).
TEST(HeapProfile, ReallocMovesShrinksFreesAndSwitching) {
  for (const char* mover : {"mremap", "uffd", "copy"}) {
    ProfDir dir;
    tu::RunResult r = tu::run({kProfHelper, "moves", dir.path},
                              {"REMALLOC_PROF=1", "REMALLOC_PROF_SAMPLE=1", std::string("REMALLOC_MOVER=") + mover}, 600);
    std::printf("REMALLOC_MOVER=%s\n%s", mover, r.out.c_str());
    EXPECT_TRUE(r.exited_ok()) << mover << ": " << r.describe();
    EXPECT_NE(r.out.find("moves ok"), std::string::npos) << mover << ": " << r.describe();
  }
}

// Every "remalloc: sampler: ..." line (the process and each fork child print
// one at exit) says how many allocations were made inside the sampler.
void expect_no_nested_allocations(const std::string& err, size_t min_lines) {
  size_t lines = 0;
  for (size_t at = err.find("remalloc: sampler: "); at != std::string::npos;
       at = err.find("remalloc: sampler: ", at + 1)) {
    std::string line = err.substr(at, err.find('\n', at) - at);
    EXPECT_NE(line.find(" 0 allocations inside the sampler"), std::string::npos) << line;
    EXPECT_NE(line.find(" 0 failed"), std::string::npos) << line;
    lines++;
  }
  EXPECT_GE(lines, min_lines) << err;
}

TEST(HeapProfile, ThreadsForksAndDlopenWithoutDeadlockOrNestedAllocation) {
  ProfDir dir;
  const std::string forks = std::to_string(tu::scaled(20, 4));
  tu::RunResult r = tu::run({kProfHelper, "stress", dir.path, kProfCtorlib, forks},
                            {"REMALLOC_PROF=1", "REMALLOC_PROF_SAMPLE=4096", "REMALLOC_PROF_FINAL=1",
                             "REMALLOC_PROF_PREFIX=" + dir.path + "/final"},
                            900);
  std::printf("%s", r.out.c_str());
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_TRUE(r.exited_ok()) << r.describe();
  EXPECT_NE(r.out.find("stress ok"), std::string::npos) << r.describe();
  // The process and every child wrote a final profile and the exit report.
  expect_no_nested_allocations(r.err, static_cast<size_t>(std::atoi(forks.c_str())) + 1);
}

// REMALLOC_PROF_FINAL: the exit report names the leaking function and the
// file written (PREFIX.PID.SEQ.heap); REMALLOC_PROF_LEAK_ERROR: status 1.
TEST(HeapProfile, ExitReportAndLeakError) {
  ProfDir dir;
  std::string prefix = dir.path + "/exit";
  tu::RunResult r = tu::run({kProfHelper, "shares", dir.path},
                            {"REMALLOC_PROF=1", "REMALLOC_PROF_SAMPLE=16384", "REMALLOC_PROF_FINAL=1",
                             "REMALLOC_PROF_PREFIX=" + prefix},
                            600);
  ASSERT_TRUE(r.exited_ok()) << r.describe();
  EXPECT_NE(r.err.find("remalloc: heap profile at exit: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("heap profile written to " + prefix + "."), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("view it with: jeprof --text "), std::string::npos) << r.err;
  expect_no_nested_allocations(r.err, 1);
  bool named = false;
  for (const std::string& f : dir.files()) {
    int pid = 0, seq = -1;
    char tail[16] = "";
    if (std::sscanf(f.c_str(), "exit.%d.%d.%15s", &pid, &seq, tail) == 3 && std::string(tail) == "heap") named = true;
  }
  EXPECT_TRUE(named) << "no exit.PID.SEQ.heap in " << dir.path;

  // "leak" keeps 16 MiB in known_leak: the report's top stack names it,
  // and with REMALLOC_PROF_LEAK_ERROR=1 the exit status is 1.
  tu::RunResult leak = tu::run({kProfHelper, "leak", dir.path},
                               {"REMALLOC_PROF=1", "REMALLOC_PROF_LEAK_ERROR=1", "REMALLOC_PROF_PREFIX=" + prefix}, 600);
  EXPECT_TRUE(WIFEXITED(leak.status) && WEXITSTATUS(leak.status) == 1) << leak.describe();
  EXPECT_NE(leak.err.find("blocks from known_leak+"), std::string::npos) << leak.err;
  EXPECT_NE(leak.err.find("exiting with status 1"), std::string::npos) << leak.err;
  tu::RunResult quiet = tu::run({kProfHelper, "leak", dir.path}, {"REMALLOC_PROF=1", "REMALLOC_PROF_PREFIX=" + prefix}, 600);
  EXPECT_TRUE(quiet.exited_ok()) << quiet.describe();
  EXPECT_EQ(quiet.err.find("heap profile at exit"), std::string::npos) << quiet.err;
}

// REMALLOC_PROF_INTERVAL: a profile every so many bytes allocated;
// REMALLOC_PROF_LIMIT: one when resident memory passes a share of the limit.
TEST(HeapProfile, IntervalAndMemoryLimitDumps) {
  ProfDir dir;
  tu::RunResult r = tu::run({kProfHelper, "shares", dir.path},
                            {"REMALLOC_PROF=1", "REMALLOC_PROF_SAMPLE=16384",
                             "REMALLOC_PROF_INTERVAL=" + std::to_string(16 << 20),
                             "REMALLOC_PROF_PREFIX=" + dir.path + "/interval"},
                            600);
  ASSERT_TRUE(r.exited_ok()) << r.describe();
  size_t interval_files = 0;
  for (const std::string& f : dir.files())
    if (f.rfind("interval.", 0) == 0) interval_files++;
  // 136 MiB allocated: 8 intervals of 16 MiB, less the bytes each thread
  // counted since its last sample.
  EXPECT_GE(interval_files, 6u);
  EXPECT_LE(interval_files, 9u);

  // A peak of about 54 MiB resident; a limit of 256 MiB, dump at 15% (38.4
  // MiB). Resident memory is read at most every 10 ms, so it must stay
  // above the threshold for a while: at 20% (51.2 MiB) the peak passed it
  // by 2 MiB once the page heap's descriptors were packed (56 MiB before),
  // and 3 runs in 8 on a loaded machine wrote no profile.
  ProfDir dir2;
  tu::RunResult l = tu::run({kProfHelper, "shares", dir2.path},
                            {"REMALLOC_PROF=1", "REMALLOC_PROF_SAMPLE=16384", "REMALLOC_MEMORY_LIMIT=256",
                             "REMALLOC_PROF_LIMIT=15", "REMALLOC_PROF_PREFIX=" + dir2.path + "/limit"},
                            600);
  ASSERT_TRUE(l.exited_ok()) << l.describe();
  size_t limit_files = 0;
  for (const std::string& f : dir2.files())
    if (f.rfind("limit.", 0) == 0) limit_files++;
  EXPECT_GE(limit_files, 1u);
  EXPECT_LE(limit_files, 2u);
}

}  // namespace

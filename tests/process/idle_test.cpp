// Idle return, bounded purging, the purger thread across fork, malloc_info,
// and a burst under a memory cgroup limit (issue 10). Each scenario runs
// the helper idle_burst in a fresh process under LD_PRELOAD of libremalloc
// (or, for the record only, jemalloc and mimalloc). Times are recorded as
// test properties, never asserted: the assertions are on RSS coming back at
// all (within a 30 s poll) and on how much one call purges.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "remalloc/remalloc.h"
#include "test_util.h"

namespace {

const std::string kIdleLib = REMALLOC_TEST_LIB;
const std::string kHelper = REMALLOC_TEST_IDLE_BURST;

// "key=N" in text, or -1.
long long field(const std::string& text, const std::string& key) {
  size_t at = text.find(key + "=");
  if (at == std::string::npos) return -1;
  return std::atoll(text.c_str() + at + key.size() + 1);
}

// Settings under which only the thread (or malloc_trim) can give the
// memory back: a dirty cap far above the burst.
std::vector<std::string> keep_env(bool background) {
  return {"LD_PRELOAD=" + kIdleLib, "REMALLOC_DIRTY_MAX=4096", "REMALLOC_DIRTY_RATIO=100",
          std::string("REMALLOC_BACKGROUND=") + (background ? "1" : "0")};
}

TEST(IdleReturn, BackgroundThreadReturnsFreedMemoryWhileIdle) {
  tu::RunResult r = tu::run({kHelper, "idle", std::to_string(tu::scaled(128, 32))}, keep_env(true), 120);
  ASSERT_TRUE(r.exited_ok()) << r.describe();
  EXPECT_EQ(field(r.out, "bg_running"), 1) << r.out;
  RecordProperty("back_ms", std::to_string(field(r.out, "back_ms")));
  std::printf("  %s", r.out.c_str());
}

// A fork child that only frees the small blocks its parent built: nothing
// but those frees (slabs emptied and given back) can start its thread. The
// purge delay is longer than the frees take, so that the frees' own decay
// cannot return the memory: only the thread can (without it, the child's
// RSS stays; checked by not starting the thread from those frees).
TEST(IdleReturn, ForkChildThatOnlyFreesSmallBlocksGetsThemBack) {
  std::vector<std::string> env = keep_env(true);
  env.push_back("REMALLOC_PURGE_DELAY=300");
  tu::RunResult r = tu::run({kHelper, "forkfree", std::to_string(tu::scaled(128, 32))}, env, 120);
  ASSERT_TRUE(r.exited_ok()) << r.describe();
  EXPECT_EQ(field(r.out, "bg_running"), 1) << r.out;
  EXPECT_GT(field(r.out, "before_free_mib"), field(r.out, "base_mib") + 16) << r.out;
  std::printf("  %s", r.out.c_str());
}

TEST(IdleReturn, MallocTrimReturnsFreedMemoryWithoutThread) {
  tu::RunResult r = tu::run({kHelper, "idle", std::to_string(tu::scaled(128, 32)), "trim"}, keep_env(false), 120);
  ASSERT_TRUE(r.exited_ok()) << r.describe();
  EXPECT_EQ(field(r.out, "bg_running"), 0) << r.out;
  long long base = field(r.out, "base_mib"), freed = field(r.out, "after_free_mib"),
            trimmed = field(r.out, "after_trim_mib");
  EXPECT_GT(freed, base + 16) << "the burst was purged before the trim: the test proves nothing\n" << r.out;
  EXPECT_LE(trimmed, base + 16) << "malloc_trim(0) left freed memory resident\n" << r.out;
}

TEST(IdleReturn, WithoutThreadOrTrimTheMemoryStays) {
  // The control: the thread, not something else, returned it above.
  std::vector<std::string> env = keep_env(false);
  env.push_back("IDLE_BURST_MAX_WAIT=2");
  tu::RunResult r = tu::run({kHelper, "idle", "48"}, env, 120);
  EXPECT_FALSE(r.exited_ok()) << r.describe();
  EXPECT_EQ(field(r.out, "back_ms"), -1000) << r.out;
}

TEST(IdleReturn, ForkWithThreadRunning) {
  tu::RunResult r = tu::run({kHelper, "fork", std::to_string(tu::scaled(64, 32))}, keep_env(true), 120);
  ASSERT_TRUE(r.exited_ok()) << r.describe();
  // The child ran a thread of its own (started after the fork) and got its
  // memory back; so did the parent, before and after.
  size_t child = r.out.find("child:");
  ASSERT_NE(child, std::string::npos) << r.out;
  EXPECT_EQ(field(r.out.substr(child), "bg_running"), 1) << r.out;
  EXPECT_NE(r.out.find("parent-after:"), std::string::npos) << r.out;
}

TEST(BoundedWork, OneCallPurgesLittleAfterAFreeBurst) {
  // A million small blocks freed, then single calls: none may purge more
  // than the per-call budget (1 MiB plus its own pages), without and with
  // the thread. The delay outlasts the free loop and the cap is out of the
  // way, so that all the freed slabs fall due together while the helper
  // waits, as they do on a fast machine with the default delay.
  for (const char* bg : {"0", "1"}) {
    tu::RunResult r = tu::run({kHelper, "bounded", std::to_string(tu::scaled(1000000, 100000))},
                              {"LD_PRELOAD=" + kIdleLib, std::string("REMALLOC_BACKGROUND=") + bg,
                               "REMALLOC_PURGE_DELAY=300", "REMALLOC_DIRTY_MAX=4096", "IDLE_BURST_WAIT_MS=600"},
                              120);
    ASSERT_TRUE(r.exited_ok()) << r.describe();
    long long most = field(r.out, "most_purged_by_one_call_kib");
    EXPECT_GE(most, 0) << r.out;
    EXPECT_LE(most, 4096) << "one call purged " << most << " KiB (background " << bg << ")\n" << r.out;
    RecordProperty(std::string("longest_call_ms_bg") + bg, r.out);
    std::printf("  background %s: %s", bg, r.out.c_str());
  }
}

TEST(Statistics, MallocInfoWritesGlibcXml) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(malloc_info(0, f), 0);
  std::fclose(f);
  std::string xml(buf, len);
  std::free(buf);
  EXPECT_EQ(xml.rfind("<malloc version=\"1\">", 0), 0u) << xml;
  EXPECT_NE(xml.find("<system type=\"current\" size=\""), std::string::npos) << xml;
  EXPECT_NE(xml.find("</malloc>\n"), std::string::npos) << xml;
  EXPECT_EQ(malloc_info(1, stderr), -1);
}

TEST(Statistics, ResidentSplitAndLimitAreReported) {
  tu::RunResult r = tu::run({"/bin/true"}, {"LD_PRELOAD=" + kIdleLib, "REMALLOC_STATS=json", "REMALLOC_MEMORY_LIMIT=512"}, 60);
  ASSERT_TRUE(r.exited_ok()) << r.describe();
  for (const char* k : {"slab_slack", "free_unpurged", "metadata", "dirty_cap", "bg_running", "bg_purged_bytes",
                        "bg_heals", "memory_limit", "memory_headroom"})
    EXPECT_GE(tu::json_number(r.err, k), 0) << k << "\n" << r.err;
  EXPECT_EQ(tu::json_number(r.err, "memory_limit"), 512ll << 20) << r.err;
  r = tu::run({"/bin/true"}, {"LD_PRELOAD=" + kIdleLib, "REMALLOC_VERBOSE=1", "REMALLOC_MEMORY_LIMIT=512"}, 60);
  EXPECT_NE(r.err.find("memory limit: 512"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("headroom"), std::string::npos) << r.err;
}

// ---- memory cgroup -----------------------------------------------------------
// A child group of our own memory cgroup (v1, or v2 with the memory
// controller), with a limit; processes join it through cgroup.procs.
struct Cgroup {
  std::string dir;
  std::string limit_file;
  bool ok = false;
  std::string why;

  explicit Cgroup(size_t limit) {
    if (geteuid() != 0) {
      why = "needs root";
      return;
    }
    std::string self = tu::read_file("/proc/self/cgroup");
    std::string v1, v2;
    for (size_t at = 0; at < self.size();) {
      size_t end = self.find('\n', at);
      if (end == std::string::npos) end = self.size();
      std::string line = self.substr(at, end - at);
      at = end + 1;
      size_t c1 = line.find(':'), c2 = line.find(':', c1 + 1);
      if (c1 == std::string::npos || c2 == std::string::npos) continue;
      std::string ctl = line.substr(c1 + 1, c2 - c1 - 1), path = line.substr(c2 + 1);
      if (path == "/") path = "";
      if (("," + ctl + ",").find(",memory,") != std::string::npos) v1 = "/sys/fs/cgroup/memory" + path;
      if (ctl.empty() && line[0] == '0') v2 = "/sys/fs/cgroup" + path;
    }
    std::string name = "/remalloc_test_" + std::to_string(getpid());
    if (!v1.empty() && access((v1 + "/memory.limit_in_bytes").c_str(), W_OK) == 0) {
      dir = v1 + name;
      limit_file = "memory.limit_in_bytes";
    } else if (!v2.empty() && tu::read_file(v2 + "/cgroup.subtree_control").find("memory") != std::string::npos) {
      dir = v2 + name;
      limit_file = "memory.max";
    } else {
      why = "no writable memory cgroup (v1 memory controller or v2 with memory delegated)";
      return;
    }
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      why = "cannot create " + dir;
      return;
    }
    ok = write(limit_file, std::to_string(limit));
    // No swap escape: with swap the group would page out instead of dying.
    if (ok && limit_file == "memory.limit_in_bytes") write("memory.memsw.limit_in_bytes", std::to_string(limit));
    if (ok && limit_file == "memory.max") write("memory.swap.max", "0");
    if (!ok) why = "cannot set the limit in " + dir;
  }
  bool write(const std::string& file, const std::string& value) {
    int fd = open((dir + "/" + file).c_str(), O_WRONLY);
    if (fd < 0) return false;
    bool good = ::write(fd, value.data(), value.size()) == ssize_t(value.size());
    close(fd);
    return good;
  }
  // Runs the helper inside the group: a shell joins it, then execs.
  tu::RunResult run(const std::vector<std::string>& args, const std::vector<std::string>& env) {
    std::string cmd = "echo $$ > '" + dir + "/cgroup.procs' && exec";
    for (const std::string& a : args) cmd += " '" + a + "'";
    return tu::run({"/bin/sh", "-c", cmd}, env, 300);
  }
  ~Cgroup() {
    if (!dir.empty()) rmdir(dir.c_str());
  }
};

TEST(MemoryCgroup, ChurnBurstSurvivesUnderTheLimit) {
  // Live memory stays under 60% of the limit, 3x the limit is allocated in
  // rounds whose freed blocks never fit the next round. The settings keep
  // freed memory as long as possible (10 s delay, 4 GiB dirty cap): only
  // the limit awareness stands between the program and the OOM killer.
  const size_t limit_mib = 256;
  Cgroup cg(limit_mib << 20);
  if (!cg.ok) GTEST_SKIP() << cg.why;
  std::vector<std::string> args = {kHelper, "churn", std::to_string(limit_mib)};
  std::vector<std::string> keep = {"REMALLOC_PURGE_DELAY=10000", "REMALLOC_DIRTY_MAX=4096", "REMALLOC_DIRTY_RATIO=100"};
  std::vector<std::string> env = keep;
  env.push_back("LD_PRELOAD=" + kIdleLib);
  tu::RunResult r = cg.run(args, env);
  EXPECT_TRUE(r.exited_ok() && r.out.find("churn_ok") != std::string::npos)
      << "remalloc did not survive under a " << limit_mib << " MiB limit: " << r.describe();
  std::printf("  remalloc: %s", r.out.c_str());
  // For the record: other allocators under the same limit (never a failure).
  for (const char* other : {"libjemalloc.so.2", "libmimalloc.so.2"}) {
    std::string path;
    for (const char* d : {"/usr/lib/x86_64-linux-gnu/", "/usr/lib64/", "/usr/lib/", "/usr/local/lib/"})
      if (access((std::string(d) + other).c_str(), R_OK) == 0) {
        path = std::string(d) + other;
        break;
      }
    if (path.empty()) continue;
    tu::RunResult o = cg.run(args, {"LD_PRELOAD=" + path});
    std::string what = o.exited_ok() ? "survived: " + o.out : "did not survive: " + o.describe();
    RecordProperty(other, what);
    std::printf("  %s (its defaults) %s\n", other, what.c_str());
  }
}

}  // namespace

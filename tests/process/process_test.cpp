// Whole-process behaviour (override build): fork from a multithreaded
// parent, fresh processes whose first call is unusual, allocation in a
// shared library's constructor before remalloc's own, RLIMIT_AS, and
// allocation during exit.
#include <gtest/gtest.h>

#include <pthread.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "test_alloc.h"
#include "test_util.h"

extern char** environ;

namespace {

const std::string kLib = REMALLOC_TEST_LIB;

std::string preload_env() {
  const char* old = getenv("LD_PRELOAD");
  return "LD_PRELOAD=" + kLib + (old && *old ? std::string(":") + old : "");
}

// --- fork ---

// Blocks the churning threads publish; fork children free them (blocks of
// heaps whose threads do not exist in the child).
std::atomic<void*> g_published[64];

struct Churners {
  std::atomic<bool> stop{false};
  std::atomic<long> ops{0};
  std::vector<std::thread> threads;
  explicit Churners(int n) {
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([this, i] {
        uint64_t r = tu::mix64(i + 1);
        void* held[16] = {};
        while (!stop.load(std::memory_order_relaxed)) {
          r = tu::mix64(r);
          size_t k = r % 16;
          size_t n = (r >> 8) % 32 == 0 ? (r >> 20) % (8 * tu::MiB) : (r >> 20) % 2048;
          if (held[k] && (r >> 5) % 4 == 0) {
            held[k] = ta::realloc(held[k], n + 1);
          } else {
            ta::free(held[k]);
            held[k] = ta::malloc(n);
          }
          if (held[k]) static_cast<char*>(held[k])[0] = 1;
          if ((r >> 12) % 16 == 0) {  // publish one, freeing what was there
            void* pub = ta::malloc(64 + (r >> 40) % 4000);
            if (pub) std::memset(pub, 0x3c, 64);
            ta::free(g_published[(r >> 24) % 64].exchange(pub));
          }
          ops.fetch_add(1, std::memory_order_relaxed);
        }
        for (void* p : held) ta::free(p);
      });
    }
  }
  ~Churners() {
    stop = true;
    for (auto& t : threads) t.join();
    for (auto& p : g_published) ta::free(p.exchange(nullptr));
  }
};

// Work done in a fork child; returns 0 or a failure code.
int child_work(int variant) {
  alarm(30);  // a deadlock becomes SIGALRM, not a hung test
  std::vector<void*> ps;
  for (int i = 0; i < 2000; ++i) {
    size_t n = 1 + static_cast<size_t>(i * 97) % 3000;
    void* p = ta::malloc(n);
    if (!p) return 10;
    tu::fill(p, n, static_cast<uint64_t>(i));
    ps.push_back(p);
  }
  for (int i = 0; i < 2000; i += 2) {
    size_t n = 1 + static_cast<size_t>(i * 97) % 3000;
    if (tu::check(ps[i], n, static_cast<uint64_t>(i)) != SIZE_MAX) return 11;
    ta::free(ps[i]);
    ps[i] = nullptr;
  }
  // Blocks of the parent's other threads' heaps (those threads do not exist
  // here) can be freed.
  for (auto& slot : g_published) {
    void* p = slot.exchange(nullptr);
    if (p && static_cast<unsigned char*>(p)[63] != 0x3c) return 12;
    ta::free(p);
  }
  // Large blocks: grow through moves, shrink, free.
  void* big = ta::malloc(16 * tu::MiB);
  if (!big) return 20;
  tu::fill(big, 16 * tu::MiB, 99);
  void* blocker = ta::malloc(tu::MiB);
  big = ta::realloc(big, 48 * tu::MiB);
  if (!big || tu::check(big, 16 * tu::MiB, 99) != SIZE_MAX) return 21;
  big = ta::realloc(big, 3 * tu::MiB);
  if (!big || tu::check(big, 3 * tu::MiB, 99) != SIZE_MAX) return 22;
  ta::free(blocker);
  ta::free(big);
  // A thread in the child allocates and frees blocks of the main thread.
  std::atomic<int> tbad{0};
  pthread_t t;
  struct Arg {
    std::vector<void*>* ps;
    std::atomic<int>* bad;
  } arg{&ps, &tbad};
  if (pthread_create(
          &t, nullptr,
          [](void* a) -> void* {
            auto* g = static_cast<Arg*>(a);
            for (size_t i = 1; i < g->ps->size(); i += 2) {
              ta::free((*g->ps)[i]);
              (*g->ps)[i] = nullptr;
            }
            for (int i = 0; i < 1000; ++i) {
              void* p = ta::malloc(static_cast<size_t>(i) * 13 + 1);
              if (!p) ++*g->bad;
              ta::free(p);
            }
            return nullptr;
          },
          &arg) != 0)
    return 30;
  pthread_join(t, nullptr);
  if (tbad.load()) return 31;
  if (variant % 3 == 1) {
    // Fork again from the child (grandchild), which also allocates.
    pid_t g = fork();
    if (g == 0) {
      void* p = ta::malloc(5 * tu::MiB);
      if (!p) _exit(1);
      std::memset(p, 3, 5 * tu::MiB);
      ta::free(p);
      _exit(0);
    }
    int st = 0;
    if (waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return 40;
  }
  return 0;
}

TEST(Fork, FromThreadsThatAllocate) {
  Churners churn(4);
  const int forks = static_cast<int>(tu::scaled(60, 10));
  for (int i = 0; i < forks; ++i) {
    // Let the threads get into the allocator.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int r = child_work(i);
      if (i % 2) exit(r);  // runs atexit handlers and remalloc's exit hooks
      _exit(r);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "fork child " << i << " killed by signal " << WTERMSIG(status)
                                   << (WTERMSIG(status) == SIGALRM ? " (deadlock: SIGALRM after 30 s)" : "");
    ASSERT_EQ(WEXITSTATUS(status), 0) << "fork child " << i << " failed";
  }
  EXPECT_GT(churn.ops.load(), 0);
}

TEST(Fork, SpawnFromManyThreads) {
  // posix_spawn (vfork-like), vfork+exec and fork+exec from several threads at once,
  // while others allocate.
  Churners churn(2);
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 8; ++i) {
        tu::RunResult r = tu::run({"/bin/true"}, {}, 30);
        if (!r.exited_ok()) ++bad;
        pid_t pid = fork();
        if (pid == 0) {
          void* p = ta::malloc(1000 + static_cast<size_t>(t));
          ta::free(p);
          execl("/bin/true", "true", static_cast<char*>(nullptr));
          _exit(127);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) ++bad;
        // vfork: the child shares the parent's memory (and remalloc's
        // locks, held or not by other threads) until it execs.
        pid = vfork();
        if (pid == 0) {
          execl("/bin/true", "true", static_cast<char*>(nullptr));
          _exit(127);
        }
        st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) ++bad;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(Fork, AtforkHandlersThatAllocate) {
  // The program's handlers run between remalloc's (registered after them):
  // they must be able to allocate, and nothing may deadlock. The watchdog
  // only reports a hang; a healthy run takes well under a second per fork.
  tu::RunResult r = tu::run({REMALLOC_TEST_ATFORK_ALLOC, "20"}, {}, 600);
  EXPECT_FALSE(r.timed_out) << "fork deadlocked with allocating atfork handlers: " << r.describe();
  EXPECT_TRUE(r.exited_ok()) << r.describe();
  EXPECT_NE(r.out.find("atfork ok"), std::string::npos) << r.describe();
}

// --- fresh processes ---

const char* const kFirstOps[] = {"free_null",   "free_sized_null", "realloc_null_zero", "usable_null",
                                 "owns_stack",  "stats_get",       "stats_json",        "stats_print",
                                 "option_get",  "option_set",      "trim",              "malloc_huge",
                                 "calloc_overflow", "posix_memalign_einval", "aligned_large", "malloc_large"};

void run_first_calls(const std::string& helper, const std::vector<std::string>& env) {
  for (const char* op : kFirstOps) {
    tu::RunResult r = tu::run({helper, op}, env, 60);
    EXPECT_TRUE(r.exited_ok()) << helper << " " << op << ": " << r.describe();
    EXPECT_NE(r.out.find(std::string("first_call ") + op + " ok"), std::string::npos) << r.describe();
  }
}

TEST(FreshProcess, FirstCallEverPrefixedApi) { run_first_calls(REMALLOC_TEST_FIRST_CALL_API, {}); }
TEST(FreshProcess, FirstCallEverLinked) { run_first_calls(REMALLOC_TEST_FIRST_CALL_OVERRIDE, {}); }

TEST(FreshProcess, OptionsFromTheEnvironment) {
  for (const std::string& helper : {std::string(REMALLOC_TEST_FIRST_CALL_API), std::string(REMALLOC_TEST_FIRST_CALL_OVERRIDE)}) {
    tu::RunResult r = tu::run({helper, "print_options"},
                              {"REMALLOC_MOVER=copy", "REMALLOC_PURGE_DELAY=0", "REMALLOC_STATS=0",
                               "REMALLOC_ARENA_SIZE=1024", "REMALLOC_ABORT_ON_INVALID=off"},
                              60);
    EXPECT_TRUE(r.exited_ok()) << r.describe();
    EXPECT_NE(r.out.find("mover=2 purge_delay=0 stats=0 arena_size=1024 abort_on_invalid=0"), std::string::npos)
        << "options not read from the environment: " << r.describe();
    // A bad value is reported and ignored.
    r = tu::run({helper, "print_options"}, {"REMALLOC_PURGE_DELAY=soon", "REMALLOC_MOVER=teleport"}, 60);
    EXPECT_TRUE(r.exited_ok()) << r.describe();
    EXPECT_NE(r.out.find("mover=-1 purge_delay=100 "), std::string::npos) << r.describe();
    EXPECT_NE(r.err.find("REMALLOC_PURGE_DELAY"), std::string::npos) << "bad value not reported: " << r.describe();
    EXPECT_NE(r.err.find("REMALLOC_MOVER"), std::string::npos) << "bad value not reported: " << r.describe();
  }
}

TEST(FreshProcess, StatsJsonAtExit) {
  tu::RunResult r = tu::run({REMALLOC_TEST_EXIT_ALLOC}, {preload_env(), "REMALLOC_STATS=json"}, 60);
  EXPECT_TRUE(r.exited_ok()) << r.describe();
  size_t open = r.err.find('{'), close = r.err.rfind('}');
  ASSERT_NE(open, std::string::npos) << "no JSON statistics at exit: " << r.describe();
  ASSERT_NE(close, std::string::npos);
  std::string json = r.err.substr(open, close - open + 1);
  std::string err;
  std::vector<std::string> keys;
  EXPECT_TRUE(tu::json_valid(json, &keys, &err)) << err << "\n" << json;
  EXPECT_NE(std::find(keys.begin(), keys.end(), "moves_mremap"), keys.end()) << json;
}

TEST(FreshProcess, SharedLibraryConstructorAllocatesBeforeRemallocInit) {
  tu::RunResult r = tu::run({REMALLOC_TEST_CTOR_MAIN, REMALLOC_TEST_CTORLIB2}, {preload_env()}, 60);
  EXPECT_TRUE(r.exited_ok()) << r.describe();
  EXPECT_NE(r.out.find("ctor ok"), std::string::npos) << r.describe();
}

TEST(FreshProcess, RlimitAsPrefixedApi) {
  tu::RunResult r = tu::run({REMALLOC_TEST_RLIMIT_API, "512"}, {}, 120);
  EXPECT_TRUE(r.exited_ok()) << r.describe();
  EXPECT_NE(r.out.find("rlimit_as ok"), std::string::npos) << r.describe();
  RecordProperty("output", r.out);
}

TEST(FreshProcess, RlimitAsLinked) {
  tu::RunResult r = tu::run({REMALLOC_TEST_RLIMIT_OVERRIDE, "512"}, {}, 120);
  EXPECT_TRUE(r.exited_ok()) << r.describe();
  EXPECT_NE(r.out.find("rlimit_as ok"), std::string::npos) << r.describe();
}

TEST(FreshProcess, RlimitAsTight) {
  // A tighter limit: 192 MiB, most of it taken by the libraries already.
  tu::RunResult r = tu::run({REMALLOC_TEST_RLIMIT_OVERRIDE, "192"}, {}, 120);
  EXPECT_FALSE(WIFSIGNALED(r.status)) << "crashed under a tight RLIMIT_AS: " << r.describe();
  EXPECT_TRUE(r.exited_ok()) << r.describe();
}

TEST(FreshProcess, RlimitAsRecoversAfterImpossibleRequests) {
  // 64 MiB is less than one arena granule: arenas must shrink to fit.
  for (const char* limit : {"64", "300", "1024"}) {
    for (const char* helper : {REMALLOC_TEST_RLIMIT_API, REMALLOC_TEST_RLIMIT_OVERRIDE}) {
      tu::RunResult r = tu::run({helper, limit, "recover"}, {}, 600);
      EXPECT_TRUE(r.exited_ok()) << "RLIMIT_AS " << limit << " MiB: " << r.describe();
      EXPECT_NE(r.out.find("rlimit_as recover ok"), std::string::npos) << r.describe();
    }
  }
}

TEST(FreshProcess, AllocationDuringExit) {
  tu::RunResult r = tu::run({REMALLOC_TEST_EXIT_ALLOC}, {preload_env()}, 60);
  EXPECT_TRUE(r.exited_ok()) << r.describe();
  EXPECT_NE(r.out.find("exit ok"), std::string::npos) << r.describe();
}

TEST(FreshProcess, AllocationDuringExitWithStats) {
  tu::RunResult r = tu::run({REMALLOC_TEST_EXIT_ALLOC}, {preload_env(), "REMALLOC_STATS=1"}, 60);
  EXPECT_TRUE(r.exited_ok()) << r.describe();
  EXPECT_NE(r.out.find("exit ok"), std::string::npos) << r.describe();
  EXPECT_NE(tu::lower(r.err).find("mremap"), std::string::npos) << "no statistics at exit: " << r.describe();
}

}  // namespace

namespace {

// --- faults survived ---

TEST(Faults, ForkFromThreadsBusyWithLargeReallocs) {
  // 8 threads grow and shrink 128 KiB..8 MiB blocks (contents checked after
  // every realloc) while the main thread forks; each child reallocs a large
  // block and checks it. 250 forks at scale 1 take about a minute on a
  // loaded 2-core machine (24 s per 100 forks measured); REMALLOC_TEST_SCALE=4
  // runs the 1,000 of the issue.
  const std::string forks = std::to_string(tu::scaled(250, 20));
  tu::RunResult r = tu::run({REMALLOC_TEST_FORK_REALLOC, forks}, {}, 3000);
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_TRUE(r.exited_ok()) << r.describe();
  EXPECT_NE(r.out.find("fork_realloc ok forks=" + forks + " "), std::string::npos) << r.describe();
  RecordProperty("output", r.out);
  std::printf("%s", r.out.c_str());
}

TEST(Faults, PthreadCancelOfAllocatingThreads) {
  const std::string rounds = std::to_string(tu::scaled(40, 5));
  tu::RunResult r = tu::run({REMALLOC_TEST_CANCEL_ALLOC, rounds}, {}, 600);
  EXPECT_TRUE(r.exited_ok()) << r.describe();
  EXPECT_NE(r.out.find("cancel ok"), std::string::npos) << r.describe();
  std::printf("%s", r.out.c_str());
}

TEST(Faults, VmaBudgetExhaustedByTheProgram) {
  for (const char* mode : {"warm", "cold"}) {
    tu::RunResult r = tu::run({REMALLOC_TEST_VMA_EXHAUST, mode}, {}, 600);
    EXPECT_TRUE(r.exited_ok()) << mode << ": " << r.describe();
    EXPECT_NE(r.out.find("vma_exhaust ok"), std::string::npos) << mode << ": " << r.describe();
    std::printf("%s: %s", mode, r.out.c_str());
  }
}

// --- the program's descriptors (issue 15) ---

// Runs fd_reuse in `mode` under LD_PRELOAD, with only the mremap mover and,
// where this kernel has UFFDIO_MOVE, with both movers.
void run_fd_reuse(const char* mode) {
  std::vector<std::string> variants = {""};
  if (tu::uffd_move_supported()) variants.push_back("uffd");
  for (const std::string& v : variants) {
    std::vector<std::string> argv = {REMALLOC_TEST_FD_REUSE, mode};
    if (!v.empty()) argv.push_back(v);
    tu::RunResult r = tu::run(argv, {preload_env()}, 120);
    EXPECT_TRUE(r.exited_ok()) << mode << " " << v << ": " << r.describe();
    EXPECT_NE(r.out.find(std::string("fd_reuse ") + mode + " ok"), std::string::npos) << r.describe();
    std::printf("%s", r.out.c_str());
  }
}

TEST(Descriptors, ProgramClosesEveryDescriptorThenPipeAndFork) {
  // Large reallocs open remalloc's maps descriptor and userfaultfd; the
  // program closes every descriptor from 3 up, makes a pipe and forks (at
  // once, and again after more large reallocs): the pipe ends stay open in
  // parent and children, remalloc never ioctls or closes them, and its
  // movers go on moving with descriptors it opens again.
  run_fd_reuse("closeall");
}

TEST(Descriptors, ProgramFileDup2dOntoRemallocsNumbers) {
  // The program dup2s a temporary file of its own onto the numbers of
  // remalloc's descriptors, then forks, reallocs large blocks and forks
  // again: the file keeps its contents and offset and stays open at every
  // number, in parent and children.
  run_fd_reuse("dup2");
}

TEST(Faults, DlopenDlcloseOfAllocatingLibraryRepeatedly) {
  // ctor_main's library is loaded and unloaded many times; its constructor
  // allocates blocks of every kind and its destructor frees them.
  tu::RunResult r = tu::run({REMALLOC_TEST_CTOR_MAIN, REMALLOC_TEST_CTORLIB2, "200"}, {preload_env()}, 600);
  EXPECT_TRUE(r.exited_ok()) << r.describe();
  EXPECT_NE(r.out.find("ctor ok loops=200"), std::string::npos) << r.describe();
}

}  // namespace

// Relocation engine tests: every mover forced in turn under random grows and
// shrinks with content checks and injected failures; the VMA budget under
// 100,000 moves; realloc of large blocks after fork from a threaded parent.
// Uses the prefixed API (override off), so it also runs under sanitizers.
#include <gtest/gtest.h>
#include <remalloc/remalloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kPage = 4096;

// A pattern derived from the block's identity (seed) and the offset: the
// first 8 bytes of every page and the last 8 bytes of the block.
void fill(void* p, size_t n, uint64_t seed) {
  auto* c = static_cast<unsigned char*>(p);
  // Page words stop short of the tail word, which they must not overlap.
  for (size_t off = 0; off + 16 <= n; off += kPage) {
    uint64_t v = seed * 0x9E3779B97F4A7C15ull + off;
    memcpy(c + off, &v, 8);
  }
  if (n >= 16) {
    uint64_t v = ~seed;
    memcpy(c + n - 8, &v, 8);
  }
}

// Checks the first `n` bytes of a block filled with fill(p, full, seed).
::testing::AssertionResult check(const void* p, size_t n, size_t full, uint64_t seed) {
  auto* c = static_cast<const unsigned char*>(p);
  for (size_t off = 0; off + 16 <= n && off + 16 <= full; off += kPage) {
    uint64_t v = seed * 0x9E3779B97F4A7C15ull + off, got;
    memcpy(&got, c + off, 8);
    if (got != v) return ::testing::AssertionFailure() << "page word at offset " << off << " of " << n;
  }
  if (n == full && n >= 16) {
    uint64_t v = ~seed, got;
    memcpy(&got, c + n - 8, 8);
    if (got != v) return ::testing::AssertionFailure() << "tail word of " << n;
  }
  return ::testing::AssertionSuccess();
}

long maps_lines() {
  FILE* f = fopen("/proc/self/maps", "r");
  if (!f) return -1;
  long n = 0;
  int ch;
  while ((ch = fgetc(f)) != EOF) n += ch == '\n';
  fclose(f);
  return n;
}

remalloc_stats_t stats() {
  remalloc_stats_t s;
  remalloc_stats_get(&s);
  return s;
}

struct OptionGuard {
  std::vector<std::pair<std::string, long>> saved;
  void set(const char* name, long v) {
    saved.emplace_back(name, remalloc_option_get(name));
    ASSERT_EQ(remalloc_option_set(name, v), 0) << name;
  }
  ~OptionGuard() {
    for (auto it = saved.rbegin(); it != saved.rend(); ++it) remalloc_option_set(it->first.c_str(), it->second);
  }
};

// mover option values: -1 auto, 0 mremap, 1 uffd, 2 copy
const char* kMoverNames[] = {"mremap", "uffd", "copy"};

class MoverTest : public ::testing::TestWithParam<int> {};

TEST_P(MoverTest, RandomGrowShrinkWithInjectedFailuresKeepsContents) {
  const int mover = GetParam();
  OptionGuard opt;
  opt.set("mover", mover);
  opt.set("move_threshold", 0);  // every move goes through the mover
  std::mt19937_64 rng(1234 + mover);
  constexpr int kBlocks = 8;
  void* ptr[kBlocks] = {};
  size_t size[kBlocks] = {};
  uint64_t seed[kBlocks] = {};
  remalloc_stats_t before = stats();
  int nulls = 0;
  for (int it = 0; it < 3000; it++) {
    int i = int(rng() % kBlocks);
    size_t n = (rng() % 4 == 0) ? 65 * 1024 + rng() % (24u << 20) : 65 * 1024 + rng() % (2u << 20);
    if (it % 7 == 3) {
      // A failure at a random step of the mover in use (auto: the first).
      const char* m = mover < 0 ? (rng() % 2 ? "mremap" : "uffd") : kMoverNames[mover];
      remalloc_inject_mover_failure(m, int(rng() % 3), 1);
    }
    bool all_fail = it % 97 == 50 && ptr[i];
    if (all_fail) {
      // Past the block's room and with in-place growth off, this must move.
      n = size[i] * 2 + (1u << 20);
      remalloc_option_set("grow_inplace", 0);
      for (const char* m : kMoverNames) remalloc_inject_mover_failure(m, 0, 1);
    }
    errno = 0;
    void* q = remalloc_realloc(ptr[i], n);
    if (all_fail) {
      for (const char* m : kMoverNames) remalloc_inject_mover_failure(m, 0, 0);
      remalloc_option_set("grow_inplace", 1);
    }
    if (!q) {
      // Only a move can fail, and then the old block is whole.
      nulls++;
      ASSERT_EQ(errno, ENOMEM);
      ASSERT_NE(ptr[i], nullptr);
      ASSERT_TRUE(check(ptr[i], size[i], size[i], seed[i])) << "after a failed realloc, it=" << it;
      continue;
    }
    size_t keep = n < size[i] ? n : size[i];
    ASSERT_TRUE(check(q, keep, size[i], seed[i])) << "it=" << it << " " << size[i] << "->" << n;
    ASSERT_GE(remalloc_usable_size(q), n);
    ptr[i] = q;
    size[i] = n;
    seed[i] = rng();
    fill(q, n, seed[i]);
  }
  for (int i = 0; i < kBlocks; i++) remalloc_free(ptr[i]);
  remalloc_stats_t after = stats();
  EXPECT_GT(nulls, 0) << "the all-movers-fail injection must surface as NULL";
  if (mover == 0) EXPECT_GT(after.moves_mremap, before.moves_mremap);
  if (mover == 1) EXPECT_GT(after.moves_uffd + after.fallback_error, before.moves_uffd);
  if (mover == 2) EXPECT_GT(after.moves_copy, before.moves_copy);
  EXPECT_GT(after.fallback_error, before.fallback_error);
}

INSTANTIATE_TEST_SUITE_P(Movers, MoverTest, ::testing::Values(-1, 0, 1, 2),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return std::string(i.param < 0 ? "auto" : kMoverNames[i.param]);
                         });

TEST(Engine, EveryMoverFailingReturnsNullWithBlockIntact) {
  OptionGuard opt;
  opt.set("grow_inplace", 0);
  opt.set("move_threshold", 0);
  size_t n = 4u << 20;
  void* p = remalloc_malloc(n);
  ASSERT_NE(p, nullptr);
  fill(p, n, 77);
  for (int step = 0; step < 3; step++) {
    for (const char* m : kMoverNames) remalloc_inject_mover_failure(m, 0, 1);
    errno = 0;
    void* q = remalloc_realloc(p, n * 2);
    for (const char* m : kMoverNames) remalloc_inject_mover_failure(m, 0, 0);
    EXPECT_EQ(q, nullptr);
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_TRUE(check(p, n, n, 77));
    EXPECT_EQ(remalloc_usable_size(p), n);
  }
  // A failure part-way is finished by copying: the block arrives whole.
  for (int step = 1; step < 3; step++) {
    remalloc_inject_mover_failure("mremap", step, 1);
    remalloc_inject_mover_failure("uffd", step, 1);
    void* q = remalloc_realloc(p, n + size_t(step) * kPage * 16);
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(check(q, n, n, 77));
    p = q;
  }
  remalloc_inject_mover_failure("mremap", 0, 0);
  remalloc_inject_mover_failure("uffd", 0, 0);
  remalloc_free(p);
}

TEST(Engine, GrowInPlaceAndShrinkMoveNothing) {
  OptionGuard opt;
  opt.set("grow_inplace", 1);
  remalloc_stats_t b = stats();
  size_t n = 1u << 20;
  void* p = remalloc_malloc(n);
  fill(p, n, 5);
  void* q = remalloc_realloc(p, n / 2);  // shrink: tail pages go back
  EXPECT_EQ(q, p);
  EXPECT_TRUE(check(q, n / 2, n, 5));
  remalloc_stats_t a = stats();
  EXPECT_EQ(a.shrink_inplace, b.shrink_inplace + 1);
  // Growing back right after a shrink finds the tail free.
  void* r = remalloc_realloc(q, n);
  EXPECT_EQ(r, p);
  a = stats();
  EXPECT_EQ(a.grow_inplace, b.grow_inplace + 1);
  EXPECT_EQ(a.bytes_copied, b.bytes_copied);
  remalloc_free(r);
}

TEST(Engine, HugeMovesAre2MiBAlignedAndMoveNotCopy) {
  OptionGuard opt;
  opt.set("grow_inplace", 0);
  opt.set("mover", -1);
  remalloc_stats_t b = stats();
  size_t n = 64u << 20;
  void* p = remalloc_malloc(n);
  ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % (2u << 20), 0u);
  fill(p, n, 9);
  void* q = remalloc_realloc(p, 2 * n);
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, p);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(q) % (2u << 20), 0u);
  EXPECT_TRUE(check(q, n, n, 9));
  remalloc_stats_t a = stats();
  EXPECT_EQ(a.bytes_copied, b.bytes_copied);
  EXPECT_GE(a.bytes_moved, b.bytes_moved + n);
  remalloc_free(q);
}

// 100,000 moves with a lowered budget: the process's VMA count stays bounded
// and no realloc fails.
TEST(Engine, VmaBudgetHoldsOver100kMoves) {
  OptionGuard opt;
  long base = maps_lines();
  ASSERT_GT(base, 0);
  long budget = base + 200;
  opt.set("vma_budget", budget);
  opt.set("grow_inplace", 0);
  opt.set("move_threshold", 0);
  opt.set("mover", -1);
  remalloc_stats_t b = stats();
  constexpr int kBlocks = 16;
  void* p[kBlocks];
  size_t sz[kBlocks];
  for (int i = 0; i < kBlocks; i++) {
    sz[i] = 256 * 1024;
    p[i] = remalloc_malloc(sz[i]);
    ASSERT_NE(p[i], nullptr);
    fill(p[i], sz[i], uint64_t(i));
  }
  long max_lines = 0;
  for (int it = 0; it < 100000; it++) {
    int i = it % kBlocks;
    // Grow one page (a move, since in-place growth is off) and shrink back
    // every other time, so sizes stay small.
    size_t n = sz[i] == 256 * 1024 ? 256 * 1024 + kPage : 256 * 1024;
    void* q = remalloc_realloc(p[i], n);
    ASSERT_NE(q, nullptr) << "realloc failed at move " << it;
    p[i] = q;
    sz[i] = n;
    if (it % 5000 == 0) {
      long l = maps_lines();
      if (l > max_lines) max_lines = l;
      ASSERT_TRUE(check(q, 256 * 1024, 0, uint64_t(i)));
    }
  }
  for (int i = 0; i < kBlocks; i++) {
    EXPECT_TRUE(check(p[i], 256 * 1024, 0, uint64_t(i)));
    remalloc_free(p[i]);
  }
  remalloc_stats_t a = stats();
  size_t moves = (a.moves_mremap - b.moves_mremap) + (a.moves_uffd - b.moves_uffd) +
                 (a.moves_copy - b.moves_copy);
  EXPECT_GE(moves, 50000u);
  EXPECT_LE(max_lines, budget + 16) << "VMAs grew past the budget";
  EXPECT_LE(maps_lines(), budget + 16);
  printf("moves: mremap %zu uffd %zu copy %zu, budget fallbacks %zu, heals %zu, max maps %ld (budget %ld)\n",
         a.moves_mremap - b.moves_mremap, a.moves_uffd - b.moves_uffd, a.moves_copy - b.moves_copy,
         a.fallback_budget - b.fallback_budget, a.vma_heals - b.vma_heals, max_lines, budget);
}

// Many live moved blocks: mremap's VMAs cannot be healed away, so the budget
// fills; moves must go on through UFFDIO_MOVE or copying, never fail.
TEST(Engine, FullVmaBudgetFallsBackWithoutFailing) {
  OptionGuard opt;
  long base = maps_lines();
  long budget = base + 100;
  opt.set("vma_budget", budget);
  opt.set("grow_inplace", 0);
  opt.set("move_threshold", 0);
  opt.set("mover", -1);
  remalloc_stats_t b = stats();
  std::vector<void*> blocks;
  for (int i = 0; i < 400; i++) {
    void* p = remalloc_malloc(256 * 1024);
    ASSERT_NE(p, nullptr);
    fill(p, 256 * 1024, uint64_t(i));
    void* q = remalloc_realloc(p, 256 * 1024 + kPage);
    ASSERT_NE(q, nullptr) << "move " << i;
    blocks.push_back(q);
  }
  long lines = maps_lines();
  remalloc_stats_t a = stats();
  for (size_t i = 0; i < blocks.size(); i++) {
    EXPECT_TRUE(check(blocks[i], 256 * 1024, 0, uint64_t(i)));
    remalloc_free(blocks[i]);
  }
  EXPECT_GT(a.fallback_budget, b.fallback_budget);
  EXPECT_GT(a.moves_mremap, b.moves_mremap);
  EXPECT_GT((a.moves_uffd - b.moves_uffd) + (a.moves_copy - b.moves_copy), 0u);
  EXPECT_LE(lines, budget + 16);
  printf("budget %ld: maps %ld, mremap %zu, uffd %zu, copy %zu, budget fallbacks %zu\n", budget,
         lines, a.moves_mremap - b.moves_mremap, a.moves_uffd - b.moves_uffd,
         a.moves_copy - b.moves_copy, a.fallback_budget - b.fallback_budget);
}

// Realloc of large blocks in parent and child after a fork from a parent
// whose threads are busy reallocating.
TEST(Engine, ForkFromThreadedParentThenReallocLargeBlocks) {
  for (int mover : {-1, 1, 0}) {
    OptionGuard opt;
    opt.set("mover", mover);
    opt.set("grow_inplace", 0);
    opt.set("move_threshold", 0);
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; t++) {
      threads.emplace_back([&stop, t] {
        std::mt19937_64 rng(t);
        void* p = nullptr;
        size_t n = 0;
        uint64_t seed = 0;
        while (!stop.load()) {
          size_t m = 128 * 1024 + rng() % (4u << 20);
          void* q = remalloc_realloc(p, m);
          if (!q) abort();
          if (!check(q, m < n ? m : n, n, seed)) abort();
          p = q;
          n = m;
          seed = rng();
          fill(p, n, seed);
        }
        remalloc_free(p);
      });
    }
    size_t n = 8u << 20;
    void* blocks[4];
    for (int i = 0; i < 4; i++) {
      blocks[i] = remalloc_malloc(n);
      fill(blocks[i], n, uint64_t(100 + i));
    }
    usleep(20000);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // Child: the pages were faulted before the fork (uffd refuses them) and
      // the parent's userfaultfd is not ours; every realloc must still work.
      int bad = 0;
      for (int i = 0; i < 4; i++) {
        void* q = remalloc_realloc(blocks[i], n * 2);
        if (!q || !check(q, n, n, uint64_t(100 + i))) bad++;
        else blocks[i] = q;
        fill(blocks[i], 2 * n, uint64_t(200 + i));
        q = remalloc_realloc(blocks[i], n * 3);
        if (!q || !check(q, 2 * n, 2 * n, uint64_t(200 + i))) bad++;
        else blocks[i] = q;
      }
      for (int i = 0; i < 200; i++) remalloc_free(remalloc_malloc(size_t(i) * 1000));
      for (int i = 0; i < 4; i++) remalloc_free(blocks[i]);
      _exit(bad);
    }
    // Parent: the same after the fork (the child may be alive or gone).
    for (int i = 0; i < 4; i++) {
      void* q = remalloc_realloc(blocks[i], n * 2);
      ASSERT_NE(q, nullptr);
      EXPECT_TRUE(check(q, n, n, uint64_t(100 + i))) << "parent block " << i << " mover " << mover;
      blocks[i] = q;
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status)) << "child died, status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0) << "child found damaged blocks, mover " << mover;
    stop = true;
    for (auto& t : threads) t.join();
    for (int i = 0; i < 4; i++) remalloc_free(blocks[i]);
  }
  remalloc_stats_t s = stats();
  printf("fork fallbacks (uffd EBUSY): %zu\n", s.fallback_fork);
}

}  // namespace

// Relocation engine tests: every mover forced in turn under random grows and
// shrinks with content checks; the exact outcome of an injected failure of
// each mover at each step; the VMA budget over many moves and when full;
// moves after fork from a threaded parent. The one home of these scenarios.
// Uses the prefixed API (override off), so it also runs under sanitizers.
#include <gtest/gtest.h>
#include <remalloc/remalloc.h>
#include <fcntl.h>
#include <linux/types.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "api/testing.h"  // failure injection (test-only header)
#include "test_util.h"

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

struct EngineOptionGuard {
  std::vector<std::pair<std::string, long>> saved;
  void set(const char* name, long v) {
    saved.emplace_back(name, remalloc_option_get(name));
    ASSERT_EQ(remalloc_option_set(name, v), 0) << name;
  }
  ~EngineOptionGuard() {
    for (auto it = saved.rbegin(); it != saved.rend(); ++it) remalloc_option_set(it->first.c_str(), it->second);
  }
};

// mover option values: -1 auto, 0 mremap, 1 uffd, 2 copy
const char* kMoverNames[] = {"mremap", "uffd", "copy"};

void clear_injections() {
  for (const char* m : kMoverNames) remalloc_inject_mover_failure(m, 0, 0);
}

size_t all_moves(const remalloc_stats_t& s) { return s.moves_mremap + s.moves_uffd + s.moves_copy; }

class MoverTest : public ::testing::TestWithParam<int> {};

// Random grows and shrinks with one mover forced. Injected failures of the
// movers that have a slower one behind them (mremap, uffd; copy only at its
// last step, which does not fail) must never surface; every 97th realloc
// makes every mover fail at once, and exactly those return NULL.
TEST_P(MoverTest, RandomGrowShrinkWithInjectedFailuresKeepsContents) {
  const int mover = GetParam();
  if (mover == 1 && !tu::uffd_move_supported()) GTEST_SKIP() << "no UFFDIO_MOVE on this kernel";
  EngineOptionGuard opt;
  opt.set("mover", mover);
  opt.set("move_threshold", 0);  // every move goes through the mover
  std::mt19937_64 rng(1234 + mover);
  constexpr int kBlocks = 8;
  void* ptr[kBlocks] = {};
  size_t size[kBlocks] = {};
  uint64_t seed[kBlocks] = {};
  remalloc_stats_t before = stats();
  int nulls = 0, all_fails = 0;
  const int iterations = int(tu::scaled(3000, 200));
  for (int it = 0; it < iterations; it++) {
    int i = int(rng() % kBlocks);
    size_t n = (rng() % 4 == 0) ? 65 * 1024 + rng() % (24u << 20) : 65 * 1024 + rng() % (2u << 20);
    if (it % 7 == 3) {
      // A failure at a random step of the mover in use (auto: either fast one).
      if (mover == 2) remalloc_inject_mover_failure("copy", 2, 1);
      else remalloc_inject_mover_failure(mover < 0 ? (rng() % 2 ? "mremap" : "uffd") : kMoverNames[mover],
                                         int(rng() % 3), 1);
    }
    bool all_fail = it % 97 == 50 && ptr[i];
    if (all_fail) {
      // Past the block's room and with in-place growth off, this must move.
      // (A shrunk huge-page block keeps the granule its end falls in: its
      // room is what remalloc_usable_size says, not what was asked.)
      n = std::max(size[i] * 2, remalloc_usable_size(ptr[i])) + (1u << 20);
      remalloc_option_set("grow_inplace", 0);
      for (const char* m : kMoverNames) remalloc_inject_mover_failure(m, 0, 1);
      all_fails++;
    }
    errno = 0;
    void* q = remalloc_realloc(ptr[i], n);
    int e = errno;
    if (all_fail) {
      clear_injections();
      remalloc_option_set("grow_inplace", 1);
    }
    if (!q) {
      nulls++;
      ASSERT_TRUE(all_fail) << "realloc " << size[i] << "->" << n << " failed at it=" << it
                            << " with only a recoverable failure injected";
      ASSERT_EQ(e, ENOMEM);
      ASSERT_TRUE(check(ptr[i], size[i], size[i], seed[i])) << "after a failed realloc, it=" << it;
      continue;
    }
    ASSERT_FALSE(all_fail) << "every mover failed, yet realloc " << size[i] << "->" << n << " succeeded, it=" << it;
    size_t keep = n < size[i] ? n : size[i];
    ASSERT_TRUE(check(q, keep, size[i], seed[i])) << "it=" << it << " " << size[i] << "->" << n;
    ASSERT_GE(remalloc_usable_size(q), n);
    ptr[i] = q;
    size[i] = n;
    seed[i] = rng();
    fill(q, n, seed[i]);
  }
  clear_injections();
  for (int i = 0; i < kBlocks; i++) remalloc_free(ptr[i]);
  remalloc_stats_t after = stats();
  EXPECT_GT(all_fails, 0);
  EXPECT_EQ(nulls, all_fails);
  if (mover == 0) {
    EXPECT_GT(after.moves_mremap, before.moves_mremap);
  }
  if (mover == 1) {
    EXPECT_GT(after.moves_uffd, before.moves_uffd);
  }
  if (mover == 2) {
    EXPECT_GT(after.moves_copy, before.moves_copy);
    EXPECT_EQ(after.moves_mremap + after.moves_uffd, before.moves_mremap + before.moves_uffd);
  }
  if (mover == -1) {
    EXPECT_GT(after.moves_mremap + after.moves_uffd, before.moves_mremap + before.moves_uffd);
  }
  EXPECT_GT(after.fallback_error, before.fallback_error);
}

INSTANTIATE_TEST_SUITE_P(Movers, MoverTest, ::testing::Values(-1, 0, 1, 2),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return std::string(i.param < 0 ? "auto" : kMoverNames[i.param]);
                         });

// One injected failure of one forced mover at one step, and its exact
// outcome. The forced mover is the only fast one tried, copy the last resort:
//   mremap/uffd at step 0: nothing moved, copy finishes (fallback_error + 1);
//   mremap/uffd at step 1 or 2: part moved, the rest copied by the same move
//     (fallback_error + 1, bytes moved and copied; step 1 moves at most half,
//     step 2 more than half);
//   uffd at step 3: half moved and the call reports nothing moved (what
//     Linux 6.18 did): the mover finds the moved half at dst, copies the
//     rest (as step 1), and no byte is lost;
//   copy at step 0 or 1: realloc returns NULL, ENOMEM, the old block intact;
//   copy at step 2 (the source purge): the move completes, no fallback.
// The injection is used up by that one move: the next one has no fallback.
struct InjectCase {
  int mover;
  int step;
};

class InjectedFailure : public ::testing::TestWithParam<InjectCase> {};

TEST_P(InjectedFailure, ExactOutcome) {
  const int mover = GetParam().mover, step = GetParam().step;
  const char* name = kMoverNames[mover];
  if (mover == 1 && !tu::uffd_move_supported()) GTEST_SKIP() << "no UFFDIO_MOVE on this kernel";
  // UFFDIO_MOVE takes a source within one VMA: heal the runs earlier mremap
  // moves in this process split, so that the block below is one.
  remalloc_trim(0);
  EngineOptionGuard opt;
  opt.set("mover", mover);
  opt.set("grow_inplace", 0);
  opt.set("move_threshold", 0);
  const size_t n = 4u << 20;
  void* p = remalloc_malloc(n);
  ASSERT_NE(p, nullptr);
  fill(p, n, 77);
  const size_t usable = remalloc_usable_size(p);
  remalloc_stats_t b = stats();
  remalloc_inject_mover_failure(name, step, 1);
  errno = 0;
  void* q = remalloc_realloc(p, 2 * n);
  int e = errno;
  remalloc_stats_t a = stats();
  const size_t moved = a.bytes_moved - b.bytes_moved, copied = a.bytes_copied - b.bytes_copied;
  SCOPED_TRACE(std::string(name) + " failing at step " + std::to_string(step) + ": moved " +
               std::to_string(moved) + ", copied " + std::to_string(copied));
  EXPECT_EQ(a.fallback_budget, b.fallback_budget);
  if (mover == 2 && step < 2) {
    ASSERT_EQ(q, nullptr);
    EXPECT_EQ(e, ENOMEM);
    EXPECT_TRUE(check(p, n, n, 77)) << "old block damaged";
    EXPECT_EQ(remalloc_usable_size(p), usable);
    EXPECT_EQ(remalloc_owns(p), 1);
    EXPECT_EQ(a.fallback_error, b.fallback_error + 1);
    EXPECT_EQ(all_moves(a), all_moves(b));
    EXPECT_EQ(moved + copied, 0u);
    q = p;
  } else {
    ASSERT_NE(q, nullptr) << "errno " << e;
    EXPECT_NE(q, p);
    EXPECT_TRUE(check(q, n, n, 77)) << "contents lost";
    EXPECT_EQ(all_moves(a), all_moves(b) + 1);
    if (mover == 2) {  // step 2
      EXPECT_EQ(a.moves_copy, b.moves_copy + 1);
      EXPECT_EQ(a.fallback_error, b.fallback_error);
      EXPECT_GE(copied, n);
      EXPECT_EQ(moved, 0u);
    } else if (step == 0) {
      EXPECT_EQ(a.moves_copy, b.moves_copy + 1) << "a slower mover must finish the move";
      EXPECT_EQ(a.fallback_error, b.fallback_error + 1);
      EXPECT_EQ(moved, 0u);
      EXPECT_GE(copied, n);
    } else {
      size_t own = mover == 0 ? a.moves_mremap - b.moves_mremap : a.moves_uffd - b.moves_uffd;
      EXPECT_EQ(own, 1u) << "the failing mover finishes its own move by copying";
      EXPECT_EQ(a.fallback_error, b.fallback_error + 1);
      EXPECT_GT(moved, 0u);
      EXPECT_GT(copied, 0u);
      EXPECT_GE(moved + copied, n);
      if (step == 1 || step == 3) {
        EXPECT_LE(moved, copied) << "a failure in the middle moved more than half";
      }
      if (step == 2) {
        EXPECT_GT(moved, copied) << "a failure at the last step moved less than half";
      }
    }
  }
  // The injection was for one move only.
  b = stats();
  void* r = remalloc_realloc(q, 5 * n);
  a = stats();
  clear_injections();
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(check(r, n, n, 77));
  EXPECT_EQ(all_moves(a), all_moves(b) + 1);
  EXPECT_EQ(a.fallback_error, b.fallback_error) << "the injected failure outlived its count";
  remalloc_free(r);
}

INSTANTIATE_TEST_SUITE_P(Engine, InjectedFailure,
                         ::testing::Values(InjectCase{0, 0}, InjectCase{0, 1}, InjectCase{0, 2}, InjectCase{1, 0},
                                           InjectCase{1, 1}, InjectCase{1, 2}, InjectCase{1, 3}, InjectCase{2, 0}, InjectCase{2, 1},
                                           InjectCase{2, 2}),
                         [](const ::testing::TestParamInfo<InjectCase>& i) {
                           return std::string(kMoverNames[i.param.mover]) + "_step" + std::to_string(i.param.step);
                         });

// Every mover failing at once (auto mode, so all are tried): NULL, ENOMEM,
// the block intact and usable; `count` failures fail exactly `count` moves.
TEST(Engine, EveryMoverFailingReturnsNullWithBlockIntact) {
  EngineOptionGuard opt;
  opt.set("grow_inplace", 0);
  opt.set("move_threshold", 0);
  opt.set("mover", -1);
  size_t n = 4u << 20;
  void* p = remalloc_malloc(n);
  ASSERT_NE(p, nullptr);
  fill(p, n, 77);
  const size_t usable = remalloc_usable_size(p);
  const int kTimes = 3;
  for (const char* m : kMoverNames) remalloc_inject_mover_failure(m, 0, kTimes);
  for (int k = 0; k < kTimes; k++) {
    remalloc_stats_t b = stats();
    errno = 0;
    void* q = remalloc_realloc(p, n * 2);
    int e = errno;
    remalloc_stats_t a = stats();
    ASSERT_EQ(q, nullptr) << "attempt " << k;
    EXPECT_EQ(e, ENOMEM);
    EXPECT_TRUE(check(p, n, n, 77));
    EXPECT_EQ(remalloc_usable_size(p), usable);
    EXPECT_EQ(remalloc_owns(p), 1);
    EXPECT_EQ(all_moves(a), all_moves(b));
    // copy, plus each fast mover available here.
    EXPECT_EQ(a.fallback_error, b.fallback_error + 2 + (tu::uffd_move_supported() ? 1 : 0)) << "attempt " << k;
  }
  // The failures are used up: the same realloc now moves.
  remalloc_stats_t b = stats();
  void* q = remalloc_realloc(p, n * 2);
  remalloc_stats_t a = stats();
  clear_injections();
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(check(q, n, n, 77));
  EXPECT_EQ(a.fallback_error, b.fallback_error);
  EXPECT_EQ(all_moves(a), all_moves(b) + 1);
  remalloc_free(q);
}

TEST(Engine, GrowInPlaceAndShrinkMoveNothing) {
  EngineOptionGuard opt;
  opt.set("grow_inplace", 1);
  size_t n = 1u << 20;
  void* p = remalloc_malloc(n);
  ASSERT_NE(p, nullptr);
  fill(p, n, 5);
  remalloc_stats_t b = stats();
  void* q = remalloc_realloc(p, n / 2);  // shrink: tail pages go back
  EXPECT_EQ(q, p);
  EXPECT_TRUE(check(q, n / 2, n, 5));
  remalloc_stats_t a = stats();
  EXPECT_EQ(a.shrink_inplace, b.shrink_inplace + 1);
  EXPECT_EQ(a.allocated + n / 2, b.allocated) << "the shrink did not give the tail back";
  // Growing back right after a shrink finds the tail free.
  void* r = remalloc_realloc(q, n);
  EXPECT_EQ(r, p);
  a = stats();
  EXPECT_EQ(a.grow_inplace, b.grow_inplace + 1);
  EXPECT_EQ(all_moves(a), all_moves(b));
  EXPECT_EQ(a.bytes_copied, b.bytes_copied);
  EXPECT_EQ(a.allocated, b.allocated);
  remalloc_free(r);
}

// Can this process ask /proc/self/maps for the VMA under an address
// (PROCMAP_QUERY, Linux 6.11)? The mremap mover needs it to move VMA by VMA.
bool procmap_query_works() {
  struct {
    __u64 size, query_flags, query_addr, vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
    __u32 dev_major, dev_minor, vma_name_size, build_id_size;
    __u64 vma_name_addr, build_id_addr;
  } q;
  memset(&q, 0, sizeof q);
  q.size = sizeof q;
  q.query_addr = reinterpret_cast<uintptr_t>(&q);
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ioctl(fd, _IOWR('f', 17, decltype(q)), &q) == 0;
  close(fd);
  return ok;
}

// A block moved by mremap onto the front of a run with room, then grown into
// that room, spans two VMAs (the moved pages keep their own). Its next move
// goes VMA by VMA: one mremap call each, every page remapped, none copied.
TEST(Engine, ABlockOfSeveralVmasMovesOneVmaPerCall) {
  if (!procmap_query_works()) GTEST_SKIP() << "no PROCMAP_QUERY here: the mremap mover does not split moves";
  EngineOptionGuard opt;
  opt.set("mover", 0);
  opt.set("grow_headroom", 1);
  opt.set("grow_inplace", 0);
  size_t n = 1u << 20;
  void* p = remalloc_malloc(n);
  ASSERT_NE(p, nullptr);
  fill(p, n, 21);
  remalloc_stats_t b = stats();
  void* q = remalloc_realloc(p, 2 * n);  // moved: 1 MiB of moved pages, then room
  ASSERT_NE(q, nullptr);
  ASSERT_NE(q, p);
  ASSERT_TRUE(check(q, n, n, 21));
  // Fill the grown block whole: its second half lies in the run's own VMA.
  fill(q, 2 * n, 22);
  size_t span = remalloc_usable_size(q);
  ASSERT_GE(span, 2 * n);
  void* r = remalloc_realloc(q, 8 * span);  // moved again: the source spans two VMAs
  ASSERT_NE(r, nullptr);
  ASSERT_NE(r, q);
  EXPECT_TRUE(check(r, 2 * n, 2 * n, 22));
  remalloc_stats_t a = stats();
  EXPECT_EQ(a.moves_mremap, b.moves_mremap + 2);
  EXPECT_EQ(a.moves_multi_vma, b.moves_multi_vma + 1) << "the second move's source spans two VMAs";
  EXPECT_EQ(a.bytes_copied, b.bytes_copied) << "every page should be remapped";
  EXPECT_EQ(a.fallback_error, b.fallback_error);
  remalloc_free(r);
}

TEST(Engine, HugeMovesAre2MiBAlignedAndMoveNotCopy) {
  EngineOptionGuard opt;
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
  EXPECT_EQ(a.moves_mremap + a.moves_uffd, b.moves_mremap + b.moves_uffd + 1);
  EXPECT_EQ(a.bytes_copied, b.bytes_copied);
  EXPECT_GE(a.bytes_moved, b.bytes_moved + n);
  remalloc_free(q);
}

// Many moves of a few blocks with a lowered budget: the budget is reached
// (mremap's VMAs are healed or moves turned away), the process's VMA count
// stays bounded all along, and no realloc fails.
TEST(Engine, VmaBudgetHoldsOverManyMoves) {
  EngineOptionGuard opt;
  long base = maps_lines();
  ASSERT_GT(base, 0);
  long budget = base + 200;
  opt.set("vma_budget", budget);
  opt.set("grow_inplace", 0);
  opt.set("move_threshold", 0);
  opt.set("mover", -1);
  // The policy moves blocks below the huge threshold by UFFDIO_MOVE (no
  // VMA); these 256 KiB blocks count as huge here, so mremap goes first.
  opt.set("huge_threshold", 256);
  opt.set("mremap_threshold", 256);
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
  const int total = int(tu::scaled(100000, 5000));
  const int probe_every = total / 20;
  long max_lines = 0;
  for (int it = 0; it < total; it++) {
    int i = it % kBlocks;
    // Grow one page (a move, since in-place growth is off) and shrink back
    // every other time, so sizes stay small.
    size_t n = sz[i] == 256 * 1024 ? 256 * 1024 + kPage : 256 * 1024;
    void* q = remalloc_realloc(p[i], n);
    ASSERT_NE(q, nullptr) << "realloc failed at move " << it;
    p[i] = q;
    sz[i] = n;
    if (it % probe_every == 0) {
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
  size_t moves = all_moves(a) - all_moves(b);
  size_t mremap = a.moves_mremap - b.moves_mremap;
  EXPECT_GE(moves, size_t(total) / 2);
  // Enough mremap moves to pass the budget many times over: it must have
  // been enforced, by heals or by turning moves away.
  EXPECT_GT(2 * mremap, size_t(budget - base));
  EXPECT_GT((a.vma_heals - b.vma_heals) + (a.fallback_budget - b.fallback_budget), 0u);
  EXPECT_LE(max_lines, budget + 16) << "VMAs grew past the budget";
  EXPECT_LE(maps_lines(), budget + 16);
  printf("moves: mremap %zu uffd %zu copy %zu, budget fallbacks %zu, heals %zu, max maps %ld (budget %ld)\n",
         mremap, a.moves_uffd - b.moves_uffd, a.moves_copy - b.moves_copy,
         a.fallback_budget - b.fallback_budget, a.vma_heals - b.vma_heals, max_lines, budget);
}

// The relocation policy (issue 16): below the mremap threshold, where mremap
// would move page by page like UFFDIO_MOVE and leave two VMAs behind for
// good, moves go by UFFDIO_MOVE and the process's VMA count stays where it
// was; a huge block moves by mremap (whole page-table pages).
TEST(Engine, PolicyMovesMidSizedBlocksWithoutNewVmasAndHugeOnesByMremap) {
  if (!tu::uffd_move_supported()) GTEST_SKIP() << "no UFFDIO_MOVE on this kernel";
  EngineOptionGuard opt;
  opt.set("grow_inplace", 0);
  opt.set("move_threshold", 0);
  opt.set("mover", -1);
  opt.set("huge_threshold", 2048);
  opt.set("mremap_threshold", 8192);
  constexpr int kBlocks = 16;
  void* p[kBlocks];
  for (int i = 0; i < kBlocks; i++) {
    p[i] = remalloc_malloc(256 * 1024);
    ASSERT_NE(p[i], nullptr);
    fill(p[i], 256 * 1024, uint64_t(i));
  }
  // Warm up: the first move opens the userfaultfd and makes its arena.
  p[0] = remalloc_realloc(p[0], 256 * 1024 + kPage);
  ASSERT_NE(p[0], nullptr);
  remalloc_stats_t b = stats();
  long before = maps_lines();
  long most = before;
  for (int it = 0; it < 400; it++) {
    int i = it % kBlocks;
    size_t n = 256 * 1024 + size_t(1 + (it / kBlocks) % 2) * kPage;  // a move each time (no in-place growth)
    void* q = remalloc_realloc(p[i], n);
    ASSERT_NE(q, nullptr) << "move " << it;
    p[i] = q;
    long l = it % 40 == 0 ? maps_lines() : 0;
    if (l > most) most = l;
  }
  remalloc_stats_t a = stats();
  EXPECT_EQ(a.moves_mremap, b.moves_mremap) << "a 256 KiB block moved by mremap";
  EXPECT_GE(a.moves_uffd - b.moves_uffd, 150u) << "half the reallocs move (the others shrink in place)";
  EXPECT_LE(most, before + 4) << "the moves added VMAs: " << before << " -> " << most;
  for (int i = 0; i < kBlocks; i++) {
    EXPECT_TRUE(check(p[i], 256 * 1024, 0, uint64_t(i)));
    remalloc_free(p[i]);
  }
  // A huge block past the mremap threshold (4 -> 8 MiB): mremap.
  size_t n = size_t{4} << 20;
  void* h = remalloc_malloc(n);
  ASSERT_NE(h, nullptr);
  fill(h, n, 99);
  b = stats();
  void* g = remalloc_realloc(h, 2 * n);
  ASSERT_NE(g, nullptr);
  a = stats();
  EXPECT_EQ(a.moves_mremap, b.moves_mremap + 1) << "a block growing to 8 MiB did not move by mremap";
  EXPECT_TRUE(check(g, n, 0, 99));
  remalloc_free(g);
}

// Many live moved blocks: mremap's VMAs cannot be healed away, so the budget
// fills; moves must go on through UFFDIO_MOVE or copying, never fail. The
// default budget is a quarter of vm.max_map_count.
TEST(Engine, FullVmaBudgetFallsBackWithoutFailing) {
  EXPECT_EQ(stats().vma_budget, tu::max_map_count() / 4) << "default VMA budget";
  EngineOptionGuard opt;
  long base = maps_lines();
  long budget = base + 100;
  opt.set("vma_budget", budget);
  opt.set("grow_inplace", 0);
  opt.set("move_threshold", 0);
  // mremap forced: the budget, once full, sends moves to the copy mover.
  opt.set("mover", 0);
  EXPECT_EQ(stats().vma_budget, size_t(budget));
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
  EXPECT_EQ(all_moves(a), all_moves(b) + 400);
  EXPECT_GT(a.fallback_budget, b.fallback_budget);
  EXPECT_GT(a.moves_mremap, b.moves_mremap);
  EXPECT_GT((a.moves_uffd - b.moves_uffd) + (a.moves_copy - b.moves_copy), 0u);
  EXPECT_LE(lines, budget + 16);
  printf("budget %ld: maps %ld, mremap %zu, uffd %zu, copy %zu, budget fallbacks %zu\n", budget,
         lines, a.moves_mremap - b.moves_mremap, a.moves_uffd - b.moves_uffd,
         a.moves_copy - b.moves_copy, a.fallback_budget - b.fallback_budget);
}

// Fork from a parent whose threads are busy reallocating, then moves on both
// sides: the parent's moves (and its writes after them) never reach the
// child's copies, the child can move its own blocks, and with the uffd mover
// the pages shared with the child are refused (EBUSY) and counted.
class ForkThenMove : public ::testing::TestWithParam<int> {};

TEST_P(ForkThenMove, ParentMovesDoNotReachTheChildAndBothCanMove) {
  const int mover = GetParam();
  if (mover == 1 && !tu::uffd_move_supported()) GTEST_SKIP() << "no UFFDIO_MOVE on this kernel";
  remalloc_trim(0);  // whole VMAs for UFFDIO_MOVE (see InjectedFailure)
  EngineOptionGuard opt;
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
  constexpr int kN = 4;
  const size_t n = 8u << 20;
  void* blocks[kN];
  for (int i = 0; i < kN; i++) {
    blocks[i] = remalloc_malloc(n);
    ASSERT_NE(blocks[i], nullptr);
    fill(blocks[i], n, uint64_t(100 + i));
  }
  usleep(20000);
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(go[1]);
    char c;
    if (read(go[0], &c, 1) != 1) _exit(10);  // the parent is gone
    for (int i = 0; i < kN; i++)
      if (!check(blocks[i], n, n, uint64_t(100 + i))) _exit(20 + i);  // the parent's writes leaked in
    for (int i = 0; i < kN; i++) {
      void* blocker = remalloc_malloc(64 * 1024);
      void* q = remalloc_realloc(blocks[i], n * 2);
      if (!q || !blocker) _exit(30 + i);
      if (!check(q, n, n, uint64_t(100 + i))) _exit(40 + i);
      fill(q, 2 * n, uint64_t(200 + i));
      void* r = remalloc_realloc(q, n * 3);
      if (!r) _exit(50 + i);
      if (!check(r, 2 * n, 2 * n, uint64_t(200 + i))) _exit(60 + i);
      remalloc_free(r);
      remalloc_free(blocker);
    }
    for (int i = 0; i < 200; i++) remalloc_free(remalloc_malloc(size_t(i) * 1000));
    _exit(0);
  }
  close(go[0]);
  remalloc_stats_t b = stats();
  std::vector<void*> blockers;
  for (int i = 0; i < kN; i++) {
    blockers.push_back(remalloc_malloc(64 * 1024));
    void* q = remalloc_realloc(blocks[i], n * 2);
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(check(q, n, n, uint64_t(100 + i))) << "parent block " << i << " after its move";
    fill(q, 2 * n, uint64_t(300 + i));  // new page words everywhere in the parent's copy
    blocks[i] = q;
  }
  remalloc_stats_t a = stats();
  ASSERT_EQ(write(go[1], "g", 1), 1);
  close(go[1]);
  std::string report;
  int status = tu::wait_child(pid, std::string("fork child, mover ") + (mover < 0 ? "auto" : kMoverNames[mover]) +
                                       ": checking and moving its copies of the blocks", 60, &report);
  EXPECT_EQ(report, "");
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "child: " << (WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status))
      << " (10: no go, 20..: saw the parent's writes, 30..: its own moves failed or lost contents)";
  stop = true;
  for (auto& t : threads) t.join();
  // The parent's own moves (the threads add more: at least).
  if (mover == 0 || mover == -1) {
    EXPECT_GE(a.moves_mremap - b.moves_mremap, size_t(kN));
  }
  if (mover == 2) {
    EXPECT_GE(a.moves_copy - b.moves_copy, size_t(kN));
  }
  if (mover == 1) {
    EXPECT_GE(a.fallback_fork - b.fallback_fork, size_t(kN)) << "uffd moves of pages shared with a child";
    EXPECT_GE(a.moves_copy - b.moves_copy, size_t(kN));
  }
  for (int i = 0; i < kN; i++) {
    EXPECT_TRUE(check(blocks[i], 2 * n, 2 * n, uint64_t(300 + i)));
    remalloc_free(blocks[i]);
  }
  for (void* p : blockers) remalloc_free(p);
}

INSTANTIATE_TEST_SUITE_P(Engine, ForkThenMove, ::testing::Values(-1, 0, 1, 2),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return std::string(i.param < 0 ? "auto" : kMoverNames[i.param]);
                         });

}  // namespace

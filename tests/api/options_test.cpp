// Options that change the relocation engine and error handling, set at run
// time through remalloc_option_set: each mover forced in turn, in-place
// growth off, the move threshold, purging at once, the 2 MiB alignment of
// huge blocks, out-of-range values, and abort_on_invalid=0. (Injected
// failures, the VMA budget and fork are tests/engine's.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "test_alloc.h"
#include "test_util.h"

namespace {

// Sets options for the scope of a test and restores them after.
class OptionGuard {
 public:
  void set(const char* name, long value) {
    long old = remalloc_option_get(name);
    ASSERT_GE(old, -1) << name;
    ASSERT_EQ(remalloc_option_set(name, value), 0) << "option " << name << " unknown";
    saved_.emplace_back(name, old);
  }
  ~OptionGuard() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) remalloc_option_set(it->first.c_str(), it->second);
  }

 private:
  std::vector<std::pair<std::string, long>> saved_;
};

// Grows one block through large sizes with a blocker after it each time, so
// that every growth is a move; checks the contents after each step.
void forced_moves(size_t from, size_t to, uint64_t seed) {
  void* p = ta::malloc(from);
  ASSERT_NE(p, nullptr);
  size_t have = from;
  tu::fill(p, have, seed);
  std::vector<void*> blockers;
  for (size_t n = from * 2; n <= to; n *= 2) {
    blockers.push_back(ta::malloc(64 * tu::KiB));
    void* q = ta::realloc(p, n + 4096);
    ASSERT_NE(q, nullptr) << have << " -> " << n;
    size_t bad = tu::check(q, have, seed);
    ASSERT_EQ(bad, SIZE_MAX) << "move " << have << " -> " << n + 4096 << " lost contents at offset " << bad;
    tu::fill_range(q, have, n + 4096, seed);
    p = q;
    have = n + 4096;
  }
  // And back down.
  for (size_t n = have / 3; n >= from; n /= 3) {
    void* q = ta::realloc(p, n);
    ASSERT_NE(q, nullptr);
    ASSERT_EQ(tu::check(q, n, seed), SIZE_MAX) << "shrink to " << n;
    p = q;
  }
  ta::free(p);
  for (void* b : blockers) ta::free(b);
}

struct MoverCase {
  const char* name;
  long value;
};

// Test names and ctest names show the mover, not the struct's bytes.
void PrintTo(const MoverCase& c, std::ostream* os) { *os << c.name; }

class Movers : public testing::TestWithParam<MoverCase> {};

TEST_P(Movers, ForcedMoverKeepsContentsAndIsCounted) {
  OptionGuard g;
  g.set("mover", GetParam().value);
  g.set("grow_inplace", 0);
  remalloc_stats_t s0, s1;
  remalloc_stats_get(&s0);
  forced_moves(256 * tu::KiB, tu::scale() < 1 ? 32 * tu::MiB : 128 * tu::MiB, 1234);
  remalloc_stats_get(&s1);
  size_t mremap = s1.moves_mremap - s0.moves_mremap, uffd = s1.moves_uffd - s0.moves_uffd,
         copy = s1.moves_copy - s0.moves_copy;
  RecordProperty("moves", "mremap " + std::to_string(mremap) + " uffd " + std::to_string(uffd) + " copy " +
                              std::to_string(copy));
  std::string name = GetParam().name;
  if (name == "mremap") {
    EXPECT_GT(mremap, 0u) << "mover=mremap made no mremap move (uffd " << uffd << ", copy " << copy << ")";
    EXPECT_EQ(uffd, 0u) << "mover=mremap moved by uffd";
  } else if (name == "uffd") {
    // UFFDIO_MOVE needs Linux 6.8 and a userfaultfd (seccomp in containers
    // may forbid it); without it there is nothing to check here.
    if (!tu::uffd_move_supported()) GTEST_SKIP() << "no UFFDIO_MOVE on this kernel";
    EXPECT_GT(uffd, 0u) << "mover=uffd made no uffd move (mremap " << mremap << ", copy " << copy << ")";
    EXPECT_EQ(mremap, 0u) << "mover=uffd moved by mremap";
  } else if (name == "copy") {
    EXPECT_GT(copy, 0u);
    EXPECT_EQ(mremap + uffd, 0u) << "mover=copy still remapped pages";
    EXPECT_GE(s1.bytes_copied - s0.bytes_copied, 256 * tu::KiB);
  } else {  // auto: blocks this big move by remapping pages in a fresh process
    EXPECT_GT(mremap + uffd, 0u);
    EXPECT_EQ(copy, 0u) << "mover=auto copied blocks of 256 KiB and more";
    EXPECT_EQ(s1.bytes_copied, s0.bytes_copied);
  }
}

TEST_P(Movers, RunsLeftByMovesReadAsZeroForCalloc) {
  // The movers leave the source run empty; calloc reusing it must see
  // zeros (and malloc'd blocks there must be writable).
  OptionGuard g;
  g.set("mover", GetParam().value);
  g.set("grow_inplace", 0);
  for (size_t n : {300 * tu::KiB, 4 * tu::MiB, 24 * tu::MiB}) {
    std::vector<void*> keep;
    for (int i = 0; i < 4; ++i) {
      void* p = ta::malloc(n);
      ASSERT_NE(p, nullptr);
      std::memset(p, 0xa7, n);
      keep.push_back(ta::malloc(64 * tu::KiB));
      void* q = ta::realloc(p, 2 * n);  // moves, leaving n dirty-then-emptied bytes
      ASSERT_NE(q, nullptr);
      keep.push_back(q);
    }
    for (int i = 0; i < 6; ++i) {
      void* z = ta::calloc(1, n);
      ASSERT_NE(z, nullptr);
      size_t off = tu::find_nonzero(z, n);
      ASSERT_EQ(off, SIZE_MAX) << GetParam().name << ": calloc(" << n << ") after moves, byte " << off
                               << " is not zero";
      keep.push_back(z);
    }
    for (void* p : keep) ta::free(p);
  }
}

TEST_P(Movers, ConcurrentForcedMoves) {
  // Four threads moving their own blocks at once with the forced mover.
  OptionGuard g;
  g.set("mover", GetParam().value);
  g.set("grow_inplace", 0);
  std::vector<std::thread> ts;
  const int rounds = static_cast<int>(tu::scaled(6, 1));
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([t, rounds] {
      for (int r = 0; r < rounds; ++r) forced_moves(256 * tu::KiB + t * 4096, 16 * tu::MiB, t * 100 + r);
    });
  for (auto& t : ts) t.join();
}

INSTANTIATE_TEST_SUITE_P(Options, Movers,
                         testing::Values(MoverCase{"mremap", 0}, MoverCase{"uffd", 1}, MoverCase{"copy", 2},
                                         MoverCase{"auto", -1}),
                         [](const testing::TestParamInfo<MoverCase>& i) { return std::string(i.param.name); });

TEST(Options, BlocksBelowMoveThresholdAreCopied) {
  OptionGuard g;
  g.set("grow_inplace", 0);
  g.set("move_threshold", 1024);  // KiB
  remalloc_stats_t s0, s1;
  remalloc_stats_get(&s0);
  forced_moves(100 * tu::KiB, 800 * tu::KiB, 77);
  remalloc_stats_get(&s1);
  EXPECT_GT(s1.moves_copy, s0.moves_copy);
  EXPECT_EQ(s1.moves_mremap + s1.moves_uffd, s0.moves_mremap + s0.moves_uffd)
      << "blocks below the threshold (1 MiB) were remapped";
  EXPECT_EQ(s1.fallback_small - s0.fallback_small, s1.moves_copy - s0.moves_copy)
      << "copies below the threshold are counted as fallback_small";
}

TEST(Options, PurgeDelayZeroGivesMemoryBackAtOnce) {
  OptionGuard g;
  g.set("purge_delay", 0);
  const size_t n = 96 * tu::MiB;
  void* p = ta::malloc(n);
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, n);
  size_t full = tu::rss_bytes();
  ta::free(p);
  size_t after = tu::rss_bytes();
  EXPECT_LE(after + n / 2, full) << "purge_delay=0: RSS went from " << full << " to " << after << " after free";
}

TEST(Options, HugeBlocksAre2MiBAligned) {
  // DESIGN: keep huge blocks 2 MiB aligned (so the kernel moves whole
  // page-table pages).
  long threshold_kib = remalloc_option_get("huge_threshold");
  ASSERT_GT(threshold_kib, 0);
  const size_t t = static_cast<size_t>(threshold_kib) * tu::KiB;
  std::vector<void*> ps;
  for (size_t n : {t, t + 1, t + 4096 * 3, 3 * t + 5, 64 * tu::MiB + 12345}) {
    void* p = ta::malloc(n);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(tu::is_aligned(p, 2 * tu::MiB)) << "malloc(" << n << ") = " << p;
    ps.push_back(p);
  }
  // A growth into the huge range that moves the block (in-place growth off)
  // lands at the source's offset within 2 MiB (the relocation engine keeps
  // that phase so that the kernel moves whole page-table pages).
  OptionGuard og;
  og.set("grow_inplace", 0);
  void* g = ta::malloc(512 * tu::KiB);
  void* blocker = ta::malloc(64 * tu::KiB);
  void* q = ta::realloc(g, 3 * t);
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, g) << "grow_inplace=0 but the block did not move";
  const uintptr_t mask = 2 * tu::MiB - 1;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(q) & mask, reinterpret_cast<uintptr_t>(g) & mask)
      << "realloc (move) of " << g << " to " << 3 * t << " bytes = " << q
      << ": not at the source's offset within 2 MiB";
  ps.push_back(q);
  ps.push_back(blocker);
  for (void* p : ps) ta::free(p);
}

TEST(Options, OutOfRangeValuesAreRefusedAndTheValueKept) {
  // Each option keeps its value when set out of its range, and the
  // allocator goes on working (a forced move under the kept values).
  for (auto [name, value] : std::vector<std::pair<const char*, long>>{{"mover", 7},
                                                                      {"mover", -5},
                                                                      {"purge_delay", -1},
                                                                      {"arena_size", 0},
                                                                      {"huge_threshold", 0},
                                                                      {"hugepage", 2},
                                                                      {"stats", 3},
                                                                      {"vma_budget", -1},
                                                                      {"dirty_max", -1}}) {
    long before = remalloc_option_get(name);
    ASSERT_EQ(remalloc_option_set(name, before), 0) << name << " unknown";
    EXPECT_EQ(remalloc_option_set(name, value), -1) << name << "=" << value << " accepted";
    EXPECT_EQ(remalloc_option_get(name), before) << name << " changed by a refused value";
    forced_moves(200 * tu::KiB, 8 * tu::MiB, static_cast<uint64_t>(value) + 9);
  }
  // In range is accepted.
  OptionGuard g;
  g.set("mover", 2);
  EXPECT_EQ(remalloc_option_get("mover"), 2);
}

TEST(Options, EdgeValuesHaveTheirEffect) {
  // Values at the ends of their ranges are kept as set; allocation and
  // forced moves go on with contents intact, and each has its effect.
  struct Case {
    const char* name;
    long value;
  };
  for (Case c : {Case{"move_threshold", 0}, Case{"huge_threshold", 4}, Case{"vma_budget", 1},
                 Case{"dirty_max", 0}, Case{"purge_delay", 0}}) {
    SCOPED_TRACE(std::string(c.name) + "=" + std::to_string(c.value));
    OptionGuard g;
    g.set("grow_inplace", 0);
    g.set("grow_headroom", 0);  // every doubling below moves
    g.set(c.name, c.value);
    EXPECT_EQ(remalloc_option_get(c.name), c.value);
    remalloc_stats_t s0, s1;
    remalloc_stats_get(&s0);
    forced_moves(200 * tu::KiB, 8 * tu::MiB, static_cast<uint64_t>(c.value) + 9);
    remalloc_stats_get(&s1);
    const size_t moves = (s1.moves_mremap + s1.moves_uffd + s1.moves_copy) -
                         (s0.moves_mremap + s0.moves_uffd + s0.moves_copy);
    EXPECT_GE(moves, 5u) << "forced_moves makes a move per doubling (200 KiB to 8 MiB)";
    if (std::string(c.name) == "move_threshold") {
      EXPECT_EQ(s1.fallback_small, s0.fallback_small);
    }
    if (std::string(c.name) == "vma_budget") {  // no room for any mremap move
      EXPECT_EQ(s1.moves_mremap, s0.moves_mremap);
      EXPECT_GT(s1.fallback_budget, s0.fallback_budget);
    }
    if (std::string(c.name) == "huge_threshold") {  // every large block is "huge"
      void* h = ta::malloc(300 * tu::KiB);
      ASSERT_NE(h, nullptr);
      EXPECT_TRUE(tu::is_aligned(h, 2 * tu::MiB)) << h;
      ta::free(h);
    }
    void* p = ta::malloc(100);
    ASSERT_NE(p, nullptr);
    ta::free(p);
  }
}

class AbortOnInvalidOff : public testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "fast"); }
};
using AbortOnInvalidOffDeathTest = AbortOnInvalidOff;

TEST_F(AbortOnInvalidOffDeathTest, InvalidFreeWarnsWithAddressAndContinues) {
  char buf[64];
  void* p = tu::opaque(static_cast<void*>(buf + 16));
  std::string h = tu::hex(p);
  EXPECT_EXIT(
      {
        remalloc_option_set("abort_on_invalid", 0);
        ta::free(p);
        void* big = ta::malloc(4 * tu::MiB);
        ta::free(big);
        ta::free(tu::opaque(big));  // double free of a large block: warned, ignored
        void* ok = ta::malloc(100);
        std::memset(ok, 1, 100);
        ta::free(ok);
        _exit(ok ? 0 : 1);
      },
      testing::ExitedWithCode(0),
      testing::Truly([h](const std::string& err) { return tu::lower(err).find(h) != std::string::npos; }));
}

}  // namespace

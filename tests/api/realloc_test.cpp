// realloc keeps contents through every path of the relocation engine:
// small -> large -> huge (256 MiB) and back, in-place growth and shrink,
// size-class boundaries and many blocks growing in turns. Injected mover
// failures, moves after fork and the VMA budget are tests/engine's.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "test_alloc.h"
#include "test_util.h"

namespace {

// Grows and shrinks one block through the chain, checking the pattern of the
// part that must survive each step, and filling the new tail.
void realloc_chain(const std::vector<size_t>& chain, bool with_blockers) {
  const uint64_t seed = 0xc0ffee;
  void* p = nullptr;
  size_t have = 0;
  std::vector<void*> blockers;
  for (size_t n : chain) {
    void* q = ta::realloc(p, n);
    ASSERT_NE(q, nullptr) << "realloc(" << have << " -> " << n << ")";
    ASSERT_TRUE(tu::is_aligned(q, 16));
    ASSERT_GE(ta::usable_size(q), n);
    size_t keep = have < n ? have : n;
    size_t bad = tu::check(q, keep, seed);
    ASSERT_EQ(bad, SIZE_MAX) << "realloc " << have << " -> " << n << " (" << p << " -> " << q
                             << ") lost contents at offset " << bad;
    tu::fill_range(q, keep, n, seed);
    p = q;
    have = n;
    if (with_blockers) {
      // Something right after the block, so that the next growth cannot
      // simply claim the following pages.
      void* b = ta::malloc(n / 2 + 1);
      ASSERT_NE(b, nullptr);
      blockers.push_back(b);
    }
  }
  ASSERT_EQ(tu::check(p, have, seed), SIZE_MAX);
  ta::free(p);
  for (void* b : blockers) ta::free(b);
}

std::vector<size_t> up_and_down(size_t top) {
  std::vector<size_t> up = {1, 8, 16, 24, 100, 250, 1000, 4000, 4096, 8191, 16384, 65536, 100000, 262144, 1 << 20,
                            (1 << 20) + 1, 3 << 20, 8 << 20, 32 << 20};
  for (size_t s = 64 * tu::MiB; s <= top; s *= 2) up.push_back(s);
  std::vector<size_t> all = up;
  for (size_t i = up.size(); i-- > 0;) all.push_back(up[i] - (i % 3));  // back down, slightly different sizes
  return all;
}

TEST(Realloc, SmallToHugeAndBack) { realloc_chain(up_and_down(tu::scale() < 1 ? 64 * tu::MiB : 256 * tu::MiB), false); }

TEST(Realloc, SmallToHugeAndBackWithBlockers) {
  realloc_chain(up_and_down(tu::scale() < 1 ? 64 * tu::MiB : 256 * tu::MiB), true);
}

TEST(Realloc, StepwiseGrowthByOddAmounts) {
  std::vector<size_t> chain;
  for (size_t n = 1; n < 3 * tu::MiB; n = n * 5 / 4 + 13) chain.push_back(n);
  realloc_chain(chain, false);
  realloc_chain(chain, true);
}

TEST(Realloc, SameSizeAndSmallShrinksKeepPointerOrContents) {
  for (size_t n : {size_t{64}, size_t{5000}, 4 * tu::MiB}) {
    void* p = ta::malloc(n);
    ASSERT_NE(p, nullptr);
    tu::fill(p, n, n);
    void* q = ta::realloc(p, n);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q, p) << "realloc to the same size moved the block";
    q = ta::realloc(q, n - 1);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(tu::check(q, n - 1, n), SIZE_MAX);
    ta::free(q);
  }
}

TEST(Realloc, UsableSizeAfterShrinkIsSafeToWrite) {
  // After a shrink gave tail pages back, the usable size must shrink too:
  // writing the whole usable size must not touch a block that reused them.
  for (size_t big : {size_t{512} << 10, 8 * tu::MiB, 64 * tu::MiB}) {
    for (size_t small : {big / 2 + 4096, big / 4, big / 16, size_t{70000}, size_t{3000}, size_t{100}}) {
      void* p = ta::malloc(big);
      ASSERT_NE(p, nullptr);
      tu::fill(p, small, 3);
      p = ta::realloc(p, small);
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(tu::check(p, small, 3), SIZE_MAX);
      // Neighbours that may take the freed tail.
      std::vector<std::pair<void*, size_t>> others;
      for (size_t n : {big / 8, big / 4, big / 2, size_t{100000}}) {
        void* q = ta::malloc(n);
        ASSERT_NE(q, nullptr);
        tu::fill(q, n, n);
        others.emplace_back(q, n);
      }
      size_t u = ta::usable_size(p);
      ASSERT_GE(u, small);
      std::memset(p, 0xee, u);  // the whole usable size
      for (auto& [q, n] : others) {
        ASSERT_EQ(tu::check(q, n, n), SIZE_MAX)
            << "writing usable_size(" << u << ") of a block shrunk from " << big << " to " << small
            << " damaged a neighbour at " << q;
        ta::free(q);
      }
      ta::free(p);
    }
  }
}

TEST(Realloc, PingPongAcrossSizeClassAndLargeBoundaries) {
  // Usable sizes of the size classes, found by probing, and the sizes just
  // around them (the small/large boundary included): realloc back and forth.
  std::vector<size_t> edges;
  size_t last = 0;
  for (size_t n = 1; n <= 4 * tu::MiB; n += (n < 4096 ? 1 : n < 256 * tu::KiB ? 16 : 4096)) {
    void* p = ta::malloc(n);
    size_t u = ta::usable_size(p);
    ta::free(p);
    if (u != last) {
      edges.push_back(u);
      last = u;
    }
  }
  ASSERT_GT(edges.size(), 20u);
  void* p = nullptr;
  size_t have = 0;
  const uint64_t seed = 5150;
  uint64_t r = 1;
  for (int i = 0; i < 3000; ++i) {
    r = tu::mix64(r);
    size_t e = edges[r % edges.size()];
    size_t n = e + (r >> 32) % 3 - 1;  // e - 1, e, e + 1
    if (n == 0) n = 1;
    void* q = ta::realloc(p, n);
    ASSERT_NE(q, nullptr);
    size_t keep = have < n ? have : n;
    ASSERT_EQ(tu::check(q, keep, seed), SIZE_MAX) << "realloc " << have << " -> " << n;
    tu::fill_range(q, keep, n, seed);
    ASSERT_GE(ta::usable_size(q), n);
    p = q;
    have = n;
  }
  ta::free(p);
}

TEST(Realloc, ManyBlocksGrowInTurns) {
  // Blocks of different sizes interleaved in the address space grow in
  // turns, so that growths alternate between in-place claims and moves.
  const int k = 24;
  std::vector<void*> b(k, nullptr);
  std::vector<size_t> sz(k, 0);
  for (int round = 0; round < 8; ++round) {
    for (int i = 0; i < k; ++i) {
      size_t n = (size_t{64} << 10) * (1 + i % 5) * (round + 1) + i * 4099;
      void* q = ta::realloc(b[i], n);
      ASSERT_NE(q, nullptr);
      ASSERT_EQ(tu::check(q, sz[i], 1000 + i), SIZE_MAX) << "block " << i << " round " << round;
      tu::fill_range(q, sz[i], n, 1000 + i);
      b[i] = q;
      sz[i] = n;
    }
  }
  for (int i = 0; i < k; ++i) {
    ASSERT_EQ(tu::check(b[i], sz[i], 1000 + i), SIZE_MAX);
    ta::free(b[i]);
  }
}

}  // namespace

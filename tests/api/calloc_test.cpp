// calloc returns zeroed memory, also when it reuses a block that was
// written and freed, a large run that was shrunk, or pages a realloc moved.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "test_alloc.h"
#include "test_util.h"

namespace {

void expect_zero(const void* p, size_t n, const char* what, size_t req) {
  size_t off = tu::find_nonzero(p, n);
  EXPECT_EQ(off, SIZE_MAX) << what << ": calloc(" << req << ") byte " << off << " is not zero";
}

TEST(Calloc, ZeroAfterReuseSmall) {
  for (size_t n = 1; n <= 4096; n += (n < 128 ? 1 : 17)) {
    // Dirty a batch, free it, then calloc the same size: the blocks come
    // back from the free lists and must be zeroed.
    void* dirty[16];
    for (auto& d : dirty) {
      d = ta::malloc(n);
      ASSERT_NE(d, nullptr);
      std::memset(d, 0xff, ta::usable_size(d));
    }
    for (auto& d : dirty) ta::free(d);
    for (int i = 0; i < 16; ++i) {
      void* p = ta::calloc(1, n);
      ASSERT_NE(p, nullptr);
      // Only the requested bytes are guaranteed zero.
      expect_zero(p, n, "small reuse", n);
      dirty[i] = p;
    }
    for (auto& d : dirty) ta::free(d);
  }
}

TEST(Calloc, ZeroAfterReuseMediumAndLarge) {
  for (size_t n : {size_t{5000}, size_t{32768}, size_t{65536}, size_t{200000}, size_t{1} << 20, 3 * tu::MiB,
                   16 * tu::MiB + 12345, 64 * tu::MiB}) {
    for (int round = 0; round < 3; ++round) {
      void* d = ta::malloc(n);
      ASSERT_NE(d, nullptr);
      std::memset(d, 0xee, ta::usable_size(d));
      ta::free(d);
      void* p = ta::calloc(n / 8, 8);
      ASSERT_NE(p, nullptr);
      expect_zero(p, n / 8 * 8, "large reuse", n);
      std::memset(p, 0xdd, n / 8 * 8);
      ta::free(p);
      void* q = ta::calloc(1, n);
      ASSERT_NE(q, nullptr);
      expect_zero(q, n, "large reuse (2)", n);
      ta::free(q);
    }
  }
}

TEST(Calloc, ZeroAfterShrinkAndMove) {
  // A large block is dirtied, shrunk in place (tail pages back to the page
  // heap) and grown by a move; the page runs it leaves behind are reused by
  // calloc and must read as zero.
  const size_t big = 32 * tu::MiB;
  for (int round = 0; round < 4; ++round) {
    void* p = ta::malloc(big);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0xab, big);
    p = ta::realloc(p, big / 8);  // shrink: tail goes back
    ASSERT_NE(p, nullptr);
    void* blocker = ta::malloc(big / 4);  // may take the freed tail
    ASSERT_NE(blocker, nullptr);
    std::memset(blocker, 0xcd, big / 4);
    p = ta::realloc(p, big * 2);  // grow: likely moves
    ASSERT_NE(p, nullptr);
    std::vector<void*> zs;
    for (int i = 0; i < 6; ++i) {
      void* z = ta::calloc(1, big / 4);
      ASSERT_NE(z, nullptr);
      expect_zero(z, big / 4, "after shrink/move", big / 4);
      zs.push_back(z);
    }
    ta::free(blocker);
    void* z = ta::calloc(1, big / 4);
    ASSERT_NE(z, nullptr);
    expect_zero(z, big / 4, "after freeing a dirty block", big / 4);
    zs.push_back(z);
    for (void* q : zs) ta::free(q);
    ta::free(p);
  }
}

TEST(Calloc, ReallocGrowthOfCallocBlockKeepsZeros) {
  // The zeros calloc wrote are contents like any other: they survive a
  // realloc, also one that moves the block.
  for (size_t n : {size_t{100}, size_t{70000}, 4 * tu::MiB}) {
    auto* p = static_cast<unsigned char*>(ta::calloc(1, n));
    ASSERT_NE(p, nullptr);
    void* blocker = ta::malloc(n);
    auto* q = static_cast<unsigned char*>(ta::realloc(p, n * 5));
    ASSERT_NE(q, nullptr);
    expect_zero(q, n, "prefix after realloc", n);
    ta::free(q);
    ta::free(blocker);
  }
}

TEST(Calloc, ManyCallocsWithInterleavedFrees) {
  const size_t count = tu::scaled(20000, 1000);
  std::vector<std::pair<void*, size_t>> live;
  uint64_t r = 99;
  for (size_t i = 0; i < count; ++i) {
    r = tu::mix64(r);
    size_t n = (r & 7) == 0 ? (r >> 20) % 300000 : (r >> 20) % 2000;
    void* p = ta::calloc(1, n);
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(tu::find_nonzero(p, n), SIZE_MAX) << "calloc(" << n << ") not zero (iteration " << i << ")";
    std::memset(p, 0x77, ta::usable_size(p));
    live.emplace_back(p, n);
    if ((r >> 8) % 3 == 0) {
      size_t k = (r >> 30) % live.size();
      ta::free(live[k].first);
      live[k] = live.back();
      live.pop_back();
    }
  }
  for (auto& [p, n] : live) ta::free(p);
}

}  // namespace

// Aligned allocation: every power of two from 1 to 1 MiB (and a few larger)
// with sizes around it, through aligned_alloc, posix_memalign, memalign,
// valloc and pvalloc.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "test_alloc.h"
#include "test_util.h"

namespace {

std::vector<size_t> sizes_around(size_t a) {
  std::vector<size_t> s = {0, 1, 8, 15, 16, 17, 100, 4095, 4096, 4097, 100000};
  for (size_t v : {a - 1, a, a + 1, 2 * a - 1, 2 * a, 3 * a, a / 2, a + a / 2})
    if (v < (size_t{1} << 26)) s.push_back(v);
  return s;
}

enum class Fn { AlignedAlloc, PosixMemalign, Memalign };

void* call(Fn fn, size_t a, size_t n) {
  switch (fn) {
    case Fn::AlignedAlloc: return ta::aligned_alloc(a, n);
    case Fn::Memalign: return ta::memalign(a, n);
    case Fn::PosixMemalign: {
      void* out = nullptr;
      int rc = ta::posix_memalign(&out, a, n);
      if (rc != 0) {
        errno = rc;
        return nullptr;
      }
      return out;
    }
  }
  return nullptr;
}

const char* name(Fn fn) {
  switch (fn) {
    case Fn::AlignedAlloc: return "aligned_alloc";
    case Fn::Memalign: return "memalign";
    case Fn::PosixMemalign: return "posix_memalign";
  }
  return "?";
}

void check_alignments(Fn fn, size_t max_align) {
  size_t min_align = fn == Fn::PosixMemalign ? sizeof(void*) : 1;
  for (size_t a = min_align; a <= max_align; a <<= 1) {
    std::vector<std::pair<void*, size_t>> live;
    uint64_t seed = a * 1000;
    for (size_t n : sizes_around(a)) {
      void* p = call(fn, a, n);
      ASSERT_NE(p, nullptr) << name(fn) << "(" << a << ", " << n << ") errno " << errno;
      size_t want = a < 16 ? 16 : a;  // every pointer is at least 16-aligned
      ASSERT_TRUE(tu::is_aligned(p, want)) << name(fn) << "(" << a << ", " << n << ") = " << p;
      EXPECT_EQ(ta::owns(p), 1) << p;
      size_t u = ta::usable_size(p);
      ASSERT_GE(u, n) << name(fn) << "(" << a << ", " << n << ")";
      tu::fill(p, u, seed + n);
      live.emplace_back(p, u);
    }
    // Nothing overlapped: every block still holds its pattern.
    size_t i = 0;
    for (size_t n : sizes_around(a)) {
      auto [p, u] = live[i++];
      ASSERT_EQ(tu::check(p, u, seed + n), SIZE_MAX) << name(fn) << "(" << a << ", " << n << ") overwritten";
    }
    // Realloc of an aligned block keeps its contents.
    auto [p0, u0] = live.back();
    void* q = ta::realloc(p0, u0 * 2 + 10);
    ASSERT_NE(q, nullptr);
    ASSERT_EQ(tu::check(q, u0, seed + sizes_around(a).back()), SIZE_MAX);
    live.back().first = q;
    for (auto& [p, u] : live) ta::free(p);
  }
}

TEST(Align, AlignedAllocAllPowersOfTwo) { check_alignments(Fn::AlignedAlloc, tu::MiB); }
TEST(Align, PosixMemalignAllPowersOfTwo) { check_alignments(Fn::PosixMemalign, tu::MiB); }
TEST(Align, MemalignAllPowersOfTwo) { check_alignments(Fn::Memalign, tu::MiB); }

TEST(Align, HugeAlignments) {
  for (size_t a : {2 * tu::MiB, 4 * tu::MiB, 32 * tu::MiB, 256 * tu::MiB}) {
    for (size_t n : {size_t{1}, size_t{4096}, a - 1, a + 1, 3 * tu::MiB}) {
      void* p = ta::aligned_alloc(a, n);
      ASSERT_NE(p, nullptr) << a << " " << n;
      ASSERT_TRUE(tu::is_aligned(p, a)) << p;
      ASSERT_GE(ta::usable_size(p), n);
      // Touch the first and last byte only: some of these are big.
      static_cast<volatile char*>(p)[0] = 1;
      static_cast<volatile char*>(p)[n - 1 + (n == 0)] = 2;
      ta::free(p);
    }
  }
}

TEST(Align, ManyLiveAlignedBlocksDoNotOverlap) {
  std::vector<std::pair<void*, size_t>> live;
  uint64_t k = 0;
  for (int round = 0; round < 200; ++round) {
    for (size_t a = 16; a <= 8192; a <<= 1) {
      size_t n = 1 + (tu::mix64(++k) % (3 * a));
      void* p = ta::aligned_alloc(a, n);
      ASSERT_NE(p, nullptr);
      ASSERT_TRUE(tu::is_aligned(p, a));
      tu::fill(p, n, k);
      live.emplace_back(p, n);
    }
  }
  k = 0;
  for (int round = 0; round < 200; ++round) {
    for (size_t a = 16; a <= 8192; a <<= 1) {
      auto [p, n] = live[k];
      ++k;
      ASSERT_EQ(tu::check(p, n, k), SIZE_MAX) << "aligned block " << k << " overwritten";
    }
  }
  for (auto& [p, n] : live) ta::free(p);
}

TEST(Align, VallocIsPageAligned) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, page - 1, page, page + 1, 3 * page, 100000 * size_t{1},
                   3 * tu::MiB}) {
    void* p = ta::valloc(n);
    ASSERT_NE(p, nullptr) << n;
    EXPECT_TRUE(tu::is_aligned(p, page)) << "valloc(" << n << ") = " << p;
    size_t u = ta::usable_size(p);
    EXPECT_GE(u, n);
    std::memset(p, 0x5a, u);
    ta::free(p);
  }
}

TEST(Align, PvallocRoundsUpToPages) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  for (size_t n : {size_t{1}, size_t{100}, page - 1, page, page + 1, 3 * page + 5, 3 * tu::MiB + 1}) {
    void* p = ta::pvalloc(n);
    ASSERT_NE(p, nullptr) << n;
    EXPECT_TRUE(tu::is_aligned(p, page)) << "pvalloc(" << n << ") = " << p;
    size_t rounded = (n + page - 1) / page * page;
    size_t u = ta::usable_size(p);
    EXPECT_GE(u, rounded) << "pvalloc(" << n << ") must give whole pages";
    std::memset(p, 0x5a, u);
    ta::free(p);
  }
  void* z = ta::pvalloc(0);
  ASSERT_NE(z, nullptr);
  EXPECT_TRUE(tu::is_aligned(z, page));
  ta::free(z);
}

}  // namespace

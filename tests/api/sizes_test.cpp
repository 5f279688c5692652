// Usable sizes across every size class: each size from 0 to 4 KiB, then in
// steps of 7 bytes to 64 KiB, and a
// spread of large ones; usable size >= request, the whole usable size is
// writable, live blocks never overlap.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <vector>

#include "test_alloc.h"
#include "test_util.h"

namespace {

struct Range {
  uintptr_t lo, hi;
};

void expect_disjoint(std::vector<Range> r, const char* what) {
  std::sort(r.begin(), r.end(), [](const Range& a, const Range& b) { return a.lo < b.lo; });
  for (size_t i = 1; i < r.size(); ++i)
    ASSERT_LE(r[i - 1].hi, r[i].lo) << what << ": blocks [" << std::hex << r[i - 1].lo << ", " << r[i - 1].hi
                                    << ") and [" << r[i].lo << ", " << r[i].hi << ") overlap";
}

TEST(Sizes, EverySizeUpTo64KiB) {
  std::map<size_t, size_t> classes;  // usable size -> smallest request
  size_t n = 0;
  while (n <= 64 * tu::KiB) {
    // Three live blocks of the same size at once, so that neighbours exist.
    void* p[3];
    size_t u[3];
    for (int i = 0; i < 3; ++i) {
      p[i] = ta::malloc(n);
      ASSERT_NE(p[i], nullptr) << "malloc(" << n << ")";
      ASSERT_TRUE(tu::is_aligned(p[i], 16)) << "malloc(" << n << ") = " << p[i];
      u[i] = ta::usable_size(p[i]);
      ASSERT_GE(u[i], n) << "usable size of malloc(" << n << ")";
      ASSERT_EQ(ta::owns(p[i]), 1);
    }
    for (int i = 0; i < 3; ++i) tu::fill(p[i], u[i], n * 4 + i);
    for (int i = 0; i < 3; ++i)
      ASSERT_EQ(tu::check(p[i], u[i], n * 4 + i), SIZE_MAX) << "size " << n << ": block " << i << " overwritten";
    expect_disjoint({{(uintptr_t)p[0], (uintptr_t)p[0] + u[0]},
                     {(uintptr_t)p[1], (uintptr_t)p[1] + u[1]},
                     {(uintptr_t)p[2], (uintptr_t)p[2] + u[2]}},
                    "same-size blocks");
    classes.emplace(u[0], n);
    for (int i = 0; i < 3; ++i) ta::free(p[i]);
    n += n < 4096 ? 1 : (tu::scale() < 1 ? 61 : 7);
  }
  // Report the classes seen (useful when a class table changes).
  std::string line;
  for (auto& [u, req] : classes)
    if (u <= 1024) line += std::to_string(u) + " ";
  RecordProperty("usable_sizes_up_to_1k", line);
}

TEST(Sizes, LargeSizes) {
  std::vector<size_t> sizes;
  for (size_t s = 64 * tu::KiB; s <= 512 * tu::MiB; s *= 2) {
    for (size_t d : {size_t{0}, size_t{1}, size_t{4095}, size_t{4096}, size_t{4097}})
      sizes.push_back(s + d), sizes.push_back(s - d);
    sizes.push_back(s + s / 3);
  }
  for (size_t n : sizes) {
    void* p = ta::malloc(n);
    ASSERT_NE(p, nullptr) << "malloc(" << n << ")";
    ASSERT_TRUE(tu::is_aligned(p, 16));
    size_t u = ta::usable_size(p);
    ASSERT_GE(u, n);
    EXPECT_LE(u, n + n / 4 + 2 * tu::MiB) << "usable size of malloc(" << n << ") is wasteful";
    // Write the first and last pages of the usable size (the whole block
    // for the smaller ones).
    auto* b = static_cast<unsigned char*>(p);
    if (u <= 8 * tu::MiB) {
      std::memset(b, 0x11, u);
    } else {
      std::memset(b, 0x11, 4096);
      std::memset(b + u - 4096, 0x22, 4096);
      b[u / 2] = 0x33;
    }
    ta::free(p);
  }
}

TEST(Sizes, ManyLiveBlocksOfMixedSizes) {
  // Up to 40k live blocks of random sizes, checked after all are written.
  const size_t count = tu::scaled(40000, 2000);
  struct B {
    void* p;
    size_t u;
  };
  std::vector<B> live;
  live.reserve(count);
  uint64_t r = 12345;
  for (size_t i = 0; i < count; ++i) {
    r = tu::mix64(r);
    size_t n;
    switch (r % 16) {
      case 0: n = r >> 40 & 0xffff; break;               // up to 64 KiB
      case 1: n = (r >> 40) % (600 * tu::KiB); break;    // medium
      default: n = (r >> 40) % 512; break;                // small
    }
    void* p = ta::malloc(n);
    ASSERT_NE(p, nullptr);
    size_t u = ta::usable_size(p);
    ASSERT_GE(u, n);
    tu::fill(p, u, reinterpret_cast<uintptr_t>(p));
    live.push_back({p, u});
    // Free one in eight right away so that free lists get reused.
    if ((r >> 8) % 8 == 0) {
      size_t k = (r >> 12) % live.size();
      ASSERT_EQ(tu::check(live[k].p, live[k].u, reinterpret_cast<uintptr_t>(live[k].p)), SIZE_MAX)
          << "block " << live[k].p << " overwritten";
      ta::free(live[k].p);
      live[k] = live.back();
      live.pop_back();
    }
  }
  std::vector<Range> ranges;
  for (auto& b : live) {
    ASSERT_EQ(tu::check(b.p, b.u, reinterpret_cast<uintptr_t>(b.p)), SIZE_MAX) << "block " << b.p << " overwritten";
    ranges.push_back({reinterpret_cast<uintptr_t>(b.p), reinterpret_cast<uintptr_t>(b.p) + b.u});
  }
  expect_disjoint(ranges, "live blocks");
  for (auto& b : live) ta::free(b.p);
}

TEST(Sizes, FreedBlocksAreReused) {
  // A size-class allocator must reuse freed memory: a loop of malloc/free of
  // one size must not grow the footprint.
  for (size_t n : {size_t{16}, size_t{200}, size_t{3000}, size_t{40000}, 3 * tu::MiB}) {
    void* first = ta::malloc(n);
    ASSERT_NE(first, nullptr);
    ta::free(first);
    remalloc_stats_t s0, s1;
    remalloc_stats_get(&s0);
    for (int i = 0; i < 20000; ++i) {
      void* p = ta::malloc(n);
      ASSERT_NE(p, nullptr);
      static_cast<volatile char*>(p)[0] = 1;
      ta::free(p);
    }
    remalloc_stats_get(&s1);
    EXPECT_LE(s1.mapped, s0.mapped + 64 * tu::MiB) << "malloc/free of " << n << " keeps mapping memory";
  }
}

}  // namespace

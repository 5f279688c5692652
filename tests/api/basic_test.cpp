// Basic semantics of the malloc family: zero sizes, NULL arguments, realloc
// as malloc and as free, sized frees, ownership queries.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

#include "test_alloc.h"
#include "test_util.h"

using tu::opaque;

namespace {

int g_static_object[16];

TEST(Basic, MallocZeroIsUniqueAndUsable) {
  std::vector<void*> ps;
  std::set<uintptr_t> seen;
  for (int i = 0; i < 1000; ++i) {
    void* p = ta::malloc(opaque(size_t{0}));
    ASSERT_NE(p, nullptr) << "malloc(0) #" << i;
    EXPECT_TRUE(tu::is_aligned(p, 16)) << p;
    EXPECT_TRUE(seen.insert(reinterpret_cast<uintptr_t>(p)).second) << "malloc(0) returned " << p << " twice";
    EXPECT_EQ(ta::owns(p), 1) << p;
    size_t u = ta::usable_size(p);
    // Writing the whole usable size must be safe even for malloc(0).
    std::memset(p, 0xa5, u);
    ps.push_back(p);
  }
  for (void* p : ps) ta::free(p);
}

TEST(Basic, MallocSmallBlocksAreDistinctAndKeepContents) {
  std::vector<std::pair<void*, size_t>> ps;
  for (size_t i = 0; i < 5000; ++i) {
    size_t n = 1 + (i * 37) % 700;
    void* p = ta::malloc(n);
    ASSERT_NE(p, nullptr);
    ASSERT_TRUE(tu::is_aligned(p, 16)) << p << " size " << n;
    ASSERT_GE(ta::usable_size(p), n);
    tu::fill(p, n, i);
    ps.emplace_back(p, n);
  }
  for (size_t i = 0; i < ps.size(); ++i)
    ASSERT_EQ(tu::check(ps[i].first, ps[i].second, i), SIZE_MAX) << "block " << i << " overwritten";
  for (auto& [p, n] : ps) ta::free(p);
}

TEST(Basic, FreeNullIsNoop) {
  ta::free(nullptr);
  ta::free_sized(nullptr, 0);
  ta::free_sized(nullptr, 100);
  ta::free_aligned_sized(nullptr, 64, 0);
  ta::free_aligned_sized(nullptr, 4096, 100);
  void* p = ta::malloc(10);
  ASSERT_NE(p, nullptr);
  ta::free(p);
}

TEST(Basic, UsableSizeOfNullIsZero) { EXPECT_EQ(ta::usable_size(nullptr), 0u); }

TEST(Basic, ReallocNullActsAsMalloc) {
  for (size_t n : {size_t{1}, size_t{16}, size_t{100}, size_t{4096}, size_t{100000}, 3 * tu::MiB}) {
    void* p = ta::realloc(nullptr, opaque(n));
    ASSERT_NE(p, nullptr) << n;
    ASSERT_GE(ta::usable_size(p), n);
    EXPECT_EQ(ta::owns(p), 1);
    tu::fill(p, n, n);
    EXPECT_EQ(tu::check(p, n, n), SIZE_MAX);
    ta::free(p);
  }
}

TEST(Basic, ReallocNullZeroReturnsUniqueBlock) {
  void* a = ta::realloc(nullptr, opaque(size_t{0}));
  void* b = ta::realloc(nullptr, opaque(size_t{0}));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  ta::free(a);
  ta::free(b);
}

TEST(Basic, ReallocToZeroFreesAndReturnsNull) {
  for (size_t n : {size_t{1}, size_t{48}, size_t{3000}, size_t{70000}, 2 * tu::MiB, 40 * tu::MiB}) {
    void* p = ta::malloc(n);
    ASSERT_NE(p, nullptr);
    tu::fill(p, n, 7);
    remalloc_stats_t before, after;
    remalloc_stats_get(&before);
    EXPECT_EQ(ta::realloc(p, opaque(size_t{0})), nullptr) << "realloc(p, 0) of a " << n << "-byte block";
    remalloc_stats_get(&after);
    if (n >= 2 * tu::MiB) {
      // Large blocks are tracked exactly: the block must really be gone.
      EXPECT_EQ(ta::owns(p), 0) << "realloc(p, 0) did not free " << p;
      EXPECT_EQ(after.large_live + 1, before.large_live) << "large_live did not drop";
      EXPECT_LE(after.allocated + n, before.allocated) << "allocated did not drop by the block";
    }
  }
}

TEST(Basic, ReallocarrayBasics) {
  void* p = ta::reallocarray(nullptr, 10, 12);
  ASSERT_NE(p, nullptr);
  ASSERT_GE(ta::usable_size(p), 120u);
  tu::fill(p, 120, 3);
  p = ta::reallocarray(p, 1000, 12);
  ASSERT_NE(p, nullptr);
  ASSERT_GE(ta::usable_size(p), 12000u);
  EXPECT_EQ(tu::check(p, 120, 3), SIZE_MAX);
  p = ta::reallocarray(p, 5, 4);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(tu::check(p, 20, 3), SIZE_MAX);
  void* z = ta::reallocarray(nullptr, 0, 0);
  ASSERT_NE(z, nullptr) << "reallocarray(NULL, 0, 0) acts as malloc(0)";
  ta::free(z);
  // reallocarray(p, 0, n) behaves as realloc(p, 0): frees, returns NULL.
  void* big = ta::reallocarray(nullptr, 1024, 4096);  // 4 MiB
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(ta::reallocarray(big, opaque(size_t{0}), 4096), nullptr);
  EXPECT_EQ(ta::owns(tu::opaque(big)), 0);
  ta::free(p);
}

TEST(Basic, CallocZero) {
  void* a = ta::calloc(opaque(size_t{0}), 0);
  void* b = ta::calloc(opaque(size_t{0}), SIZE_MAX);  // 0 * anything is no overflow
  void* c = ta::calloc(opaque(SIZE_MAX), 0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(c, nullptr);
  EXPECT_NE(a, b);
  EXPECT_NE(b, c);
  EXPECT_NE(a, c);
  ta::free(a);
  ta::free(b);
  ta::free(c);
}

TEST(Basic, FreeSizedWithRequestedSize) {
  const size_t sizes[] = {0, 1, 15, 16, 17, 100, 512, 1000, 4096, 5000, 65536, 100000, 2 * tu::MiB, 9 * tu::MiB + 3};
  for (int round = 0; round < 3; ++round) {
    std::vector<void*> ps;
    for (size_t n : sizes) {
      void* p = ta::malloc(n);
      ASSERT_NE(p, nullptr);
      tu::fill(p, n, n);
      ps.push_back(p);
    }
    for (size_t i = 0; i < ps.size(); ++i) {
      EXPECT_EQ(tu::check(ps[i], sizes[i], sizes[i]), SIZE_MAX);
      ta::free_sized(ps[i], sizes[i]);
    }
  }
  // calloc'd blocks are freed with count * size.
  void* q = ta::calloc(25, 40);
  ASSERT_NE(q, nullptr);
  ta::free_sized(q, 1000);
}

TEST(Basic, FreeAlignedSized) {
  for (size_t a : {size_t{16}, size_t{64}, size_t{4096}, size_t{65536}, 2 * tu::MiB}) {
    for (size_t n : {a, 3 * a, a * 10}) {
      void* p = ta::aligned_alloc(a, n);
      ASSERT_NE(p, nullptr) << a << " " << n;
      ASSERT_TRUE(tu::is_aligned(p, a));
      tu::fill(p, n, a);
      EXPECT_EQ(tu::check(p, n, a), SIZE_MAX);
      ta::free_aligned_sized(p, a, n);
    }
  }
}

TEST(Basic, OwnsLiveBlocksOnly) {
  int on_stack = 0;
  EXPECT_EQ(ta::owns(nullptr), 0);
  EXPECT_EQ(ta::owns(&on_stack), 0);
  EXPECT_EQ(ta::owns(g_static_object), 0);
  EXPECT_EQ(ta::owns(reinterpret_cast<void*>(uintptr_t{1})), 0);
  EXPECT_EQ(ta::owns(reinterpret_cast<void*>(uintptr_t{0xfff})), 0);
  EXPECT_EQ(ta::owns(reinterpret_cast<void*>(~uintptr_t{0xf})), 0);
  EXPECT_EQ(ta::owns(reinterpret_cast<void*>(uintptr_t{0x7ffffffff000})), 0);

  char* small = static_cast<char*>(ta::malloc(64));
  char* large = static_cast<char*>(ta::malloc(4 * tu::MiB));
  ASSERT_NE(small, nullptr);
  ASSERT_NE(large, nullptr);
  EXPECT_EQ(ta::owns(small), 1);
  EXPECT_EQ(ta::owns(large), 1);
  // Interior pointers are not block starts.
  EXPECT_EQ(ta::owns(small + 8), 0);
  EXPECT_EQ(ta::owns(small + 16), 0);
  EXPECT_EQ(ta::owns(large + 16), 0);
  EXPECT_EQ(ta::owns(large + 4096), 0);
  EXPECT_EQ(ta::owns(large + 2 * tu::MiB), 0);
  if (!ta::kOverride) {
    // The process's own malloc is not remalloc in this build.
    void* foreign = ::malloc(64);
    EXPECT_EQ(ta::owns(foreign), 0);
    ::free(foreign);
  }
  ta::free(large);
  EXPECT_EQ(ta::owns(tu::opaque(large)), 0) << "a freed large block is not live";
  // A freed small block whose slab is still in use may still count (the
  // header says small blocks are not tracked one by one): not checked.
  ta::free(small);
}

TEST(Basic, UsableSizeWritesDoNotClobberNeighbours) {
  // Neighbouring blocks of every small size: writing each block's whole
  // usable size must not touch the others.
  for (size_t n = 1; n <= 2048; n += (n < 256 ? 1 : 13)) {
    void* b[8];
    size_t u[8];
    for (int i = 0; i < 8; ++i) {
      b[i] = ta::malloc(n);
      ASSERT_NE(b[i], nullptr);
      u[i] = ta::usable_size(b[i]);
      ASSERT_GE(u[i], n);
      tu::fill(b[i], u[i], n * 8 + i);
    }
    for (int i = 0; i < 8; ++i)
      ASSERT_EQ(tu::check(b[i], u[i], n * 8 + i), SIZE_MAX) << "size " << n << " block " << i;
    for (int i = 0; i < 8; ++i) ta::free(b[i]);
  }
}

}  // namespace

// Bad input gets a clear answer and loses nothing: overflow and impossible
// sizes return NULL with ENOMEM, bad alignments return EINVAL, and a failed
// realloc leaves the old block intact.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "api/testing.h"  // remalloc_inject_mmap_failure
#include "test_alloc.h"
#include "test_util.h"

using tu::opaque;

namespace {

constexpr size_t kPtrdiffMax = static_cast<size_t>(PTRDIFF_MAX);

// Sizes no allocator can satisfy on x86-64 (47-bit user address space),
// including the ones where rounding up to a size class, a page or a 2 MiB
// huge page would overflow.
const size_t kHuge[] = {
    SIZE_MAX,
    SIZE_MAX - 1,
    SIZE_MAX - 15,
    SIZE_MAX - 16,
    SIZE_MAX - 4095,
    SIZE_MAX - 4096,
    SIZE_MAX - (size_t{2} << 20),
    SIZE_MAX - (size_t{2} << 20) + 1,
    kPtrdiffMax + 1,
    kPtrdiffMax,
    kPtrdiffMax - 4095,
    size_t{1} << 62,
    size_t{1} << 56,
    size_t{1} << 50,  // 1 PiB: more than the address space
};

#define EXPECT_ENOMEM_NULL(expr, what)                                          \
  do {                                                                          \
    errno = 0;                                                                  \
    void* r_ = (expr);                                                          \
    int e_ = errno;                                                             \
    EXPECT_EQ(r_, nullptr) << what;                                             \
    EXPECT_EQ(e_, ENOMEM) << what << ": errno " << e_ << " (" << strerror(e_) << ")"; \
    if (r_) ta::free(r_);                                                       \
  } while (0)

#define EXPECT_EINVAL_NULL(expr, what)                                          \
  do {                                                                          \
    errno = 0;                                                                  \
    void* r_ = (expr);                                                          \
    int e_ = errno;                                                             \
    EXPECT_EQ(r_, nullptr) << what;                                             \
    EXPECT_EQ(e_, EINVAL) << what << ": errno " << e_ << " (" << strerror(e_) << ")"; \
    if (r_) ta::free(r_);                                                       \
  } while (0)

TEST(Errors, HugeMallocFailsWithEnomem) {
  for (size_t n : kHuge) EXPECT_ENOMEM_NULL(ta::malloc(opaque(n)), "malloc(" << n << ")");
}

TEST(Errors, HugeCallocFailsWithEnomem) {
  for (size_t n : kHuge) {
    EXPECT_ENOMEM_NULL(ta::calloc(1, opaque(n)), "calloc(1, " << n << ")");
    EXPECT_ENOMEM_NULL(ta::calloc(opaque(n), 1), "calloc(" << n << ", 1)");
  }
}

TEST(Errors, CallocOverflowFailsWithEnomem) {
  const struct { size_t c, n; } cases[] = {
      {SIZE_MAX, 2}, {2, SIZE_MAX}, {SIZE_MAX / 2 + 1, 2}, {size_t{1} << 32, size_t{1} << 32},
      {(size_t{1} << 33) + 1, size_t{1} << 31}, {SIZE_MAX, SIZE_MAX}, {3, SIZE_MAX / 3 + 1},
      {kPtrdiffMax, 2},
      {65537, 281470681808897},     // product wraps to 131073
      {274177, 67280421310721},     // product wraps to 1
  };
  for (auto c : cases)
    EXPECT_ENOMEM_NULL(ta::calloc(opaque(c.c), opaque(c.n)), "calloc(" << c.c << ", " << c.n << ")");
}

TEST(Errors, HugeReallocFailsAndKeepsBlock) {
  for (size_t start : {size_t{24}, size_t{5000}, size_t{300000}, 6 * tu::MiB}) {
    void* p = ta::malloc(start);
    ASSERT_NE(p, nullptr);
    tu::fill(p, start, start);
    for (size_t n : kHuge) {
      errno = 0;
      void* r = ta::realloc(p, opaque(n));
      int e = errno;
      EXPECT_EQ(r, nullptr) << "realloc(" << start << "-byte block, " << n << ")";
      EXPECT_EQ(e, ENOMEM) << "realloc(.., " << n << ")";
      if (r) { p = r; continue; }
      ASSERT_EQ(tu::check(p, start, start), SIZE_MAX) << "failed realloc damaged the block";
      EXPECT_EQ(ta::owns(p), 1);
      EXPECT_GE(ta::usable_size(p), start);
    }
    ta::free(p);
  }
  errno = 0;
  EXPECT_EQ(ta::realloc(nullptr, opaque(SIZE_MAX)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(Errors, ReallocarrayOverflowFailsAndKeepsBlock) {
  void* p = ta::malloc(100);
  ASSERT_NE(p, nullptr);
  tu::fill(p, 100, 1);
  const struct { size_t c, n; } cases[] = {
      {SIZE_MAX, 2}, {2, SIZE_MAX}, {size_t{1} << 32, size_t{1} << 32}, {SIZE_MAX / 2 + 1, 2},
      {65537, 281470681808897}, {274177, 67280421310721}, {1, SIZE_MAX}, {kPtrdiffMax, 1}, {1, kPtrdiffMax + 1}};
  for (auto c : cases) {
    errno = 0;
    void* r = ta::reallocarray(p, opaque(c.c), opaque(c.n));
    int e = errno;
    EXPECT_EQ(r, nullptr) << "reallocarray(p, " << c.c << ", " << c.n << ")";
    EXPECT_EQ(e, ENOMEM) << "reallocarray(p, " << c.c << ", " << c.n << ")";
    if (r) { p = r; continue; }
    ASSERT_EQ(tu::check(p, 100, 1), SIZE_MAX);
  }
  errno = 0;
  EXPECT_EQ(ta::reallocarray(nullptr, opaque(SIZE_MAX), 16), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  ta::free(p);
}

TEST(Errors, HugeAlignedFailsWithEnomem) {
  for (size_t n : kHuge) {
    for (size_t a : {size_t{16}, size_t{64}, size_t{4096}, size_t{1} << 21}) {
      EXPECT_ENOMEM_NULL(ta::aligned_alloc(a, opaque(n)), "aligned_alloc(" << a << ", " << n << ")");
      EXPECT_ENOMEM_NULL(ta::memalign(a, opaque(n)), "memalign(" << a << ", " << n << ")");
      void* out = reinterpret_cast<void*>(uintptr_t{0x1234});
      int rc = ta::posix_memalign(&out, a, opaque(n));
      EXPECT_EQ(rc, ENOMEM) << "posix_memalign(" << a << ", " << n << ")";
      if (rc == 0) ta::free(out);
      else EXPECT_EQ(out, reinterpret_cast<void*>(uintptr_t{0x1234})) << "posix_memalign wrote *out on failure";
    }
    EXPECT_ENOMEM_NULL(ta::valloc(opaque(n)), "valloc(" << n << ")");
    EXPECT_ENOMEM_NULL(ta::pvalloc(opaque(n)), "pvalloc(" << n << ")");
  }
}

TEST(Errors, ImpossibleAlignmentFailsWithEnomem) {
  // Valid powers of two that no block can have together with any size.
  for (size_t a : {size_t{1} << 63, size_t{1} << 62, size_t{1} << 60, size_t{1} << 52}) {
    EXPECT_ENOMEM_NULL(ta::aligned_alloc(opaque(a), 16), "aligned_alloc(" << a << ", 16)");
    void* out = nullptr;
    int rc = ta::posix_memalign(&out, opaque(a), 16);
    EXPECT_EQ(rc, ENOMEM) << "posix_memalign(" << a << ", 16)";
    if (rc == 0) ta::free(out);
  }
  // memalign follows glibc: an alignment above SIZE_MAX / 2 + 1 cannot be a
  // power of two, EINVAL; 2^63 itself cannot be satisfied, ENOMEM.
  EXPECT_EINVAL_NULL(ta::memalign(opaque(SIZE_MAX / 2 + 2), 16), "memalign(SIZE_MAX/2+2, 16)");
  EXPECT_EINVAL_NULL(ta::memalign(opaque(SIZE_MAX), 16), "memalign(SIZE_MAX, 16)");
  EXPECT_ENOMEM_NULL(ta::memalign(opaque(size_t{1} << 63), 16), "memalign(2^63, 16)");
}

TEST(Errors, BadAlignmentAlignedAllocEinval) {
  for (size_t a : {size_t{0}, size_t{3}, size_t{5}, size_t{6}, size_t{7}, size_t{12}, size_t{24}, size_t{48},
                   size_t{100}, size_t{4097}, size_t{65535}, (size_t{1} << 20) + 16, SIZE_MAX,
                   SIZE_MAX / 2 + 2}) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{64}, size_t{4096}}) {
      EXPECT_EINVAL_NULL(ta::aligned_alloc(opaque(a), opaque(n)), "aligned_alloc(" << a << ", " << n << ")");
    }
  }
}

TEST(Errors, BadAlignmentPosixMemalignEinval) {
  // Not a power of two, zero, or not a multiple of sizeof(void*).
  for (size_t a : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{4}, size_t{5}, size_t{12}, size_t{24},
                   size_t{40}, size_t{48}, size_t{96}, size_t{100}, size_t{4097}, size_t{3} << 20,
                   SIZE_MAX, SIZE_MAX / 2 + 2, SIZE_MAX - 7}) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{64}}) {
      void* out = reinterpret_cast<void*>(uintptr_t{0x5678});
      errno = 1234;
      int rc = ta::posix_memalign(&out, opaque(a), opaque(n));
      EXPECT_EQ(rc, EINVAL) << "posix_memalign(" << a << ", " << n << ")";
      EXPECT_EQ(errno, 1234) << "posix_memalign must report through its result, not errno";
      if (rc == 0) ta::free(out);
      else EXPECT_EQ(out, reinterpret_cast<void*>(uintptr_t{0x5678})) << "*out changed on failure";
    }
  }
}

TEST(Errors, MemalignNonPowerOfTwoIsEinval) {
  // glibc's memalign rounds an alignment that is not a power of two up to the
  // next one; remalloc's memalign is aligned_alloc and refuses it (and 0)
  // with EINVAL, as documented in include/remalloc/remalloc.h.
  for (size_t a : {size_t{0}, size_t{3}, size_t{24}, size_t{48}, size_t{100}, size_t{4097}, size_t{3} << 20})
    EXPECT_EINVAL_NULL(ta::memalign(opaque(a), 100), "memalign(" << a << ", 100)");
}

TEST(Errors, AllocationStillWorksAfterFailures) {
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(ta::malloc(opaque(SIZE_MAX - static_cast<size_t>(i))), nullptr);
    void* p = ta::malloc(static_cast<size_t>(i) * 1000 + 1);
    ASSERT_NE(p, nullptr);
    tu::fill(p, static_cast<size_t>(i) * 1000 + 1, i);
    EXPECT_EQ(tu::check(p, static_cast<size_t>(i) * 1000 + 1, i), SIZE_MAX);
    ta::free(p);
  }
}

}  // namespace

namespace {

// mmap failing: every reservation of address space refused (injected
// ENOMEM, remalloc_inject_mmap_failure). A request that needs a new arena
// gets a clean NULL with ENOMEM, a realloc that needs one leaves the old
// block intact, blocks that fit in existing arenas still work, and once
// mmap works again so does the allocator. (RLIMIT_AS, the other way mmap
// fails, is FreshProcess.RlimitAs*.)
TEST(Errors, MmapFailureGivesCleanNullAndRecovers) {
  const size_t big = size_t{5} << 30;  // more than any arena of this process holds free
  const size_t keep_n = 3 * tu::MiB;
  // This thread's heap and slabs of the classes used below exist already
  // (making them needs reservations of their own).
  ta::free(ta::malloc(opaque(100)));
  ta::free(ta::malloc(opaque(200000)));
  void* keep = ta::malloc(keep_n);
  ASSERT_NE(keep, nullptr);
  tu::fill(keep, keep_n, 77);
  remalloc_inject_mmap_failure(1000000);
  errno = 0;
  void* p = ta::malloc(opaque(big));
  int e1 = errno;
  errno = 0;
  void* q = ta::realloc(keep, opaque(big));
  int e2 = errno;
  void* small = ta::malloc(opaque(100));  // fits in an existing arena
  void* mid = ta::malloc(opaque(200000));
  remalloc_inject_mmap_failure(0);
  EXPECT_EQ(p, nullptr) << "malloc succeeded although every mmap failed";
  EXPECT_EQ(e1, ENOMEM);
  EXPECT_EQ(q, nullptr) << "realloc succeeded although every mmap failed";
  EXPECT_EQ(e2, ENOMEM);
  if (q) keep = q;
  ASSERT_EQ(tu::check(keep, keep_n, 77), SIZE_MAX) << "a realloc that failed for mmap damaged the block";
  EXPECT_NE(small, nullptr);
  EXPECT_NE(mid, nullptr);
  ta::free(small);
  ta::free(mid);
  ta::free(p);
  // mmap works again: the same requests succeed.
  p = ta::malloc(opaque(big / 4));
  ASSERT_NE(p, nullptr);
  static_cast<char*>(p)[0] = 1;
  static_cast<char*>(p)[big / 4 - 1] = 2;
  ta::free(p);
  q = ta::realloc(keep, opaque(64 * tu::MiB));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(tu::check(q, keep_n, 77), SIZE_MAX);
  ta::free(q);
  EXPECT_EQ(remalloc_validate(), 0);
}

}  // namespace

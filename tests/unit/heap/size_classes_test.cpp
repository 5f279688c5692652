// heap/size_classes.h: the size-class table. class_of and class_size are
// inverse and monotone over every small size, the waste stays within its
// bounds, every slab holds at least 8 blocks and wastes at most 1/8, and the
// reciprocal divides exactly at every offset of every slab.
//
// The header's static_asserts check some of this at compile time; these
// tests check every size and every offset, and report which one fails.
#include <gtest/gtest.h>

#include <cstdint>

#include "heap/size_classes.h"

namespace {

using namespace remalloc;
using sc::class_of;
using sc::class_size;
using sc::kInfo;
using sc::kMaxSmall;
using sc::kNumClasses;

TEST(SizeClasses, TableShape) {
  EXPECT_EQ(kNumClasses, 82u);
  EXPECT_EQ(class_size(0), 16u);
  EXPECT_EQ(class_size(7), 128u);
  EXPECT_EQ(class_size(kNumClasses - 1), kMaxSmall);
  // 16-byte steps up to 128, then eight classes per power of two, and two
  // more, 4112 and 4160, between 4096 and 4608.
  for (unsigned c = 0; c < 8; c++) EXPECT_EQ(class_size(c), 16 * (c + 1)) << "class " << c;
  EXPECT_EQ(sc::kPagePlusIndex, sc::kPageTightIndex + 1);
  EXPECT_EQ(class_size(sc::kPageTightIndex - 1), 4096u);
  EXPECT_EQ(class_size(sc::kPageTightIndex), 4112u);
  EXPECT_EQ(class_size(sc::kPagePlusIndex), 4160u);
  EXPECT_EQ(class_size(sc::kPagePlusIndex + 1), 4608u);
  for (unsigned c = 8; c < kNumClasses; c++) {
    if (c == sc::kPageTightIndex || c == sc::kPagePlusIndex) continue;
    unsigned r = c < sc::kPageTightIndex ? c : c - 2;  // its place in the series
    size_t pow = size_t{1} << (7 + (r - 8) / 8);
    EXPECT_GT(class_size(c), pow) << "class " << c;
    EXPECT_LE(class_size(c), 2 * pow) << "class " << c;
    if ((r - 8) % 8 == 7) { EXPECT_EQ(class_size(c), 2 * pow) << "class " << c; }
  }
}

// A page of data plus a header of up to 64 bytes wastes at most 1.6%
// (Redis's 4 KiB values are 4100-byte strings); with a header of up to 16
// bytes, at most 0.4%.
TEST(SizeClasses, APageAndAHeaderFitTheClassesAbove4096) {
  for (size_t s = 4097; s <= 4160; s++) {
    EXPECT_EQ(class_of(s), s <= 4112 ? sc::kPageTightIndex : sc::kPagePlusIndex) << "size " << s;
    EXPECT_LE((class_size(class_of(s)) - s) * 64, s) << "size " << s;
    if (s <= 4112) { EXPECT_LE((class_size(class_of(s)) - s) * 256, s) << "size " << s; }
  }
  EXPECT_EQ(class_of(4100), sc::kPageTightIndex) << "Redis's 4 KiB value";
  EXPECT_EQ(class_of(4161), sc::kPagePlusIndex + 1);
  EXPECT_EQ(class_of(4096), sc::kPageTightIndex - 1);
  // The full slabs: 32 blocks of 4160 in 33 pages, 2 KiB (1.5%) left over;
  // 128 blocks of 4112 in 129 pages, 1,904 bytes (0.4%) left over, so that
  // each block costs 4128 bytes of slab (its 33-page slab would hold 32
  // and cost 4224 a block, 2.3% more).
  EXPECT_EQ(kInfo[sc::kPagePlusIndex].pages, 33u);
  EXPECT_EQ(kInfo[sc::kPagePlusIndex].capacity, 32u);
  EXPECT_EQ(kInfo[sc::kPageTightIndex].pages, 129u);
  EXPECT_EQ(kInfo[sc::kPageTightIndex].capacity, 128u);
  EXPECT_EQ(size_t(kInfo[sc::kPageTightIndex].pages) * kPageSize / kInfo[sc::kPageTightIndex].capacity, 4128u);
  // A heap's first slabs of it are smaller (9 pages, 8 blocks), and it
  // reaches the full size within the growth steps.
  EXPECT_EQ(kInfo[sc::kPageTightIndex].first_pages, 9u);
  EXPECT_EQ(sc::slab_pages_nth(sc::kPageTightIndex, sc::kSlabGrowthSteps), 129u);
}

TEST(SizeClasses, SizesStrictlyIncreaseAndAre16ByteAligned) {
  for (unsigned c = 0; c < kNumClasses; c++) {
    EXPECT_EQ(class_size(c) % kMinAlign, 0u) << "class " << c;
    if (c) { EXPECT_GT(class_size(c), class_size(c - 1)) << "class " << c; }
  }
}

// class_of(s) is the smallest class whose size holds s, for every size.
TEST(SizeClasses, ClassOfIsTheSmallestClassHoldingEverySize) {
  unsigned prev = 0;
  for (size_t s = 1; s <= kMaxSmall; s++) {
    unsigned c = class_of(s);
    ASSERT_LT(c, kNumClasses) << "size " << s;
    ASSERT_GE(class_size(c), s) << "size " << s << " class " << c;
    if (c) { ASSERT_LT(class_size(c - 1), s) << "size " << s << " class " << c << ": a smaller class holds it"; }
    ASSERT_GE(c, prev) << "class_of not monotone at size " << s;
    ASSERT_LE(c, prev + 1) << "class_of skips a class at size " << s;
    prev = c;
  }
  EXPECT_EQ(class_of(0), 0u);
  EXPECT_EQ(prev, kNumClasses - 1);
}

TEST(SizeClasses, ClassOfInvertsClassSize) {
  for (unsigned c = 0; c < kNumClasses; c++) {
    EXPECT_EQ(class_of(class_size(c)), c) << "class " << c;
    if (c + 1 < kNumClasses) { EXPECT_EQ(class_of(class_size(c) + 1), c + 1) << "class " << c; }
  }
  // The table path (up to 1024) and the computed path agree where they meet.
  for (size_t s = 129; s <= 1024; s++) EXPECT_EQ(class_of(s), sc::class_of_large(s)) << "size " << s;
}

// At most 15 bytes of waste up to 128; above, less than an eighth of the
// size asked for (the step is an eighth of the power of two below).
TEST(SizeClasses, WasteBounds) {
  for (size_t s = 1; s <= kMaxSmall; s++) {
    size_t waste = class_size(class_of(s)) - s;
    if (s <= 128)
      ASSERT_LT(waste, 16u) << "size " << s;
    else
      ASSERT_LT(waste * 8, s) << "size " << s << " wastes " << waste;
  }
  for (unsigned c = 9; c < kNumClasses; c++)
    EXPECT_LE((class_size(c) - class_size(c - 1)) * 8, class_size(c - 1)) << "class " << c;
}

TEST(SizeClasses, SlabGeometry) {
  for (unsigned c = 0; c < kNumClasses; c++) {
    const sc::ClassInfo& ci = kInfo[c];
    size_t bytes = size_t(ci.pages) * kPageSize;
    EXPECT_EQ(ci.size, class_size(c)) << "class " << c;
    EXPECT_GE(ci.pages, 16u) << "class " << c;
    EXPECT_LE(ci.pages, 256u) << "class " << c;
    EXPECT_EQ(ci.capacity, bytes / ci.size) << "class " << c;
    EXPECT_GE(ci.capacity, 8u) << "class " << c;
    EXPECT_LE(ci.capacity, 65535u) << "class " << c;
    size_t waste = bytes - size_t(ci.capacity) * ci.size;
    // 1/8 at most; 1/256 and 1/64 for the two classes just above a page.
    const size_t div = sc::slab_waste_div(ci.size);
    EXPECT_LE(waste * div, bytes) << "class " << c << " wastes " << waste << " of " << bytes;
    // The slab is the smallest that meets both bounds.
    if (ci.pages > 16) {
      size_t smaller = (ci.pages - 1) * kPageSize;
      size_t cap = smaller / ci.size;
      EXPECT_TRUE(cap < 8 || (smaller - cap * ci.size) * div > smaller) << "class " << c << ": a smaller slab would do";
    }
    EXPECT_LE(bytes, UINT32_MAX) << "slab_bytes is 32 bits";
  }
}

// The free path (heap.h, is_block) divides by multiplying with recip:
// q = (off * recip) >> 32, and off is a block boundary iff q * size == off
// in 32-bit arithmetic. For that, at every offset of the slab q must be
// off / size exactly on block boundaries and at most one more elsewhere
// (ceil(2^32 / size) rounds up, so q may reach the next block just below a
// boundary), and the 32-bit product must not wrap.
TEST(SizeClasses, ManyHeapsSlabsAreSmallerWithinTheSameBounds) {
  unsigned smaller = 0;
  for (unsigned c = 0; c < kNumClasses; c++) {
    const sc::ClassInfo& ci = kInfo[c];
    size_t bytes = size_t(ci.many_pages) * kPageSize;
    EXPECT_LE(ci.many_pages, ci.pages) << "class " << c;
    EXPECT_GE(ci.many_pages, sc::kManyHeapsPages) << "class " << c;
    EXPECT_GE(bytes / ci.size, 8u) << "class " << c;
    EXPECT_LE((bytes - bytes / ci.size * ci.size) * 8, bytes) << "class " << c;
    // The fewest pages from kManyHeapsPages on that meet the bounds.
    if (ci.many_pages > sc::kManyHeapsPages && ci.many_pages < ci.pages) {
      size_t less = bytes - kPageSize;
      EXPECT_TRUE(less / ci.size < 8 || (less - less / ci.size * ci.size) * 8 > less) << "class " << c;
    }
    smaller += ci.many_pages < ci.pages;
  }
  EXPECT_GT(smaller, kNumClasses / 2) << "most classes get smaller slabs";
}

TEST(SizeClasses, ReciprocalExactAtEveryOffsetOfEverySlab) {
  for (unsigned c = 0; c < kNumClasses; c++) {
    const sc::ClassInfo& ci = kInfo[c];
    EXPECT_EQ(ci.recip, uint32_t(((uint64_t{1} << 32) + ci.size - 1) / ci.size)) << "class " << c;
    uint64_t bytes = uint64_t(ci.pages) * kPageSize;
    size_t boundaries = 0;
    for (uint64_t off = 0; off < bytes; off++) {
      uint64_t q = (off * ci.recip) >> 32;
      uint64_t exact = off / ci.size;
      bool boundary = off % ci.size == 0;
      bool is_block = uint32_t(q) * ci.size == uint32_t(off);  // as heap.h computes it
      if ((boundary && q != exact) || q < exact || q > exact + 1 || q * ci.size > UINT32_MAX ||
          is_block != boundary) {
        ADD_FAILURE() << "class " << c << " (size " << ci.size << "): offset " << off << " gives " << q
                      << " (exact " << exact << "), block check says " << is_block;
        break;
      }
      boundaries += is_block;
    }
    EXPECT_EQ(boundaries, bytes / ci.size + (bytes % ci.size != 0)) << "class " << c;
  }
}

}  // namespace

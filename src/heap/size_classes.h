// small heaps: the size-class table, computed at compile time.
//
// Classes step by 16 bytes up to 128, then eight classes per power of two
// up to kMaxSmall (64 KiB): at most 12.5% internal waste above 128 bytes,
// about 6% on average. (Four per power of two wasted up to 25%: a 4 KiB
// value with a small header took a 5 KiB block, and a Redis server holding
// such values 20% more pages and faults than glibc.) One class more, 4160
// (4096 + 64), sits between 4096 and 4608: a page's worth of data plus a
// header (Redis's 4 KiB values are 4100-byte sds strings; a 4 KiB buffer
// with a length or a refcount in front) took a 4608-byte block, 12% waste;
// now 1.5%. And one below it, 4112 (4096 + 16), for a page with a header of
// up to 16 bytes (Redis's 4100-byte strings again, a glibc-style 16-byte
// chunk header): the 4160 class still wasted 60 bytes a block and 2 KiB a
// 33-page slab, 1.6 KiB a 4100-byte value where glibc's chunk takes 4112;
// the 4112 class's full slab is 129 pages for 128 blocks (1,904 bytes left
// over), 4128 bytes a block: a Redis server holding 85k such values took
// 16 MiB less, most of it page-heap descriptors of fewer slabs
// (bench/report/threads-kept-2026-12-04.md). Each costs class_of
// one compare for sizes above 1 KiB. Each class has a slab size (in pages)
// chosen so that a slab holds at least 8 blocks and wastes at most 1/8 of
// its bytes.
#pragma once
#include <array>

#include "base/base.h"

namespace remalloc::sc {

constexpr size_t kMaxSmall = size_t{64} << 10;
constexpr unsigned kClassesPerDoubling = 8;
// The two classes just above a page (see above), and their indexes: the
// regular series' index of 4608 is the first's, and with every later class
// moves up by two.
constexpr size_t kPageTightClass = 4096 + 16;
constexpr unsigned kPageTightIndex = 8 + kClassesPerDoubling * (12 - 7);  // 48
constexpr size_t kPagePlusClass = 4096 + 64;
constexpr unsigned kPagePlusIndex = kPageTightIndex + 1;                  // 49
constexpr unsigned kNumClasses = 8 + kClassesPerDoubling * (16 - 7) + 2;  // 82

// The regular series: 16-byte steps to 128, then eight per power of two.
constexpr size_t series_size(unsigned c) {
  if (c < 8) return 16 * (c + 1);
  unsigned k = 7 + (c - 8) / kClassesPerDoubling;
  unsigned i = (c - 8) % kClassesPerDoubling + 1;
  return (size_t{1} << k) + i * (size_t{1} << (k - 3));
}

constexpr size_t class_size(unsigned c) {
  if (c < kPageTightIndex) return series_size(c);
  if (c == kPageTightIndex) return kPageTightClass;
  if (c == kPagePlusIndex) return kPagePlusClass;
  return series_size(c - 2);
}

// Size to class for sizes above 128 (and up to kMaxSmall): the series'
// index, one more past kPageTightClass and one more past kPagePlusClass.
// For sizes in (4096, 4112] the series gives 4608's index, which is now
// kPageTightClass's.
constexpr unsigned class_of_large(size_t s) {
  unsigned k = log2_floor(s - 1);
  size_t step = size_t{1} << (k - 3);
  size_t i = (s - (size_t{1} << k) + step - 1) / step;
  return unsigned(8 + (k - 7) * kClassesPerDoubling + i - 1) + unsigned(s > kPageTightClass) +
         unsigned(s > kPagePlusClass);
}

constexpr std::array<uint8_t, 1024 / 16 + 1> make_small_table() {
  std::array<uint8_t, 1024 / 16 + 1> t{};
  for (size_t i = 0; i < t.size(); i++) {
    size_t s = i * 16;
    if (s == 0) s = 1;
    unsigned c = 0;
    while (class_size(c) < s) c++;
    t[i] = uint8_t(c);
  }
  return t;
}
inline constexpr std::array<uint8_t, 1024 / 16 + 1> kSmallTable = make_small_table();

RM_INLINE constexpr unsigned class_of(size_t s) {
  if (RM_LIKELY(s <= 1024)) return kSmallTable[(s + 15) >> 4];
  return class_of_large(s);
}

// The pages of a class's slab: the fewest from `from` on that hold at least
// 8 blocks and waste at most 1/waste_div (1/8).
constexpr size_t slab_pages_for(size_t bs, size_t from = 16, size_t waste_div = 8) {
  for (size_t pages = from; pages <= 256; pages++) {
    size_t bytes = pages * kPageSize;
    size_t cap = bytes / bs;
    if (cap >= 8 && (bytes - cap * bs) * waste_div <= bytes) return pages;
  }
  return 256;
}
// The full slab of kPagePlusClass wastes at most 1/64: 33 pages, 32 blocks
// (the rule's 16 pages hold 15 and waste 4.8%, which a Redis server with
// 85k such blocks paid as 17 MiB of slab slack); kPageTightClass's at most
// 1/256: 129 pages, 128 blocks (its 33-page slab would waste 2.7%).
constexpr size_t kPagePlusWasteDiv = 64;
constexpr size_t kPageTightWasteDiv = 256;
// The most a full slab of blocks of size bs may waste: 1/slab_waste_div.
constexpr size_t slab_waste_div(size_t bs) {
  return bs == kPagePlusClass ? kPagePlusWasteDiv : bs == kPageTightClass ? kPageTightWasteDiv : 8;
}

struct ClassInfo {
  uint32_t size;
  uint32_t pages;        // a full slab (from 16 pages: few page-heap calls)
  uint32_t capacity;     // blocks of a full slab
  uint32_t recip;
  uint32_t first_pages;  // a heap's first slab of the class (from 1 page)
  // The largest slab a heap makes while more than kManyHeaps heaps are live
  // (from kManyHeapsPages pages, within the same bounds; <= pages).
  uint32_t many_pages;
};

// With more than kManyHeaps threads owning heaps, new slabs stop growing at
// many_pages. Every heap holds a current, partly used slab in each class it
// uses, and the blocks it gets back from other threads stay in its slabs;
// with many threads (and more threads than cores, each waiting its turn)
// that is most of the footprint, and a slab gives its pages to another
// thread only once all its blocks came back. Smaller slabs empty sooner.
// Measured on 2 cores (bench_manyprod short 8, one consumer freeing for 8
// producers): peak RSS 48 -> 35 MiB and page faults 11.8k -> 8.2k with 4-page
// slabs; larson and falseshare (2 to 5 threads) were 13% slower with them,
// hence the threshold. src/README.md has the figures.
constexpr unsigned kManyHeaps = 8;
constexpr size_t kManyHeapsPages = 4;

constexpr std::array<ClassInfo, kNumClasses> make_info() {
  std::array<ClassInfo, kNumClasses> t{};
  for (unsigned c = 0; c < kNumClasses; c++) {
    size_t bs = class_size(c);
    size_t pages = slab_pages_for(bs, 16, slab_waste_div(bs));
    t[c].size = uint32_t(bs);
    t[c].pages = uint32_t(pages);
    t[c].capacity = uint32_t(pages * kPageSize / bs);
    t[c].recip = uint32_t(((uint64_t{1} << 32) + bs - 1) / bs);
    t[c].first_pages = uint32_t(slab_pages_for(bs, 1));
    size_t many = slab_pages_for(bs, kManyHeapsPages);
    t[c].many_pages = uint32_t(many < pages ? many : pages);
  }
  return t;
}
inline constexpr std::array<ClassInfo, kNumClasses> kInfo = make_info();

// The pages of the slab a heap makes when it has made `made` slabs of class
// c: its first slab has first_pages, each next one twice the last, up to
// the full size. A thread that holds a few blocks in many classes (the
// common case for threads that come and go) then holds a page or two per
// class; a thread that allocates many blocks of a
// class reaches full slabs after at most four smaller ones. Doubling keeps
// the waste at most 1/8 and the block count at least 8.
constexpr size_t slab_pages_nth(unsigned c, unsigned made) {
  size_t p = kInfo[c].first_pages;
  for (unsigned i = 0; i < made && p < kInfo[c].pages; i++) p *= 2;
  return p < kInfo[c].pages ? p : kInfo[c].pages;
}
// Slabs of a class a heap counts before it has reached the full size.
constexpr unsigned kSlabGrowthSteps = 8;

// ---- relations the rest of the allocator relies on ----
static_assert(class_size(kNumClasses - 1) == kMaxSmall, "last class is kMaxSmall");
static_assert(class_size(0) == 16 && class_size(7) == 128 && class_size(8) == 144);
static_assert(class_of(0) == 0 && class_of(1) == 0 && class_of(16) == 0 && class_of(17) == 1);
static_assert(class_of(kMaxSmall) == kNumClasses - 1);
static_assert(class_size(kPageTightIndex - 1) == 4096 && class_size(kPageTightIndex) == 4112 &&
              class_size(kPagePlusIndex) == 4160 && class_size(kPagePlusIndex + 1) == 4608);
static_assert(kInfo[kPagePlusIndex].pages == 33 && kInfo[kPagePlusIndex].capacity == 32);
static_assert(kInfo[kPageTightIndex].pages == 129 && kInfo[kPageTightIndex].capacity == 128);
static_assert(class_of(4097) == kPageTightIndex && class_of(4112) == kPageTightIndex &&
              class_of(4113) == kPagePlusIndex && class_of(4160) == kPagePlusIndex && class_of(4161) == kPagePlusIndex + 1);
constexpr bool check_classes() {
  for (unsigned c = 0; c < kNumClasses; c++) {
    if (class_size(c) % kMinAlign) return false;                  // 16-byte aligned blocks
    if (c && class_size(c) <= class_size(c - 1)) return false;    // increasing
    if (class_of(class_size(c)) != c) return false;               // exact sizes map to themselves
    if (class_of(class_size(c) + 1) != c + 1 && c + 1 < kNumClasses) return false;
    if (c >= 8 && (class_size(c) - class_size(c - 1)) * 8 > class_size(c - 1)) return false;
    if (kInfo[c].capacity < 8 || kInfo[c].capacity > 65535) return false;
    // every smaller slab holds at least 8 blocks, wastes at most 1/8, and
    // the growth reaches the full size within kSlabGrowthSteps slabs
    for (unsigned m = 0; m <= kSlabGrowthSteps; m++) {
      uint64_t b = uint64_t(slab_pages_nth(c, m)) * kPageSize;
      if (b / class_size(c) < 8 || (b - b / class_size(c) * class_size(c)) * 8 > b) return false;
      if (b > uint64_t(kInfo[c].pages) * kPageSize) return false;
    }
    if (slab_pages_nth(c, kSlabGrowthSteps) != kInfo[c].pages) return false;
    // the many-heaps slab meets the same bounds and is no larger
    {
      uint64_t b = uint64_t(kInfo[c].many_pages) * kPageSize;
      if (b / class_size(c) < 8 || (b - b / class_size(c) * class_size(c)) * 8 > b) return false;
      if (kInfo[c].many_pages > kInfo[c].pages || kInfo[c].many_pages < kManyHeapsPages) return false;
    }
    // the reciprocal is exact at every block boundary of a slab (what
    // is_block needs); just below a boundary it may be one too high
    uint64_t bytes = uint64_t(kInfo[c].pages) * kPageSize;
    if ((((bytes - 1) * kInfo[c].recip) >> 32) > bytes / class_size(c)) return false;
  }
  return true;
}
static_assert(check_classes(), "size-class table relations");

}  // namespace remalloc::sc

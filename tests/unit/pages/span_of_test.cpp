// pages/span.h: arena_of and span_of over a real arena (made by the public
// API), and validate_span. span_of must find the slab of every address in a
// slab (block boundaries, interiors, every page), the span of a large block
// at its first page, and for the other pages of a large block a span that
// neither claims the address as a block nor as a large block's start (back[]
// is exact only at the first page: stale entries must be harmless). Addresses
// outside every arena and non-canonical ones give nullptr. validate_span
// accepts real spans and aborts on each broken rule of the span/slab
// contract.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "pages/page_heap.h"
#include "pages/span.h"
#include "remalloc/remalloc.h"

namespace {

using namespace remalloc;
using pages::arena_of;
using pages::span_of;

constexpr size_t P = kPageSize;

void* at(uintptr_t a) { return reinterpret_cast<void*>(a); }
uintptr_t addr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// s is a descriptor of arena a (a slot of its pool that was handed out).
bool in_meta(const Arena* a, const Span* s) { return s >= a->meta && s < a->meta + a->slot_high; }

// What free() relies on: the span does not take q for a slab block or a
// large block's start.
bool claims(const Span* s, uintptr_t q) {
  if (s->slab_bytes && q - s->start < s->slab_bytes && (q - s->start) % s->block_size == 0) return true;
  return pages::is_large_start(s, at(q));
}

// The blocks these tests inspect are slab blocks and large blocks: the
// secure build's sampled blocks (one small malloc in REMALLOC_GUARD_SAMPLE)
// live in the guarded pool outside every arena, and have their own tests
// (tests/api/sampled_test.cpp). Setting 0 is valid in every build.
const bool kNoSampling = remalloc_option_set("guard_sample", 0) == 0;

TEST(SpanOf, SamplingIsOff) { EXPECT_TRUE(kNoSampling); }

TEST(SpanOf, AddressesOutsideEveryArena) {
  void* keep = remalloc_malloc(100);  // so that at least one arena exists
  ASSERT_NE(keep, nullptr);
  int local = 0;
  static int global = 0;
  void* libc = std::malloc(100);
  const void* outside[] = {nullptr, &local, &global, libc, reinterpret_cast<void*>(&std::malloc),
                           at(P), at(kArenaGranule)};
  for (const void* p : outside) {
    EXPECT_EQ(arena_of(p), nullptr) << p;
    EXPECT_EQ(span_of(p), nullptr) << p;
  }
  std::free(libc);
  remalloc_free(keep);
}

TEST(SpanOf, NonCanonicalAddresses) {
  void* p = remalloc_malloc(100);
  ASSERT_NE(p, nullptr);
  ASSERT_NE(arena_of(p), nullptr);
  const uintptr_t bad[] = {uintptr_t{1} << kAddressBits, addr(p) | (uintptr_t{1} << kAddressBits),
                           addr(p) | (uintptr_t{1} << 63), uintptr_t{0xffff800000000000}, ~uintptr_t{0},
                           ~uintptr_t{0} << kArenaMapShift};
  for (uintptr_t q : bad) {
    EXPECT_EQ(arena_of(at(q)), nullptr) << std::hex << q;
    EXPECT_EQ(span_of(at(q)), nullptr) << std::hex << q;
  }
  remalloc_free(p);
}

TEST(SpanOf, TheArenaOfABlock) {
  void* p = remalloc_malloc(1000);
  ASSERT_NE(p, nullptr);
  Arena* a = arena_of(p);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->base % kArenaGranule, 0u);
  EXPECT_GE(addr(p), a->base);
  EXPECT_LT(addr(p), a->base + a->bytes());
  EXPECT_EQ(a->npages % 512, 0u);
  EXPECT_EQ(arena_of(at(a->base)), a);
  EXPECT_EQ(arena_of(at(a->base + a->bytes() - 1)), a);
  EXPECT_NE(arena_of(at(a->base - 1)), a);
  EXPECT_NE(arena_of(at(a->base + align_up(a->bytes(), kArenaGranule))), a);
  // Every granule of the arena maps to it.
  for (uintptr_t g = a->base; g < a->base + a->bytes(); g += kArenaGranule) {
    EXPECT_EQ(arena_of(at(g)), a);
    EXPECT_EQ(pages::map_entry(g), a);
  }
  remalloc_free(p);
}

TEST(SpanOf, SmallBlocksBoundariesInteriorsAndEveryPage) {
  for (size_t size : {1, 16, 100, 1000, 5000, 20000, 65536}) {
    SCOPED_TRACE(size);
    std::vector<void*> blocks;
    for (int i = 0; i < 20; i++) blocks.push_back(remalloc_malloc(size));
    const Span* first = nullptr;
    for (void* p : blocks) {
      ASSERT_NE(p, nullptr);
      Span* s = span_of(p);
      ASSERT_NE(s, nullptr);
      Arena* a = arena_of(p);
      ASSERT_TRUE(in_meta(a, s));
      EXPECT_EQ(s->kind, kSpanSlab);
      EXPECT_EQ(s->arena, a);
      EXPECT_EQ(a->back[(s->start - a->base) / P], size_t(s - a->meta)) << "back[] of its first page leads to it";
      // The secure build's slabs have one more page, their guard.
      EXPECT_EQ(s->slab_bytes, s->bytes() - (pages::guard_tail_pages() << kPageShift));
      EXPECT_GE(s->block_size, size);
      uintptr_t off = addr(p) - s->start;
      ASSERT_LT(off, s->slab_bytes);
      EXPECT_EQ(off % s->block_size, 0u) << "a block boundary";
      EXPECT_TRUE(claims(s, addr(p)));
      // Interiors of the block: same slab, not a boundary.
      for (uintptr_t d : {uintptr_t{1}, uintptr_t{8}, uintptr_t{s->block_size - 1}}) {
        if (d >= s->block_size) continue;
        EXPECT_EQ(span_of(at(addr(p) + d)), s);
        EXPECT_FALSE(claims(s, addr(p) + d));
      }
      if (!first) first = s;
    }
    // Every page of the first slab, at any offset, leads to it.
    for (size_t i = 0; i < first->npages; i++) {
      EXPECT_EQ(span_of(at(first->start + i * P)), first) << "page " << i;
      EXPECT_EQ(span_of(at(first->start + i * P + P - 1)), first) << "page " << i;
    }
    pages::validate_span(first, true);
    for (void* p : blocks) remalloc_free(p);
  }
}

TEST(SpanOf, LargeBlocksFirstAndLastPages) {
  for (size_t size : {size_t{65537}, size_t{100} << 10, (size_t{1} << 20) + 1, size_t{4} << 20,
                      size_t{9} << 20}) {
    SCOPED_TRACE(size);
    void* p = remalloc_malloc(size);
    ASSERT_NE(p, nullptr);
    Span* s = span_of(p);
    ASSERT_NE(s, nullptr);
    Arena* a = arena_of(p);
    ASSERT_TRUE(in_meta(a, s));
    EXPECT_EQ(s->kind, kSpanLarge);
    EXPECT_EQ(s->start, addr(p));
    EXPECT_GE(s->npages, pages_of(size));
    EXPECT_LE(s->npages, pages_of(size) + pages_of(size) / 8) << "(a block from the thread's cache may be a little larger)";
    EXPECT_EQ(s->requested, size);
    EXPECT_EQ(s->slab_bytes, 0u) << "not a slab: the slab compare must fail";
    EXPECT_TRUE(pages::is_large_start(s, p));
    EXPECT_EQ(span_of(at(addr(p) + P - 1)), s) << "the whole first page";
    EXPECT_FALSE(pages::is_large_start(s, at(addr(p) + 16)));
    // The other pages: back[] may be stale there; whatever span_of gives,
    // it lies in the arena and claims nothing.
    for (uintptr_t q : {addr(p) + P, addr(p) + (s->npages - 1) * P, addr(p) + s->bytes() - 16,
                        addr(p) + s->bytes() / 2 / P * P}) {
      if (q < addr(p) + P) continue;
      Span* r = span_of(at(q));
      ASSERT_NE(r, nullptr) << std::hex << q;
      EXPECT_TRUE(in_meta(a, r)) << std::hex << q;
      EXPECT_FALSE(claims(r, q)) << std::hex << q;
      EXPECT_EQ(remalloc_owns(at(q)), 0) << std::hex << q;
    }
    EXPECT_EQ(remalloc_owns(p), 1);
    pages::validate_span(s, true);
    remalloc_free(p);
    // Freed (or kept in the thread's cache): no longer a large block's start.
    Span* r = span_of(p);
    ASSERT_NE(r, nullptr);
    EXPECT_FALSE(pages::is_large_start(r, p));
    EXPECT_EQ(remalloc_owns(p), 0);
  }
}

TEST(SpanOf, ValidateSpanAcceptsRealSpans) {
  std::vector<void*> blocks;
  for (int i = 0; i < 50; i++) blocks.push_back(remalloc_malloc(48));
  for (int i = 0; i < 50; i += 3) remalloc_free(blocks[i]);  // a free list to walk
  void* big = remalloc_malloc(300000);
  ASSERT_NE(big, nullptr);
  pages::validate_span(span_of(blocks[1]), true);
  pages::validate_span(span_of(blocks[1]), false);
  pages::validate_span(span_of(big), true);
  EXPECT_EQ(remalloc_validate(), 0);
  remalloc_free(big);
  for (int i = 0; i < 50; i++)
    if (i % 3) remalloc_free(blocks[i]);
}

// ---- validate_span on fake spans: each rule of the contract -------------------

// A slab of 16 pages of 64-byte blocks, 4 linked in, 1 handed out, the other
// 3 on the free list (offsets 0, 64, 128); the memory is the test's. In the
// secure build the run has one more page (the guard, never touched here) and
// links are stored encoded, as the validator expects.
class FakeSlab : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_ = static_cast<char*>(std::aligned_alloc(P, (16 + pages::guard_tail_pages()) * P));
    s_.start = addr(mem_);
    s_.npages = 16 + pages::guard_tail_pages();
    s_.kind = kSpanSlab;
    s_.slab_bytes = 16 * P;
    s_.block_size = 64;
    s_.capacity = 16 * P / 64;
    s_.bump = 4;
    s_.used = 1;
    link({0, 64, 128});
  }
  void TearDown() override { std::free(mem_); }
  // The free list through the blocks at these offsets, in order.
  void link(std::vector<size_t> offs) {
    s_.free_list = offs.empty() ? nullptr : mem_ + offs[0];
    for (size_t i = 0; i < offs.size(); i++)
      pages::link_store(mem_ + offs[i], i + 1 < offs.size() ? mem_ + offs[i + 1] : nullptr);
  }
  char* mem_ = nullptr;
  Span s_;
};
using FakeSlabDeathTest = FakeSlab;

TEST_F(FakeSlab, ConsistentSlabPasses) {
  pages::validate_span(&s_, true);
  pages::validate_span(&s_, false);
  s_.slab_bytes = 0;  // being set up or let go: nothing to check
  pages::validate_span(&s_, true);
}

TEST_F(FakeSlab, OthersSlabsFreeListIsNotRead) {
  link({1, 2});  // broken, but only the owner may walk it
  pages::validate_span(&s_, false);
}

TEST_F(FakeSlabDeathTest, SlabBytesOnASpanThatIsNotASlab) {
  s_.kind = kSpanLarge;
  EXPECT_DEATH(pages::validate_span(&s_, false), "span: slab_bytes set on a span that is not a slab");
  s_.kind = kSpanFree;
  EXPECT_DEATH(pages::validate_span(&s_, false), "span: slab_bytes set on a span that is not a slab");
}

TEST_F(FakeSlabDeathTest, LargeBlockAskedForMoreThanItHolds) {
  s_.kind = kSpanLarge;
  s_.slab_bytes = 0;
  s_.requested = s_.bytes();
  pages::validate_span(&s_, false);
  s_.requested = s_.bytes() + 1;
  EXPECT_DEATH(pages::validate_span(&s_, false), "span: a large block asked for more than it holds");
  s_.kind = kSpanCached;
  EXPECT_DEATH(pages::validate_span(&s_, false), "span: a large block asked for more than it holds");
}

TEST_F(FakeSlabDeathTest, SlabBytesDifferFromThePages) {
  s_.slab_bytes = 15 * P;
  EXPECT_DEATH(pages::validate_span(&s_, false), "span: slab_bytes differs from the slab's pages");
}

TEST_F(FakeSlabDeathTest, Geometry) {
  s_.capacity = 16 * P / 64 + 1;
  EXPECT_DEATH(pages::validate_span(&s_, true), "span: slab geometry inconsistent");
  s_.capacity = 16 * P / 64;
  s_.bump = s_.capacity + 1;
  EXPECT_DEATH(pages::validate_span(&s_, true), "span: slab geometry inconsistent");
  s_.bump = 4;
  s_.block_size = 0;
  EXPECT_DEATH(pages::validate_span(&s_, true), "span: slab geometry inconsistent");
}

TEST_F(FakeSlabDeathTest, HandsOutMoreThanLinkedIn) {
  s_.used = 5;
  EXPECT_DEATH(pages::validate_span(&s_, true), "span: slab hands out more blocks than it linked in");
}

TEST_F(FakeSlabDeathTest, FreeListLeavesTheSlab) {
  link({0, 65, 128});  // not a block boundary
  EXPECT_DEATH(pages::validate_span(&s_, true), "span: slab free list leaves the slab");
  link({0, 64, 16 * P - 64});
  pages::link_store(mem_ + 64, mem_ + 16 * P);  // one past the end
  EXPECT_DEATH(pages::validate_span(&s_, true), "span: slab free list leaves the slab");
}

TEST_F(FakeSlabDeathTest, FreeListCycle) {
  link({0, 64, 128});
  pages::link_store(mem_ + 128, mem_);  // back to the first
  EXPECT_DEATH(pages::validate_span(&s_, true), "span: slab free list longer than its free blocks");
}

TEST_F(FakeSlabDeathTest, FreeListTooShort) {
  link({0, 64});
  EXPECT_DEATH(pages::validate_span(&s_, true), "span: slab free list shorter than its free blocks");
}

}  // namespace

// pages/: prefault (page_heap.h). A slab's owner asks for the pages its
// next blocks cover before it first writes them; the page heap populates
// those that were not resident when the slab was carved (outside the dirty
// hull the run had then) with one platform call, and leaves the others
// alone. On a fresh PageHeap per test (the fake platform: real, read-write
// reservations; it records every range it is asked to populate).
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "pages/internal.h"
#include "pages/quiet_heap.h"
#include "platform/os.h"

namespace {

using namespace remalloc;
using namespace remalloc::pages;
using test::FakePlatform;

constexpr size_t P = kPageSize;

class Prefault : public test::QuietPageHeap {
 protected:
  uintptr_t at(const Span* s, size_t page) const { return s->start + page * P; }
  void prefault(Span* s, size_t from_page, size_t to_page) { h_->prefault(s, at(s, from_page), at(s, to_page)); }
};

// A slab carved from pages never touched: every page asked for is
// populated, in one call, and is resident afterwards.
TEST_F(Prefault, FreshPagesArePopulatedInOneCall) {
  Span* s = slab(8);
  ASSERT_EQ(s->maint_lo, s->maint_hi) << "a fresh run has no dirty hull";
  EXPECT_EQ(os::resident_in(reinterpret_cast<void*>(s->start), 8 * P), 0u);
  prefault(s, 0, 2);
  ASSERT_EQ(fake_.calls[FakePlatform::kPopulate], 1);
  ASSERT_EQ(fake_.populated.size(), 1u);
  EXPECT_EQ(fake_.populated[0].start, s->start);
  EXPECT_EQ(fake_.populated[0].bytes, 2 * P);
  EXPECT_EQ(os::resident_in(reinterpret_cast<void*>(s->start), 8 * P), 2 * P) << "the two pages, and only them";
  prefault(s, 2, 3);
  ASSERT_EQ(fake_.populated.size(), 2u);
  EXPECT_EQ(fake_.populated[1].start, at(s, 2));
  EXPECT_EQ(fake_.populated[1].bytes, P);
  Stats st;
  h_->get_stats(&st);
  EXPECT_EQ(st.prefault_pages, 3u);
  h_->free_span(s);
}

// A slab on the pages of one just given back (dirty, not purged): they may
// be resident, so nothing is populated.
TEST_F(Prefault, PagesOfAFreedSlabAreLeftAlone) {
  Span* a = slab(8);
  memset(reinterpret_cast<void*>(a->start), 1, 8 * P);
  uintptr_t where = a->start;
  h_->free_span(a);
  Span* b = slab(8);
  ASSERT_EQ(b->start, where) << "the dirty run is reused first";
  EXPECT_LT(b->maint_lo, b->maint_hi);
  prefault(b, 0, 8);
  EXPECT_EQ(fake_.calls[FakePlatform::kPopulate], 0);
  h_->free_span(b);
}

// A slab that takes a dirty run and fresh pages after it: only the fresh
// part of the range asked for is populated.
TEST_F(Prefault, OnlyThePagesOutsideTheDirtyHullArePopulated) {
  Span* a = slab(3);
  uintptr_t where = a->start;
  size_t hull = a->npages;  // with the secure build's guard page
  h_->free_span(a);
  Span* b = slab(16);
  ASSERT_EQ(b->start, where) << "the freed run and the clean pages above it, coalesced";
  ASSERT_EQ(b->maint_hi - b->maint_lo, hull);
  prefault(b, 1, 8);
  ASSERT_EQ(fake_.populated.size(), 1u);
  EXPECT_EQ(fake_.populated[0].start, at(b, hull));
  EXPECT_EQ(fake_.populated[0].bytes, (8 - hull) * P);
  prefault(b, 0, 2);  // inside the hull
  EXPECT_EQ(fake_.populated.size(), 1u);
  prefault(b, 10, 12);  // above it
  ASSERT_EQ(fake_.populated.size(), 2u);
  EXPECT_EQ(fake_.populated[1].start, at(b, 10));
  EXPECT_EQ(fake_.populated[1].bytes, 2 * P);
  h_->free_span(b);
}

// prefault off (REMALLOC_PREFAULT=0): no call.
TEST_F(Prefault, OffMakesNoCall) {
  Config c = h_->config();
  c.prefault = false;
  h_->configure(c);
  Span* s = slab(4);
  prefault(s, 0, 4);
  EXPECT_EQ(fake_.calls[FakePlatform::kPopulate], 0);
  EXPECT_EQ(os::resident_in(reinterpret_cast<void*>(s->start), 4 * P), 0u);
  h_->free_span(s);
}

// A failed call loses nothing: the pages fault in when written.
TEST_F(Prefault, AFailedCallLeavesThePagesUsable) {
  fake_.fail(FakePlatform::kPopulate, ENOMEM);
  Span* s = slab(4);
  prefault(s, 0, 4);
  EXPECT_EQ(fake_.calls[FakePlatform::kPopulate], 1);
  EXPECT_EQ(os::resident_in(reinterpret_cast<void*>(s->start), 4 * P), 0u);
  memset(reinterpret_cast<void*>(s->start), 7, 4 * P);
  EXPECT_EQ(reinterpret_cast<unsigned char*>(s->start)[4 * P - 1], 7);
  Stats st;
  h_->get_stats(&st);
  EXPECT_EQ(st.prefault_pages, 0u) << "only pages populated count";
  h_->free_span(s);
}

}  // namespace

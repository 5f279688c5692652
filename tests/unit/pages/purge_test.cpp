// pages/purge.cpp: fresh runs reuse resident (dirty) pages before pages
// the decay purged or never touched, on a fresh PageHeap per test (the fake
// platform: no system calls; nothing is purged unless the test asks).
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "pages/internal.h"
#include "pages/quiet_heap.h"

namespace {

using namespace remalloc;
using namespace remalloc::pages;

class ResidentReuse : public test::QuietPageHeap {
 protected:
  static bool inside(const Span* s, uintptr_t lo, uintptr_t hi) { return s->start >= lo && s->end() <= hi; }

  // Leaves a purged 16-page hole, then a dirty 40-page hole, then `small`
  // newer one-page dirty holes (a thread's first slabs) in front of it on
  // the list of dirty runs; live one-page slabs between the holes keep them
  // from coalescing. Returns the address ranges of the first two.
  struct Holes {
    uintptr_t clean_lo, clean_hi, dirty_lo, dirty_hi;
  };
  Holes make_holes(size_t small) {
    Span* clean = slab(16);
    keep_.push_back(slab(1));
    Span* dirty = slab(40);
    keep_.push_back(slab(1));
    std::vector<Span*> smalls;
    for (size_t i = 0; i < small; i++) {
      smalls.push_back(slab(1));
      keep_.push_back(slab(1));
    }
    Holes hs{clean->start, clean->end(), dirty->start, dirty->end()};
    h_->free_span(clean);
    h_->purge(true);  // the 16-page hole is purged: touching it faults again
    h_->free_span(dirty);
    for (Span* s : smalls) h_->free_span(s);  // newer, each too small
    return hs;
  }
  void free_kept() {
    for (Span* k : keep_) h_->free_span(k);
    keep_.clear();
  }
  std::vector<Span*> keep_;
};

// A 16-page slab takes the dirty pages behind many newer, smaller holes,
// not the purged hole that fits best by size.
TEST_F(ResidentReuse, AFreshSlabTakesOlderDirtyPagesBehindManySmallerHoles) {
  Holes hs = make_holes(200);  // more than the 32 the walk used to look at
  Span* s = slab(16);
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(inside(s, hs.dirty_lo, hs.dirty_hi)) << "the slab landed outside the dirty hole";
  EXPECT_FALSE(inside(s, hs.clean_lo, hs.clean_hi)) << "the slab took the purged hole";
  h_->free_span(s);
  free_kept();
}

// Only so far: a dirty run behind more than kResidentLook newer ones is
// left to the search by size.
TEST_F(ResidentReuse, TheWalkStopsAfterItsBudget) {
  Holes hs = make_holes(size_t(PageHeap::kResidentLook) + 8);
  Span* s = slab(16);
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(inside(s, hs.clean_lo, hs.clean_hi)) << "best fit by size once the walk gives up";
  h_->free_span(s);
  free_kept();
}

}  // namespace

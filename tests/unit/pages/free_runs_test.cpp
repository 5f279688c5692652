// pages/free_runs.h on a synthetic arena: the descriptor pool, its bitmap
// and back[] allocated here, a base address that is granule-aligned but never mapped (free runs
// never touch the pages themselves), region 0. make_run, put's coalescing
// (left, right, both, never across a used page or through a stale back[]
// entry), find with alignment, phase and min_run, carve with skip and tail,
// dirty hulls joined on coalescing and clipped on carve, the byte totals,
// and both validators, including that they catch corruption.
//
// Each test has a PageHeap of its own (on the fake platform, which the free
// runs never call), so its bins and purge lists start empty; every test
// still ends by unlinking every run it made and checks the lists are empty
// then, which checks unlink_run.
#include <gtest/gtest.h>

#include <memory>

#include "pages/internal.h"
#include "pages/fake_platform.h"

namespace {

using namespace remalloc;
using namespace remalloc::pages;

constexpr size_t kPages = 1024;
constexpr size_t P = kPageSize;
// Never mapped: only its alignment matters (page n of the arena is aligned
// to 2^k pages iff n is, for 2^k up to the granule).
constexpr uintptr_t kFakeBase = uintptr_t{0x5a} << 36;
static_assert(kFakeBase % kArenaGranule == 0);

class FreeRuns : public ::testing::Test {
 protected:
  void SetUp() override {
    meta_.reset(new Span[kPages]);
    back_.reset(new uint32_t[kPages]());
    bits_.reset(new uint64_t[kPages / 64]());
    arena_ = Arena{};
    arena_.base = kFakeBase;
    arena_.npages = arena_.slots = arena_.meta_pages = kPages;
    arena_.meta = meta_.get();
    arena_.back = back_.get();
    arena_.slot_bits = bits_.get();
    arena_.region = kRegionNormal;
    h_.lock().lock();
    ASSERT_EQ(h_.validate_runs_locked(), 0u) << "runs left over from another test";
    ASSERT_EQ(h_.validate_purge_locked(), 0u);
    ASSERT_EQ(h_.free_bytes(), 0u);
    ASSERT_EQ(h_.dirty_bytes(), 0u);
  }

  void TearDown() override {
    // Unlink every run of the arena; the global lists must then be empty.
    for (size_t i = 0; i < kPages; i++)
      if (Span* f = PageHeap::run_at(&arena_, i)) h_.unlink_run(f);
    EXPECT_EQ(h_.validate_runs_locked(), 0u);
    EXPECT_EQ(h_.validate_purge_locked(), 0u);
    EXPECT_EQ(h_.free_bytes(), 0u);
    EXPECT_EQ(h_.dirty_bytes(), 0u);
    // Unlinking gave every free run's descriptor back to the pool: the
    // slots in use are the live neighbours' only.
    size_t in_use = 0;
    for (size_t w = 0; w < kPages / 64; w++) in_use += size_t(__builtin_popcountll(bits_[w]));
    EXPECT_EQ(in_use, used_) << "a descriptor slot leaked";
    h_.lock().unlock();
  }

  Arena* a() { return &arena_; }
  Span* at(size_t idx) { return PageHeap::run_at(&arena_, idx); }
  size_t idx(const Span* s) { return index_of(&arena_, s); }
  uint32_t slot(const Span* s) { return slot_of(&arena_, s); }
  // Pages [idx, idx+n) as a live large block (a neighbour that is not free).
  void mark_used(size_t i, size_t n) {
    Span& s = *slot_take(&arena_);
    s.kind = kSpanLarge;
    s.npages = n;
    s.start = kFakeBase + i * P;
    s.arena = &arena_;
    back_[i] = slot(&s);
    used_++;
  }
  // Both validators, which abort on the first inconsistency.
  size_t validate() {
    h_.validate_purge_locked();
    return h_.validate_runs_locked();
  }

  test::FakePlatform platform_;
  PageHeap h_{&platform_};
  std::unique_ptr<Span[]> meta_;
  std::unique_ptr<uint32_t[]> back_;
  std::unique_ptr<uint64_t[]> bits_;
  Arena arena_;
  size_t used_ = 0;  // slots of mark_used's blocks
};

// ---- make_run -----------------------------------------------------------------

TEST_F(FreeRuns, MakeRunCleanRun) {
  Span* f = h_.make_run(a(), 10, 10, 0, 5, 0, 0);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f, &meta_[0]) << "the pool's lowest free slot";
  EXPECT_EQ(f->kind, kSpanFree);
  EXPECT_EQ(f->npages, 10u);
  EXPECT_EQ(f->start, kFakeBase + 10 * P);
  EXPECT_EQ(f->arena, a());
  EXPECT_EQ(f->flags, 0);
  EXPECT_EQ(f->in_list, 1);
  EXPECT_EQ(f->free_ns, 5u);
  EXPECT_EQ(f->maint_lo, f->maint_hi) << "a clean run has an empty hull";
  EXPECT_EQ(back_[10], slot(f)) << "back[] holds the slot of the run's descriptor";
  EXPECT_EQ(back_[19], slot(f));
  EXPECT_EQ(at(10), f);
  EXPECT_EQ(at(11), nullptr);
  EXPECT_EQ(at(9), nullptr);
  EXPECT_EQ(h_.free_bytes(), 10 * P);
  EXPECT_EQ(h_.dirty_bytes(), 0u);
  EXPECT_EQ(h_.validate_runs_locked(), 1u);
  EXPECT_EQ(h_.validate_purge_locked(), 0u) << "a clean run is not on the decay list";
}

TEST_F(FreeRuns, MakeRunClipsTheDirtyHull) {
  Span* f = h_.make_run(a(), 100, 20, kFreeDirty, 7, 90, 110);
  EXPECT_EQ(f->flags, kFreeDirty);
  EXPECT_EQ(f->maint_lo, 100u);
  EXPECT_EQ(f->maint_hi, 110u);
  EXPECT_EQ(h_.dirty_bytes(), 10 * P);
  Span* g = h_.make_run(a(), 200, 20, kFreeDirty, 8, 210, 500);
  EXPECT_EQ(g->maint_lo, 210u);
  EXPECT_EQ(g->maint_hi, 220u);
  EXPECT_EQ(h_.dirty_bytes(), 20 * P);
  // A dirty flag with an empty hull (or one outside the run) is clean.
  Span* h = h_.make_run(a(), 300, 5, kFreeDirty, 9, 303, 303);
  EXPECT_EQ(h->flags, 0);
  EXPECT_EQ(h->maint_lo, h->maint_hi);
  Span* k = h_.make_run(a(), 400, 5, kFreeDirty, 9, 0, 10);
  EXPECT_EQ(k->flags, 0);
  EXPECT_EQ(h_.dirty_bytes(), 20 * P);
  EXPECT_EQ(h_.free_bytes(), 50 * P);
  EXPECT_EQ(h_.validate_runs_locked(), 4u);
  EXPECT_EQ(h_.validate_purge_locked(), 2u) << "both dirty runs on the decay list";
}

TEST_F(FreeRuns, MakeRunSplitGoesOnTheSplitList) {
  Span* f = h_.make_run(a(), 0, 4, kFreeSplit, 0, 0, 0);
  EXPECT_EQ(f->flags, kFreeSplit);
  EXPECT_EQ(f->on_split, 1);
  EXPECT_EQ(validate(), 1u);
  // Outside the normal region a run cannot be split (no mremap there).
  Span meta2[8];
  uint32_t back2[8] = {};
  uint64_t bits2[1] = {};
  Arena uffd{};
  uffd.base = kFakeBase + kArenaGranule;
  uffd.npages = uffd.slots = uffd.meta_pages = 8;
  uffd.meta = meta2;
  uffd.back = back2;
  uffd.slot_bits = bits2;
  uffd.region = kRegionUffd;
  Span* g = h_.make_run(&uffd, 2, 3, kFreeSplit | kFreeDirty, 0, 2, 5);
  EXPECT_EQ(g->flags, kFreeDirty);
  EXPECT_EQ(g->on_split, 0);
  EXPECT_EQ(g->in_list, 2) << "in the uffd region's bins";
  EXPECT_EQ(validate(), 2u);
  h_.unlink_run(g);
}

// ---- put: coalescing ------------------------------------------------------------

TEST_F(FreeRuns, PutCoalescesLeftRightAndBoth) {
  Span* f = h_.put(a(), 10, 10, 0, 1);
  EXPECT_EQ(idx(f), 10u);
  EXPECT_EQ(f->npages, 10u);
  // Left neighbour [10,20) absorbs [20,30).
  f = h_.put(a(), 20, 10, 0, 2);
  EXPECT_EQ(idx(f), 10u);
  EXPECT_EQ(f->npages, 20u);
  EXPECT_EQ(at(20), nullptr);
  EXPECT_EQ(validate(), 1u);
  // Right neighbour: [0,10) joins [10,30).
  f = h_.put(a(), 0, 10, 0, 3);
  EXPECT_EQ(idx(f), 0u);
  EXPECT_EQ(f->npages, 30u);
  EXPECT_EQ(at(10), nullptr);
  EXPECT_EQ(validate(), 1u);
  // Both sides: [40,50) alone, then [30,40) joins [0,30) and [40,50).
  h_.put(a(), 40, 10, 0, 4);
  EXPECT_EQ(validate(), 2u);
  f = h_.put(a(), 30, 10, 0, 5);
  EXPECT_EQ(idx(f), 0u);
  EXPECT_EQ(f->npages, 50u);
  EXPECT_EQ(back_[0], slot(f));
  EXPECT_EQ(back_[49], slot(f));
  EXPECT_EQ(at(40), nullptr);
  EXPECT_EQ(h_.free_bytes(), 50 * P);
  EXPECT_EQ(validate(), 1u);
  // Up to the arena's last page.
  f = h_.put(a(), kPages - 10, 10, 0, 6);
  f = h_.put(a(), 50, kPages - 60, 0, 7);
  EXPECT_EQ(idx(f), 0u);
  EXPECT_EQ(f->npages, kPages);
  EXPECT_EQ(validate(), 1u);
}

TEST_F(FreeRuns, PutDoesNotCoalesceAcrossUsedPages) {
  mark_used(20, 10);
  h_.put(a(), 10, 10, 0, 1);
  h_.put(a(), 30, 10, 0, 1);
  EXPECT_EQ(at(10)->npages, 10u);
  EXPECT_EQ(at(30)->npages, 10u);
  EXPECT_EQ(validate(), 2u);
}

// back[] of the page before a run may be stale: it must lead to a run that
// really ends there before put coalesces with it.
TEST_F(FreeRuns, PutIgnoresAStaleBackEntry) {
  h_.put(a(), 0, 10, 0, 1);  // [0,10)
  back_[19] = slot(at(0));  // stale: leads to [0,10)'s descriptor, which ends at 10
  Span* f = h_.put(a(), 20, 10, 0, 2);
  EXPECT_EQ(idx(f), 20u);
  EXPECT_EQ(f->npages, 10u);
  EXPECT_EQ(at(0)->npages, 10u);
  EXPECT_EQ(validate(), 2u);
  // back[] after a run leads to a slot that says "free" but is not a run
  // starting there (a slot given back: its start is wrong): put must not
  // coalesce with it.
  meta_[100].kind = kSpanFree;
  meta_[100].npages = 5;
  meta_[100].start = 0;
  back_[45] = 100;
  h_.put(a(), 40, 5, 0, 3);
  EXPECT_EQ(at(40)->npages, 5u);
  EXPECT_EQ(at(45), nullptr);
  EXPECT_EQ(validate(), 3u);
}

TEST_F(FreeRuns, PutJoinsDirtyHullsAndKeepsTheNewestTime) {
  h_.put(a(), 10, 10, kFreeDirty, 5);  // hull [10,20)
  h_.put(a(), 30, 10, kFreeDirty, 9);  // hull [30,40)
  EXPECT_EQ(h_.dirty_bytes(), 20 * P);
  EXPECT_EQ(h_.validate_purge_locked(), 2u);
  Span* f = h_.put(a(), 20, 10, 0, 3);  // clean pages in between
  EXPECT_EQ(idx(f), 10u);
  EXPECT_EQ(f->npages, 30u);
  EXPECT_EQ(f->flags & kFreeDirty, kFreeDirty);
  EXPECT_EQ(f->maint_lo, 10u);
  EXPECT_EQ(f->maint_hi, 40u) << "the hull spans both dirty parts";
  EXPECT_EQ(f->free_ns, 9u) << "the newest dirty time wins";
  EXPECT_EQ(h_.dirty_bytes(), 30 * P);
  EXPECT_EQ(validate(), 1u);
  EXPECT_EQ(h_.validate_purge_locked(), 1u) << "one run on the decay list, not three";

  // Clean run next to a dirty one: the hull stays on the dirty pages.
  h_.put(a(), 100, 10, 0, 1);
  f = h_.put(a(), 110, 5, kFreeDirty, 20);
  EXPECT_EQ(idx(f), 100u);
  EXPECT_EQ(f->maint_lo, 110u);
  EXPECT_EQ(f->maint_hi, 115u);
  f = h_.put(a(), 115, 5, 0, 30);
  EXPECT_EQ(f->maint_lo, 110u);
  EXPECT_EQ(f->maint_hi, 115u);
  EXPECT_EQ(f->free_ns, 30u);
  // Clean with clean stays clean.
  h_.put(a(), 200, 5, 0, 1);
  f = h_.put(a(), 205, 5, 0, 2);
  EXPECT_EQ(f->flags, 0);
  EXPECT_EQ(f->maint_lo, f->maint_hi);
  EXPECT_EQ(h_.dirty_bytes(), 35 * P);
  EXPECT_EQ(validate(), 3u);
}

TEST_F(FreeRuns, PutKeepsTheSplitFlagOfEitherPart) {
  h_.put(a(), 10, 10, kFreeSplit, 1);
  Span* f = h_.put(a(), 20, 10, 0, 2);
  EXPECT_EQ(f->flags & kFreeSplit, kFreeSplit);
  EXPECT_EQ(f->on_split, 1);
  EXPECT_EQ(validate(), 1u);
}

// ---- find -------------------------------------------------------------------

TEST_F(FreeRuns, FindTakesTheSmallestBinThatFits) {
  size_t skip = 99;
  EXPECT_EQ(h_.find(1, 1, 0, kRegionNormal, 0, &skip), nullptr) << "no runs yet";
  h_.put(a(), 0, 3, 0, 0);     // 3 pages
  h_.put(a(), 10, 8, 0, 0);    // 8 pages
  h_.put(a(), 30, 100, 0, 0);  // 100 pages
  Span* f = h_.find(5, 1, 0, kRegionNormal, 0, &skip);
  EXPECT_EQ(f, at(10));
  EXPECT_EQ(skip, 0u);
  EXPECT_EQ(h_.find(3, 1, 0, kRegionNormal, 0, &skip), at(0));
  EXPECT_EQ(h_.find(1, 1, 0, kRegionNormal, 0, &skip), at(0));
  EXPECT_EQ(h_.find(9, 1, 0, kRegionNormal, 0, &skip), at(30));
  EXPECT_EQ(h_.find(100, 1, 0, kRegionNormal, 0, &skip), at(30));
  EXPECT_EQ(h_.find(101, 1, 0, kRegionNormal, 0, &skip), nullptr);
  EXPECT_EQ(h_.find(1, 1, 0, kRegionUffd, 0, &skip), nullptr) << "another region's bins";
  // min_run: a larger run when one exists, else whatever fits.
  EXPECT_EQ(h_.find(2, 1, 0, kRegionNormal, 50, &skip), at(30));
  EXPECT_EQ(h_.find(2, 1, 0, kRegionNormal, 6, &skip), at(10));
  EXPECT_EQ(validate(), 3u);
}

// Above 128 pages a bin holds a range of sizes: a run too small for the
// request in the first bin searched is passed over.
TEST_F(FreeRuns, FindSkipsSmallerRunsInASharedBin) {
  // Both in the bin of 128..159 pages; the 130-page run, newer, comes first.
  h_.put(a(), 200, 135, 0, 0);
  h_.put(a(), 0, 130, 0, 0);
  size_t skip;
  EXPECT_EQ(h_.find(133, 1, 0, kRegionNormal, 0, &skip), at(200));
  EXPECT_EQ(h_.find(130, 1, 0, kRegionNormal, 0, &skip), at(0));
  EXPECT_EQ(h_.find(136, 1, 0, kRegionNormal, 0, &skip), nullptr);
  // Bigger runs in later bins are found too.
  h_.put(a(), 400, 600, 0, 0);
  EXPECT_EQ(h_.find(136, 1, 0, kRegionNormal, 0, &skip), at(400));
  EXPECT_EQ(validate(), 3u);
}

TEST_F(FreeRuns, FindWithAlignmentAndPhase) {
  h_.put(a(), 10, 8, 0, 0);    // [10,18)
  h_.put(a(), 30, 100, 0, 0);  // [30,130)
  size_t skip = 99;
  // 16-page alignment: [10,18) would start at 16 and hold only 2 pages.
  Span* f = h_.find(5, 16, 0, kRegionNormal, 0, &skip);
  EXPECT_EQ(f, at(30));
  EXPECT_EQ(skip, 2u) << "page 32";
  f = h_.find(2, 16, 0, kRegionNormal, 0, &skip);
  EXPECT_EQ(f, at(10));
  EXPECT_EQ(skip, 6u) << "page 16";
  // Phase 3: pages at 3 mod 16.
  f = h_.find(4, 16, 3, kRegionNormal, 0, &skip);
  EXPECT_EQ(f, at(30));
  EXPECT_EQ(skip, 5u) << "page 35";
  f = h_.find(1, 8, 7, kRegionNormal, 0, &skip);
  EXPECT_EQ(f, at(10));
  EXPECT_EQ(skip, 5u) << "page 15";
  // Already aligned: no skip.
  f = h_.find(4, 2, 0, kRegionNormal, 0, &skip);
  EXPECT_EQ(f, at(10));
  EXPECT_EQ(skip, 0u);
  // 64-page alignment fits only at page 64 of the large run.
  f = h_.find(60, 64, 0, kRegionNormal, 0, &skip);
  EXPECT_EQ(f, at(30));
  EXPECT_EQ(skip, 34u);
  EXPECT_EQ(h_.find(70, 64, 0, kRegionNormal, 0, &skip), nullptr);
  EXPECT_EQ(h_.find(60, 64, 1, kRegionNormal, 0, &skip), at(30));
  EXPECT_EQ(skip, 35u);
  EXPECT_EQ(validate(), 2u);
}

// ---- carve ------------------------------------------------------------------

TEST_F(FreeRuns, CarveWithSkipAndTailClipsTheHull) {
  Span* f = h_.make_run(a(), 100, 100, kFreeDirty | kFreeSplit, 42, 120, 150);
  EXPECT_EQ(h_.dirty_bytes(), 30 * P);
  Span* s = h_.carve(f, 10, 30);  // claims [110,140)
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->kind, kSpanNone);
  EXPECT_EQ(s->npages, 30u);
  EXPECT_EQ(s->start, kFakeBase + 110 * P);
  EXPECT_EQ(s->arena, a());
  EXPECT_EQ(back_[110], slot(s));
  EXPECT_EQ(s->flags, kFreeDirty | kFreeSplit) << "the hull covers [120,140) of it";
  EXPECT_EQ(s->in_list, 0);
  EXPECT_EQ(s->on_split, 0);
  // Head [100,110): outside the hull, clean, still split.
  Span* head = at(100);
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(head->npages, 10u);
  EXPECT_EQ(head->flags, kFreeSplit);
  EXPECT_EQ(head->maint_lo, head->maint_hi);
  EXPECT_EQ(back_[100], slot(head));
  EXPECT_EQ(back_[109], slot(head));
  // Tail [140,200): hull clipped to [140,150), the old time kept.
  Span* tail = at(140);
  ASSERT_NE(tail, nullptr);
  EXPECT_EQ(tail->npages, 60u);
  EXPECT_EQ(tail->flags, kFreeDirty | kFreeSplit);
  EXPECT_EQ(tail->maint_lo, 140u);
  EXPECT_EQ(tail->maint_hi, 150u);
  EXPECT_EQ(tail->free_ns, 42u);
  EXPECT_EQ(back_[140], slot(tail));
  EXPECT_EQ(back_[199], slot(tail));
  EXPECT_EQ(h_.free_bytes(), 70 * P);
  EXPECT_EQ(h_.dirty_bytes(), 10 * P);
  EXPECT_EQ(h_.validate_runs_locked(), 2u);
  EXPECT_EQ(h_.validate_purge_locked(), 1u) << "only the tail is dirty";
  // Giving the claimed pages back (their descriptor first, as give_back
  // does) coalesces the three again.
  uint8_t flags = s->flags;
  slot_drop(a(), s);
  Span* g = h_.put(a(), 110, 30, flags, 50);
  EXPECT_EQ(idx(g), 100u);
  EXPECT_EQ(g->npages, 100u);
  EXPECT_EQ(g->maint_lo, 110u);
  EXPECT_EQ(g->maint_hi, 150u);
  EXPECT_EQ(validate(), 1u);
}

TEST_F(FreeRuns, CarveClaimsOutsideTheHullClean) {
  Span* f = h_.make_run(a(), 0, 50, kFreeDirty, 1, 40, 50);
  Span* s = h_.carve(f, 0, 20);  // [0,20): no head, tail [20,50)
  used_++;                       // each claimed run keeps its descriptor
  EXPECT_EQ(s->flags, 0);
  EXPECT_EQ(at(0), nullptr) << "the claimed pages are not a free run";
  EXPECT_EQ(at(20)->npages, 30u);
  EXPECT_EQ(h_.dirty_bytes(), 10 * P);
  EXPECT_EQ(validate(), 1u);
  // No tail: the whole rest, from a skip.
  Span* t = at(20);
  s = h_.carve(t, 10, 20);  // [30,50)
  used_++;
  EXPECT_EQ(s->flags, kFreeDirty);
  EXPECT_EQ(at(20)->npages, 10u);
  EXPECT_EQ(at(20)->flags, 0);
  EXPECT_EQ(h_.dirty_bytes(), 0u);
  EXPECT_EQ(h_.free_bytes(), 10 * P);
  EXPECT_EQ(validate(), 1u);
  // The whole run.
  s = h_.carve(at(20), 0, 10);
  used_++;
  EXPECT_EQ(s->npages, 10u);
  EXPECT_EQ(h_.free_bytes(), 0u);
  EXPECT_EQ(validate(), 0u);
}

TEST_F(FreeRuns, FindThenCarveAnAlignedBlock) {
  h_.put(a(), 5, 200, kFreeDirty, 1);
  size_t skip;
  Span* f = h_.find(64, 64, 0, kRegionNormal, 0, &skip);
  ASSERT_EQ(f, at(5));
  Span* s = h_.carve(f, skip, 64);
  used_++;
  EXPECT_EQ(idx(s), 64u);
  EXPECT_EQ(s->start % (64 * P), 0u);
  EXPECT_EQ(at(5)->npages, 59u);
  EXPECT_EQ(at(128)->npages, 77u);
  EXPECT_EQ(h_.free_bytes(), 136 * P);
  EXPECT_EQ(h_.dirty_bytes(), 136 * P);
  EXPECT_EQ(validate(), 2u);
}

TEST_F(FreeRuns, MarkCleanEmptiesTheHull) {
  Span* f = h_.put(a(), 10, 10, kFreeDirty, 1);
  h_.mark_clean(f);
  EXPECT_EQ(f->flags, 0);
  EXPECT_EQ(f->maint_lo, f->maint_hi);
  EXPECT_EQ(h_.dirty_bytes(), 0u);
  EXPECT_EQ(h_.validate_runs_locked(), 1u);
  // (purge.cpp takes it off the decay list itself; unlinking does too.)
}

// ---- the validators catch corruption ------------------------------------------

using FreeRunsDeathTest = FreeRuns;

TEST_F(FreeRunsDeathTest, WrongBackEntry) {
  h_.put(a(), 10, 10, 0, 1);
  uint32_t right = back_[19];
  back_[19] = right + 3;
  EXPECT_DEATH(h_.validate_runs_locked(), "free runs: back\\[\\] wrong at a run's ends");
  back_[19] = right;
}

TEST_F(FreeRunsDeathTest, AdjacentRunsNotCoalesced) {
  h_.make_run(a(), 10, 10, 0, 1, 0, 0);
  h_.make_run(a(), 20, 10, 0, 1, 0, 0);
  EXPECT_DEATH(h_.validate_runs_locked(), "free runs: two adjacent free runs");
}

TEST_F(FreeRunsDeathTest, ByteTotalsOff) {
  Span* f = h_.put(a(), 10, 10, kFreeDirty, 1);
  f->maint_hi = 18;  // the hull shrinks behind the totals' back
  EXPECT_DEATH(h_.validate_runs_locked(), "free runs: dirty byte total does not add up");
  f->maint_hi = 20;
  f->npages = 11;  // wrong size: wrong bin, too
  EXPECT_DEATH(h_.validate_runs_locked(), "free runs: ");
  f->npages = 10;
}

TEST_F(FreeRunsDeathTest, HullOutsideTheRun) {
  Span* f = h_.put(a(), 10, 10, kFreeDirty, 1);
  f->maint_lo = 5;
  EXPECT_DEATH(h_.validate_runs_locked(), "free runs: dirty hull outside the run");
  f->maint_lo = 10;
}

TEST_F(FreeRunsDeathTest, CleanRunOnTheDecayList) {
  Span* f = h_.put(a(), 10, 10, kFreeDirty, 1);
  f->flags = 0;
  EXPECT_DEATH(h_.validate_purge_locked(), "purge: clean or non-free run on the decay list");
  f->flags = kFreeDirty;
}

TEST_F(FreeRunsDeathTest, SplitFlagWithoutTheList) {
  Span* f = h_.put(a(), 10, 10, kFreeSplit, 1);
  f->flags = 0;
  EXPECT_DEATH(h_.validate_purge_locked(), "purge: wrong run on the split list");
  f->flags = kFreeSplit;
}

}  // namespace

// pages/relocate.cpp: the relocation policy, on a fresh PageHeap per test
// built on the fake platform (fake_platform.h): which mover is tried first
// (UFFDIO_MOVE below REMALLOC_MREMAP_THRESHOLD, mremap from it), which one
// takes over when a mover fails (EBUSY, ENOMEM) or the VMA budget says no,
// that a realloc whose every mover fails returns NULL and leaves the block
// where and as it was, that the decay heals the runs mremap split (the
// fake's VMA count comes back to where it was), that past half the budget
// every split run is healed at once, and that growth claims the free run
// that follows. Every block is filled with a pattern and checked after.
//
// Nothing here touches the process-wide page heap: each test's heap gives
// its arenas back in TearDown (release_all), and the next test starts with
// a new one, so no test cleans up after another.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "pages/fake_platform.h"
#include "pages/internal.h"

namespace {

using namespace remalloc;
using namespace remalloc::pages;
using test::FakePlatform;

constexpr size_t KiB = size_t{1} << 10;
constexpr size_t MiB = size_t{1} << 20;
constexpr uint64_t kDelay = 10'000'000;  // purge delay: 10 ms of the fake clock

// The secure build's guard page: the engine sees each size plus it.
size_t guard_bytes() { return guard_tail_pages() << kPageShift; }

uint64_t word_at(size_t i, uint64_t seed) { return (i * 0x9e3779b97f4a7c15ull) ^ seed; }

void fill(void* p, size_t bytes, uint64_t seed) {
  auto* w = static_cast<uint64_t*>(p);
  for (size_t i = 0; i < bytes / 8; i++) w[i] = word_at(i, seed);
}

// The offset of the first word of [p, p+bytes) that lost its pattern, or -1.
long first_bad(const void* p, size_t bytes, uint64_t seed) {
  const auto* w = static_cast<const uint64_t*>(p);
  for (size_t i = 0; i < bytes / 8; i++)
    if (w[i] != word_at(i, seed)) return long(i * 8);
  return -1;
}

class Relocation : public ::testing::Test {
 protected:
  Relocation() {
    cfg_.arena_bytes = 64 * MiB;
    cfg_.purge_delay_ns = kDelay;
    cfg_.grow_inplace = false;  // moves, unless a test says otherwise
    cfg_.dirty_max = size_t{1} << 40;  // no purges for the dirty cap
    h_->configure(cfg_);
  }

  void TearDown() override {
    h_->validate();
    h_->release_all();
    EXPECT_EQ(fake_.live_reservations(), 0u) << "release_all gives every reservation back";
  }

  void reconfigure() { h_->configure(cfg_); }

  // A large block of `bytes` (the page heap adds the secure build's guard
  // page), filled with the pattern of `seed`.
  Span* alloc(size_t bytes, uint64_t seed) {
    Span* s = h_->alloc_large(pages_of(bytes), 1, bytes);
    EXPECT_NE(s, nullptr);
    if (!s) return nullptr;
    fill(reinterpret_cast<void*>(s->start), bytes, seed);
    return s;
  }

  void* realloc(Span* s, size_t bytes) { return h_->realloc_large(s, bytes); }

  size_t count(Counter c) const { return h_->counter(c); }
  int calls(FakePlatform::Call c) const { return fake_.calls[c]; }
  Stats stats() {
    Stats st{};
    h_->get_stats(&st);
    return st;
  }

  Config cfg_;
  FakePlatform fake_;
  // On the heap: the object holds its bins (tens of KiB).
  std::unique_ptr<PageHeap> h_ = std::make_unique<PageHeap>(&fake_);
};

// ---- which mover first ----------------------------------------------------

TEST_F(Relocation, BelowTheMremapThresholdUffdMovesAndAddsNoVma) {
  Span* a = alloc(1 * MiB, 1);
  size_t split_before = fake_.split_vmas();
  void* old = reinterpret_cast<void*>(a->start);
  void* q = realloc(a, 2 * MiB);
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, old);
  EXPECT_EQ(count(kCount_moves_uffd), 1u);
  EXPECT_EQ(calls(FakePlatform::kMoveUffd), 1);
  EXPECT_EQ(calls(FakePlatform::kMoveMremap), 0) << "mremap is not tried below the threshold";
  EXPECT_EQ(fake_.split_vmas(), split_before) << "a uffd move adds no VMA";
  EXPECT_EQ(first_bad(q, 1 * MiB, 1), -1);
  Span* t = span_of(q);
  EXPECT_EQ(t->arena->region, kRegionUffd);
  EXPECT_EQ(t->flags & kLargeMovedIn, 0) << "not moved in by mremap";
  h_->free_span(t);
}

TEST_F(Relocation, JustBelowTheThresholdStillUffd) {
  Span* a = alloc(4 * MiB, 2);
  void* q = realloc(a, cfg_.mremap_threshold - kPageSize - guard_bytes());
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(count(kCount_moves_uffd), 1u);
  EXPECT_EQ(calls(FakePlatform::kMoveMremap), 0);
  EXPECT_EQ(first_bad(q, 4 * MiB, 2), -1);
  h_->free_span(span_of(q));
}

TEST_F(Relocation, AtTheMremapThresholdMremapMoves) {
  Span* a = alloc(4 * MiB, 3);
  size_t split_before = fake_.split_vmas();
  void* q = realloc(a, cfg_.mremap_threshold - guard_bytes());
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(count(kCount_moves_mremap), 1u);
  EXPECT_EQ(calls(FakePlatform::kMoveMremap), 1);
  EXPECT_EQ(calls(FakePlatform::kMoveUffd), 0) << "uffd is not tried first from the threshold";
  EXPECT_GT(fake_.split_vmas(), split_before) << "an mremap move splits VMAs";
  EXPECT_EQ(first_bad(q, 4 * MiB, 3), -1);
  Span* t = span_of(q);
  EXPECT_EQ(t->arena->region, kRegionNormal);
  EXPECT_NE(t->flags & kLargeMovedIn, 0) << "the block lives in a VMA of its own";
  EXPECT_EQ(h_->split_count(), 1u) << "the source run is split";
  h_->free_span(t);
}

TEST_F(Relocation, BelowTheMoveThresholdCopies) {
  Span* a = alloc(64 * KiB, 4);
  void* q = realloc(a, 200 * KiB);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(count(kCount_moves_copy), 1u);
  EXPECT_EQ(count(kCount_fallback_small), 1u);
  EXPECT_EQ(calls(FakePlatform::kMoveUffd) + calls(FakePlatform::kMoveMremap), 0);
  EXPECT_EQ(first_bad(q, 64 * KiB, 4), -1);
  h_->free_span(span_of(q));
}

// ---- fallbacks ----------------------------------------------------------------

TEST_F(Relocation, UffdBusyFallsBackToMremap) {
  Span* a = alloc(1 * MiB, 5);
  fake_.fail(FakePlatform::kMoveUffd, EBUSY);
  void* q = realloc(a, 2 * MiB);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(calls(FakePlatform::kMoveUffd), 1);
  EXPECT_EQ(count(kCount_moves_mremap), 1u);
  EXPECT_EQ(count(kCount_fallback_error), 1u);
  EXPECT_EQ(first_bad(q, 1 * MiB, 5), -1) << "contents intact after the failed uffd move";
  EXPECT_EQ(span_of(q)->arena->region, kRegionNormal);
  h_->free_span(span_of(q));
}

TEST_F(Relocation, UffdBusyWithoutMremapFallsBackToCopy) {
  fake_.mremap_ok = false;
  Span* a = alloc(1 * MiB, 6);
  fake_.fail(FakePlatform::kMoveUffd, EBUSY);
  void* q = realloc(a, 2 * MiB);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(calls(FakePlatform::kMoveMremap), 0);
  EXPECT_EQ(count(kCount_moves_copy), 1u);
  EXPECT_EQ(count(kCount_fallback_error), 1u);
  EXPECT_EQ(first_bad(q, 1 * MiB, 6), -1);
  h_->free_span(span_of(q));
}

TEST_F(Relocation, MremapRefusedAtTheVmaLimitFallsBackToUffd) {
  Span* a = alloc(4 * MiB, 7);
  size_t split_before = fake_.split_vmas();
  fake_.fail(FakePlatform::kMoveMremap, ENOMEM);
  void* q = realloc(a, 16 * MiB);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(calls(FakePlatform::kMoveMremap), 1);
  EXPECT_GE(calls(FakePlatform::kVmaRecount), 1) << "a refused mremap recounts the VMAs";
  EXPECT_EQ(count(kCount_moves_uffd), 1u);
  EXPECT_EQ(count(kCount_fallback_error), 1u);
  EXPECT_EQ(fake_.split_vmas(), split_before);
  EXPECT_EQ(first_bad(q, 4 * MiB, 7), -1);
  h_->free_span(span_of(q));
}

TEST_F(Relocation, MremapRefusedWithoutUffdFallsBackToCopy) {
  fake_.uffd_ok = false;
  Span* a = alloc(4 * MiB, 8);
  fake_.fail(FakePlatform::kMoveMremap, ENOMEM);
  void* q = realloc(a, 16 * MiB);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(calls(FakePlatform::kMoveUffd), 0);
  EXPECT_EQ(count(kCount_moves_copy), 1u);
  EXPECT_EQ(first_bad(q, 4 * MiB, 8), -1);
  h_->free_span(span_of(q));
}

TEST_F(Relocation, FullVmaBudgetSkipsMremap) {
  Span* a = alloc(4 * MiB, 9);
  fake_.budget = fake_.vmas() + 2;  // no room for the 3 an mremap may add
  void* q = realloc(a, 16 * MiB);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(calls(FakePlatform::kMoveMremap), 0);
  EXPECT_GE(count(kCount_fallback_budget), 1u);
  EXPECT_EQ(count(kCount_moves_uffd), 1u);
  EXPECT_EQ(first_bad(q, 4 * MiB, 9), -1);
  h_->free_span(span_of(q));
}

TEST_F(Relocation, AllMoversFailReturnsNullAndLeavesTheBlock) {
  Span* a = alloc(1 * MiB, 10);
  void* old = reinterpret_cast<void*>(a->start);
  size_t npages = a->npages;
  Stats before = stats();
  fake_.fail(FakePlatform::kMoveUffd, EBUSY);
  fake_.fail(FakePlatform::kMoveMremap, ENOMEM);
  fake_.fail(FakePlatform::kMoveCopy, ENOMEM);
  errno = 0;
  void* q = realloc(a, 2 * MiB);
  EXPECT_EQ(q, nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(calls(FakePlatform::kMoveUffd), 1);
  EXPECT_EQ(calls(FakePlatform::kMoveMremap), 1);
  EXPECT_EQ(calls(FakePlatform::kMoveCopy), 1);
  EXPECT_EQ(a->start, reinterpret_cast<uintptr_t>(old));
  EXPECT_EQ(a->kind, kSpanLarge);
  EXPECT_EQ(a->npages, npages);
  EXPECT_EQ(span_of(old), a);
  EXPECT_EQ(first_bad(old, 1 * MiB, 10), -1) << "the block is intact where it was";
  Stats after = stats();
  EXPECT_EQ(after.large_live, before.large_live) << "the destinations went back";
  EXPECT_EQ(after.large_bytes, before.large_bytes);
  EXPECT_EQ(after.large_bytes + after.slab_bytes + after.free_bytes, after.mapped);
  h_->validate();
  h_->free_span(a);
}

// ---- healing ------------------------------------------------------------------

TEST_F(Relocation, TheDecayHealsTheRunsMremapSplit) {
  size_t vmas_before = fake_.vmas();
  Span* a = alloc(4 * MiB, 11);
  size_t split_before = fake_.split_vmas();
  void* q = realloc(a, 16 * MiB);
  ASSERT_NE(q, nullptr);
  ASSERT_EQ(count(kCount_moves_mremap), 1u);
  ASSERT_GT(fake_.split_vmas(), split_before);
  h_->free_span(span_of(q));
  ASSERT_GE(h_->split_count(), 1u);
  // Not before the delay.
  h_->purge(false);
  EXPECT_EQ(h_->heals(), 0u);
  EXPECT_GT(fake_.split_vmas(), split_before);
  // After it, bounded calls heal (a slice of the dirty hull at a time first).
  fake_.clock_ns += 2 * kDelay;
  for (int i = 0; i < 200 && h_->split_count(); i++) h_->purge(false);
  EXPECT_EQ(h_->split_count(), 0u);
  EXPECT_GE(h_->heals(), 1u);
  EXPECT_GE(calls(FakePlatform::kHeal), 1);
  EXPECT_EQ(fake_.split_vmas(), split_before) << "the healed VMAs merged back";
  EXPECT_GE(fake_.vmas(), vmas_before);
}

TEST_F(Relocation, PastHalfTheBudgetEverySplitRunIsHealed) {
  // Four big blocks with blocks between them (2 MiB, so that they land
  // after them, on the next huge boundary), so that the sources of their
  // moves stay four separate split runs.
  Span* b[4];
  for (int i = 0; i < 4; i++) {
    b[i] = alloc(4 * MiB, 20 + i);
    Span* x = alloc(2 * MiB - guard_bytes(), 99);
    ASSERT_GE(x->start, b[i]->end());
    ASSERT_LT(x->start, b[i]->end() + 2 * MiB);
  }
  void* moved[3];
  for (int i = 0; i < 3; i++) {
    moved[i] = realloc(b[i], 16 * MiB);
    ASSERT_NE(moved[i], nullptr);
  }
  ASSERT_EQ(count(kCount_moves_mremap), 3u);
  ASSERT_EQ(h_->split_count(), 3u);
  // The budget is full: no room for another mremap, and the count is past
  // half of it, so the engine heals every split run, then has room.
  fake_.budget = fake_.vmas() + 2;
  void* q = realloc(b[3], 16 * MiB);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(h_->heals(), 3u) << "every split run healed at once";
  EXPECT_EQ(count(kCount_moves_mremap), 4u) << "the heals made room for mremap";
  EXPECT_EQ(count(kCount_fallback_budget), 0u);
  EXPECT_EQ(h_->split_count(), 1u) << "only the last move's source is split";
  for (int i = 0; i < 3; i++) EXPECT_EQ(first_bad(moved[i], 4 * MiB, 20 + i), -1);
  EXPECT_EQ(first_bad(q, 4 * MiB, 23), -1);
}

// ---- in place -----------------------------------------------------------------

TEST_F(Relocation, GrowthClaimsTheFollowingFreeRun) {
  cfg_.grow_inplace = true;
  reconfigure();
  Span* a = alloc(1 * MiB, 30);
  void* old = reinterpret_cast<void*>(a->start);
  size_t free_before = h_->free_bytes();
  void* q = realloc(a, 3 * MiB - guard_bytes());
  EXPECT_EQ(q, old);
  EXPECT_EQ(count(kCount_grow_inplace), 1u);
  EXPECT_EQ(calls(FakePlatform::kMoveUffd) + calls(FakePlatform::kMoveMremap) + calls(FakePlatform::kMoveCopy), 0);
  EXPECT_EQ(a->npages, (3 * MiB) >> kPageShift);
  EXPECT_EQ(h_->free_bytes(), free_before - (2 * MiB - guard_bytes()));
  EXPECT_EQ(first_bad(q, 1 * MiB, 30), -1);
  h_->free_span(span_of(q));
}

TEST_F(Relocation, GrowthMovesWhenTheNextPagesAreTaken) {
  cfg_.grow_inplace = true;
  reconfigure();
  Span* a = alloc(1 * MiB, 31);
  Span* next = alloc(kPageSize, 32);
  ASSERT_EQ(next->start, a->end()) << "the blocker follows the block";
  void* q = realloc(a, 3 * MiB);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(count(kCount_grow_inplace), 0u);
  EXPECT_EQ(count(kCount_moves_uffd), 1u);
  EXPECT_EQ(first_bad(q, 1 * MiB, 31), -1);
  EXPECT_EQ(first_bad(reinterpret_cast<void*>(next->start), kPageSize, 32), -1);
}

TEST_F(Relocation, ShrinkGivesTheTailBack) {
  Span* a = alloc(4 * MiB, 33);
  size_t free_before = h_->free_bytes();
  void* q = realloc(a, 1 * MiB - guard_bytes());
  EXPECT_EQ(q, reinterpret_cast<void*>(a->start));
  EXPECT_EQ(count(kCount_shrink_inplace), 1u);
  EXPECT_EQ(h_->free_bytes(), free_before + 3 * MiB + guard_bytes());
  EXPECT_EQ(first_bad(q, 1 * MiB - guard_bytes(), 33), -1);
}

// ---- guard pages ----------------------------------------------------------------

// The page heap owns the secure build's guard page: alloc_large and
// alloc_slab add it to the span and install it, free_span takes it off, and
// no caller sees it. Elsewhere (or where the kernel has no guards) the span
// is exactly the pages asked for and the platform sees no guard call.
TEST_F(Relocation, AllocationsAddAndGuardTheirLastPageAndFreeTakesItOff) {
  const size_t g = guard_tail_pages();
  size_t in0 = fake_.calls[FakePlatform::kGuardInstall], out0 = fake_.calls[FakePlatform::kGuardRemove];
  Span* s = h_->alloc_large(8, 1, 8 * kPageSize);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->npages, 8 + g);
  Span* t = h_->alloc_slab(3);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->npages, 3 + g);
  EXPECT_EQ(fake_.calls[FakePlatform::kGuardInstall] - in0, 2 * g) << "one guard per span, installed by the page heap";
  EXPECT_EQ(fake_.calls[FakePlatform::kGuardRemove] - out0, 0u);
  h_->free_span(s);
  t->slab_bytes = 0;  // the small heap let go of it
  t->heap = nullptr;
  h_->free_span(t);
  EXPECT_EQ(fake_.calls[FakePlatform::kGuardRemove] - out0, 2 * g) << "free_span takes each guard off";
}

// ---- fork ----------------------------------------------------------------------

// The prepare handler gives the dirty free pages back before the fork, so
// that fork copies no page-table entries of garbage (purge.cpp).
TEST_F(Relocation, ForkPrepareGivesTheDirtyFreePagesBack) {
  Span* s = alloc(1 * MiB, 5);
  ASSERT_NE(s, nullptr);
  h_->free_span(s);  // dirty, waiting for the decay (clock_ns does not move)
  Stats st{};
  h_->get_stats(&st);
  ASSERT_GE(st.dirty_bytes, 1 * MiB) << "the freed block should wait dirty for the decay";
  size_t purges = fake_.calls[FakePlatform::kPurge];
  h_->fork_prepare();
  h_->fork_parent();
  h_->get_stats(&st);
  EXPECT_EQ(st.dirty_bytes, 0u) << "dirty free pages left for the fork to copy";
  EXPECT_GT(fake_.calls[FakePlatform::kPurge], purges);
}

// ---- instances ----------------------------------------------------------------

TEST(PageHeapInstances, AreIndependentOfEachOtherAndOfTheProcessHeap) {
  Stats global_before{};
  get_stats(&global_before);
  FakePlatform f1, f2;
  auto h1 = std::make_unique<PageHeap>(&f1);
  auto h2 = std::make_unique<PageHeap>(&f2);
  Span* s1 = h1->alloc_large(16, 1, 16 * kPageSize);
  Span* s2 = h2->alloc_large(32, 1, 32 * kPageSize);
  ASSERT_NE(s1, nullptr);
  ASSERT_NE(s2, nullptr);
  EXPECT_EQ(span_of(reinterpret_cast<void*>(s1->start)), s1) << "instances register in the arena map";
  EXPECT_EQ(span_of(reinterpret_cast<void*>(s2->start)), s2);
  Stats st1{}, st2{};
  h1->get_stats(&st1);
  h2->get_stats(&st2);
  EXPECT_EQ(st1.large_bytes, (16 + guard_tail_pages()) * kPageSize);
  EXPECT_EQ(st2.large_bytes, (32 + guard_tail_pages()) * kPageSize);
  EXPECT_EQ(st1.arenas, 1u);
  EXPECT_EQ(f1.live_reservations(), 2u) << "an arena and its descriptors";
  uintptr_t gone = s1->start;
  h1->release_all();
  EXPECT_EQ(f1.live_reservations(), 0u);
  EXPECT_EQ(arena_of(reinterpret_cast<void*>(gone)), nullptr) << "released arenas leave the map";
  h1->get_stats(&st1);
  EXPECT_EQ(st1.mapped, 0u);
  EXPECT_EQ(span_of(reinterpret_cast<void*>(s2->start)), s2) << "the other instance is untouched";
  h2->validate();
  h2->release_all();
  Stats global_after{};
  get_stats(&global_after);
  EXPECT_EQ(global_after.arenas, global_before.arenas) << "the process-wide heap made no arena";
  EXPECT_EQ(global_after.large_live, global_before.large_live);
}

}  // namespace

// pages/: the descriptor pool of an arena (span.h, Arena::slots). Every run
// has a descriptor in the lowest free slot of its arena's pool, so the
// descriptors in use stay packed: small runs cost 192 bytes each, not a
// page of descriptors for every 21 pages. On a fresh PageHeap per test (the
// fake platform: real, read-write reservations, so residency is what the
// page heap touched).
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <vector>

#include "pages/internal.h"
#include "pages/quiet_heap.h"
#include "platform/os.h"

namespace {

using namespace remalloc;
using namespace remalloc::pages;

constexpr size_t P = kPageSize;

class DescriptorPool : public test::QuietPageHeap {
 protected:
  // Resident bytes of a's descriptors (the pool, from its first slot to the
  // end of the metadata reservation).
  static size_t pool_resident(const Arena* a) {
    uintptr_t lo = align_up(reinterpret_cast<uintptr_t>(a->meta), P);
    uintptr_t hi = reinterpret_cast<uintptr_t>(a) + a->meta_bytes;
    return os::resident_in(reinterpret_cast<void*>(lo), hi - lo);
  }
  static size_t in_use(const Arena* a) {
    size_t n = 0;
    for (size_t w = 0; w < (a->slots + 63) / 64; w++) n += size_t(__builtin_popcountll(a->slot_bits[w]));
    return n;
  }
};

// 2,000 slabs of 5 pages (a thread's first slabs are this small; 6 with the
// secure build's guard page): their descriptors fill the pool's first 2,001
// slots, 375 KiB, where one descriptor at each run's first page touched
// every page of 10,000 pages' descriptors (1.8 MiB).
TEST_F(DescriptorPool, SmallRunsTouchOnlyTheirDescriptors) {
  std::vector<Span*> slabs;
  for (int i = 0; i < 2000; i++) slabs.push_back(slab(5));
  ASSERT_EQ(h_->arena_count(), 1u);
  Arena* a = h_->arenas();
  EXPECT_EQ(in_use(a), 2001u) << "the slabs and the free run above them";
  EXPECT_EQ(a->slot_high, 2001u) << "packed from slot 0";
  for (Span* s : slabs) EXPECT_LT(slot_of(a, s), 2001u);
  size_t bound = align_up(2001 * sizeof(Span), P) + P;
  EXPECT_LE(pool_resident(a), bound) << "descriptors touched beyond the slots in use";
  for (Span* s : slabs) h_->free_span(s);
}

// A descriptor given back is the next one handed out (the lowest free
// slot), so the slots in use stay below the number of runs however the
// runs come and go.
TEST_F(DescriptorPool, SlotsStayBelowTheNumberOfRuns) {
  std::mt19937 rng(7);
  std::vector<Span*> live;
  size_t most_runs = 0;
  for (int op = 0; op < 20000; op++) {
    if (live.empty() || (live.size() < 600 && rng() % 2)) {
      live.push_back(slab(1 + rng() % 12));
    } else {
      size_t i = rng() % live.size();
      h_->free_span(live[i]);
      live[i] = live.back();
      live.pop_back();
    }
    Arena* a = h_->arenas();
    size_t runs = in_use(a);
    if (runs > most_runs) most_runs = runs;
    ASSERT_LE(a->slot_high, most_runs) << "op " << op << ": a slot above every run count so far";
    if (op % 1000 == 0) h_->validate();  // every run's slot in use, no other
  }
  ASSERT_EQ(h_->arena_count(), 1u);
  for (Span* s : live) h_->free_span(s);
  EXPECT_EQ(in_use(h_->arenas()), 1u) << "one free run, one descriptor";
}

// purge(true) gives back the pages of the pool that hold only free slots.
TEST_F(DescriptorPool, PurgeAllGivesBackPagesOfFreeSlots) {
  std::vector<Span*> slabs;
  for (int i = 0; i < 3000; i++) slabs.push_back(slab(2));
  Arena* a = h_->arenas();
  EXPECT_GE(pool_resident(a), 3000 * sizeof(Span) - P);
  for (Span* s : slabs) h_->free_span(s);
  h_->purge(true);
  EXPECT_LE(pool_resident(a), 2 * P) << "the pages of 2,999 free slots stayed resident";
  // The purged slots read as no run, and the pool hands them out again.
  Span* s = slab(3);
  EXPECT_LT(slot_of(a, s), 2u);
  h_->free_span(s);
}

// A trim keeps every slot that a stale back[] entry may lead to (any slot
// handed out so far): they stay readable.
TEST_F(DescriptorPool, TrimKeepsTheSlotsBackEntriesName) {
  std::vector<Span*> slabs;
  for (int i = 0; i < 2000; i++) slabs.push_back(slab(4));
  Arena* a = h_->arenas();
  size_t high = a->slot_high;
  for (size_t i = 1; i < slabs.size(); i++) h_->free_span(slabs[i]);  // back[] of their pages goes stale
  h_->trim_reservations();
  EXPECT_LT(a->npages, high) << "the trim cut the arena below the slots used";
  EXPECT_GE(a->slots, high);
  EXPECT_GE(a->meta_pages, high);
  // Every slot ever handed out is still readable (a released one faults),
  // and every entry of back[] names one of them.
  size_t kinds = 0;
  for (size_t i = 0; i < high; i++) kinds += a->meta[i].kind;
  EXPECT_GT(kinds, 0u);
  for (size_t i = 0; i < kArenaGranule / P; i++) ASSERT_LT(a->back[i], high) << "page " << i;
  h_->validate();
  h_->free_span(slabs[0]);
}

// The arena validator checks the pool against the runs.
using DescriptorPoolDeathTest = DescriptorPool;

TEST_F(DescriptorPoolDeathTest, ASlotInUseWithoutARun) {
  Span* s = slab(4);
  Arena* a = h_->arenas();
  size_t spare = a->slot_high;  // a slot no run holds
  a->slot_bits[spare / 64] |= uint64_t{1} << (spare % 64);
  a->slot_high = spare + 1;
  EXPECT_DEATH(h_->validate(), "arena: descriptor slots in use differ from its runs");
  a->slot_bits[spare / 64] &= ~(uint64_t{1} << (spare % 64));
  h_->free_span(s);
}

TEST_F(DescriptorPoolDeathTest, ARunWhoseSlotIsFree) {
  Span* s = slab(4);
  Arena* a = h_->arenas();
  uint32_t slot = slot_of(a, s);
  a->slot_bits[slot / 64] &= ~(uint64_t{1} << (slot % 64));
  EXPECT_DEATH(h_->validate(), "arena: back\\[\\] of a run's first page leads to no descriptor in use");
  a->slot_bits[slot / 64] |= uint64_t{1} << (slot % 64);
  h_->free_span(s);
}

}  // namespace

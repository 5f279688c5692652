// heap/abandon.cpp: a heap whose thread exited. The peer allocates and
// exits; its heap is sealed and abandoned; this thread frees into it and
// each free is given back by the freer (or left on the delayed list for the
// holder of the heap's collector lock); a slab that empties goes back to
// the page heap; a new thread adopts the heap whole.
#include "heap_test_util.h"

#include <algorithm>
#include <vector>

namespace {

using namespace heaptest;

bool on_abandoned_list(Heap* h) {
  LockGuard g(heap::g_heaps_lock);
  for (Heap* x = heap::g_abandoned; x; x = x->next_abandoned)
    if (x == h) return true;
  return false;
}

// Three 2 KiB blocks of a peer that then exits (its heap is abandoned, its
// slabs marked full); returns that heap.
Heap* blocks_of_an_exited_thread(void* (&b)[3]) {
  Heap* hb;
  Peer peer;
  peer.run([&] {
    for (auto& x : b) x = halloc(2048);
  });
  hb = peer.heap();
  peer.stop();
  return hb;
}

TEST(HeapAbandon, ExitSealsTheHeapAndFreersGiveBlocksBack) {
  void* b[3];
  Heap* hb = blocks_of_an_exited_thread(b);
  Span* s = slab_of(b[0]);
  ASSERT_EQ(s->heap, hb);
  EXPECT_EQ(hb->state.load(), kHeapAbandoned);
  EXPECT_TRUE(on_abandoned_list(hb));
  EXPECT_EQ(s->is_full, 1) << "sealed: every slab marked full";
  EXPECT_EQ(remote_of(s), 1u);
  EXPECT_EQ(s->used, 3u);
  heap::validate_current();  // checks the abandoned heap's invariants too

  // A free by this thread takes the collector lock and gives the block back.
  hfree(b[0]);
  EXPECT_EQ(s->used, 2u);
  EXPECT_EQ(s->free_list, b[0]);
  EXPECT_EQ(hb->delayed.load(), 0u);
  EXPECT_EQ(hb->collector.load(), 0u) << "the lock is let go";

  // While another thread holds the lock, a free waits on the delayed list
  // for the holder, which looks at the list after letting go.
  ASSERT_TRUE(heap::collector_try_lock(hb));
  hfree(b[1]);
  EXPECT_EQ(hb->delayed.load(), addr(b[1]));
  EXPECT_EQ(s->used, 2u);
  heap::collector_unlock(hb);
  heap::collect_abandoned(hb);
  EXPECT_EQ(hb->delayed.load(), 0u);
  EXPECT_EQ(s->used, 1u);

  // The last block: the slab empties and goes back to the page heap.
  hfree(b[2]);
  EXPECT_NE(s->heap, hb) << "an emptied slab of an abandoned heap is given back at once";
  EXPECT_EQ(hb->full[sc::class_of(2048)].first(), nullptr);
  heap::validate_current();
}

TEST(HeapAbandon, ASlabAFreerUnmarkedAcrossTheExitIsMarkedAgainByTheGiveBack) {
  void* b[3];
  Heap* hb = blocks_of_an_exited_thread(b);
  Span* s = slab_of(b[0]);
  ASSERT_EQ(s->heap, hb);
  ASSERT_EQ(remote_of(s), 1u);
  ASSERT_EQ(s->used, 3u);
  // A freer of b[0] saw the heap live before the exit and stalled; now it
  // unmarks the slab, as the first free into a marked slab of a live heap
  // does ...
  uintptr_t marked = 1;
  ASSERT_TRUE(s->remote.compare_exchange_strong(marked, 0));
  // ... so another free takes the slab's list, as in a live heap ...
  hfree(b[1]);
  EXPECT_EQ(remote_of(s), addr(b[1]));
  EXPECT_EQ(hb->delayed.load(), 0u);
  // ... then it sends b[0] to the delayed list, finds the heap abandoned
  // and gives back what waits there (free_remote's steps).
  heap::push_delayed(hb, b[0]);
  heap::collect_abandoned(hb);
  EXPECT_EQ(hb->delayed.load(), 0u);
  EXPECT_EQ(s->remote.load(), 1u) << "the give-back marks the slab again";
  EXPECT_EQ(s->used, 1u) << "and takes in the block on its list too";
  heap::validate_current();
  hfree(b[2]);
  EXPECT_NE(s->heap, hb) << "emptied: given back to the page heap";
  heap::validate_current();
}

TEST(HeapAbandon, ANewThreadAdoptsTheHeapAndReusesItsFreeBlocks) {
  void* b[4];
  Heap* hb;
  {
    Peer peer;
    peer.run([&] {
      for (auto& x : b) x = halloc(3072);
      hfree(b[2]);  // a free block in the slab when it is sealed
    });
    hb = peer.heap();
  }
  Span* s = slab_of(b[0]);
  ASSERT_EQ(hb->state.load(), kHeapAbandoned);
  ASSERT_EQ(s->is_full, 1);
  Heap* head;
  {
    LockGuard g(heap::g_heaps_lock);
    head = heap::g_abandoned;
  }
  ASSERT_EQ(head, hb);

  Peer adopter;
  void* again = nullptr;
  Heap* ha = nullptr;
  adopter.run([&] {
    again = halloc(3072);
    ha = heap::tl_heap;
    heap::validate_current();
  });
  EXPECT_EQ(ha, hb) << "a new thread adopts the abandoned heap";
  EXPECT_EQ(hb->state.load(), kHeapLive);
  EXPECT_FALSE(on_abandoned_list(hb));
  EXPECT_EQ(again, b[2]) << "unsealed: the slab's free block is handed out";
  EXPECT_EQ(s->is_full, 0);
  // Frees by this thread are remote frees into a live heap again.
  hfree(b[0]);
  EXPECT_EQ(remote_of(s), addr(b[0]));
  hfree(b[1]);
  hfree(b[3]);
  adopter.run([&] { hfree(again); });
}

TEST(HeapAbandon, FreesWaitingOnTheDelayedListAtExitAreTakenIn) {
  // The exiting thread takes in its delayed list before it seals the heap
  // (and looks again after publishing the abandoned state, for frees by
  // threads that still saw it live).
  std::vector<void*> mine;
  void* other = nullptr;
  Peer peer;
  peer.run([&] {
    void* first = halloc(4096);
    Span* s = slab_of(first);
    mine.push_back(first);
    while (s->free_list || s->bump < s->capacity) mine.push_back(halloc(4096));
    other = halloc(4096);  // marks the first slab full
  });
  Heap* hb = peer.heap();
  Span* s = slab_of(mine[0]);
  ASSERT_EQ(s->is_full, 1);
  hfree(mine[0]);  // to the peer's delayed list
  EXPECT_EQ(hb->delayed.load(), addr(mine[0]));
  peer.stop();
  EXPECT_EQ(hb->state.load(), kHeapAbandoned);
  EXPECT_EQ(hb->delayed.load(), 0u) << "taken in at exit";
  EXPECT_EQ(s->used, s->capacity - 1);
  EXPECT_EQ(s->is_full, 1);
  EXPECT_EQ(remote_of(s), 1u);
  heap::validate_current();
  for (size_t i = 1; i < mine.size(); i++) hfree(mine[i]);
  EXPECT_NE(s->heap, hb) << "the slab emptied and went back";
  hfree(other);
  heap::validate_current();
}


// A heap's slabs of a class grow with the slabs it has made (size_classes.h:
// first_pages, then doubling). A new thread that adopts a heap starts again
// at the first size: its predecessor's growth says nothing of what it will
// allocate. (threadlife-8, threads of 4,000 allocations adopting the heaps
// of exited ones: peak RSS 16.2 -> 8.4-9.5 MiB.)
TEST(HeapAbandon, AnAdopterStartsAgainWithSmallSlabs) {
  const unsigned c = sc::class_of(1024);
  ASSERT_LT(sc::kInfo[c].first_pages, sc::kInfo[c].pages) << "the class must have slabs of growing size";
  std::vector<void*> held;
  Heap* hb;
  unsigned made = 0;
  {
    Peer peer;
    peer.run([&] {
      // Fill slabs until the class has grown.
      for (int i = 0; i < 4096 && heap::tl_heap->slabs_made[c] < 3; i++) held.push_back(halloc(1024));
      made = heap::tl_heap->slabs_made[c];
    });
    hb = peer.heap();
  }
  ASSERT_GE(made, 3u);
  ASSERT_EQ(hb->state.load(), kHeapAbandoned);
  Peer adopter;
  Heap* ha = nullptr;
  unsigned made_after = 99;
  size_t new_slab_pages = 0;
  adopter.run([&] {
    void* p = halloc(64);  // attaches: adopts the abandoned heap
    ha = heap::tl_heap;
    made_after = ha->slabs_made[c];
    // Exhaust what the adopted heap holds of the class, then one more: a new slab.
    std::vector<void*> mine;
    Span* fresh = nullptr;
    for (int i = 0; i < 4096 && !fresh; i++) {
      void* q = halloc(1024);
      mine.push_back(q);
      Span* s = slab_of(q);
      if (std::find_if(held.begin(), held.end(), [&](void* h) { return slab_of(h) == s; }) == held.end()) fresh = s;
    }
    if (fresh) new_slab_pages = fresh->npages - pages::guard_tail_pages();
    for (void* q : mine) hfree(q);
    hfree(p);
  });
  EXPECT_EQ(ha, hb) << "the new thread adopts the abandoned heap";
  EXPECT_EQ(made_after, 0u) << "the adopter's slabs start small again";
  EXPECT_EQ(new_slab_pages, sc::kInfo[c].first_pages) << "its first new slab has the class's first size";
  for (void* p : held) hfree(p);
}

}  // namespace

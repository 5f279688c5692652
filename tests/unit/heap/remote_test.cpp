// heap/remote.cpp: the remote-free protocol, driven one step at a time from
// two threads. The owner (this thread) holds a slab; the peer frees into it;
// the slab's remote list, the heap's delayed list and the counters are
// checked after every step, then the owner takes the frees in and hands
// the blocks out again.
#include "heap_test_util.h"

namespace {

using namespace heaptest;

TEST(HeapRemote, FreeByAnotherThreadGoesToTheSlabsRemoteList) {
  Peer peer;
  void* p[4];
  for (auto& b : p) b = halloc(48);
  Span* s = slab_of(p[0]);
  Heap* h = heap::tl_heap;
  ASSERT_EQ(s->heap, h);
  for (auto* b : p) ASSERT_EQ(slab_of(b), s) << "the four blocks share the current slab";
  const uint32_t used = s->used;
  void* free_head = s->free_list;

  peer.run([&] { hfree(p[1]); });
  EXPECT_EQ(remote_of(s), addr(p[1])) << "the block heads the slab's remote list";
  EXPECT_EQ(remote_n(s), 1u) << "and is counted in the same word";
  EXPECT_EQ(next_of(p[1]), nullptr);
  EXPECT_EQ(s->used, used) << "a remote free is counted by the owner when it takes it in";
  EXPECT_EQ(s->free_list, free_head) << "the owner's free list is the owner's";
  EXPECT_TRUE(heap::has_free_mark(p[1]));
  EXPECT_EQ(h->delayed.load(), 0u);

  peer.run([&] { hfree(p[2]); });
  EXPECT_EQ(remote_of(s), addr(p[2]));
  EXPECT_EQ(remote_n(s), 2u);
  EXPECT_EQ(next_of(p[2]), p[1]);

  // The owner takes the list with one exchange; its free list was not
  // empty, so the remote list goes in front of it.
  EXPECT_EQ(heap::collect_remote(s), 2u);
  EXPECT_EQ(s->remote.load(), 0u);
  EXPECT_EQ(s->used, used - 2);
  EXPECT_EQ(s->free_list, p[2]);
  EXPECT_EQ(next_of(p[1]), free_head) << "the remote list's tail leads to the old free list";

  // ... and hands the blocks out again, the last freed first.
  EXPECT_EQ(halloc(48), p[2]);
  EXPECT_EQ(halloc(48), p[1]);
  EXPECT_FALSE(heap::has_free_mark(p[1])) << "malloc clears the free mark";
  EXPECT_EQ(s->used, used);
  heap::validate_current();
  for (auto* b : p) hfree(b);
}

TEST(HeapRemote, OwnerTakesRemoteFreesWhenItsFreeListRunsDry) {
  Peer peer;
  void* first = halloc(96);
  Span* s = slab_of(first);
  // Empty the slab's free list and use up its fresh blocks.
  std::vector<void*> mine{first};
  while (s->free_list || s->bump < s->capacity) mine.push_back(halloc(96));
  ASSERT_EQ(s->used, s->capacity);
  void* victim = mine[mine.size() / 2];
  void* victim2 = mine[mine.size() / 3];
  void* victim3 = mine[1];
  peer.run([&] {
    hfree(victim);
    hfree(victim2);
    hfree(victim3);
  });
  ASSERT_EQ(remote_of(s), addr(victim3));
  ASSERT_EQ(remote_n(s), 3u);
  // The refill looks at the remote list before marking the slab full, and
  // takes the count from the word (the list becomes the free list whole).
  EXPECT_EQ(halloc(96), victim3);
  EXPECT_EQ(s->remote.load(), 0u);
  EXPECT_EQ(s->is_full, 0);
  EXPECT_EQ(s->used, s->capacity - 2);
  EXPECT_EQ(s->free_list, victim2);
  EXPECT_EQ(halloc(96), victim2);
  EXPECT_EQ(halloc(96), victim);
  EXPECT_EQ(s->used, s->capacity);
  EXPECT_EQ(s->free_list, nullptr);
  heap::validate_current();
  for (auto* b : mine) hfree(b);
}

TEST(HeapRemote, FreesIntoAFullSlabGoToTheHeapsDelayedList) {
  Peer peer;
  void* first = halloc(1024);
  Heap* h = heap::tl_heap;  // attached by the first allocation
  Span* s = slab_of(first);
  const unsigned c = s->size_class;
  std::vector<void*> mine{first};
  while (s->free_list || s->bump < s->capacity) mine.push_back(halloc(1024));
  // The next allocation finds the slab full: it is marked (remote == 1)
  // and moved to the full list, and a new slab is made.
  void* other = halloc(1024);
  EXPECT_NE(slab_of(other), s);
  EXPECT_EQ(s->is_full, 1);
  EXPECT_EQ(remote_of(s), 1u);
  EXPECT_EQ(h->full[c].first(), s);

  void* a = mine[1];
  void* b = mine[2];
  peer.run([&] { hfree(a); });
  EXPECT_EQ(h->delayed.load(), addr(a)) << "the first free into a marked slab goes to the owner heap";
  EXPECT_EQ(next_of(a), nullptr);
  EXPECT_EQ(s->remote.load(), 0u) << "and unmarks the slab";
  EXPECT_EQ(s->is_full, 1) << "which stays on the full list until the owner looks";
  EXPECT_EQ(s->used, s->capacity);
  heap::validate_current();
  peer.run([&] { hfree(b); });
  EXPECT_EQ(h->delayed.load(), addr(a)) << "the frees after the first one do not reach the heap";
  EXPECT_EQ(remote_of(s), addr(b)) << "they take the slab's remote list";
  EXPECT_EQ(remote_n(s), 1u);
  heap::validate_current();

  // The owner takes the delayed list in: the slab is back on the avail
  // list, behind the current slab, its remote list untouched.
  heap::drain_delayed(h);
  EXPECT_EQ(h->delayed.load(), 0u);
  EXPECT_EQ(s->is_full, 0);
  EXPECT_EQ(remote_of(s), addr(b));
  EXPECT_EQ(s->used, s->capacity - 1);
  EXPECT_EQ(h->full[c].first(), nullptr);
  EXPECT_EQ(h->avail[c].first(), slab_of(other));
  EXPECT_EQ(h->avail[c].first()->next, s);
  EXPECT_EQ(s->free_list, a) << "a was taken in";
  heap::validate_current();

  // Frees into it are remote frees.
  void* d = mine[3];
  peer.run([&] { hfree(d); });
  EXPECT_EQ(remote_of(s), addr(d));
  EXPECT_EQ(remote_n(s), 2u);
  EXPECT_EQ(h->delayed.load(), 0u);
  heap::collect_remote(s);
  for (size_t i = 0; i < mine.size(); i++)
    if (i < 1 || i > 3) hfree(mine[i]);
  hfree(other);
  heap::validate_current();
}

TEST(HeapRemote, ASlabEmptiedByRemoteFreesGoesBackWhenTheOwnerLooks) {
  Peer peer;
  // Two slabs of the class: the first fills, the second is current.
  void* first = halloc(512);
  Heap* h = heap::tl_heap;
  Span* s = slab_of(first);
  std::vector<void*> mine{first};
  while (s->free_list || s->bump < s->capacity) mine.push_back(halloc(512));
  void* other = halloc(512);
  ASSERT_EQ(s->is_full, 1);
  // Every block of the full slab freed by the peer: the first reaches the
  // delayed list, the rest the slab's list (the slab is unmarked but on the
  // full list until the owner looks); no freer sees the slab empty, since
  // the first block is still counted.
  peer.run([&] {
    for (void* b : mine) hfree(b);
  });
  EXPECT_EQ(s->used, s->capacity);
  EXPECT_EQ(remote_n(s), s->capacity - 1);
  EXPECT_EQ(h->delayed.load(), addr(mine[0]));
  heap::release_spares(h);
  heap::drain_delayed(h);
  // The owner takes the first block in, finds the rest on the slab's list:
  // empty, kept as the spare (there was none).
  EXPECT_EQ(h->spare[s->size_class], s);
  EXPECT_EQ(s->used, 0u);
  EXPECT_EQ(s->remote.load(), 0u);
  heap::validate_current();
  hfree(other);
}

TEST(HeapRemoteDeathTest, TheValidatorCatchesAWrongRemoteCount) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        void* p = halloc(176);
        void* q = halloc(176);
        Span* s = slab_of(p);
        std::thread([&] { hfree(q); }).join();  // q on the remote list, counted once
        heap::validate_current();               // consistent so far
        s->remote.fetch_add(heap::kRemoteCountOne);  // counted twice
        heap::validate_current();
      },
      "remote count is not the length of its remote list");
}

}  // namespace

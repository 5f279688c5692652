// heap/checks.cpp: double frees, found by the free mark and confirmed by
// the owner's scan of the slab's free and remote lists and its heap's
// delayed list; another thread takes the mark as proof. Reported through
// g_on_invalid (recorded here instead of aborting); the bad free is ignored.
#include "heap_test_util.h"

namespace {

using namespace heaptest;

TEST(HeapChecks, OwnerDoubleFreeIsReportedAndIgnored) {
  InvalidLog log;
  void* p = halloc(64);
  void* q = halloc(64);
  hfree(p);
  EXPECT_EQ(log.count, 0);
  hfree(p);
  EXPECT_EQ(log.count, 1);
  EXPECT_EQ(log.last_p, p);
  EXPECT_STREQ(log.last_what, "free(): double free detected");
  // Ignored: p is on the free list once, so it is handed out once.
  void* a = halloc(64);
  void* b = halloc(64);
  EXPECT_EQ(a, p);
  EXPECT_NE(b, p);
  hfree(a);
  hfree(b);
  hfree(q);
}

TEST(HeapChecks, DoubleFreeOfARemoteFreedBlockIsFoundOnTheRemoteList) {
  InvalidLog log;
  Peer peer;
  void* p = halloc(80);
  void* keep = halloc(80);
  peer.run([&] { hfree(p); });
  EXPECT_EQ(log.count, 0);
  EXPECT_EQ(remote_of(slab_of(p)), addr(p));
  hfree(p);  // the owner scans the remote list
  EXPECT_EQ(log.count, 1);
  EXPECT_EQ(log.last_p, p);
  peer.run([&] { hfree(p); });  // another thread: the mark is proof
  EXPECT_EQ(log.count, 2);
  EXPECT_EQ(heap::collect_remote(slab_of(p)), 1u) << "the block is on the remote list once";
  hfree(keep);
}

TEST(HeapChecks, DoubleFreeOfADelayedBlockIsFoundOnTheDelayedList) {
  InvalidLog log;
  Peer peer;
  void* first = halloc(1536);
  Span* s = slab_of(first);
  std::vector<void*> mine{first};
  while (s->free_list || s->bump < s->capacity) mine.push_back(halloc(1536));
  void* other = halloc(1536);
  ASSERT_EQ(s->is_full, 1);
  peer.run([&] { hfree(first); });
  ASSERT_EQ(heap::tl_heap->delayed.load(), addr(first));
  hfree(first);
  EXPECT_EQ(log.count, 1);
  EXPECT_EQ(log.last_p, first);
  for (void* b : mine)
    if (b != first) hfree(b);
  hfree(other);
  heap::validate_current();
}

TEST(HeapChecks, ALiveBlockHoldingTheMarkIsFreedNormally) {
  InvalidLog log;
  void* p = halloc(32);
  // The program's data happens to look like the mark.
  static_cast<uintptr_t*>(p)[1] = heap::free_mark(p);
  Span* s = slab_of(p);
  uint32_t used = s->used;
  hfree(p);
  EXPECT_EQ(log.count, 0) << "not on any list: not a double free";
  EXPECT_EQ(s->used, used - 1);
  EXPECT_EQ(s->free_list, p);
}

}  // namespace

// heap/foreign.cpp: the foreign cache. The peer thread owns the blocks; this
// thread frees them into its cache, hands them out again, and sends them
// home when a list or the budget is full, at trim and at thread exit. The
// cache is switched on here for any number of threads (configure_foreign
// with min_heaps 0); the owner's slab, the lists and the counters are
// checked after every step.
#include "heap_test_util.h"

namespace {

using namespace heaptest;

// Turns the cache on (or off) for the test and back to the defaults after,
// with this thread's cache sent home.
struct CacheOn {
  explicit CacheOn(size_t total = size_t{64} << 20, uint32_t min_heaps = 0)
      : saved_total(heap::foreign_total()), saved_min(heap::foreign_min_heaps()) {
    heap::configure_foreign(total, min_heaps);
    h = halloc_heap();
    heap::foreign_close(h);
  }
  ~CacheOn() {
    heap::foreign_close(h);
    heap::configure_foreign(saved_total, saved_min);
  }
  static Heap* halloc_heap() {
    hfree(halloc(16));  // attaches this thread's heap
    return heap::tl_heap;
  }
  size_t saved_total;
  uint32_t saved_min;
  Heap* h = nullptr;
};

// Blocks of n bytes allocated by the peer (its heap owns their slabs).
std::vector<void*> peer_blocks(Peer& peer, size_t n, int count) {
  std::vector<void*> v;
  peer.run([&] {
    for (int i = 0; i < count; i++) v.push_back(halloc(n));
  });
  return v;
}

TEST(HeapForeign, ARefillThatFindsTheListEmptyLetsTheListGrow) {
  CacheOn on;
  const unsigned c = sc::class_of(64);
  EXPECT_EQ(on.h->foreign_max[c], 0) << "a thread caches nothing of a class it never refilled";
  void* a = heap::heap_alloc(on.h, c);
  EXPECT_EQ(on.h->foreign_max[c], 1);
  void* b = heap::heap_alloc(on.h, c);
  EXPECT_EQ(on.h->foreign_max[c], 3) << "doubling";
  EXPECT_GT(on.h->foreign_budget, 0u);
  EXPECT_EQ(on.h->foreign_max[sc::class_of(128)], 0) << "per class";
  for (int i = 0; i < 20; i++) heap::foreign_grow(on.h, c);
  EXPECT_EQ(on.h->foreign_max[c], heap::kForeignMaxBlocks);
  // Switched off (REMALLOC_FOREIGN_CACHE=0), the next refill closes the
  // list; refills of classes never opened do nothing.
  heap::configure_foreign(0, 0);
  void* d = heap::heap_alloc(on.h, c);
  EXPECT_EQ(on.h->foreign_max[c], 0);
  void* e = heap::heap_alloc(on.h, sc::class_of(128));
  EXPECT_EQ(on.h->foreign_max[sc::class_of(128)], 0);
  hfree(a);
  hfree(b);
  hfree(d);
  hfree(e);
}

TEST(HeapForeign, AFreeOfAnotherHeapsBlockIsCachedAndHandedOutAgain) {
  CacheOn on;
  Peer peer;
  std::vector<void*> p = peer_blocks(peer, 48, 2);
  const unsigned c = sc::class_of(48);
  Span* s = slab_of(p[0]);
  ASSERT_EQ(s->heap, peer.heap());
  heap::foreign_grow(on.h, c);
  heap::foreign_grow(on.h, c);  // room for 3
  const uint32_t used = s->used;

  hfree(p[0]);
  hfree(p[1]);
  EXPECT_EQ(on.h->foreign[c], p[1]) << "newest first";
  EXPECT_EQ(next_of(p[1]), p[0]);
  EXPECT_EQ(on.h->foreign_n[c], 2);
  EXPECT_EQ(on.h->foreign_bytes, 2 * s->block_size);
  EXPECT_EQ(remote_of(s), 0u) << "nothing went to the owner";
  EXPECT_EQ(peer.heap()->delayed.load(), 0u);
  EXPECT_EQ(s->used, used) << "the owner still counts the blocks as handed out";
  EXPECT_TRUE(heap::has_free_mark(p[0]));
  EXPECT_EQ(static_cast<uintptr_t*>(p[0])[1], heap::cached_mark(p[0]));
  heap::validate_current();

  // The refill hands out the cached blocks, the last freed first, before
  // it looks at its own slabs.
  EXPECT_EQ(heap::heap_alloc(on.h, c), p[1]);
  EXPECT_EQ(heap::heap_alloc(on.h, c), p[0]);
  EXPECT_FALSE(heap::has_free_mark(p[0])) << "handed out: the mark is cleared";
  EXPECT_EQ(on.h->foreign_n[c], 0);
  EXPECT_EQ(on.h->foreign_bytes, 0u);
  EXPECT_EQ(s->used, used);
  heap::validate_current();
  // This thread frees them again (cached), and trim sends them home.
  hfree(p[0]);
  hfree(p[1]);
  heap::large_cache_flush_current();
  EXPECT_EQ(on.h->foreign_n[c], 0);
  EXPECT_EQ(remote_n(s), 2u) << "trim sends the cache to the owners";
  EXPECT_EQ(static_cast<uintptr_t*>(p[0])[1], heap::free_mark(p[0])) << "sent home with the free mark";
  EXPECT_EQ(static_cast<uintptr_t*>(p[1])[1], heap::free_mark(p[1]));
  heap::validate_current();
}

TEST(HeapForeign, AFullListGoesHomeBeforeTheNextBlockIsCached) {
  CacheOn on;
  Peer peer;
  std::vector<void*> p = peer_blocks(peer, 96, 3);
  const unsigned c = sc::class_of(96);
  Span* s = slab_of(p[0]);
  heap::foreign_grow(on.h, c);
  ASSERT_EQ(on.h->foreign_max[c], 1);
  hfree(p[0]);
  EXPECT_EQ(on.h->foreign_n[c], 1);
  hfree(p[1]);
  EXPECT_EQ(on.h->foreign[c], p[1]);
  EXPECT_EQ(on.h->foreign_n[c], 1);
  EXPECT_EQ(remote_of(s), addr(p[0])) << "the full list went to the owner's slab";
  EXPECT_EQ(remote_n(s), 1u);
  heap::validate_current();
  hfree(p[2]);
  EXPECT_EQ(remote_n(s), 2u);
  // The owner takes its blocks back as from any remote free.
  peer.run([&] { EXPECT_EQ(heap::collect_remote(s), 2u); });
}

TEST(HeapForeign, ASpentBudgetSendsTheWholeCacheHome) {
  // A budget of 8 blocks of 256 bytes for this thread (the total is shared
  // by the threads that own heaps).
  CacheOn on;
  Peer peer;
  const unsigned c = sc::class_of(256), c2 = sc::class_of(32);
  std::vector<void*> p = peer_blocks(peer, 256, 9);
  std::vector<void*> q = peer_blocks(peer, 32, 1);
  heap::configure_foreign(size_t{2048} * heap::g_live_heaps.load(), 0);
  for (int i = 0; i < 5; i++) heap::foreign_grow(on.h, c);
  heap::foreign_grow(on.h, c2);
  ASSERT_EQ(on.h->foreign_budget, 2048u);
  hfree(q[0]);
  for (int i = 0; i < 7; i++) hfree(p[i]);
  EXPECT_EQ(on.h->foreign_n[c], 7);
  EXPECT_EQ(on.h->foreign_bytes, 7 * 256u + 32u);
  hfree(p[7]);  // 2080 bytes would not fit
  EXPECT_EQ(on.h->foreign_n[c], 1);
  EXPECT_EQ(on.h->foreign[c], p[7]);
  EXPECT_EQ(on.h->foreign_n[c2], 0) << "the whole cache went home";
  EXPECT_EQ(on.h->foreign_bytes, 256u);
  EXPECT_EQ(remote_n(slab_of(p[0])), 7u);
  EXPECT_EQ(remote_of(slab_of(q[0])), addr(q[0]));
  heap::validate_current();
  hfree(p[8]);
}

TEST(HeapForeign, NoCacheWhileFewThreadsOwnHeaps) {
  CacheOn on(size_t{64} << 20, 1000);
  Peer peer;
  std::vector<void*> p = peer_blocks(peer, 64, 2);
  const unsigned c = sc::class_of(64);
  heap::foreign_grow(on.h, c);
  EXPECT_EQ(on.h->foreign_max[c], 0);
  EXPECT_EQ(on.h->foreign_budget, 0u);
  hfree(p[0]);
  EXPECT_EQ(on.h->foreign_n[c], 0);
  EXPECT_EQ(remote_of(slab_of(p[0])), addr(p[0])) << "the remote-free protocol, as without a cache";
  // Switched on, a block is cached; switched off again, the next refill
  // closes the list and the next free sends it home.
  heap::configure_foreign(size_t{64} << 20, 0);
  heap::foreign_grow(on.h, c);
  void* x = halloc(8000);
  std::vector<void*> r = peer_blocks(peer, 64, 1);
  hfree(r[0]);
  EXPECT_EQ(on.h->foreign_n[c], 1);
  heap::configure_foreign(size_t{64} << 20, 1000);
  heap::foreign_grow(on.h, c);
  hfree(p[1]);
  EXPECT_EQ(on.h->foreign_n[c], 0);
  EXPECT_EQ(remote_n(slab_of(p[0])), 3u);
  hfree(x);
  heap::validate_current();
}

TEST(HeapForeign, BlocksOverAQuarterOfTheBudgetAreNotCached) {
  CacheOn on;
  Peer peer;
  const unsigned c = sc::class_of(4096), small = sc::class_of(2048);
  std::vector<void*> p = peer_blocks(peer, 4096, 1);
  std::vector<void*> q = peer_blocks(peer, 2048, 1);
  heap::configure_foreign(size_t{8192} * heap::g_live_heaps.load(), 0);
  heap::foreign_grow(on.h, c);
  heap::foreign_grow(on.h, small);
  ASSERT_EQ(on.h->foreign_budget, 8192u);
  EXPECT_EQ(on.h->foreign_max[c], 0) << "4 KiB blocks: more than a quarter of the budget";
  EXPECT_EQ(on.h->foreign_max[small], 1) << "2 KiB blocks: a quarter";
  hfree(p[0]);
  EXPECT_EQ(on.h->foreign_n[c], 0);
  EXPECT_EQ(remote_of(slab_of(p[0])), addr(p[0]));
  hfree(q[0]);
  EXPECT_EQ(on.h->foreign_n[small], 1);
}

TEST(HeapForeign, DoubleFreeOfACachedBlockIsReportedByEveryThread) {
  InvalidLog log;
  CacheOn on;
  Peer peer, third;
  std::vector<void*> p = peer_blocks(peer, 80, 1);
  const unsigned c = sc::class_of(80);
  heap::foreign_grow(on.h, c);
  hfree(p[0]);
  ASSERT_EQ(on.h->foreign_n[c], 1);
  hfree(p[0]);  // the thread that cached it
  EXPECT_EQ(log.count, 1);
  EXPECT_EQ(log.last_p, p[0]);
  EXPECT_STREQ(log.last_what, "free(): double free detected");
  peer.run([&] { hfree(p[0]); });  // its owner, which cannot find it on its lists
  EXPECT_EQ(log.count, 2);
  third.run([&] { hfree(p[0]); });
  EXPECT_EQ(log.count, 3);
  EXPECT_TRUE(heap::check_marked(slab_of(p[0]), p[0], "realloc"));  // what realloc asks
  EXPECT_EQ(log.count, 4);
  EXPECT_EQ(on.h->foreign_n[c], 1) << "ignored: the block is cached once";
  EXPECT_EQ(remote_of(slab_of(p[0])), 0u);
  heap::validate_current();
  EXPECT_EQ(heap::heap_alloc(on.h, c), p[0]);
  EXPECT_NE(heap::heap_alloc(on.h, c), p[0]);
}

TEST(HeapForeign, ThreadExitSendsTheCacheHome) {
  CacheOn on;
  Peer owner;
  std::vector<void*> p = peer_blocks(owner, 112, 2);
  const unsigned c = sc::class_of(112);
  Span* s = slab_of(p[0]);
  {
    Peer freer;
    freer.run([&] {
      hfree(halloc(16));
      heap::foreign_grow(heap::tl_heap, c);
      heap::foreign_grow(heap::tl_heap, c);
      hfree(p[0]);
      hfree(p[1]);
      EXPECT_EQ(heap::tl_heap->foreign_n[c], 2);
    });
    EXPECT_EQ(remote_of(s), 0u);
  }  // the freer exits
  EXPECT_EQ(remote_n(s), 2u);
  heap::validate_current();  // the abandoned heap keeps no cache, nor limits to refill one
  owner.run([&] { EXPECT_EQ(heap::collect_remote(s), 2u); });
}

TEST(HeapForeign, StatisticsCountCachedBlocksApartFromLiveOnes) {
  CacheOn on;
  Peer peer;
  std::vector<void*> p = peer_blocks(peer, 208, 3);
  const unsigned c = sc::class_of(208);
  heap::foreign_grow(on.h, c);
  heap::foreign_grow(on.h, c);
  heap::Stats before, after;
  heap::get_stats(&before);
  hfree(p[0]);
  hfree(p[1]);
  heap::get_stats(&after);
  EXPECT_EQ(after.blocks_cached, before.blocks_cached + 2);
  EXPECT_EQ(after.cached_by_class[c], before.cached_by_class[c] + 2);
  EXPECT_EQ(after.live_by_class[c], before.live_by_class[c] - 2);
  EXPECT_EQ(after.blocks_live, before.blocks_live - 2);
  hfree(p[2]);
}

TEST(HeapForeignDeathTest, TheValidatorCatchesAWrongCount) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        CacheOn on;
        Peer peer;
        std::vector<void*> p = peer_blocks(peer, 48, 1);
        const unsigned c = sc::class_of(48);
        heap::foreign_grow(on.h, c);
        hfree(p[0]);
        heap::validate_current();  // consistent so far
        on.h->foreign_n[c]++;
        heap::validate_current();
      },
      "foreign list's count is not its length");
}

TEST(HeapForeignDeathTest, AWriteIntoACachedBlocksLinkIsCaughtWhenHandedOut) {
  if (!(kSecure || heap::kPoisonFreed)) GTEST_SKIP() << "links are checked in the secure and checked builds";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        CacheOn on;
        Peer peer;
        std::vector<void*> p = peer_blocks(peer, 48, 2);
        const unsigned c = sc::class_of(48);
        heap::foreign_grow(on.h, c);
        heap::foreign_grow(on.h, c);
        hfree(p[0]);
        hfree(p[1]);
        static_cast<uintptr_t*>(p[1])[0] ^= 0x5a5a5a0;  // a use after free
        heap::heap_alloc(on.h, c);
      },
      "link was overwritten");
}

}  // namespace

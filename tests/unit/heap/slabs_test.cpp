// heap/slabs.cpp: a heap's slabs and their lists. A class's first slab is
// its smallest and each next one twice the last; fresh blocks are linked a
// page at a time; an emptied slab is kept as the class's spare and reused
// before a new one is made; the validator catches a slab on the wrong list.
#include "heap_test_util.h"

#include "pages/page_heap.h"
#include "platform/os.h"

#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <vector>

namespace {

using namespace heaptest;

TEST(HeapSlabs, FirstSlabIsSmallAndTheNextOnesDouble) {
  Peer peer;
  peer.run([] {
    const size_t size = 256;
    const unsigned c = sc::class_of(size);
    std::vector<void*> blocks;
    std::vector<Span*> slabs;
    while (slabs.size() < 4) {
      void* p = halloc(size);
      blocks.push_back(p);
      if (slabs.empty() || slab_of(p) != slabs.back()) slabs.push_back(slab_of(p));
    }
    Heap* h = heap::tl_heap;  // attached by the first allocation
    for (unsigned i = 0; i < slabs.size(); i++)
      EXPECT_EQ(slabs[i]->npages - pages::guard_tail_pages(), sc::slab_pages_nth(c, i)) << "slab " << i;
    EXPECT_EQ(slabs[0]->npages - pages::guard_tail_pages(), sc::kInfo[c].first_pages);
    EXPECT_EQ(h->slabs_made[c], 4u);
    for (void* p : blocks) hfree(p);
    heap::validate_current();
  });
}

TEST(HeapSlabs, WithMoreThanManyHeapsLiveNewSlabsStopGrowingAtManyPages) {
  const size_t size = 256;
  const unsigned c = sc::class_of(size);
  ASSERT_LT(sc::kInfo[c].many_pages, sc::kInfo[c].pages);
  // Slabs of one thread, made in turn; returns the pages of the last one
  // after `n` new slabs.
  Peer worker;
  std::vector<void*> blocks;
  auto slab_pages_after = [&](unsigned n) {
    size_t pages = 0;
    worker.run([&] {
      heap::release_spares(heap::tl_heap);
      Span* last = blocks.empty() ? nullptr : slab_of(blocks.back());
      for (unsigned made = 0; made < n;) {
        void* p = halloc(size);
        blocks.push_back(p);
        if (slab_of(p) != last) {
          last = slab_of(p);
          made++;
        }
      }
      pages = last->npages - pages::guard_tail_pages();
    });
    return pages;
  };
  // Few threads: the slabs grow to the full size.
  ASSERT_LE(heap::g_live_heaps.load(), sc::kManyHeaps) << "other threads of this test binary still own heaps";
  EXPECT_EQ(slab_pages_after(sc::kSlabGrowthSteps + 1), sc::kInfo[c].pages);
  {
    // More threads than kManyHeaps own heaps: new slabs are many_pages.
    std::vector<std::unique_ptr<Peer>> others;
    while (heap::g_live_heaps.load() <= sc::kManyHeaps) {
      others.push_back(std::make_unique<Peer>());
      others.back()->run([] { hfree(halloc(32)); });  // attaches a heap
    }
    EXPECT_EQ(slab_pages_after(2), sc::kInfo[c].many_pages);
  }  // they exit and abandon their heaps
  EXPECT_LE(heap::g_live_heaps.load(), sc::kManyHeaps);
  EXPECT_EQ(slab_pages_after(2), sc::kInfo[c].pages) << "full slabs again once they are gone";
  worker.run([&] {
    for (void* p : blocks) hfree(p);
    heap::validate_current();
  });
}

// In a fork child only the forking thread exists: the heaps of the others
// no longer count, and the child's new slabs grow to the full size again.
TEST(HeapSlabs, AForkChildCountsOnlyTheForkingThreadsHeap) {
  hfree(halloc(32));  // this thread owns a heap
  std::vector<std::unique_ptr<Peer>> others;
  while (heap::g_live_heaps.load() <= sc::kManyHeaps) {
    others.push_back(std::make_unique<Peer>());
    others.back()->run([] { hfree(halloc(32)); });
  }
  heap::fork_prepare();
  pid_t pid = fork();
  if (pid == 0) {
    heap::fork_child();
    _exit(heap::g_live_heaps.load() == 1 ? 0 : 10 + int(heap::g_live_heaps.load()));
  }
  heap::fork_parent();
  ASSERT_GT(pid, 0);
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "the child counted " << (WEXITSTATUS(st) - 10) << " heaps";
  EXPECT_GT(heap::g_live_heaps.load(), sc::kManyHeaps) << "the parent's threads still own theirs";
}

TEST(HeapSlabs, FreshBlocksAreLinkedAPageAtATime) {
  Peer peer;
  peer.run([] {
    void* p = halloc(64);
    Span* s = slab_of(p);
    EXPECT_EQ(s->bump, kPageSize / 64) << "one page of blocks linked";
    EXPECT_EQ(s->used, 1u);
    hfree(p);
  });
}

// A new slab carved from pages never touched (purged first): each extend
// has the page its links write populated, one page per extend for 64-byte
// blocks (a page of them each time); with prefault off, none.
TEST(HeapSlabs, ExtendPrefaultsThePagesItLinksBlocksOn) {
  const size_t size = 64;
  const size_t per_page = kPageSize / size;
  const pages::Config saved = pages::config();
  auto prefaulted = [] {
    pages::Stats st;
    pages::get_stats(&st);
    return st.prefault_pages;
  };
  for (bool on : {false, true}) {
    SCOPED_TRACE(on ? "prefault on" : "prefault off");
    Peer peer;
    peer.run([&] {
      pages::Config c = saved;
      c.prefault = on;
      pages::configure(c);
      pages::purge(true);  // no dirty run left: a new slab is carved from clean pages
      std::vector<void*> held;
      Span* s = nullptr;
      size_t delta = 0;
      for (int i = 0; i < 100000 && !s; i++) {
        size_t before = prefaulted();
        void* p = halloc(size);
        held.push_back(p);
        Span* t = slab_of(p);
        // The first block of a new slab of two pages or more (a class's
        // first slab is one page, the next ones twice the last).
        if (t && t->slab_bytes && t->used == 1 && t->bump == per_page && t->capacity >= 2 * per_page) {
          s = t;
          delta = prefaulted() - before;
        }
      }
      ASSERT_NE(s, nullptr);
      ASSERT_EQ(s->maint_lo, s->maint_hi) << "carved from clean pages";
      EXPECT_EQ(delta, on ? 1u : 0u) << "the slab's first page";
      // The rest of its first page of blocks, then one more: the second extend.
      while (s->free_list) held.push_back(halloc(size));
      size_t before = prefaulted();
      void* p = halloc(size);
      held.push_back(p);
      ASSERT_EQ(slab_of(p), s);
      EXPECT_EQ(s->bump, 2 * per_page);
      EXPECT_EQ(prefaulted() - before, on ? 1u : 0u) << "its second page";
      EXPECT_EQ(os::resident_in(reinterpret_cast<void*>(s->start), s->slab_bytes), 2 * kPageSize)
          << "the two pages linked, no more";
      for (void* b : held) hfree(b);
      pages::configure(saved);
    });
  }
}

TEST(HeapSlabs, AnEmptiedSlabIsKeptAsTheSpareAndReused) {
  Peer peer;
  peer.run([] {
    const size_t size = 768;
    const unsigned c = sc::class_of(size);
    void* first = halloc(size);
    Heap* h = heap::tl_heap;
    Span* s = slab_of(first);
    std::vector<void*> mine{first};
    while (s->free_list || s->bump < s->capacity) mine.push_back(halloc(size));
    void* other = halloc(size);  // s is full, a second slab is current
    ASSERT_NE(slab_of(other), s);
    ASSERT_EQ(h->full[c].first(), s);
    for (void* b : mine) hfree(b);
    EXPECT_EQ(h->spare[c], s) << "the emptied slab is kept back";
    EXPECT_EQ(s->used, 0u);
    EXPECT_EQ(h->full[c].first(), nullptr);
    heap::validate_current();
    // Fill the current slab: the next slab is the spare, not a new one.
    Span* cur = slab_of(other);
    std::vector<void*> more{other};
    while (cur->free_list || cur->bump < cur->capacity) more.push_back(halloc(size));
    unsigned made = h->slabs_made[c];
    void* next = halloc(size);
    EXPECT_EQ(slab_of(next), s);
    EXPECT_EQ(h->spare[c], nullptr);
    EXPECT_EQ(h->slabs_made[c], made);
    more.push_back(next);
    for (void* b : more) hfree(b);
  });
}

TEST(HeapSlabs, TheRefillTakesBlocksBackBeforeTouchingFreshPages) {
  Peer owner;
  const size_t size = 256;
  std::vector<void*> a_blocks;
  Span* a = nullptr;
  Span* b = nullptr;
  owner.run([&] {
    void* first = halloc(size);
    a = slab_of(first);
    a_blocks.push_back(first);
    while (a->free_list || a->bump < a->capacity) a_blocks.push_back(halloc(size));
    void* p = halloc(size);  // a is full and marked; b is the current slab
    b = slab_of(p);
    ASSERT_NE(b, a);
    ASSERT_GT(b->capacity, b->bump) << "b has pages not yet touched";
    while (b->free_list) halloc(size);  // b's first page handed out
  });
  ASSERT_EQ(a->is_full, 1);
  void* back = a_blocks[3];
  hfree(back);  // to the owner's delayed list
  const uint32_t b_bump = b->bump;
  void* got = nullptr;
  owner.run([&] {
    got = halloc(size);
    heap::validate_current();
  });
  EXPECT_EQ(got, back) << "the block given back is handed out before a fresh one";
  EXPECT_EQ(b->bump, b_bump) << "no fresh page of the current slab was linked";
  EXPECT_EQ(a->is_full, 0);
}

TEST(HeapSlabsDeathTest, TheValidatorCatchesASlabOnTheWrongList) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        void* p = halloc(112);
        slab_of(p)->is_full = 1;  // claims to be on the full list
        heap::validate_current();
      },
      "slab on the wrong list for its full flag");
  EXPECT_DEATH(
      {
        void* p = halloc(112);
        heap::tl_heap->spare[sc::class_of(112)] = slab_of(p);  // a slab with a live block as the spare
        heap::validate_current();
      },
      "the spare slab is not an empty slab");
}

}  // namespace

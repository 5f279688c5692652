// Thread life cycle: a thread whose first call is a free of another
// thread's block, allocation in pthread key destructors and C++
// thread_local destructors, and thousands of short threads whose blocks
// outlive them.
#include <gtest/gtest.h>

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test_alloc.h"
#include "test_util.h"

namespace {

// Plain pthreads: std::thread would allocate its state before our code runs.
template <class F>
void run_pthread(F f) {
  pthread_t t;
  auto* fp = new F(std::move(f));
  ASSERT_EQ(pthread_create(
                &t, nullptr,
                [](void* a) -> void* {
                  auto* g = static_cast<F*>(a);
                  (*g)();
                  return nullptr;
                },
                fp),
            0);
  ASSERT_EQ(pthread_join(t, nullptr), 0);
  delete fp;
}

TEST(Threads, FirstCallOfAThreadIsFreeOfForeignBlock) {
  for (size_t n : {size_t{24}, size_t{700}, size_t{20000}, 5 * tu::MiB}) {
    void* p = ta::malloc(n);
    ASSERT_NE(p, nullptr);
    tu::fill(p, n, n);
    std::atomic<bool> ok{false};
    run_pthread([&] {
      // The very first allocator call of this thread.
      ta::free(p);
      ok = true;
    });
    EXPECT_TRUE(ok.load());
    // The main thread's heap still works, also for the same size.
    void* q = ta::malloc(n);
    ASSERT_NE(q, nullptr);
    tu::fill(q, n, 1);
    ta::free(q);
  }
}

TEST(Threads, FirstCallOfAThreadIsEachEntryPoint) {
  void* blocks[4];
  for (auto& b : blocks) b = ta::malloc(100);
  std::atomic<int> failures{0};
  auto expect = [&](bool c) { failures += !c; };
  std::vector<std::function<void()>> firsts = {
      [&] { ta::free(nullptr); expect(ta::malloc(0) != nullptr); },
      [&] { expect(ta::usable_size(nullptr) == 0); },
      [&] { expect(ta::usable_size(blocks[0]) >= 100); },
      [&] { expect(ta::owns(blocks[1]) == 1); },
      [&] { void* r = ta::realloc(blocks[2], 5000); expect(r != nullptr); blocks[2] = r; },
      [&] { void* r = ta::calloc(10, 10); expect(r && tu::find_nonzero(r, 100) == SIZE_MAX); ta::free(r); },
      [&] { void* r = ta::aligned_alloc(4096, 4096); expect(r && tu::is_aligned(r, 4096)); ta::free(r); },
      [&] { ta::free_sized(blocks[3], 100); blocks[3] = nullptr; },
      [&] { remalloc_stats_t s; remalloc_stats_get(&s); expect(s.mapped > 0); },
      [&] { expect(remalloc_option_get("stats") >= 0); },
      [&] { ta::trim(0); },
      [&] { expect(ta::realloc(ta::malloc(10), 0) == nullptr); },
  };
  for (auto& f : firsts) run_pthread(f);
  EXPECT_EQ(failures.load(), 0);
  for (auto& b : blocks) ta::free(b);
}

// --- pthread key destructors ---

std::atomic<int> g_key_dtor_runs{0};
std::atomic<int> g_key_dtor_failures{0};
pthread_key_t g_key_early, g_key_late;

void key_destructor(pthread_key_t key, void* v) {
  auto* round = static_cast<uintptr_t*>(v);
  // Allocate, realloc and free while the thread is being torn down (no
  // other allocation here: the process's own malloc may be a sanitizer's,
  // already torn down for this thread).
  void* ps[5] = {};
  const size_t sizes[5] = {16, 300, 5000, 100000, 3 * tu::MiB};
  for (int i = 0; i < 5; ++i) {
    size_t n = sizes[i];
    void* p = ta::malloc(n);
    if (!p) { ++g_key_dtor_failures; continue; }
    tu::fill(p, n, n);
    p = ta::realloc(p, n * 2);
    if (!p || tu::check(p, n, n) != SIZE_MAX) ++g_key_dtor_failures;
    ps[i] = p;
  }
  for (void* p : ps) ta::free(p);
  ++g_key_dtor_runs;
  // Re-arm for another round of destructors (up to the system limit):
  // allocation after remalloc's own thread teardown must work too.
  if (*round < 3) {
    uintptr_t* next = static_cast<uintptr_t*>(ta::malloc(sizeof(uintptr_t)));
    if (!next) { ++g_key_dtor_failures; return; }
    *next = *round + 1;
    pthread_setspecific(key, next);
  }
  ta::free(round);
}
void key_destructor_early(void* v) { key_destructor(g_key_early, v); }
void key_destructor_late(void* v) { key_destructor(g_key_late, v); }

TEST(Threads, AllocationInPthreadKeyDestructors) {
  // Two keys; each destructor re-arms its key for three more rounds, so
  // that some destructors surely run after remalloc's own thread teardown,
  // whatever mechanism and key order it uses.
  ASSERT_EQ(pthread_key_create(&g_key_early, key_destructor_early), 0);
  ASSERT_EQ(pthread_key_create(&g_key_late, key_destructor_late), 0);
  g_key_dtor_runs = 0;
  g_key_dtor_failures = 0;
  for (int i = 0; i < 20; ++i) {
    run_pthread([i] {
      void* warm = ta::malloc(64);  // the thread's heap exists now
      auto* a = static_cast<uintptr_t*>(ta::malloc(sizeof(uintptr_t)));
      auto* b = static_cast<uintptr_t*>(ta::malloc(sizeof(uintptr_t)));
      *a = 0;
      *b = 0;
      pthread_setspecific(g_key_early, a);
      pthread_setspecific(g_key_late, b);
      if (i % 2) ta::free(warm);  // half the threads exit with a live block
    });
  }
  EXPECT_EQ(g_key_dtor_failures.load(), 0);
  EXPECT_EQ(g_key_dtor_runs.load(), 20 * 2 * 4) << "each key's destructor runs 4 rounds per thread";
  pthread_key_delete(g_key_early);
  pthread_key_delete(g_key_late);
}

// --- C++ thread_local destructors ---

std::atomic<int> g_tl_dtor_ok{0};
std::atomic<int> g_tl_dtor_bad{0};

struct TlsUser {
  void* held = nullptr;
  std::string text;
  ~TlsUser() {
    // Runs during thread exit, possibly after remalloc's own per-thread
    // teardown: allocate, grow, check, free.
    void* p = ta::malloc(1000);
    void* big = ta::malloc(2 * tu::MiB + 5);
    if (!p || !big) { ++g_tl_dtor_bad; return; }
    tu::fill(big, 2 * tu::MiB + 5, 9);
    big = ta::realloc(big, 6 * tu::MiB);
    if (!big || tu::check(big, 2 * tu::MiB + 5, 9) != SIZE_MAX) ++g_tl_dtor_bad;
    if (held && tu::check(held, 4000, 4) != SIZE_MAX) ++g_tl_dtor_bad;
    ta::free(held);
    ta::free(p);
    ta::free(big);
    ++g_tl_dtor_ok;
  }
};

thread_local TlsUser tls_user;

TEST(Threads, AllocationInThreadLocalDestructors) {
  g_tl_dtor_ok = 0;
  g_tl_dtor_bad = 0;
  const int n = 16;
  for (int i = 0; i < n; ++i) {
    std::thread t([] {
      tls_user.held = ta::malloc(4000);
      tu::fill(tls_user.held, 4000, 4);
      tls_user.text = std::string(500, 'x');
    });
    t.join();
  }
  EXPECT_EQ(g_tl_dtor_bad.load(), 0);
  EXPECT_EQ(g_tl_dtor_ok.load(), n);
}

// --- thread churn ---

struct Handoff {
  std::mutex m;
  std::vector<std::pair<void*, size_t>> blocks;
};

TEST(Threads, ThousandsOfShortThreads) {
  const int total = static_cast<int>(tu::scaled(3000, 200));
  const int batch = 8;
  Handoff h;
  std::atomic<int> bad{0};
  for (int base = 0; base < total; base += batch) {
    std::vector<std::thread> ts;
    for (int t = 0; t < batch; ++t) {
      ts.emplace_back([&, id = base + t] {
        std::vector<std::pair<void*, size_t>> mine;
        uint64_t r = static_cast<uint64_t>(id) * 7919 + 1;
        // Free some blocks other (dead) threads allocated.
        {
          std::lock_guard<std::mutex> g(h.m);
          for (int k = 0; k < 16 && !h.blocks.empty(); ++k) {
            mine.push_back(h.blocks.back());
            h.blocks.pop_back();
          }
        }
        for (auto& [p, n] : mine) {
          if (tu::check(p, n, reinterpret_cast<uintptr_t>(p)) != SIZE_MAX) ++bad;
          ta::free(p);
        }
        mine.clear();
        for (int k = 0; k < 40; ++k) {
          r = tu::mix64(r);
          size_t n = (r % 10 == 0) ? (r >> 20) % (300 * tu::KiB) : (r >> 20) % 600;
          void* p = ta::malloc(n);
          if (!p) { ++bad; continue; }
          tu::fill(p, n, reinterpret_cast<uintptr_t>(p));
          mine.emplace_back(p, n);
        }
        // Free half here, hand a quarter on, and leak-on-exit a quarter
        // into the shared list (the thread dies with them live).
        for (size_t k = 0; k < mine.size(); ++k) {
          auto [p, n] = mine[k];
          if (k % 2 == 0) {
            if (tu::check(p, n, reinterpret_cast<uintptr_t>(p)) != SIZE_MAX) ++bad;
            ta::free(p);
          } else {
            std::lock_guard<std::mutex> g(h.m);
            h.blocks.emplace_back(p, n);
          }
        }
      });
    }
    for (auto& t : ts) t.join();
  }
  for (auto& [p, n] : h.blocks) {
    EXPECT_EQ(tu::check(p, n, reinterpret_cast<uintptr_t>(p)), SIZE_MAX) << "block of a dead thread damaged";
    ta::free(p);
  }
  EXPECT_EQ(bad.load(), 0);
  // Memory of dead threads is reused, not leaked: the footprint stays small.
  remalloc_stats_t s;
  remalloc_stats_get(&s);
  EXPECT_LT(s.allocated, 512 * tu::MiB);
}

TEST(Threads, HundredsOfThreadsAtOnce) {
  // 256 live threads at the same time, each with its own heap, freeing each
  // other's blocks before they all exit together.
  const int n = static_cast<int>(tu::scaled(256, 32));
  std::vector<std::atomic<void*>> slots(static_cast<size_t>(n));
  for (auto& sl : slots) sl.store(nullptr);
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, nullptr, static_cast<unsigned>(n));
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i) {
    ts.emplace_back([&, i] {
      size_t sz = 16 + static_cast<size_t>(i) * 37 % 5000;
      void* p = ta::malloc(sz);
      tu::fill(p, sz, static_cast<uint64_t>(i));
      slots[static_cast<size_t>(i)].store(p);
      pthread_barrier_wait(&bar);
      // Free the neighbour's block (a remote free to a live heap).
      int j = (i + 1) % n;
      void* q = slots[static_cast<size_t>(j)].exchange(nullptr);
      size_t qsz = 16 + static_cast<size_t>(j) * 37 % 5000;
      if (!q || tu::check(q, qsz, static_cast<uint64_t>(j)) != SIZE_MAX) ++bad;
      ta::free(q);
      for (int k = 0; k < 50; ++k) ta::free(ta::malloc(static_cast<size_t>(k) * 100 + 1));
      pthread_barrier_wait(&bar);
    });
  }
  for (auto& t : ts) t.join();
  pthread_barrier_destroy(&bar);
  EXPECT_EQ(bad.load(), 0);
}

TEST(Threads, ThreadExitWithManyLiveBlocksThenReuse) {
  // Threads that exit leaving many blocks: freeing them later from the main
  // thread and allocating again must reuse the abandoned memory.
  remalloc_stats_t s0, s1;
  for (int round = 0; round < 10; ++round) {
    std::vector<void*> left(2000);
    std::thread t([&] {
      for (size_t i = 0; i < left.size(); ++i) {
        left[i] = ta::malloc(32 + (i % 64) * 16);
        std::memset(left[i], static_cast<int>(i), 32);
      }
    });
    t.join();
    for (size_t i = 0; i < left.size(); ++i) {
      ASSERT_EQ(static_cast<unsigned char*>(left[i])[31], static_cast<unsigned char>(i));
      ta::free(left[i]);
    }
    if (round == 1) remalloc_stats_get(&s0);
  }
  remalloc_stats_get(&s1);
  EXPECT_LE(s1.mapped, s0.mapped + 32 * tu::MiB) << "abandoned heaps are not reused";
}

TEST(Threads, FreesIntoExitedThreadsHeapsGiveTheirSlabsBack) {
  // Producers leave blocks of 24 size classes and exit; freers free them,
  // while the producers run, while they exit and while short threads start
  // (adopting the abandoned heaps), allocate and exit again: frees race with
  // abandonment and adoption. The last blocks are freed after every other
  // thread of the round is gone, so only the freeing threads can give their
  // slabs back. Every block's contents are checked, the heaps validate, and
  // afterwards no exited thread's heap holds a slab.
  static const size_t kSizes[24] = {16,  32,  48,  64,  80,  96,  112,  128,  160,  192,  224,  256,
                                    320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048};
  auto slabs = [] {
    std::string js(1 << 16, '\0');
    js.resize(remalloc_stats_json(js.data(), js.size()));
    return tu::json_number(js, "slabs");
  };
  const int rounds = static_cast<int>(tu::scaled(12, 3));
  const int producers = 6, per_producer = 24 * 40, held_back = 200;
  long long before = slabs();
  ASSERT_GE(before, 0);
  std::atomic<int> bad{0};
  for (int round = 0; round < rounds; ++round) {
    Handoff h;
    h.blocks.reserve(size_t(producers) * per_producer);
    std::atomic<int> producing{producers};
    std::atomic<bool> adopters_done{false};
    std::vector<std::thread> ts;
    for (int t = 0; t < producers; ++t) {
      ts.emplace_back([&, t] {
        uint64_t r = tu::mix64(uint64_t(round) * 131 + uint64_t(t) + 1);
        for (int k = 0; k < per_producer; ++k) {
          r = tu::mix64(r);
          size_t n = kSizes[k % 24] - r % 16;
          void* p = ta::malloc(n);
          if (!p) {
            ++bad;
            continue;
          }
          tu::fill(p, n, reinterpret_cast<uintptr_t>(p));
          std::lock_guard<std::mutex> g(h.m);
          h.blocks.emplace_back(p, n);
        }
        producing.fetch_sub(1);
      });
    }
    auto take_and_free = [&](size_t keep) {
      std::pair<void*, size_t> b;
      {
        std::lock_guard<std::mutex> g(h.m);
        if (h.blocks.size() <= keep) return false;
        // From the middle: blocks of every producer and class, in no order.
        size_t i = h.blocks.size() / 2;
        b = h.blocks[i];
        h.blocks[i] = h.blocks.back();
        h.blocks.pop_back();
      }
      if (tu::check(b.first, b.second, reinterpret_cast<uintptr_t>(b.first)) != SIZE_MAX) ++bad;
      ta::free(b.first);
      return true;
    };
    for (int t = 0; t < 2; ++t) {
      ts.emplace_back([&] {
        // Everything but the last few while other threads come and go...
        while (!adopters_done.load())
          if (!take_and_free(held_back)) std::this_thread::yield();
        // ...and those once they are all gone.
        while (take_and_free(0)) {
        }
      });
    }
    ts.emplace_back([&] {
      // Short threads while the producers exit and a little after: each
      // adopts an abandoned heap, allocates and frees in a few classes.
      for (int k = 0; producing.load() > 0 || k < 8; ++k) {
        std::thread s([k] {
          void* v[6];
          for (int i = 0; i < 6; ++i) v[i] = ta::malloc(kSizes[(k * 5 + i * 4) % 24]);
          for (void* p : v) ta::free(p);
        });
        s.join();
      }
    });
    ts.back().join();
    for (int t = 0; t < producers; ++t) ts[size_t(t)].join();
    adopters_done.store(true);
    for (auto& t : ts)
      if (t.joinable()) t.join();
    EXPECT_TRUE(h.blocks.empty());
  }
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(remalloc_validate(), 0);
  // Only this thread's heap may hold slabs it did not hold before (the
  // override build allocates std::thread's state here).
  EXPECT_LE(slabs(), before + 8) << "slabs of exited threads were not given back";
}

}  // namespace

namespace {

// The "foreign_cached" figure of the JSON statistics.
long foreign_cached_now() {
  static char buf[64 * 1024];
  size_t n = remalloc_stats_json(buf, sizeof buf);
  buf[n < sizeof buf ? n : sizeof buf - 1] = 0;
  const char* k = strstr(buf, "\"foreign_cached\":");
  return k ? strtol(k + strlen("\"foreign_cached\":"), nullptr, 10) : -1;
}

unsigned cpus_of_process() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return unsigned(CPU_COUNT(&set));
}

// More than 8 threads per CPU own heaps while `body` runs (they wait,
// each with a block of its own).
void with_many_threads(const std::function<void()>& body) {
  const int n = int(8 * cpus_of_process()) + 1;
  std::atomic<int> ready{0};
  std::atomic<bool> release{false};
  std::vector<std::thread> parked;
  for (int i = 0; i < n; i++)
    parked.emplace_back([&] {
      void* q = ta::malloc(32);
      ready++;
      while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      ta::free(q);
    });
  while (ready.load() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  body();
  release = true;
  for (auto& t : parked) t.join();
}

}  // namespace

// Past 8 threads owning heaps per CPU, a block freed by a thread that does
// not own its slab stays in that thread's foreign cache (heap/foreign.cpp)
// for its own next allocations: the statistics count it as cached, and it
// goes to its owner when the thread exits. Its contents up to the free are
// the program's; after it is handed out again it is a block like any other.
TEST(Threads, PastEightThreadsPerCpuAFreedForeignBlockIsCachedByItsFreer) {
  with_many_threads([] {
    void* p = ta::malloc(48);
    ASSERT_NE(p, nullptr);
    tu::fill(p, 48, 7);
    const long before = foreign_cached_now();
    ASSERT_GE(before, 0);
    long cached = -1;
    std::thread([&] {
      void* mine = ta::malloc(48);  // this thread's first refill of the class opens its list
      EXPECT_EQ(tu::check(p, 48, 7), SIZE_MAX);
      ta::free(p);
      cached = foreign_cached_now();
      ta::free(mine);
    }).join();
    EXPECT_EQ(cached, before + 1);
    EXPECT_EQ(foreign_cached_now(), before) << "sent home when the thread exited";
    EXPECT_EQ(remalloc_validate(), 0);
  });
}

// A second free of a block in a foreign cache is a double free, also by
// its owner, which cannot see the block on its own lists (the cached mark
// tells it).
TEST(ThreadsDeathTest, PastEightThreadsPerCpuTheOwnersFreeOfACachedBlockAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(with_many_threads([] {
                 void* p = ta::malloc(48);
                 std::atomic<int> step{0};
                 std::thread freer([&] {
                   void* mine = ta::malloc(48);
                   ta::free(p);  // cached here
                   step = 1;
                   while (step.load() != 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
                   ta::free(mine);
                 });
                 while (step.load() != 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
                 ta::free(p);  // the owner
                 step = 2;
                 freer.join();
               }),
               "double free");
}

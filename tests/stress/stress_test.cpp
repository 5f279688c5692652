// Multithreaded stress: threads exchange blocks through shared slots with
// atomic exchanges, so that most frees are remote. Every block carries a
// header (size, cookie) and a pattern derived from its address and cookie,
// checked before it is reallocated or freed.
#include <gtest/gtest.h>

#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "test_alloc.h"
#include "test_util.h"

namespace {

struct Header {
  uint64_t size;    // bytes including the header
  uint64_t cookie;  // random per block
};

uint64_t seed_of(const void* p, uint64_t cookie) { return reinterpret_cast<uintptr_t>(p) ^ cookie; }

void* make_block(size_t size, uint64_t cookie) {
  if (size < sizeof(Header)) size = sizeof(Header);
  void* p = ta::malloc(size);
  if (!p) return nullptr;
  auto* h = static_cast<Header*>(p);
  h->size = size;
  h->cookie = cookie;
  tu::fill_range(p, sizeof(Header), size, seed_of(p, cookie));
  return p;
}

// Returns an empty string when the block is intact, else a description.
std::string verify_block(const void* p) {
  const auto* h = static_cast<const Header*>(p);
  size_t bad = tu::check_range(p, sizeof(Header), h->size, seed_of(p, h->cookie));
  if (bad == SIZE_MAX) {
    if (ta::usable_size(p) < h->size) return "usable size shrank below the block size";
    return {};
  }
  return "block " + tu::hex(p) + " size " + std::to_string(h->size) + " damaged at offset " + std::to_string(bad);
}

size_t pick_size(uint64_t r) {
  if (r % 256 == 0) return 256 * tu::KiB + (r >> 20) % (2 * tu::MiB);  // large
  if (r % 64 < 3) return 4 * tu::KiB + (r >> 20) % (64 * tu::KiB);     // medium
  return 16 + (r >> 20) % 1024;                                         // small
}

struct Shared {
  std::vector<std::atomic<void*>> slots;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ops{0};
  std::atomic<int> failures{0};
  std::string first_failure;
  std::atomic<bool> have_failure{false};
  explicit Shared(size_t n) : slots(n) {
    for (auto& s : slots) s.store(nullptr);
  }
  void fail(const std::string& what) {
    ++failures;
    bool expected = false;
    if (have_failure.compare_exchange_strong(expected, true)) first_failure = what;
  }
};

void worker(Shared& sh, int id, uint64_t max_ops) {
  uint64_t r = tu::mix64(static_cast<uint64_t>(id) + 1);
  std::vector<void*> local;
  for (uint64_t i = 0; i < max_ops && !sh.stop.load(std::memory_order_relaxed); ++i) {
    r = tu::mix64(r);
    size_t size = pick_size(r);
    void* mine = make_block(size, r);
    if (!mine) {
      sh.fail("malloc(" + std::to_string(size) + ") failed");
      return;
    }
    // Swap into a random slot; whatever was there came from any thread.
    size_t slot = (r >> 8) % sh.slots.size();
    void* got = sh.slots[slot].exchange(mine, std::memory_order_acq_rel);
    if (got) {
      std::string e = verify_block(got);
      if (!e.empty()) {
        sh.fail(e);
        return;
      }
      uint64_t action = (r >> 16) % 8;
      if (action == 0) {
        // Realloc a foreign block: contents survive, then re-pattern.
        auto* h = static_cast<Header*>(got);
        uint64_t old_size = h->size, cookie = h->cookie;
        size_t new_size = pick_size(tu::mix64(r));
        if (new_size < sizeof(Header)) new_size = sizeof(Header);
        void* q = ta::realloc(got, new_size);
        if (!q) {
          sh.fail("realloc failed");
          return;
        }
        // The old pattern was keyed by the old address: check the kept
        // prefix against it, then rewrite the block for its new address.
        size_t keep = old_size < new_size ? old_size : new_size;
        if (tu::check_range(q, sizeof(Header), keep, seed_of(got, cookie)) != SIZE_MAX) {
          sh.fail("realloc " + std::to_string(old_size) + " -> " + std::to_string(new_size) + " lost contents");
          return;
        }
        h = static_cast<Header*>(q);
        h->size = new_size;
        tu::fill_range(q, sizeof(Header), new_size, seed_of(q, cookie));
        local.push_back(q);
      } else if (action == 1) {
        local.push_back(got);  // keep a while, free later (locally)
      } else {
        ta::free(got);
      }
    }
    if (local.size() > 64 || (local.size() > 0 && (r >> 24) % 16 == 0)) {
      size_t k = (r >> 28) % local.size();
      std::string e = verify_block(local[k]);
      if (!e.empty()) {
        sh.fail(e);
        return;
      }
      ta::free(local[k]);
      local[k] = local.back();
      local.pop_back();
    }
    sh.ops.fetch_add(1, std::memory_order_relaxed);
  }
  for (void* p : local) {
    std::string e = verify_block(p);
    if (!e.empty()) sh.fail(e);
    ta::free(p);
  }
}

// Every worker does all its operations (a slow machine takes longer, it does
// not do less); a failing worker stops the others.
void run_stress(int threads, size_t slots, uint64_t ops_per_thread) {
  Shared sh(slots);
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) ts.emplace_back(worker, std::ref(sh), i, ops_per_thread);
  while (sh.ops.load() < ops_per_thread * threads && !sh.have_failure.load())
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (sh.have_failure.load()) sh.stop = true;
  for (auto& t : ts) t.join();
  for (auto& s : sh.slots) {
    void* p = s.exchange(nullptr);
    if (!p) continue;
    std::string e = verify_block(p);
    if (!e.empty()) sh.fail(e);
    ta::free(p);
  }
  EXPECT_EQ(sh.failures.load(), 0) << sh.first_failure;
  EXPECT_EQ(sh.ops.load(), ops_per_thread * threads) << "workers stopped early";
  testing::Test::RecordProperty("ops", std::to_string(sh.ops.load()));
}

TEST(Stress, ExchangeSlots4Threads) { run_stress(4, 256, tu::scaled(150000, 5000)); }

TEST(Stress, ExchangeSlots8ThreadsFewSlots) { run_stress(8, 16, tu::scaled(60000, 3000)); }

// More than 8 threads per CPU: the threads keep blocks of others' slabs they
// free in their foreign caches and hand them out again (heap/foreign.cpp).
TEST(Stress, ExchangeSlotsEightThreadsPerCpuAndMore) {
  cpu_set_t set;
  CPU_ZERO(&set);
  unsigned cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? unsigned(CPU_COUNT(&set)) : 1;
  int threads = int(8 * cpus) + 4;
  run_stress(threads, 128, tu::scaled(480000, 24000) / uint64_t(threads));
}

TEST(Stress, ConcurrentLargeReallocs) {
  // Threads grow and shrink their own large blocks concurrently (page-heap
  // moves under contention), handing some of them to the next thread.
  const int threads = 4;
  const int rounds = static_cast<int>(tu::scaled(300, 20));
  std::vector<std::atomic<void*>> mailbox(threads);
  for (auto& m : mailbox) m.store(nullptr);
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  for (int id = 0; id < threads; ++id) {
    ts.emplace_back([&, id] {
      uint64_t r = tu::mix64(id + 100);
      void* p = nullptr;
      for (int i = 0; i < rounds; ++i) {
        r = tu::mix64(r);
        size_t n = 64 * tu::KiB + (r >> 16) % (24 * tu::MiB);
        if (p) {
          auto* h = static_cast<Header*>(p);
          size_t old = h->size;
          uint64_t cookie = h->cookie;
          void* q = ta::realloc(p, n);
          if (!q) { ++failures; return; }
          size_t keep = old < n ? old : n;
          if (tu::check_range(q, sizeof(Header), keep, seed_of(p, cookie)) != SIZE_MAX) { ++failures; return; }
          h = static_cast<Header*>(q);
          h->size = n;
          tu::fill_range(q, sizeof(Header), n, seed_of(q, cookie));
          p = q;
        } else {
          p = make_block(n, r);
          if (!p) { ++failures; return; }
        }
        if (i % 7 == 3) {  // hand the block to the next thread
          void* got = mailbox[(id + 1) % threads].exchange(p);
          p = mailbox[id].exchange(nullptr);
          if (got) {
            if (!verify_block(got).empty()) ++failures;
            ta::free(got);
          }
          if (p && !verify_block(p).empty()) { ++failures; return; }
        }
      }
      if (p) {
        if (!verify_block(p).empty()) ++failures;
        ta::free(p);
      }
    });
  }
  for (auto& t : ts) t.join();
  for (auto& m : mailbox) {
    void* p = m.exchange(nullptr);
    if (p) {
      EXPECT_EQ(verify_block(p), "");
      ta::free(p);
    }
  }
  EXPECT_EQ(failures.load(), 0);
}

TEST(Stress, ProducerConsumerAllRemoteFrees) {
  // One thread allocates, others free: every free is remote.
  const size_t total = tu::scaled(400000, 20000);
  const int consumers = 3;
  std::vector<std::atomic<void*>> ring(1024);
  for (auto& s : ring) s.store(nullptr);
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  for (int c = 0; c < consumers; ++c) {
    ts.emplace_back([&, c] {
      size_t i = static_cast<size_t>(c);
      for (;;) {
        void* p = ring[i % ring.size()].exchange(nullptr);
        if (p) {
          if (!verify_block(p).empty()) ++failures;
          ta::free(p);
        } else if (done.load()) {
          bool any = false;
          for (auto& s : ring) any |= s.load() != nullptr;
          if (!any) return;
        }
        i += consumers;
      }
    });
  }
  uint64_t r = 42;
  for (size_t i = 0; i < total; ++i) {
    r = tu::mix64(r);
    void* p = make_block(16 + (r >> 20) % 2000, r);
    ASSERT_NE(p, nullptr);
    void* old = ring[i % ring.size()].exchange(p);
    if (old) {  // consumers lag: free it here (a local free of our own block)
      EXPECT_EQ(verify_block(old), "");
      ta::free(old);
    }
  }
  done = true;
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace

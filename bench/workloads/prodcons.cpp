// prodcons: producer/consumer pairs. Each producer allocates blocks of random
// size, fills them and pushes them through a bounded single-producer,
// single-consumer ring to its consumer, which checks and frees them: every
// free is remote. THREADS/2 pairs (at least one).
#include <atomic>
#include <thread>
#include <vector>

#include "common.h"

namespace {

struct Item {
  void* p;
  size_t n;
};

class Ring {
 public:
  explicit Ring(size_t cap) : slots_(cap), mask_(cap - 1) {}
  bool push(Item x) {
    size_t h = head_.load(std::memory_order_relaxed);
    if (h - tail_cache_ > mask_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (h - tail_cache_ > mask_) return false;
    }
    slots_[h & mask_] = x;
    head_.store(h + 1, std::memory_order_release);
    return true;
  }
  bool pop(Item& x) {
    size_t t = tail_.load(std::memory_order_relaxed);
    if (t == head_cache_) {
      head_cache_ = head_.load(std::memory_order_acquire);
      if (t == head_cache_) return false;
    }
    x = slots_[t & mask_];
    tail_.store(t + 1, std::memory_order_release);
    return true;
  }

 private:
  std::vector<Item> slots_;
  size_t mask_;
  alignas(64) std::atomic<size_t> head_{0};
  size_t tail_cache_ = 0;  // producer's view of tail
  alignas(64) std::atomic<size_t> tail_{0};
  size_t head_cache_ = 0;  // consumer's view of head
};

// Spin a little, then give the core away: the machine may have fewer cores
// than threads.
inline void backoff(unsigned& spins) {
  if (++spins < 64) {
    __builtin_ia32_pause();
  } else {
    spins = 0;
    std::this_thread::yield();
  }
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args a = wl::parse_args(argc, argv);
  const int pairs = a.threads / 2 > 0 ? a.threads / 2 : 1;
  const size_t per_pair = wl::pick<size_t>(a, 50000, 1000000, 20000000) / static_cast<size_t>(pairs);
  std::vector<Ring*> rings;
  for (int i = 0; i < pairs; i++) rings.push_back(new Ring(4096));
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};

  auto producer = [&](int i) {
    wl::Rng r(a.seed * 7919 + static_cast<uint64_t>(i));
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    unsigned spins = 0;
    for (size_t k = 0; k < per_pair; k++) {
      Item x;
      x.n = r.below(8) ? r.range(16, 256) : r.range(257, 4096);
      x.p = wl::xmalloc(x.n);
      wl::fill(x.p, x.n);
      while (!rings[static_cast<size_t>(i)]->push(x)) backoff(spins);
    }
    while (!rings[static_cast<size_t>(i)]->push(Item{nullptr, 0})) backoff(spins);
  };
  auto consumer = [&](int i) {
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    unsigned spins = 0;
    for (;;) {
      Item x;
      if (!rings[static_cast<size_t>(i)]->pop(x)) { backoff(spins); continue; }
      if (!x.p) break;
      wl::check(x.p, x.n);
      free(x.p);
    }
  };

  std::vector<std::thread> th;
  for (int i = 0; i < pairs; i++) {
    th.emplace_back(producer, i);
    th.emplace_back(consumer, i);
  }
  while (ready.load() < 2 * pairs) std::this_thread::yield();
  double t0 = wl::now();
  go.store(true, std::memory_order_release);
  for (auto& x : th) x.join();
  double t1 = wl::now();
  for (Ring* r : rings) delete r;

  long long total = static_cast<long long>(per_pair) * pairs;
  wl::Result("prodcons", a)
      .num("region_seconds", t1 - t0)
      .integer("pairs", pairs)
      .integer("remote_frees", total)
      .num("mallocs_per_second", static_cast<double>(total) / (t1 - t0))
      .print();
  return 0;
}

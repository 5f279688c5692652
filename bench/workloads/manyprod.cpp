// manyprod: one consumer frees for many producers. P producer threads (the
// rows use 8 and 32, on any number of cores) allocate blocks of mixed sizes
// (16 B .. 4 KiB, log-uniform), fill them and push each onto the one
// consumer's lock-free inbox; the consumer takes the whole inbox at once,
// checks every block and frees it: every free is remote, and all of them
// land on one thread. At most 16,384 blocks are in flight (a producer
// yields above that). Total blocks are the same for any P (500k; full 10M,
// tiny 20k). Counts and bytes must match.
#include <thread>
#include <vector>

#include "xfree.h"

namespace {
constexpr long kInFlight = 16384;
}

int main(int argc, char** argv) {
  wl::Args a = wl::parse_args(argc, argv);
  const size_t P = static_cast<size_t>(a.threads);
  const size_t total = wl::pick<size_t>(a, 20000, 500000, 10000000) / P * P;
  xf::Inbox inbox;
  std::atomic<long> in_flight{0};
  std::atomic<uint64_t> made_bytes{0};
  std::atomic<size_t> ready{0};
  std::atomic<bool> go{false};

  auto producer = [&](size_t self) {
    wl::Rng r(a.seed * 613 + self);
    uint64_t bytes = 0;
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    for (size_t i = 0; i < total / P; i++) {
      while (in_flight.load(std::memory_order_relaxed) >= kInFlight) std::this_thread::yield();
      size_t n = xf::mixed_size(r);
      inbox.push(xf::make(n));
      in_flight.fetch_add(1, std::memory_order_relaxed);
      bytes += n;
    }
    made_bytes.fetch_add(bytes);
  };

  std::vector<std::thread> producers;
  for (size_t i = 0; i < P; i++) producers.emplace_back(producer, i);
  while (ready.load() < P) std::this_thread::yield();
  uint64_t freed = 0, freed_bytes = 0, takes = 0;
  double t0 = wl::now();
  go.store(true, std::memory_order_release);
  while (freed < total) {  // this thread is the consumer
    xf::Block* b = inbox.take();
    if (!b) {
      std::this_thread::yield();
      continue;
    }
    uint64_t before = freed;
    xf::free_chain(b, freed, freed_bytes);
    in_flight.fetch_sub(static_cast<long>(freed - before), std::memory_order_relaxed);
    takes++;
  }
  for (auto& th : producers) th.join();
  double t1 = wl::now();
  if (inbox.take() != nullptr || freed_bytes != made_bytes.load()) {
    fprintf(stderr, "FAILED: made %llu bytes, freed %llu blocks (%llu bytes)\n",
            (unsigned long long)made_bytes.load(), (unsigned long long)freed,
            (unsigned long long)freed_bytes);
    return 3;
  }
  wl::Result("manyprod", a)
      .num("region_seconds", t1 - t0)
      .integer("producers", static_cast<long long>(P))
      .integer("blocks", static_cast<long long>(freed))
      .integer("bytes", static_cast<long long>(freed_bytes))
      .integer("takes", static_cast<long long>(takes))
      .print();
  return 0;
}

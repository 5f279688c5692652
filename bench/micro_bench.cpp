// Microbenchmarks of the malloc family, run under each allocator through
// LD_PRELOAD (this binary never links remalloc):
//   BM_MallocFree/SIZE       one malloc/free pair, 16 B to 1 MiB
//   BM_BatchAllocFree/SIZE   1000 blocks of SIZE allocated, then all freed
//   BM_ProducerConsumer/SIZE two threads: thread 0 allocates and hands
//                            blocks over a ring, thread 1 frees them (all
//                            frees remote)
// Every pointer goes through benchmark::DoNotOptimize and the first byte of
// each block is written, so no call can be elided.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

void BM_MallocFree(benchmark::State& st) {
  const size_t n = static_cast<size_t>(st.range(0));
  for (auto _ : st) {
    char* p = static_cast<char*>(malloc(n));
    benchmark::DoNotOptimize(p);
    p[0] = 1;
    benchmark::ClobberMemory();
    free(p);
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_MallocFree)->RangeMultiplier(4)->Range(16, 1 << 20);

void BM_BatchAllocFree(benchmark::State& st) {
  const size_t n = static_cast<size_t>(st.range(0));
  constexpr size_t kBatch = 1000;
  std::vector<char*> blocks(kBatch);
  for (auto _ : st) {
    for (size_t i = 0; i < kBatch; i++) {
      blocks[i] = static_cast<char*>(malloc(n));
      benchmark::DoNotOptimize(blocks[i]);
      blocks[i][0] = 1;
    }
    benchmark::ClobberMemory();
    for (size_t i = 0; i < kBatch; i++) free(blocks[i]);
  }
  st.SetItemsProcessed(static_cast<int64_t>(st.iterations() * kBatch));
}
BENCHMARK(BM_BatchAllocFree)->RangeMultiplier(8)->Range(16, 64 << 10);

// A single-producer, single-consumer ring shared by the two threads of
// BM_ProducerConsumer. Both threads run the same number of iterations, so
// the ring is empty again when a run ends.
class Ring {
 public:
  bool push(void* p) {
    size_t h = head_.load(std::memory_order_relaxed);
    if (h - tail_.load(std::memory_order_acquire) == kCap) return false;
    slots_[h % kCap] = p;
    head_.store(h + 1, std::memory_order_release);
    return true;
  }
  void* pop() {
    size_t t = tail_.load(std::memory_order_relaxed);
    if (t == head_.load(std::memory_order_acquire)) return nullptr;
    void* p = slots_[t % kCap];
    tail_.store(t + 1, std::memory_order_release);
    return p;
  }

 private:
  static constexpr size_t kCap = 1024;
  void* slots_[kCap] = {};
  alignas(64) std::atomic<size_t> head_{0};
  alignas(64) std::atomic<size_t> tail_{0};
};

Ring g_ring;

void wait_a_little(unsigned& spins) {
  if (++spins < 64) return;
  spins = 0;
  std::this_thread::yield();  // the machine may have fewer cores than threads
}

void BM_ProducerConsumer(benchmark::State& st) {
  const size_t n = static_cast<size_t>(st.range(0));
  unsigned spins = 0;
  if (st.thread_index() == 0) {
    for (auto _ : st) {
      char* p = static_cast<char*>(malloc(n));
      benchmark::DoNotOptimize(p);
      p[0] = 1;
      while (!g_ring.push(p)) wait_a_little(spins);
    }
  } else {
    for (auto _ : st) {
      void* p;
      while ((p = g_ring.pop()) == nullptr) wait_a_little(spins);
      benchmark::DoNotOptimize(p);
      free(p);
    }
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_ProducerConsumer)->Arg(64)->Arg(1024)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

// Helpers of the heap/ component tests: a peer thread that runs steps on
// request (so two threads can drive a protocol one step at a time, the peer
// keeping its heap between steps), and allocation through the small heaps'
// own entry points (no api layer, no override: the test framework uses the
// C library's allocator).
#pragma once
#include <gtest/gtest.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "heap/internal.h"

namespace heaptest {

using namespace remalloc;

inline void* halloc(size_t n) {
  if (void* p = heap::malloc_fast(n)) return p;
  return heap::malloc_slow(n);
}

// free() of a small block as the api layer does it.
inline void hfree(void* p) {
  Span* s = pages::span_of(p);
  ASSERT_TRUE(s && heap::is_block(s, p)) << "not a small block: " << p;
  heap::free_small(s, p);
}

inline Span* slab_of(const void* p) { return pages::span_of(p); }
inline void* next_of(const void* b) { return pages::link_load(b); }
// The head of slab s's remote list (or 1: marked full), and its count.
inline uintptr_t remote_of(const Span* s) {
  return s->remote.load(std::memory_order_acquire) & heap::kRemotePtrMask;
}
inline uint32_t remote_n(const Span* s) { return heap::remote_count(s->remote.load(std::memory_order_acquire)); }
inline uintptr_t addr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// A thread that runs the steps it is given, one at a time, and waits in
// between; its heap lives until stop() (thread exit runs the heap's
// teardown: it is abandoned).
class Peer {
 public:
  Peer() : thread_([this] { loop(); }) {}
  ~Peer() { stop(); }
  // Runs f on the peer and returns when it is done.
  void run(std::function<void()> f) {
    std::unique_lock<std::mutex> l(m_);
    job_ = std::move(f);
    cv_.notify_all();
    cv_.wait(l, [this] { return !job_; });
  }
  Heap* heap() {
    Heap* h = nullptr;
    run([&] { h = heap::tl_heap; });
    return h;
  }
  void stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> l(m_);
      quit_ = true;
      cv_.notify_all();
    }
    thread_.join();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> l(m_);
    for (;;) {
      cv_.wait(l, [this] { return quit_ || job_; });
      if (job_) {
        job_();
        job_ = nullptr;
        cv_.notify_all();
        continue;
      }
      return;
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool quit_ = false;
  std::thread thread_;
};

// Records what the heaps report as invalid frees instead of aborting.
struct InvalidLog {
  static inline const void* last_p = nullptr;
  static inline const char* last_what = nullptr;
  static inline int count = 0;
  static void on_invalid(const void* p, const char* what) {
    last_p = p;
    last_what = what;
    count++;
  }
  InvalidLog() {
    saved_ = heap::g_on_invalid;
    heap::g_on_invalid = on_invalid;
    last_p = nullptr;
    last_what = nullptr;
    count = 0;
  }
  ~InvalidLog() { heap::g_on_invalid = saved_; }

 private:
  void (*saved_)(const void*, const char*);
};

}  // namespace heaptest

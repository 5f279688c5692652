// base: futex slow paths of Mutex.
#include "base/lock.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace remalloc {

static long futex(std::atomic<uint32_t>* addr, int op, uint32_t val) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), op | FUTEX_PRIVATE_FLAG, val,
                 nullptr, nullptr, 0);
}

__thread char tl_lock_self;

void Mutex::lock_slow() {
  // The forking thread, between remalloc's atfork handlers, already holds
  // every fork-held lock: another handler that allocates must not wait.
  if (fork_owner_.load(std::memory_order_relaxed) == &tl_lock_self) return;
  for (int i = 0; i < 100; i++) {
    cpu_relax();
    uint32_t expected = 0;
    if (state_.load(std::memory_order_relaxed) == 0 &&
        state_.compare_exchange_weak(expected, 1, std::memory_order_acquire,
                                     std::memory_order_relaxed))
      return;
  }
  // Mark contended and sleep until it is free.
  while (state_.exchange(2, std::memory_order_acquire) != 0) futex(&state_, FUTEX_WAIT, 2);
}

void Mutex::wake() { futex(&state_, FUTEX_WAKE, 1); }

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, uint64_t timeout_ns) {
  struct timespec ts;
  struct timespec* tp = nullptr;
  if (timeout_ns != ~uint64_t{0}) {
    ts.tv_sec = time_t(timeout_ns / 1000000000u);
    ts.tv_nsec = long(timeout_ns % 1000000000u);
    tp = &ts;
  }
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT | FUTEX_PRIVATE_FLAG, expected, tp,
          nullptr, 0);
}

void futex_wake(std::atomic<uint32_t>* word) { futex(word, FUTEX_WAKE, 1); }

}  // namespace remalloc

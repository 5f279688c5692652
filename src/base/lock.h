// base: a small mutex on a futex (spins briefly, then sleeps) and a spin
// lock. Both are constant-initialised (zero is unlocked), never allocate, and
// can be re-initialised in a fork child.
#pragma once
#include <atomic>

#include "base/base.h"

namespace remalloc {

// Set on the thread that runs fork(): from remalloc's prepare handler until
// its parent or child handler. While set, the Mutexes that handler took
// (fork_held) count as held by this thread, so other atfork handlers that
// run in between (the program's own, in any order) may allocate.
extern __thread bool tl_fork_holder;

class Mutex {
 public:
  constexpr Mutex() = default;
  RM_INLINE void lock() {
    uint32_t expected = 0;
    if (RM_LIKELY(state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                                  std::memory_order_relaxed)))
      return;
    lock_slow();
  }
  RM_INLINE bool try_lock() {
    uint32_t expected = 0;
    return state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }
  RM_INLINE void unlock() {
    if (RM_UNLIKELY(fork_held_.load(std::memory_order_relaxed)) && tl_fork_holder) return;
    if (RM_UNLIKELY(state_.exchange(0, std::memory_order_release) == 2)) wake();
  }
  // fork: the prepare handler takes the lock for the forking thread, which
  // may then use what it guards (lock/unlock are no-ops for it) until the
  // parent handler releases it or the child handler resets it.
  void fork_acquire() {
    lock();
    fork_held_.store(true, std::memory_order_relaxed);
  }
  void fork_release() {
    fork_held_.store(false, std::memory_order_relaxed);
    unlock();
  }
  // In a fork child: the lock was taken by the prepare handler of the
  // thread that forked; the child has only that thread, so reset it.
  void reset_in_child() {
    fork_held_.store(false, std::memory_order_relaxed);
    state_.store(0, std::memory_order_relaxed);
  }

 private:
  void lock_slow();
  void wake();
  // 0 unlocked, 1 locked, 2 locked with waiters.
  std::atomic<uint32_t> state_{0};
  // Held by the fork prepare handler on behalf of the forking thread
  // (tl_fork_holder); only that thread treats it as its own.
  std::atomic<bool> fork_held_{false};
};

class LockGuard {
 public:
  explicit LockGuard(Mutex& m) : m_(m) { m_.lock(); }
  ~LockGuard() { m_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  Mutex& m_;
};

RM_INLINE void cpu_relax() { __builtin_ia32_pause(); }

// Futex wait and wake on a word (process-private). futex_wait returns when
// *word != expected, when woken, or after timeout_ns (~0: no timeout).
void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, uint64_t timeout_ns);
void futex_wake(std::atomic<uint32_t>* word);

}  // namespace remalloc

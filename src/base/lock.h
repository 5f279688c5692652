// base: a small mutex on a futex (spins briefly, then sleeps) and a spin
// lock. Both are constant-initialised (zero is unlocked), never allocate, and
// can be re-initialised in a fork child.
#pragma once
#include <atomic>

#include "base/base.h"

namespace remalloc {

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
    if (RM_UNLIKELY(state_.exchange(0, std::memory_order_release) == 2)) wake();
  }
  // In a fork child: the lock was taken by the prepare handler of the
  // thread that forked; the child has only that thread, so reset it.
  void reset_in_child() { state_.store(0, std::memory_order_relaxed); }

 private:
  void lock_slow();
  void wake();
  // 0 unlocked, 1 locked, 2 locked with waiters.
  std::atomic<uint32_t> state_{0};
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

}  // namespace remalloc

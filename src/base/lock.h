// base: a small mutex on a futex (spins briefly, then sleeps) and a spin
// lock. Both are constant-initialised (zero is unlocked), never allocate, and
// can be re-initialised in a fork child.
#pragma once
#include <atomic>

#include "base/base.h"

namespace remalloc {

// A byte per thread whose address names the thread (Mutex::held_by_me, and
// the thread a Mutex is held for across fork: Mutex::fork_acquire).
extern __thread char tl_lock_self;
// Builds with internal assertions (REMALLOC_DEBUG >= 2: the checked, ASan
// and TSan builds) record which thread holds each Mutex, so functions that
// need a lock can assert that the caller holds it.
constexpr bool kTrackLockOwner = REMALLOC_DEBUG >= 2;

class Mutex {
 public:
  constexpr Mutex() = default;
  RM_INLINE void lock() {
    uint32_t expected = 0;
    if (RM_UNLIKELY(!state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                                     std::memory_order_relaxed)))
      lock_slow();
    if constexpr (kTrackLockOwner) owner_.store(&tl_lock_self, std::memory_order_relaxed);
  }
  RM_INLINE bool try_lock() {
    uint32_t expected = 0;
    bool ok = state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                             std::memory_order_relaxed);
    if (kTrackLockOwner && ok) owner_.store(&tl_lock_self, std::memory_order_relaxed);
    return ok;
  }
  RM_INLINE void unlock() {
    if (RM_UNLIKELY(fork_owner_.load(std::memory_order_relaxed) == &tl_lock_self)) return;
    if constexpr (kTrackLockOwner) owner_.store(nullptr, std::memory_order_relaxed);
    if (RM_UNLIKELY(state_.exchange(0, std::memory_order_release) == 2)) wake();
  }
  // Does the calling thread hold the lock? Only builds with internal
  // assertions know (kTrackLockOwner); others answer true. For
  // RM_ASSERT_INTERNAL at the top of functions that need the lock.
  bool held_by_me() const {
    if constexpr (!kTrackLockOwner) return true;
    if (fork_owner_.load(std::memory_order_relaxed) == &tl_lock_self) return true;
    return owner_.load(std::memory_order_relaxed) == &tl_lock_self;
  }
  // fork: the prepare handler takes the lock for the forking thread, which
  // may then use what it guards (lock/unlock are no-ops for it: the
  // program's atfork handlers that run between remalloc's may allocate)
  // until the parent handler releases it or the child handler resets it.
  // The lock knows *which* thread it is held for: another thread that
  // forks at the same time waits in its own prepare handler. (It was a
  // flag plus a per-thread "I am forking" bit, set before the locks were
  // taken: a second forking thread found the flag of the first and the bit
  // of its own, took the lock for held and went on; the first one's parent
  // handler then unlocked it under the second. Fork.SpawnFromManyThreads,
  // checked build: "assertion failed: lock_.held_by_me()".)
  void fork_acquire() {
    lock();
    fork_owner_.store(&tl_lock_self, std::memory_order_relaxed);
  }
  void fork_release() {
    fork_owner_.store(nullptr, std::memory_order_relaxed);
    unlock();
  }
  // In a fork child: the lock was taken by the prepare handler of the
  // thread that forked; the child has only that thread, so reset it.
  void reset_in_child() {
    fork_owner_.store(nullptr, std::memory_order_relaxed);
    owner_.store(nullptr, std::memory_order_relaxed);
    state_.store(0, std::memory_order_relaxed);
  }

 private:
  void lock_slow();
  void wake();
  // 0 unlocked, 1 locked, 2 locked with waiters.
  std::atomic<uint32_t> state_{0};
  // The forking thread's tl_lock_self while the prepare handler holds the
  // lock for it (null otherwise); only that thread treats it as its own.
  std::atomic<const char*> fork_owner_{nullptr};
  // The holder's tl_lock_self (kTrackLockOwner builds only; else null).
  std::atomic<const char*> owner_{nullptr};
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

// api: the background purger thread (see background.h).
#include "api/background.h"

#include <pthread.h>
#include <signal.h>

#include "base/lock.h"
#include "pages/page_heap.h"

namespace remalloc::background {

bool g_enabled = false;
std::atomic<int> g_state{0};
static std::atomic<size_t> g_wakeups{0};

bool work_pending() { return pages::purge_work_seen(); }

static void* thread_main(void*) {
  pthread_setname_np(pthread_self(), "remalloc-purge");
  pages::set_background(true);
  while (g_enabled) {
    uint32_t seq;
    uint64_t wait = pages::background_step(&seq);
    if (wait == 0) continue;  // more due now: next batch (the lock was let go)
    futex_wait(pages::background_word(), seq, wait);
    g_wakeups.fetch_add(1, std::memory_order_relaxed);
  }
  pages::set_background(false);
  g_state.store(0, std::memory_order_release);
  return nullptr;
}

void start() {
  int expected = 0;
  if (!g_state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) return;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  // The thread inherits a mask with every signal blocked: no handler of the
  // program ever runs on it.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  int rc = pthread_create(&t, &attr, thread_main, nullptr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  // On failure (EAGAIN under RLIMIT_NPROC, a seccomp filter...) stay in
  // state 1: the calls go on purging by themselves, and no later call
  // retries a start that cannot succeed.
  if (rc == 0) g_state.store(2, std::memory_order_release);
}

void configure(bool enabled) {
  g_enabled = enabled;
  if (!enabled && g_state.load(std::memory_order_acquire) == 2) {
    std::atomic<uint32_t>* w = pages::background_word();
    w->fetch_add(1, std::memory_order_release);
    futex_wake(w);
  }
}

void fork_child() { g_state.store(0, std::memory_order_relaxed); }

bool running() { return g_state.load(std::memory_order_acquire) == 2; }
size_t wakeups() { return g_wakeups.load(std::memory_order_relaxed); }

}  // namespace remalloc::background

// prof: stack capture for sampled allocations. Never allocates, never takes a
// lock that an allocator call may hold.
//
// First a frame-pointer walk from the capture's own frame: every remalloc
// function between the program and here has a frame pointer and lies in the
// remalloc_text section (RM_PROF_ENTRY), so the walk passes through them to
// the program's frames; leading return addresses inside that section are
// remalloc's and are dropped. The walk reads only inside the thread's stack:
// [current frame, top of the stack) where the top is __libc_stack_end for the
// main thread and the thread's descriptor (glibc puts it at the top of the
// stack it allocates) for the others; frame addresses must grow, by at most
// 1 MiB a frame, and each return address must lie in a loaded object
// (_dl_find_object, glibc 2.35: lock-free, no allocation). A stack further
// from its top than the stack limit allows (a coroutine's, a signal stack)
// yields only the first program frame, which remalloc's own frames give.
//
// Code built without frame pointers (most distributions' packages) breaks the
// walk after its first frame. When the walk gives fewer than two program
// frames without reaching the end of the chain, _Unwind_Backtrace (libgcc's
// unwinder, a weak reference: present when the process has libgcc_s, as every
// C++ program does) is used instead, once warmed up: its first call, made
// outside remalloc's initialisation with this thread's re-entry guard set,
// initialises what libgcc initialises lazily. On glibc 2.35+ it finds unwind
// tables with _dl_find_object, so it takes no loader lock (the trap of
// gperftools #1159 and jemalloc #1438, #2505); on older systems it takes the
// loader lock, which remalloc never holds and never waits for while holding
// one of its own.
#include <dlfcn.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <unwind.h>

#include <atomic>

#include "prof/internal.h"

#pragma weak _Unwind_Backtrace
#pragma weak _Unwind_GetIP
#pragma weak _dl_find_object

extern "C" {
// The linker's bounds of the section of RM_PROF_ENTRY functions.
extern char __start_remalloc_text[] __attribute__((visibility("hidden")));
extern char __stop_remalloc_text[] __attribute__((visibility("hidden")));
// The stack pointer at process start (ld.so): the top of the main stack.
extern void* __libc_stack_end;
}

namespace remalloc::prof {

static RM_INLINE bool in_remalloc(uintptr_t ra) {
  // ra - 1: a call that ends the section returns just past it.
  return ra - 1 - reinterpret_cast<uintptr_t>(__start_remalloc_text) <
         uintptr_t(__stop_remalloc_text - __start_remalloc_text);
}

static RM_INLINE bool is_code(uintptr_t ra) {
  if (!_dl_find_object) return ra > 4096;
  struct dl_find_object r;
  return _dl_find_object(reinterpret_cast<void*>(ra - 1), &r) == 0;
}

// The top of this thread's stack, and how far below it a frame may lie.
static __thread uintptr_t tl_stack_hi;
static std::atomic<size_t> g_stack_limit{0};

static uintptr_t stack_hi() {
  if (RM_LIKELY(tl_stack_hi)) return tl_stack_hi;
  uintptr_t hi = syscall(SYS_gettid) == getpid() ? reinterpret_cast<uintptr_t>(__libc_stack_end)
                                                 : reinterpret_cast<uintptr_t>(pthread_self());
  tl_stack_hi = hi;
  return hi;
}

static size_t stack_limit() {
  size_t l = g_stack_limit.load(std::memory_order_relaxed);
  if (RM_LIKELY(l)) return l;
  struct rlimit rl;
  l = size_t(8) << 20;
  if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > l) l = rl.rlim_cur;
  if (l > (size_t(1) << 30)) l = size_t(1) << 30;
  g_stack_limit.store(l, std::memory_order_relaxed);
  return l;
}

// 0 not tried, 1 warming up (some thread), 2 ready, 3 unavailable.
static std::atomic<int> g_unwinder{0};

static _Unwind_Reason_Code warm_cb(struct _Unwind_Context*, void*) { return _URC_END_OF_STACK; }

static bool unwinder_ready() {
  int st = g_unwinder.load(std::memory_order_acquire);
  if (RM_LIKELY(st >= 2)) return st == 2;
  if (st == 1) return false;  // another thread warms it up; walk with frame pointers meanwhile
  if (!_Unwind_Backtrace || !_Unwind_GetIP) {
    g_unwinder.store(3, std::memory_order_release);
    return false;
  }
  int expected = 0;
  if (!g_unwinder.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) return false;
  _Unwind_Backtrace(warm_cb, nullptr);
  g_unwinder.store(2, std::memory_order_release);
  return true;
}

struct UnwindState {
  uintptr_t* out;
  int n, max;
  bool skipping;
};

static _Unwind_Reason_Code unwind_cb(struct _Unwind_Context* ctx, void* arg) {
  UnwindState* s = static_cast<UnwindState*>(arg);
  uintptr_t ip = _Unwind_GetIP(ctx);
  if (!ip) return _URC_END_OF_STACK;
  if (s->skipping && in_remalloc(ip)) return _URC_NO_REASON;
  s->skipping = false;
  s->out[s->n++] = ip;
  return s->n == s->max ? _URC_END_OF_STACK : _URC_NO_REASON;
}

RM_PROF_ENTRY int capture(uintptr_t* out, int max, bool* unwinder) {
  *unwinder = false;
  int mode = config().unwind;
  int n = 0;
  bool complete = false;
  if (mode != kUnwindLibgcc || !unwinder_ready()) {
    uintptr_t fp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
    uintptr_t hi = stack_hi();
    bool foreign = hi <= fp || hi - fp > stack_limit();
    if (foreign) hi = ~uintptr_t(0);
    bool skipping = true;
    while (n < max) {
      const uintptr_t* f = reinterpret_cast<const uintptr_t*>(fp);
      uintptr_t next = f[0], ra = f[1];
      if (skipping && in_remalloc(ra)) {
        // remalloc's own frame: its frame pointer was set by remalloc.
      } else {
        if (!is_code(ra)) break;
        skipping = false;
        out[n++] = ra;
        if (foreign) break;  // the program's frame pointer may be anything
      }
      if (next == 0) {
        complete = true;
        break;
      }
      if (next <= fp || next - fp > (size_t(1) << 20) || (next & 7) || next + 16 > hi) break;
      fp = next;
    }
    g_fp_walks.fetch_add(1, std::memory_order_relaxed);
    if (mode == kUnwindFp || n >= 2 || n == max || complete || !unwinder_ready()) return n;
  }
  UnwindState s{out, 0, max, true};
  _Unwind_Backtrace(unwind_cb, &s);
  g_unwinder_walks.fetch_add(1, std::memory_order_relaxed);
  *unwinder = true;
  if (s.n == 0) return n;  // the unwinder found nothing: keep what the walk found
  return s.n;
}

}  // namespace remalloc::prof

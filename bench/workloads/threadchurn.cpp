// threadchurn: threads that come and go. N threads (full 1000, short 250,
// tiny 20) live at once, each holding 160 KiB of small blocks in 24 size
// classes (16 B .. 2 KiB); they exit without freeing; this thread frees every
// block (checking it), calls malloc_trim(0), and N more threads start, each
// allocating and freeing a few blocks, and exit.
//
// Reports the time of the whole (region_seconds) and of each phase, RSS
// after each step, and the overhead of a live thread: what the process
// held per live thread beyond the thread's payload and its stack (the
// stack's share is measured first, with N threads that allocate nothing).
#include <malloc.h>
#include <pthread.h>
#include <sys/mman.h>

#include "common.h"

namespace {

constexpr int kClasses = 24;
constexpr size_t kSizes[kClasses] = {16,  32,  48,  64,  80,  96,  112,  128,  160,  192,  224,  256,
                                     320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048};
constexpr size_t kPayload = 160 * 1024;

// Every block: word 0 links to the thread's next block, in allocation
// order (the order they are freed in), word 1 holds its size, the fill
// pattern the rest.
void** g_heads;
pthread_barrier_t g_live, g_go;

void* holder(void* arg) {
  void** slot = static_cast<void**>(arg);
  void* head = nullptr;
  void** tail = &head;
  for (int c = 0; c < kClasses; c++) {
    size_t n = kSizes[c];
    for (size_t i = 0; i < kPayload / kClasses / n; i++) {
      void** b = static_cast<void**>(wl::xmalloc(n));
      b[0] = nullptr;
      b[1] = reinterpret_cast<void*>(n);
      if (n > 16) wl::fill(b + 2, n - 16);
      *tail = b;
      tail = b;
    }
  }
  *slot = head;
  pthread_barrier_wait(&g_live);
  pthread_barrier_wait(&g_go);
  return nullptr;
}

void* bare(void*) {
  pthread_barrier_wait(&g_live);
  pthread_barrier_wait(&g_go);
  return nullptr;
}

void* passer(void*) {
  void* v[8];
  for (int i = 0; i < 8; i++) {
    size_t n = kSizes[i * 3];
    v[i] = wl::xmalloc(n);
    wl::fill(v[i], n);
  }
  for (int i = 0; i < 8; i++) {
    wl::check(v[i], kSizes[i * 3]);
    free(v[i]);
  }
  return nullptr;
}

// n threads of fn live at once; the RSS (KiB) while they all live.
long live_together(pthread_t* th, size_t n, void* (*fn)(void*)) {
  pthread_barrier_init(&g_live, nullptr, unsigned(n) + 1);
  pthread_barrier_init(&g_go, nullptr, unsigned(n) + 1);
  for (size_t t = 0; t < n; t++)
    if (pthread_create(&th[t], nullptr, fn, &g_heads[t])) {
      fprintf(stderr, "FAILED: pthread_create\n");
      _exit(4);
    }
  pthread_barrier_wait(&g_live);
  long rss = wl::read_rss().rss_kib;
  pthread_barrier_wait(&g_go);
  for (size_t t = 0; t < n; t++) pthread_join(th[t], nullptr);
  pthread_barrier_destroy(&g_live);
  pthread_barrier_destroy(&g_go);
  return rss;
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args a = wl::parse_args(argc, argv);
  const size_t n = wl::pick<size_t>(a, 20, 250, 1000);
  // Bookkeeping outside the allocator, so that it sees only the blocks.
  size_t book = n * (sizeof(pthread_t) + sizeof(void*));
  void* mem = mmap(nullptr, book, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) wl::oom("mmap", book);
  pthread_t* th = static_cast<pthread_t*>(mem);
  g_heads = reinterpret_cast<void**>(th + n);
  free(wl::xmalloc(1));  // the allocator's start-up in the base
  long base = wl::read_rss().rss_kib;

  double t0 = wl::now();
  long bare_live = live_together(th, n, bare);
  long bare_after = wl::read_rss().rss_kib;
  long live = live_together(th, n, holder);
  double t_live = wl::now();
  long exited = wl::read_rss().rss_kib;

  // Free in allocation order, each block's pattern checked first.
  for (size_t t = 0; t < n; t++) {
    for (void** b = static_cast<void**>(g_heads[t]); b;) {
      void** next = static_cast<void**>(b[0]);
      size_t sz = reinterpret_cast<size_t>(b[1]);
      if (sz < 16 || sz > kSizes[kClasses - 1]) wl::die("size word overwritten", b, sz, 8);
      if (sz > 16) wl::check(b + 2, sz - 16);
      free(b);
      b = next;
    }
  }
  double t_freed = wl::now();
  long freed = wl::read_rss().rss_kib;
  malloc_trim(0);
  long trimmed = wl::read_rss().rss_kib;

  double t_again0 = wl::now();
  for (size_t t = 0; t < n; t++)
    if (pthread_create(&th[t], nullptr, passer, nullptr)) {
      fprintf(stderr, "FAILED: pthread_create\n");
      _exit(4);
    }
  for (size_t t = 0; t < n; t++) pthread_join(th[t], nullptr);
  double t_again = wl::now();
  long again = wl::read_rss().rss_kib;

  long stack = (bare_live - bare_after) / long(n);
  long overhead = (live - bare_after) / long(n) - long(kPayload / 1024) - stack;
  wl::Result("threadchurn", a)
      .num("region_seconds", (t_freed - t0) + (t_again - t_again0))
      .num("live_seconds", t_live - t0)
      .num("free_seconds", t_freed - t_live)
      .num("again_seconds", t_again - t_again0)
      .integer("thread_count", long(n))
      .integer("overhead_kib_per_thread", overhead)
      .integer("stack_kib_per_thread", stack)
      .integer("base_kib", base)
      .integer("live_kib", live)
      .integer("exited_kib", exited)
      .integer("freed_kib", freed)
      .integer("trimmed_kib", trimmed)
      .integer("again_kib", again)
      .print();
  return 0;
}

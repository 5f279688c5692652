/* Threads that come and go (issue 15, part 3): a plain C program run with
 * nothing preloaded (glibc) or under LD_PRELOAD of the allocator under test.
 *
 *   threads_come_go [N]      (N = 1000 by default)
 *
 *   1. N threads that allocate nothing live at once: their stacks' cost.
 *   2. N threads live at once, each holding small blocks of 24 size
 *      classes, 160 KiB of payload, linked through their first word.
 *   3. They exit without freeing.
 *   4. This thread frees every block (each block's pattern checked first).
 *   5. malloc_trim(0).
 *   6. N more threads start and exit, each allocating and freeing a little.
 *
 * Prints one line of "key=value" fields: RSS in KiB after each step
 * (base_kib, live_kib, exited_kib, freed_kib, trimmed_kib, again_kib),
 * stack_kib_per_thread (step 1), overhead_kib_per_thread (what a live
 * thread of step 2 held beyond its payload and its stack), and, under
 * remalloc, the heaps it made and its resident metadata (-1 elsewhere).
 * Exits 1 when a block's contents were wrong, 2 when a call failed. */
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NSIZES 24
static const size_t kSizes[NSIZES] = {16,  32,  48,  64,  80,  96,  112,  128,  160,  192,  224,  256,
                                      320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048};
#define PAYLOAD (160 * 1024)

static int g_statm = -1;
static size_t rss_kib(void) {
  char buf[128];
  if (g_statm < 0) g_statm = open("/proc/self/statm", O_RDONLY);
  ssize_t n = pread(g_statm, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  buf[n] = 0;
  char* p = buf;
  while (*p && *p != ' ') p++;
  return (size_t)strtoul(p, NULL, 10) * ((size_t)sysconf(_SC_PAGESIZE) / 1024);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static long long stat_of(const char* key) {
  size_t (*stats_json)(char*, size_t) = (size_t(*)(char*, size_t))dlsym(RTLD_DEFAULT, "remalloc_stats_json");
  if (!stats_json) return -1;
  static char js[1 << 16];
  stats_json(js, sizeof js);
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char* at = strstr(js, pat);
  return at ? atoll(at + strlen(pat)) : -1;
}

/* Every block: word 0 links to the thread's next block (in allocation
 * order, the order they are freed in: glibc's heaps then shrink as they
 * empty), word 1 holds a value derived from the block's address and size,
 * checked before free. */
static uintptr_t tag(const void* p, size_t size) { return ((uintptr_t)p * 0x9e3779b97f4a7c15ull) ^ size; }

static void** g_heads;  /* per thread of step 2: its list of blocks */
static pthread_barrier_t g_live, g_go;

static void fail(const char* what) {
  fprintf(stderr, "threads_come_go: %s\n", what);
  exit(2);
}

static void* holder(void* arg) {
  size_t t = (size_t)arg;
  uintptr_t* head = NULL;
  uintptr_t* tail = NULL;
  for (int c = 0; c < NSIZES; c++) {
    size_t sz = kSizes[c], n = PAYLOAD / NSIZES / sz;
    for (size_t i = 0; i < n; i++) {
      uintptr_t* b = (uintptr_t*)malloc(sz);
      if (!b) fail("malloc failed");
      b[0] = 0;
      b[1] = tag(b, sz);
      if (tail)
        tail[0] = (uintptr_t)b;
      else
        head = b;
      tail = b;
    }
  }
  g_heads[t] = head;
  pthread_barrier_wait(&g_live);  /* all N live with their blocks */
  pthread_barrier_wait(&g_go);    /* measured: exit without freeing */
  return NULL;
}

static void* bare(void* arg) {
  (void)arg;
  pthread_barrier_wait(&g_live);
  pthread_barrier_wait(&g_go);
  return NULL;
}

static void* passer(void* arg) {
  (void)arg;
  void* v[8];
  for (int i = 0; i < 8; i++) {
    v[i] = malloc(kSizes[i * 3]);
    if (!v[i]) fail("malloc failed");
    memset(v[i], i, kSizes[i * 3]);
  }
  for (int i = 0; i < 8; i++) free(v[i]);
  return NULL;
}

/* N threads of `fn` live at once; returns RSS (KiB) while they all live. */
static size_t live_together(pthread_t* th, size_t n, void* (*fn)(void*)) {
  if (pthread_barrier_init(&g_live, NULL, (unsigned)n + 1) || pthread_barrier_init(&g_go, NULL, (unsigned)n + 1))
    fail("pthread_barrier_init failed");
  for (size_t t = 0; t < n; t++)
    if (pthread_create(&th[t], NULL, fn, (void*)t)) fail("pthread_create failed");
  pthread_barrier_wait(&g_live);
  size_t rss = rss_kib();
  pthread_barrier_wait(&g_go);
  for (size_t t = 0; t < n; t++) pthread_join(th[t], NULL);
  pthread_barrier_destroy(&g_live);
  pthread_barrier_destroy(&g_go);
  return rss;
}

int main(int argc, char** argv) {
  size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
  if (n < 1) n = 1;
  /* Bookkeeping outside the allocator, so that it sees only the blocks. */
  pthread_t* th = (pthread_t*)mmap(NULL, n * sizeof(pthread_t) + n * sizeof(void*), PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (th == MAP_FAILED) fail("mmap failed");
  g_heads = (void**)(th + n);
  memset(th, 0, n * sizeof(pthread_t) + n * sizeof(void*));
  free(malloc(1)); /* the allocator's own start-up in the base */
  size_t base = rss_kib();

  double t0 = now_s();
  size_t bare_live = live_together(th, n, bare);
  size_t bare_after = rss_kib();
  size_t live = live_together(th, n, holder);
  double t_live = now_s();
  size_t exited = rss_kib();

  size_t bad = 0, blocks = 0;
  for (size_t t = 0; t < n; t++) {
    for (uintptr_t* b = (uintptr_t*)g_heads[t]; b;) {
      uintptr_t* next = (uintptr_t*)b[0];
      size_t sz = 0;
      for (int c = 0; c < NSIZES && !sz; c++)
        if (b[1] == tag(b, kSizes[c])) sz = kSizes[c];
      if (!sz) bad++;
      free(b);
      blocks++;
      b = next;
    }
  }
  double t_freed = now_s();
  size_t freed = rss_kib();
  malloc_trim(0);
  size_t trimmed = rss_kib();
  long long heaps_before = stat_of("heaps");

  double t_again0 = now_s();
  for (size_t t = 0; t < n; t++)
    if (pthread_create(&th[t], NULL, passer, NULL)) fail("pthread_create failed");
  for (size_t t = 0; t < n; t++) pthread_join(th[t], NULL);
  double t_again = now_s();
  size_t again = rss_kib();

  long stack = bare_live > base ? (long)(bare_live - bare_after) / (long)n : 0;
  long overhead = ((long)live - (long)bare_after) / (long)n - (long)(PAYLOAD / 1024) - stack;
  printf("threads=%zu blocks=%zu bad=%zu base_kib=%zu live_kib=%zu exited_kib=%zu freed_kib=%zu trimmed_kib=%zu "
         "again_kib=%zu stack_kib_per_thread=%ld overhead_kib_per_thread=%ld live_seconds=%.3f free_seconds=%.3f "
         "again_seconds=%.3f heaps_after_trim=%lld heaps=%lld metadata_kib=%lld\n",
         n, blocks, bad, base, live, exited, freed, trimmed, again, stack, overhead, t_live - t0, t_freed - t_live,
         t_again - t_again0, heaps_before, stat_of("heaps"), stat_of("metadata") < 0 ? -1 : stat_of("metadata") / 1024);
  return bad ? 1 : 0;
}

/* Idle return, fork with the purger thread, and a churn burst under a
 * memory limit: a plain C program run under LD_PRELOAD of the allocator
 * under test (remalloc, or jemalloc/mimalloc for the record).
 *
 *   idle MiB [trim|small]
 *                     allocate MiB in 64 KiB..8 MiB blocks (small: in
 *                     blocks of 16 B..4 KiB), touch, free all; then no
 *                     allocator call (or one malloc_trim(0)) while
 *                     RSS is polled: prints "back_ms=N" once RSS is within
 *                     16 MiB of the RSS before, exit 0; exit 1 if it is not
 *                     back after 30 s (IDLE_BURST_MAX_WAIT seconds if set).
 *   forkfree MiB      builds MiB of small blocks, forks; the child frees
 *                     them all and nothing else, and must see its RSS
 *                     come back like idle's (the thread started by frees
 *                     that empty slabs).
 *   fork MiB          the same burst, then fork while the purger thread
 *                     runs; the child does a burst of its own and must see
 *                     its RSS come back too; the parent then too.
 *   bounded N         frees N small blocks, waits 30 ms (IDLE_BURST_WAIT_MS),
 *                     then prints the most that
 *                     one malloc(300000) or free purged (remalloc's stats)
 *                     and the longest such call.
 *   churn LIMIT_MiB   rounds of touched blocks, each round's larger than
 *                     the last's and pinned apart, freed at the end of the
 *                     round: live memory stays under 60% of LIMIT while 3x
 *                     LIMIT is allocated; prints "churn_ok ...".
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <dlfcn.h>
#include <sys/mman.h>

static int g_statm = -1;
static size_t rss(void) {
  char buf[128];
  if (g_statm < 0) g_statm = open("/proc/self/statm", O_RDONLY);
  ssize_t n = pread(g_statm, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  buf[n] = 0;
  char* p = buf;
  while (*p && *p != ' ') p++;
  return (size_t)strtoul(p, NULL, 10) * (size_t)sysconf(_SC_PAGESIZE);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static unsigned long long g_rng = 0x9e3779b97f4a7c15ull;
static unsigned long long rnd(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return g_rng;
}

static long long stat_of(const char* key);

static void* g_blocks[65536];

static void burst(size_t mib) {
  size_t total = mib << 20, got = 0, n = 0;
  while (got < total && n < 65536) {
    size_t sz = (size_t)64 << 10 << (rnd() % 8);
    char* p = (char*)malloc(sz);
    if (!p) {
      fprintf(stderr, "malloc(%zu) failed\n", sz);
      exit(3);
    }
    for (size_t i = 0; i < sz; i += 4096) p[i] = 1;
    g_blocks[n++] = p;
    got += sz;
  }
  for (size_t i = 0; i < n; i++) free(g_blocks[i]);
}

/* Small blocks only, 16 B..4 KiB, MiB in all, touched: the freed memory
 * reaches the page heap as whole slabs emptied by free(), never through a
 * large free. The array of pointers is mapped directly so that the
 * allocator sees only the blocks. */
static void** small_alloc(size_t mib, size_t* count) {
  size_t total = mib << 20, got = 0, n = 0, cap = total / 16;
  void** blocks = (void**)mmap(NULL, cap * sizeof(void*), PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (blocks == MAP_FAILED) exit(3);
  while (got < total && n < cap) {
    size_t sz = (size_t)16 << (rnd() % 9);
    char* p = (char*)malloc(sz);
    if (!p) {
      fprintf(stderr, "malloc(%zu) failed\n", sz);
      exit(3);
    }
    memset(p, 1, sz);
    blocks[n++] = p;
    got += sz;
  }
  *count = n;
  return blocks;
}

static void small_free(void** blocks, size_t n, size_t mib) {
  for (size_t i = 0; i < n; i++) free(blocks[i]);
  munmap(blocks, (mib << 20) / 16 * sizeof(void*));
}

/* Polls without allocator calls; returns seconds until RSS <= limit, or -1. */
static double g_max_wait = 30;
static double wait_back(size_t limit, double since) {
  while (now_s() - since < g_max_wait) {
    if (rss() <= limit) return now_s() - since;
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  return -1;
}

static int idle(size_t mib, int trim, const char* who) {
  size_t base = rss();
  if (trim == 2) {
    size_t n;
    void** blocks = small_alloc(mib, &n);
    small_free(blocks, n, mib);
  } else {
    burst(mib);
  }
  double t0 = now_s();
  size_t after = rss();
  if (trim == 1) malloc_trim(0);
  size_t after_trim = rss();
  double back = wait_back(base + ((size_t)16 << 20), t0);
  /* Under remalloc, whether this process runs a purger thread. */
  long long bg = stat_of("bg_running");
  printf("%s: base_mib=%zu after_free_mib=%zu after_trim_mib=%zu back_ms=%.0f bg_running=%lld\n", who,
         base >> 20, after >> 20, after_trim >> 20, back * 1e3, bg);
  fflush(stdout);
  return back < 0 ? 1 : 0;
}

static int do_fork(size_t mib) {
  if (idle(mib, 0, "parent-before")) return 1;
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return 4;
  if (pid == 0) {
    /* The child allocates (the heap works) and must return its own pages.
       (/proc/self was resolved when the parent opened statm.) */
    close(g_statm);
    g_statm = -1;
    int rc = idle(mib, 0, "child");
    _exit(rc);
  }
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return 5;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    printf("child failed: status %d\n", st);
    return 6;
  }
  return idle(mib, 0, "parent-after");
}

/* A fork child that only frees: the parent builds MiB of small blocks and
 * forks; the child frees them all (no other allocator call, so only those
 * frees can start its purger thread) and must see its RSS come back. */
static int fork_free(size_t mib) {
  size_t base = rss();
  size_t n;
  void** blocks = small_alloc(mib, &n);
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return 4;
  if (pid == 0) {
    close(g_statm);
    g_statm = -1;
    size_t before = rss();
    small_free(blocks, n, mib);
    double t0 = now_s();
    size_t after = rss();
    double back = wait_back(base + ((size_t)16 << 20), t0);
    long long bg = stat_of("bg_running");
    printf("child: base_mib=%zu before_free_mib=%zu after_free_mib=%zu back_ms=%.0f bg_running=%lld\n",
           base >> 20, before >> 20, after >> 20, back * 1e3, bg);
    fflush(stdout);
    _exit(back < 0 ? 1 : 0);
  }
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return 5;
  small_free(blocks, n, mib);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 6;
}

static int churn(size_t limit_mib) {
  /* Rounds of holes that never fit the next round: each round allocates
   * blocks of a larger size than the last, each followed by a small pinned
   * block (so freed neighbours cannot merge), touches them, then frees the
   * big ones. Live memory stays under 60% of the limit; an allocator that
   * keeps every freed page for a while holds round after round of holes. */
  size_t limit = limit_mib << 20, allocated = 0, pinned = 0;
  size_t pin_size = (size_t)68 << 10;
  static void* big[4096];
  int round = 0;
  while (allocated < 3 * limit) {
    size_t sz = (limit / 32) * (size_t)(round + 1) + ((size_t)4 << 10);
    size_t n = 0, live = pinned;
    while (live + sz + pin_size <= limit / 10 * 6 && n < 4096) {
      char* p = (char*)malloc(sz);
      char* pin = (char*)malloc(pin_size);
      if (!p || !pin) {
        printf("malloc returned NULL\n");
        return 2;
      }
      memset(p, 1, sz);
      pin[0] = 1;
      big[n++] = p;
      live += sz + pin_size;
      pinned += pin_size;
      allocated += sz;
    }
    if (n == 0) break;
    for (size_t i = 0; i < n; i++) free(big[i]);
    round++;
  }
  printf("churn_ok rounds=%d allocated_mib=%zu rss_mib=%zu\n", round, allocated >> 20, rss() >> 20);
  return 0;
}

/* Under remalloc, a number from its JSON statistics (-1 otherwise). */
static long long stat_of(const char* key) {
  static size_t (*stats_json)(char*, size_t);
  if (!stats_json) stats_json = (size_t(*)(char*, size_t))dlsym(RTLD_DEFAULT, "remalloc_stats_json");
  if (!stats_json) return -1;
  static char js[8192];
  stats_json(js, sizeof js);
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char* at = strstr(js, pat);
  return at ? atoll(at + strlen(pat)) : -1;
}

/* Frees N small blocks, waits 30 ms, then makes single malloc(300000) /
 * free calls: prints the most any one call purged (from remalloc's
 * purged_bytes) and the longest call (for the record). */
static int bounded(size_t n) {
  void** v = (void**)malloc(n * sizeof(void*));
  for (size_t i = 0; i < n; i++) {
    v[i] = malloc(16 + rnd() % 241);
    memset(v[i], 1, 16);
  }
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
  long wait_ms = getenv("IDLE_BURST_WAIT_MS") ? atol(getenv("IDLE_BURST_WAIT_MS")) : 30;
  struct timespec ts = {wait_ms / 1000, (wait_ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  long long most = 0, total = 0;
  double longest = 0;
  for (int i = 0; i < 200; i++) {
    long long before = stat_of("purged_bytes");
    double a = now_s();
    void* p = malloc(300000);
    double b = now_s();
    ((volatile char*)p)[0] = 1;
    long long mid = stat_of("purged_bytes");
    double c = now_s();
    free(p);
    double d = now_s();
    long long after = stat_of("purged_bytes");
    if (mid - before > most) most = mid - before;
    if (after - mid > most) most = after - mid;
    total += after - before;
    if (b - a > longest) longest = b - a;
    if (d - c > longest) longest = d - c;
  }
  printf("bounded: most_purged_by_one_call_kib=%lld purged_total_kib=%lld longest_call_ms=%.3f\n", most >> 10,
         total >> 10, longest * 1e3);
  return 0;
}

int main(int argc, char** argv) {
  if (getenv("IDLE_BURST_MAX_WAIT")) g_max_wait = atof(getenv("IDLE_BURST_MAX_WAIT"));
  if (argc >= 3 && strcmp(argv[1], "bounded") == 0) return bounded((size_t)atol(argv[2]));
  if (argc >= 3 && strcmp(argv[1], "idle") == 0)
    return idle((size_t)atol(argv[2]),
                argc < 4 ? 0 : strcmp(argv[3], "trim") == 0 ? 1 : strcmp(argv[3], "small") == 0 ? 2 : 0,
                "idle");
  if (argc >= 3 && strcmp(argv[1], "fork") == 0) return do_fork((size_t)atol(argv[2]));
  if (argc >= 3 && strcmp(argv[1], "forkfree") == 0) return fork_free((size_t)atol(argv[2]));
  if (argc >= 3 && strcmp(argv[1], "churn") == 0) return churn((size_t)atol(argv[2]));
  fprintf(stderr, "usage: idle_burst idle MiB [trim] | fork MiB | churn LIMIT_MiB\n");
  return 2;
}

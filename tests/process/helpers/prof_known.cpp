// Heap profiling, from the program's side (tests/process/prof_test.cpp runs
// it; linked against libremalloc.so, built with frame pointers and -rdynamic
// so that dladdr names its functions).
//
//   prof_known shares DIR      REMALLOC_PROF=1, REMALLOC_PROF_SAMPLE=16384:
//       five known functions allocate known amounts (malloc, calloc, a large
//       malloc, operator new[], posix_memalign), keep a known share live and
//       free the rest; writes DIR/shares.heap, reads it back, scales each line
//       as the viewers do and compares each function's live and total bytes
//       with what it allocated. The bound is 5 standard deviations of the
//       estimate: a block of s bytes is sampled with probability
//       p = 1 - exp(-s/mean), independently of the others, so the estimate
//       (samples x s/p) of n blocks has relative deviation sqrt((1-p)/(n p));
//       five blocks are added to the bound for functions whose every block
//       is almost surely sampled (there a miss is a rare, Poisson event).
//       Prints one line per function and check ("expect NAME live|total
//       EXPECTED BOUND ESTIMATE") for the viewer test, then "shares ok" or
//       what failed.
//   prof_known moves DIR       REMALLOC_PROF_SAMPLE=1 (every block sampled):
//       realloc moves (a block grown from 256 KiB to 64 MiB past a blocker),
//       shrinks, reallocs of sampled small blocks, frees and profiling turned
//       off and on; each step's profile is checked exactly.
//   prof_known leak DIR        known_leak keeps 16 blocks of 1 MiB to the end.
//   prof_known stress DIR LIB  threads allocating and freeing (also each
//       other's blocks), a thread that dlopens LIB (its constructor
//       allocates) and closes it, one that writes profiles, one that turns
//       profiling and the unwinder on and off, and fork children that
//       allocate, write a profile and exit. Prints "stress ok".
#include <dlfcn.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>
#include <unwind.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "remalloc/remalloc.h"

#define KNOWN extern "C" __attribute__((noinline, visibility("default")))

namespace {

constexpr size_t KiB = 1024, MiB = 1024 * 1024;

// ---- reading a profile -------------------------------------------------------------
struct Line {
  unsigned long long lo, lb, ao, ab;
  uintptr_t frames[64];
  int depth;
};
constexpr int kMaxLines = 4096;
Line g_lines[kMaxLines];
int g_nlines;
unsigned long long g_period;

bool read_profile(const char* path) {
  FILE* f = fopen(path, "r");
  if (!f) {
    printf("cannot open %s\n", path);
    return false;
  }
  static char buf[1 << 16];
  g_nlines = 0;
  bool ok = fgets(buf, sizeof buf, f) &&
            sscanf(buf, "heap profile: %*u: %*u [%*u: %*u] @ heap_v2/%llu", &g_period) == 1;
  if (!ok) printf("%s: bad header: %s\n", path, buf);
  while (ok && fgets(buf, sizeof buf, f)) {
    if (buf[0] == '\n') break;
    Line& l = g_lines[g_nlines];
    int used = 0;
    if (sscanf(buf, " %llu: %llu [%llu: %llu] @%n", &l.lo, &l.lb, &l.ao, &l.ab, &used) != 4) {
      printf("%s: bad line: %s\n", path, buf);
      ok = false;
      break;
    }
    l.depth = 0;
    for (char* p = buf + used; l.depth < 64;) {
      char* end;
      unsigned long long a = strtoull(p, &end, 16);
      if (end == p) break;
      l.frames[l.depth++] = uintptr_t(a);
      p = end;
    }
    if (++g_nlines == kMaxLines) break;
  }
  bool maps = false;
  while (ok && fgets(buf, sizeof buf, f))
    if (strcmp(buf, "MAPPED_LIBRARIES:\n") == 0) maps = true;
  fclose(f);
  if (ok && !maps) printf("%s: no MAPPED_LIBRARIES section\n", path);
  return ok && maps;
}

const char* name_of(uintptr_t pc) {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(pc), &info) && info.dli_sname) return info.dli_sname;
  return "?";
}

// Live or total bytes of the lines whose first frame is in `fn` (and, when
// given, whose second frame is in `caller`), scaled as the viewers scale them.
double estimate(const char* fn, bool live, const char* caller = nullptr, unsigned long long* raw_objs = nullptr) {
  double sum = 0;
  if (raw_objs) *raw_objs = 0;
  for (int i = 0; i < g_nlines; i++) {
    const Line& l = g_lines[i];
    if (l.depth == 0 || strcmp(name_of(l.frames[0]), fn) != 0) continue;
    if (caller && (l.depth < 2 || strcmp(name_of(l.frames[1] - 1), caller) != 0)) continue;
    double n = double(live ? l.lo : l.ao), b = double(live ? l.lb : l.ab);
    if (raw_objs) *raw_objs += live ? l.lo : l.ao;
    if (n == 0) continue;
    sum += b / (1 - exp(-(b / n) / double(g_period)));
  }
  return sum;
}

// Raw (unscaled) live objects and bytes, and total objects and bytes, of the
// lines whose first frame is in `fn`.
void raw(const char* fn, unsigned long long* lo, unsigned long long* lb, unsigned long long* ao,
         unsigned long long* ab) {
  *lo = *lb = *ao = *ab = 0;
  for (int i = 0; i < g_nlines; i++) {
    const Line& l = g_lines[i];
    if (l.depth == 0 || strcmp(name_of(l.frames[0]), fn) != 0) continue;
    *lo += l.lo;
    *lb += l.lb;
    *ao += l.ao;
    *ab += l.ab;
  }
}

}  // namespace

// ---- shares ---------------------------------------------------------------------------
static void* volatile g_sink;
static void* g_kept[200000];
static size_t g_nkept;

static void keep_or_free(void* p, size_t i, size_t every, bool is_new) {
  if (i % every == 0) {
    g_kept[g_nkept++] = p;
  } else if (is_new) {
    delete[] static_cast<char*>(p);
  } else {
    free(p);
  }
}

KNOWN void known_malloc(size_t n, size_t size, size_t every) {
  for (size_t i = 0; i < n; i++) {
    void* p = malloc(size);
    memset(p, 1, 16);
    keep_or_free(p, i, every, false);
  }
}
KNOWN void known_calloc(size_t n, size_t size, size_t every) {
  for (size_t i = 0; i < n; i++) {
    void* p = calloc(1, size);
    keep_or_free(p, i, every, false);
  }
}
KNOWN void known_large(size_t n, size_t size, size_t every) {
  for (size_t i = 0; i < n; i++) {
    void* p = malloc(size);
    memset(p, 2, 64);
    keep_or_free(p, i, every, false);
  }
}
KNOWN void known_new(size_t n, size_t size, size_t every) {
  for (size_t i = 0; i < n; i++) {
    char* p = new char[size];
    p[0] = 3;
    keep_or_free(p, i, every, true);
  }
}
KNOWN void known_memalign(size_t n, size_t size, size_t every) {
  for (size_t i = 0; i < n; i++) {
    void* p = nullptr;
    if (posix_memalign(&p, 64, size) != 0) abort();
    keep_or_free(p, i, every, false);
  }
}

struct Known {
  const char* name;
  void (*fn)(size_t, size_t, size_t);
  size_t size, total, every;  // block size, bytes allocated in all, one block in `every` kept
};
static const Known kKnown[] = {
    {"known_malloc", known_malloc, 1000, 64 * MiB, 4},
    {"known_calloc", known_calloc, 4000, 32 * MiB, 2},
    {"known_large", known_large, 96 * KiB, 16 * MiB, 1},
    {"known_new", known_new, 200, 16 * MiB, 2},
    {"known_memalign", known_memalign, 256, 8 * MiB, 4},
};

KNOWN void shares_driver() {
  for (const Known& k : kKnown) k.fn(k.total / k.size, k.size, k.every);
}

static int run_shares(const char* dir) {
  double mean = double(remalloc_option_get("prof_sample"));
  if (remalloc_option_get("prof") != 1 || mean <= 0) {
    printf("run with REMALLOC_PROF=1\n");
    return 2;
  }
  shares_driver();
  char path[4096];
  snprintf(path, sizeof path, "%s/shares.heap", dir);
  if (remalloc_prof_dump(path) != 0) {
    printf("remalloc_prof_dump(%s) failed: %s\n", path, strerror(errno));
    return 1;
  }
  if (!read_profile(path)) return 1;
  int bad = 0;
  for (const Known& k : kKnown) {
    size_t n = k.total / k.size;
    for (int live = 1; live >= 0; live--) {
      size_t blocks = live ? (n + k.every - 1) / k.every : n;
      double expected = double(blocks) * double(k.size);
      double p = 1 - exp(-double(k.size) / mean);
      double rel = sqrt((1 - p) / (double(blocks) * p));
      // Five blocks more: where almost every block is sampled (known_large,
      // p = 0.9975) the misses are a Poisson count of mean n(1-p) = 0.4,
      // far from normal; 5 sigma plus 5 blocks lets 8 of them pass
      // (a chance of 1e-8 to see more).
      double bound = 5 * rel * expected + 5 * double(k.size) / p;
      unsigned long long objs;
      double got = estimate(k.name, live, "shares_driver", &objs);
      bool ok = fabs(got - expected) <= bound;
      printf("expect %s %s %.0f %.0f %.0f (%llu samples, 5 sigma = %.1f%%)%s\n", k.name, live ? "live" : "total",
             expected, bound, got, objs, 500 * rel, ok ? "" : "  <-- outside the bound");
      if (!ok) bad++;
    }
  }
  printf("period %llu, %d stacks\n", g_period, g_nlines);
  if (bad) {
    printf("shares: %d estimates outside their bound\n", bad);
    return 1;
  }
  printf("shares ok\n");
  for (size_t i = 0; i < g_nkept; i++) free(g_kept[i]);  // new[] of char: free() is remalloc's too
  return 0;
}

// ---- moves -------------------------------------------------------------------------------
static void* g_blocks[16];

KNOWN void* moves_grow_alloc(size_t size) { return malloc(size); }
KNOWN void* moves_grow_realloc(void* p, size_t size) { return realloc(p, size); }
KNOWN void* moves_shrink_alloc(size_t size) { return malloc(size); }
KNOWN void* moves_small_alloc(size_t size) { return malloc(size); }
KNOWN void* moves_small_realloc(void* p, size_t size) { return realloc(p, size); }
KNOWN void* moves_off_alloc(size_t size) { return malloc(size); }
KNOWN void* moves_on_alloc(size_t size) { return malloc(size); }

static int g_fail;
#define CHECK(cond, ...)                     \
  do {                                       \
    if (!(cond)) {                           \
      printf("FAILED %s: ", #cond);          \
      printf(__VA_ARGS__);                   \
      printf("\n");                          \
      g_fail++;                              \
    }                                        \
  } while (0)

static bool dump_and_read(const char* dir, const char* step) {
  char path[4096];
  snprintf(path, sizeof path, "%s/moves-%s.heap", dir, step);
  if (remalloc_prof_dump(path) != 0) {
    printf("remalloc_prof_dump(%s) failed: %s\n", path, strerror(errno));
    g_fail++;
    return false;
  }
  if (!read_profile(path)) {
    g_fail++;
    return false;
  }
  return true;
}

static void expect_raw(const char* step, const char* fn, unsigned long long lo, unsigned long long lb,
                       unsigned long long ao, unsigned long long ab) {
  unsigned long long a, b, c, d;
  raw(fn, &a, &b, &c, &d);
  printf("%s: %s live %llu: %llu total %llu: %llu\n", step, fn, a, b, c, d);
  CHECK(a == lo && b == lb && c == ao && d == ab, "%s: %s: live %llu: %llu [%llu: %llu], expected %llu: %llu [%llu: %llu]",
        step, fn, a, b, c, d, lo, lb, ao, ab);
}

static int run_moves(const char* dir) {
  if (remalloc_option_get("prof") != 1 || remalloc_option_get("prof_sample") != 1) {
    printf("run with REMALLOC_PROF=1 REMALLOC_PROF_SAMPLE=1\n");
    return 2;
  }
  // The thread's first allocation since profiling was turned on only draws
  // its count (prof/sampler.cpp).
  free(malloc(64));
  // 1. A block grown by realloc from 256 KiB to 64 MiB, with a blocker
  //    after it: it moves (mremap, UFFDIO_MOVE or copy). Its record moves
  //    with it: one live block of 64 MiB from moves_grow_alloc.
  size_t sizes[] = {256 * KiB, 4 * MiB, 16 * MiB, 64 * MiB};
  char* p = static_cast<char*>(moves_grow_alloc(sizes[0]));
  memset(p, 0x5a, sizes[0]);
  void* blocker = malloc(256 * KiB);
  remalloc_stats_t before, after;
  remalloc_stats_get(&before);
  int moved = 0;
  for (int i = 1; i < 4; i++) {
    char* q = static_cast<char*>(moves_grow_realloc(p, sizes[i]));
    CHECK(q && q[0] == 0x5a && q[sizes[0] - 1] == 0x5a, "realloc to %zu lost the contents", sizes[i]);
    if (q != p) moved++;
    memset(q + sizes[i - 1], 0x5a, sizes[i] - sizes[i - 1]);
    p = q;
    void* b2 = malloc(sizes[i]);  // keeps the pages after it busy too
    g_blocks[i] = b2;
  }
  remalloc_stats_get(&after);
  printf("grow: moved %d of 3 times (by mremap %zu, by UFFDIO_MOVE %zu, by copying %zu)\n", moved,
         after.moves_mremap - before.moves_mremap, after.moves_uffd - before.moves_uffd,
         after.moves_copy - before.moves_copy);
  CHECK(moved > 0, "the grown block never moved");
  if (dump_and_read(dir, "grown")) {
    expect_raw("grown", "moves_grow_alloc", 1, 64 * MiB, 1, 64 * MiB);
    expect_raw("grown", "moves_grow_realloc", 0, 0, 0, 0);
  }
  free(p);
  free(blocker);
  for (int i = 1; i < 4; i++) free(g_blocks[i]);
  if (dump_and_read(dir, "grown-freed")) expect_raw("grown-freed", "moves_grow_alloc", 0, 0, 1, 64 * MiB);

  // 2. Shrunk in place: the record stays, with the new size.
  void* s = moves_shrink_alloc(8 * MiB);
  void* s2 = realloc(s, 1 * MiB);
  if (dump_and_read(dir, "shrunk")) expect_raw("shrunk", "moves_shrink_alloc", 1, 1 * MiB, 1, 8 * MiB);
  free(s2);

  // 3. A sampled small block (a page of its own) reallocated to another
  //    small size: a new block, sampled at the realloc; the old one freed.
  void* a = moves_small_alloc(100);
  void* b = moves_small_realloc(a, 3000);
  if (dump_and_read(dir, "small")) {
    expect_raw("small", "moves_small_alloc", 0, 0, 1, 100);
    expect_raw("small", "moves_small_realloc", 1, 3000, 1, 3000);
  }
  // ... and a sampled small block (a large block of its own) grown to a
  // large size: the engine resizes it and the record follows (no new
  // allocation; the total gains the bytes it grew by); then shrunk to a
  // small size: a new block again, sampled at the realloc.
  void* c = moves_small_realloc(b, 300 * KiB);
  void* d = moves_small_realloc(c, 2000);
  if (dump_and_read(dir, "small-large")) expect_raw("small-large", "moves_small_realloc", 1, 2000, 2, 300 * KiB + 2000);
  free(d);
  if (dump_and_read(dir, "small-freed")) expect_raw("small-freed", "moves_small_realloc", 0, 0, 2, 300 * KiB + 2000);

  // 4. Profiling off, then on again: nothing sampled while off; on again,
  //    the thread's first allocation only draws its count.
  CHECK(remalloc_option_set("prof", 0) == 0, "prof off");
  void* off1 = moves_off_alloc(300 * KiB);
  void* off2 = moves_off_alloc(100);
  CHECK(remalloc_option_set("prof", 1) == 0, "prof on");
  free(malloc(64));  // draws this thread's count for the new generation
  void* on1 = moves_on_alloc(300 * KiB);
  void* on2 = moves_on_alloc(100);
  if (dump_and_read(dir, "toggled")) {
    expect_raw("toggled", "moves_off_alloc", 0, 0, 0, 0);
    expect_raw("toggled", "moves_on_alloc", 2, 300 * KiB + 100, 2, 300 * KiB + 100);
  }
  free(off1);
  free(off2);
  free(on1);
  free(on2);
  if (dump_and_read(dir, "end")) expect_raw("end", "moves_on_alloc", 0, 0, 2, 300 * KiB + 100);
  if (g_fail) {
    printf("moves: %d checks failed\n", g_fail);
    return 1;
  }
  printf("moves ok\n");
  return 0;
}

// ---- stress ----------------------------------------------------------------------------------
static std::atomic<bool> g_stop{false};
static std::atomic<void*> g_exchange[64];
static std::atomic<long> g_ops{0}, g_dlopens{0}, g_dumps{0}, g_toggles{0}, g_forks{0};
static const char* g_dir;
static const char* g_lib;

static uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

KNOWN void stress_work(uint64_t seed, long rounds) {
  void* mine[32] = {};
  for (long r = 0; r < rounds && !g_stop.load(std::memory_order_relaxed); r++) {
    uint64_t x = mix(seed + uint64_t(r));
    unsigned slot = unsigned(x % 32);
    size_t size = (x >> 8) % 16 == 0 ? 64 * KiB + (x >> 20) % (2 * MiB) : 16 + (x >> 20) % 3000;
    switch ((x >> 40) % 6) {
      case 0:
        free(mine[slot]);
        mine[slot] = malloc(size);
        break;
      case 1:
        free(mine[slot]);
        mine[slot] = calloc(1, size);
        break;
      case 2:
        mine[slot] = realloc(mine[slot], size);
        break;
      case 3: {
        // Hand a block to another thread, take whatever is there.
        void* q = g_exchange[(x >> 50) % 64].exchange(mine[slot]);
        mine[slot] = q;
        break;
      }
      case 4:
        delete[] static_cast<char*>(mine[slot]);
        mine[slot] = new char[size];
        break;
      default:
        free(mine[slot]);
        mine[slot] = nullptr;
    }
    if (mine[slot]) static_cast<char*>(mine[slot])[0] = 1;
    g_ops.fetch_add(1, std::memory_order_relaxed);
  }
  for (void* q : mine) free(q);
}

static void* worker(void* arg) {
  stress_work(uint64_t(uintptr_t(arg)) * 0x9e3779b97f4a7c15ull, 1L << 40);
  return nullptr;
}

// Held around dlopen, dlclose and fork: the library's constructor and
// destructor never run while the process forks. A child forked while the
// constructor ran `blocks[2] = realloc(blocks[2], ...)` could see the
// realloc done in the allocator but the pointer not yet stored (other
// threads keep running while fork copies the page tables), and its exit,
// which runs the destructor, then freed the old block again: a double free
// in the program, reported by any allocator. Failed about 1 run in 40 on a
// loaded machine.
static pthread_mutex_t g_dl_lock = PTHREAD_MUTEX_INITIALIZER;

static void* dlopener(void*) {
  while (!g_stop.load(std::memory_order_relaxed)) {
    pthread_mutex_lock(&g_dl_lock);
    void* h = dlopen(g_lib, RTLD_NOW | RTLD_LOCAL);
    pthread_mutex_unlock(&g_dl_lock);
    if (!h) {
      printf("dlopen %s: %s\n", g_lib, dlerror());
      abort();
    }
    if (auto fn = reinterpret_cast<int (*)(int (*)(const void*))>(dlsym(h, "ctorlib2_check")))
      if (fn(nullptr) != 0) {
        printf("the dlopened library's blocks were damaged\n");
        abort();
      }
    pthread_mutex_lock(&g_dl_lock);
    dlclose(h);
    pthread_mutex_unlock(&g_dl_lock);
    g_dlopens.fetch_add(1, std::memory_order_relaxed);
  }
  return nullptr;
}

static void* dumper(void*) {
  char path[4096];
  snprintf(path, sizeof path, "%s/stress-dump.heap", g_dir);
  while (!g_stop.load(std::memory_order_relaxed)) {
    if (remalloc_prof_dump(path) != 0) {
      printf("remalloc_prof_dump failed: %s\n", strerror(errno));
      abort();
    }
    g_dumps.fetch_add(1, std::memory_order_relaxed);
    usleep(2000);
  }
  return nullptr;
}

static void* toggler(void*) {
  for (long i = 0; !g_stop.load(std::memory_order_relaxed); i++) {
    remalloc_option_set("prof", i % 4 != 3);
    remalloc_option_set("prof_unwind", i % 3);
    g_toggles.fetch_add(1, std::memory_order_relaxed);
    usleep(1000);
  }
  remalloc_option_set("prof", 1);
  return nullptr;
}

static int run_stress(const char* dir, const char* lib, long forks) {
  g_dir = dir;
  g_lib = lib;
  constexpr int kWorkers = 8;
  pthread_t w[kWorkers], others[3];
  for (int i = 0; i < kWorkers; i++) pthread_create(&w[i], nullptr, worker, reinterpret_cast<void*>(uintptr_t(i + 1)));
  pthread_create(&others[0], nullptr, dlopener, nullptr);
  pthread_create(&others[1], nullptr, dumper, nullptr);
  pthread_create(&others[2], nullptr, toggler, nullptr);
  int bad = 0;
  for (long f = 0; f < forks; f++) {
    usleep(5000);
    pthread_mutex_lock(&g_dl_lock);
    pid_t pid = fork();
    pthread_mutex_unlock(&g_dl_lock);  // (the child's copy too)
    if (pid == 0) {
      // The child: one thread, inherited records; allocate, write a
      // profile, exit through the destructors (the exit report).
      stress_work(uint64_t(f) << 32, 2000);
      char path[4096];
      snprintf(path, sizeof path, "%s/stress-child.heap", dir);
      int r = remalloc_prof_dump(path);
      exit(r == 0 ? 0 : 3);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      printf("fork child %ld: status %#x\n", f, st);
      bad++;
    }
    g_forks.fetch_add(1, std::memory_order_relaxed);
  }
  g_stop.store(true);
  for (int i = 0; i < kWorkers; i++) pthread_join(w[i], nullptr);
  for (pthread_t t : others) pthread_join(t, nullptr);
  for (auto& e : g_exchange) free(e.exchange(nullptr));
  printf("stress: %ld operations, %ld dlopens, %ld profiles, %ld toggles, %ld forks\n", g_ops.load(),
         g_dlopens.load(), g_dumps.load(), g_toggles.load(), g_forks.load());
  if (bad) return 1;
  printf("stress ok\n");
  return 0;
}

// ---- leak -------------------------------------------------------------------------------------
KNOWN void known_leak() {
  for (int i = 0; i < 16; i++) g_sink = malloc(MiB);  // never freed
}

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  // A strong reference: libgcc_s is loaded with the program, so remalloc's
  // weak reference to the unwinder resolves (REMALLOC_PROF_UNWIND=libgcc
  // and the fallback are then available, as in any C++ program).
  volatile auto unwinder = &_Unwind_Backtrace;
  (void)unwinder;
  if (argc >= 3 && strcmp(argv[1], "shares") == 0) return run_shares(argv[2]);
  if (argc >= 3 && strcmp(argv[1], "moves") == 0) return run_moves(argv[2]);
  if (argc >= 3 && strcmp(argv[1], "leak") == 0) {
    known_leak();
    printf("leak: 16 MiB kept\n");
    return 0;
  }
  if (argc >= 4 && strcmp(argv[1], "stress") == 0) return run_stress(argv[2], argv[3], argc > 4 ? atol(argv[4]) : 20);
  fprintf(stderr, "usage: prof_known shares|moves|leak DIR | stress DIR LIB [FORKS]\n");
  return 2;
}

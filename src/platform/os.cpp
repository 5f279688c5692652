// platform: reserve/purge/remap system calls and small /proc readers.
#include "platform/os.h"
#include "base/sys.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

extern char** environ;

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_REMOVE 103
#endif

namespace remalloc::os {

static std::atomic<int> g_reserve_failures{0};

void inject_reserve_failure(int count) { g_reserve_failures.store(count, std::memory_order_relaxed); }

static void* reserve_prot(size_t size, size_t align, int prot) {
  if (size == 0 || size > (size_t{1} << 46)) return nullptr;
  if (RM_UNLIKELY(g_reserve_failures.load(std::memory_order_relaxed) > 0) &&
      g_reserve_failures.fetch_sub(1, std::memory_order_relaxed) > 0) {
    errno = ENOMEM;
    return nullptr;
  }
  const int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if (align <= kPageSize) {
    void* p = mmap(nullptr, size, prot, flags, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  // Over-reserve, then trim both ends to the alignment.
  size_t total = size + align;
  if (total < size) return nullptr;
  void* raw = mmap(nullptr, total, prot, flags, -1, 0);
  if (raw == MAP_FAILED) {
    // Under RLIMIT_AS the slack may not fit: ask for exactly `size` at
    // aligned addresses below where the kernel would place it, without
    // replacing anything (MAP_FIXED_NOREPLACE, Linux 4.17; older kernels
    // treat it as a hint, so the result is checked).
    void* p = mmap(nullptr, size, prot, flags, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    uintptr_t at = reinterpret_cast<uintptr_t>(p);
    if ((at & (align - 1)) == 0) return p;
    munmap(p, size);
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
    uintptr_t hint = align_down(at, align);
    for (int tries = 0; tries < 64 && hint >= align; tries++, hint -= align) {
      void* q = mmap(reinterpret_cast<void*>(hint), size, prot, flags | MAP_FIXED_NOREPLACE, -1, 0);
      if (q == MAP_FAILED) {
        if (errno == EEXIST) continue;
        return nullptr;
      }
      if (q == reinterpret_cast<void*>(hint)) return q;
      munmap(q, size);  // an old kernel placed it elsewhere
      return nullptr;
    }
    return nullptr;
  }
  uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = align_up(start, align);
  if (aligned > start) munmap(raw, aligned - start);
  uintptr_t end = start + total;
  if (end > aligned + size) munmap(reinterpret_cast<void*>(aligned + size), end - (aligned + size));
  return reinterpret_cast<void*>(aligned);
}

void* reserve(size_t size, size_t align) { return reserve_prot(size, align, PROT_READ | PROT_WRITE); }

void* reserve_inaccessible(size_t size, size_t align) { return reserve_prot(size, align, PROT_NONE); }

bool commit(void* p, size_t size) {
  if (size == 0) return true;
  return mprotect(p, size, PROT_READ | PROT_WRITE) == 0;
}

void release(void* p, size_t size) {
  if (size) munmap(p, size);
}

bool purge(void* p, size_t size) {
  if (size == 0) return true;
  return madvise(p, size, MADV_DONTNEED) == 0;
}

bool remap_fresh(void* p, size_t size) {
  if (size == 0) return true;
  void* r = mmap(p, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  return r == p;
}

bool advise_hugepage(void* p, size_t size, bool on) {
  if (size == 0) return true;
  return madvise(p, size, on ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0;
}

static std::atomic<int> g_guard_state{0};  // 0 unknown, 1 yes, 2 no

bool guards_available() {
  int st = g_guard_state.load(std::memory_order_acquire);
  if (st) return st == 1;
  // Probe on a private page: install, check a later remove works too.
  bool ok = false;
  void* p = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p != MAP_FAILED) {
    ok = madvise(p, kPageSize, MADV_GUARD_INSTALL) == 0 && madvise(p, kPageSize, MADV_GUARD_REMOVE) == 0;
    munmap(p, kPageSize);
  }
  g_guard_state.store(ok ? 1 : 2, std::memory_order_release);
  return ok;
}

void disable_guards() { g_guard_state.store(2, std::memory_order_release); }

bool guard_install(void* p, size_t size) {
  if (size == 0) return true;
  if (!guards_available()) return false;
  return madvise(p, size, MADV_GUARD_INSTALL) == 0;
}

bool guard_remove(void* p, size_t size) {
  if (size == 0) return true;
  return madvise(p, size, MADV_GUARD_REMOVE) == 0;
}

static std::atomic<int> g_populate_state{0};  // 0 unknown, 1 yes, 2 no

bool populate_write(void* p, size_t size) {
  if (size == 0) return true;
  int st = g_populate_state.load(std::memory_order_relaxed);
  if (st == 2) return false;
  if (madvise(p, size, MADV_POPULATE_WRITE) == 0) {
    if (st == 0) g_populate_state.store(1, std::memory_order_relaxed);
    return true;
  }
  // EINVAL before any success: a kernel older than 5.14.
  if (st == 0 && errno == EINVAL) g_populate_state.store(2, std::memory_order_relaxed);
  return false;
}

bool protect(void* p, size_t size, bool accessible) {
  if (size == 0) return true;
  return mprotect(p, size, accessible ? PROT_READ | PROT_WRITE : PROT_NONE) == 0;
}

unsigned cpu_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  int n = CPU_COUNT(&set);
  return n > 0 ? unsigned(n) : 1;
}

uint64_t random_u64() {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, GRND_NONBLOCK) == ssize_t(sizeof v)) return v;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t(ts.tv_nsec) * 0x9e3779b97f4a7c15ull) ^ reinterpret_cast<uintptr_t>(&v);
}

uint64_t now_ns() {
  struct timespec ts;
  // The coarse clock (a few ns, jiffy resolution) is plenty for purge delays.
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

static ssize_t read_file(const char* path, char* buf, size_t cap) {
  int fd = sys::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t n = 0;
  while (n + 1 < cap) {
    ssize_t r = sys::read(fd, buf + n, cap - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += size_t(r);
  }
  sys::close(fd);
  buf[n] = 0;
  return ssize_t(n);
}

static long parse_long(const char* s, bool* ok) {
  while (*s == ' ' || *s == '\t') s++;
  bool neg = false;
  if (*s == '-') {
    neg = true;
    s++;
  }
  if (*s < '0' || *s > '9') {
    *ok = false;
    return 0;
  }
  long v = 0;
  while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
  *ok = true;
  return neg ? -v : v;
}

size_t resident_bytes() {
  char buf[128];
  if (read_file("/proc/self/statm", buf, sizeof buf) <= 0) return 0;
  const char* s = buf;
  while (*s && *s != ' ') s++;  // skip total size
  bool ok;
  long pages = parse_long(s, &ok);
  return ok && pages > 0 ? size_t(pages) * size_t(sysconf(_SC_PAGESIZE)) : 0;
}

size_t resident_in(const void* p, size_t size) {
  uintptr_t lo = reinterpret_cast<uintptr_t>(p) & ~uintptr_t(kPageSize - 1);
  uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + size + kPageSize - 1) & ~uintptr_t(kPageSize - 1);
  size_t resident = 0;
  unsigned char vec[4096];
  for (uintptr_t at = lo; at < hi;) {
    size_t pages = (hi - at) >> kPageShift;
    if (pages > sizeof vec) pages = sizeof vec;
    if (mincore(reinterpret_cast<void*>(at), pages << kPageShift, vec) == 0)
      for (size_t i = 0; i < pages; i++) resident += vec[i] & 1;
    at += pages << kPageShift;
  }
  return resident << kPageShift;
}

long read_long_file(const char* path, long fallback) {
  char buf[64];
  if (read_file(path, buf, sizeof buf) <= 0) return fallback;
  bool ok;
  long v = parse_long(buf, &ok);
  return ok ? v : fallback;
}

long count_maps() {
  int fd = sys::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[4096];
  long lines = 0;
  for (;;) {
    ssize_t r = sys::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    for (ssize_t i = 0; i < r; i++) lines += buf[i] == '\n';
  }
  sys::close(fd);
  return lines;
}

const char* env_lookup(const char* name) {
  char** env = environ;
  if (!env) return nullptr;
  for (; *env; env++) {
    const char* e = *env;
    const char* n = name;
    while (*n && *e == *n) {
      e++;
      n++;
    }
    if (*n == 0 && *e == '=') return e + 1;
  }
  return nullptr;
}

static std::atomic<int> g_thp_override{-1};

void thp_mode_override(int mode) { g_thp_override.store(mode, std::memory_order_relaxed); }

// The word in brackets of a THP sysfs setting, into out; false if none.
static bool thp_setting(const char* which, char* out, size_t cap) {
  char path[96] = "/sys/kernel/mm/transparent_hugepage/";
  size_t n = 0;
  while (path[n]) n++;
  for (size_t i = 0; which[i] && n + 1 < sizeof path; i++) path[n++] = which[i];
  path[n] = 0;
  char buf[160];
  if (read_file(path, buf, sizeof buf) <= 0) return false;
  const char* l = buf;
  while (*l && *l != '[') l++;
  if (!*l) return false;
  l++;
  size_t k = 0;
  while (l[k] && l[k] != ']' && k + 1 < cap) {
    out[k] = l[k];
    k++;
  }
  out[k] = 0;
  return l[k] == ']';
}

static bool str_eq(const char* a, const char* b) {
  while (*a && *a == *b) a++, b++;
  return *a == *b;
}

int thp_mode() {
  int o = g_thp_override.load(std::memory_order_relaxed);
  if (o >= 0) return o;
  char w[32];
  if (!thp_setting("enabled", w, sizeof w)) return kThpUnknown;
  if (str_eq(w, "always")) return kThpAlways;
  if (str_eq(w, "madvise")) return kThpMadvise;
  if (str_eq(w, "never")) return kThpNever;
  return kThpUnknown;
}

const char* thp_mode_name(int mode) {
  switch (mode) {
    case kThpAlways: return "always";
    case kThpMadvise: return "madvise";
    case kThpNever: return "never";
    default: return "unknown";
  }
}

void thp_defrag(char* out, size_t cap) {
  if (cap && !thp_setting("defrag", out, cap)) {
    const char* u = "unknown";
    size_t k = 0;
    for (; u[k] && k + 1 < cap; k++) out[k] = u[k];
    out[k] = 0;
  }
}

bool thp_disabled_for_process() {
  int r = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
  return r > 0;
}

static bool starts_with(const char* s, const char* prefix) {
  while (*prefix && *s == *prefix) s++, prefix++;
  return *prefix == 0;
}

static uintptr_t parse_hex(const char** s) {
  uintptr_t v = 0;
  for (;; (*s)++) {
    char c = **s;
    if (c >= '0' && c <= '9') v = v * 16 + uintptr_t(c - '0');
    else if (c >= 'a' && c <= 'f') v = v * 16 + uintptr_t(c - 'a' + 10);
    else return v;
  }
}

long anon_huge_bytes(bool (*in_heap)(uintptr_t lo, uintptr_t hi)) {
  int fd = sys::open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  // Line by line through a stack buffer: a VMA's header line starts with
  // its hex bounds ("lo-hi perms ..."); its fields follow ("Name:  N kB").
  char buf[8192];
  size_t have = 0;
  bool eof = false, inside = false;
  long total = 0;
  while (!eof || have) {
    if (!eof && have < sizeof buf) {
      ssize_t r = sys::read(fd, buf + have, sizeof buf - have);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) eof = true;
      else have += size_t(r);
    }
    size_t start = 0;
    for (;;) {
      size_t e = start;
      while (e < have && buf[e] != '\n') e++;
      if (e == have) break;  // no full line left
      buf[e] = 0;
      const char* l = buf + start;
      const char* q = l;
      uintptr_t lo = parse_hex(&q);
      if (*q == '-' && q != l) {
        q++;
        uintptr_t hi = parse_hex(&q);
        inside = *q == ' ' && in_heap(lo, hi);
      } else if (inside && starts_with(l, "AnonHugePages:")) {
        bool ok;
        long kib = parse_long(l + 14, &ok);
        if (ok) total += kib;
      }
      start = e + 1;
    }
    if (start == 0 && have == sizeof buf) start = have;  // a line longer than the buffer: drop it
    for (size_t i = start; i < have; i++) buf[i - start] = buf[i];
    have -= start;
    if (eof && have && start == 0) break;  // a last line without a newline: ignore
  }
  sys::close(fd);
  return total * 1024;
}

}  // namespace remalloc::os

/* mlockall in a process whose allocator is whatever is preloaded (glibc when
 * nothing is): the program allocates a known amount of live memory, calls
 * mlockall(MCL_CURRENT | MCL_FUTURE), and reports its resident memory
 * before and after; then it keeps allocating (small blocks, large blocks, a
 * buffer grown by realloc) with contents checked, under MCL_FUTURE.
 *
 *   mlock_guest root   as it is (root: CAP_IPC_LOCK, no limit applies)
 *   mlock_guest user   first RLIMIT_MEMLOCK = 8 MiB and, when run as root,
 *                      setresuid(65534) (drops CAP_IPC_LOCK), as an
 *                      ordinary user with the default limit
 *
 * Prints "mlockall=R errno=E live=L rss_before=B rss_after=A locked=K
 * lib_rss=S" (bytes; S: the resident bytes of the mappings of a file named
 * libremalloc*, the preloaded library's own code and data), then "mlock_guest ok" when every check passed. Under the limit
 * an allocation may fail, but only with NULL and ENOMEM, the old block of a
 * failed realloc intact. Exit status: 0 ok, 1 a check failed, 2 mlockall
 * failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

static size_t status_kib(const char* key) {
  FILE* f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  size_t v = 0, n = strlen(key);
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, key, n) && line[n] == ':') v = strtoul(line + n + 1, NULL, 10);
  fclose(f);
  return v;
}

/* Resident bytes of the mappings of files whose name contains `name`
 * (/proc/self/smaps). */
static size_t mapped_rss(const char* name) {
  FILE* f = fopen("/proc/self/smaps", "r");
  if (!f) return 0;
  char line[512];
  int in = 0;
  size_t total = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
      in = strstr(line, name) != NULL;
    } else if (in && !strncmp(line, "Rss:", 4)) {
      total += strtoul(line + 4, NULL, 10) << 10;
    }
  }
  fclose(f);
  return total;
}

/* One byte every 512, and the last byte when it is not one of those. */
static void fill(unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i += 512) p[i] = (unsigned char)(seed + i / 512);
  if (n && (n - 1) % 512) p[n - 1] = (unsigned char)(seed ^ 0x5a);
}
static int check(const unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i += 512)
    if (p[i] != (unsigned char)(seed + i / 512)) return 0;
  return !n || !((n - 1) % 512) || p[n - 1] == (unsigned char)(seed ^ 0x5a);
}

/* The stride bytes of the first n bytes (what a realloc keeps). */
static int check_prefix(const unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i += 512)
    if (p[i] != (unsigned char)(seed + i / 512)) return 0;
  return 1;
}

static int failures;
#define CHECK(cond, ...)                     \
  do {                                       \
    if (!(cond)) {                           \
      fprintf(stderr, "FAILED: " __VA_ARGS__); \
      fputc('\n', stderr);                   \
      failures++;                            \
    }                                        \
  } while (0)

enum { kSmall = 300, kLarge = 3 };

int main(int argc, char** argv) {
  int user = argc > 1 && !strcmp(argv[1], "user");
  /* The program's own live memory: small blocks of many sizes and three
   * large ones, all written. */
  static unsigned char* small[kSmall];
  static size_t small_n[kSmall];
  /* As an ordinary user the program must fit the default 8 MiB lock limit
   * with its libraries: less live memory. */
  unsigned char* large[kLarge];
  size_t large_n[kLarge] = {300 << 10, 1 << 20, 3 << 20};
  if (user) large_n[1] = large_n[2] = 0;
  size_t live = 0;
  for (int i = 0; i < kSmall; i++) {
    small_n[i] = 16 + (size_t)(i * 97) % (user ? 1500 : 3000);
    small[i] = malloc(small_n[i]);
    CHECK(small[i] != NULL, "malloc(%zu)", small_n[i]);
    if (!small[i]) return 1;
    fill(small[i], small_n[i], (unsigned)i);
    live += small_n[i];
  }
  for (int i = 0; i < kLarge; i++) {
    large[i] = malloc(large_n[i]);
    if (!large[i]) return 1;
    memset(large[i], 0, large_n[i]);
    fill(large[i], large_n[i], 100u + (unsigned)i);
    live += large_n[i];
  }
  /* A large block freed before the lock: its pages are free memory the
   * allocator may keep, not the program's. */
  size_t gone_n = user ? 2 << 20 : 8 << 20;
  void* gone = malloc(gone_n);
  if (gone) memset(gone, 1, gone_n);
  free(gone);

  if (user) {
    struct rlimit rl = {8 << 20, 8 << 20};
    if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0) {
      perror("setrlimit");
      return 1;
    }
    if (geteuid() == 0 && (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0)) {
      perror("setresuid");
      return 1;
    }
  }
  size_t before = status_kib("VmRSS") << 10;
  int r = mlockall(MCL_CURRENT | MCL_FUTURE);
  int err = r ? errno : 0;
  size_t after = status_kib("VmRSS") << 10;
  printf("mlockall=%d errno=%d live=%zu rss_before=%zu rss_after=%zu locked=%zu lib_rss=%zu\n", r, err, live, before,
         after, status_kib("VmLck") << 10, mapped_rss("libremalloc"));
  fflush(stdout);
  if (r != 0) return 2;

  /* Everything the program had is intact. */
  for (int i = 0; i < kSmall; i++) CHECK(check(small[i], small_n[i], (unsigned)i), "small block %d changed", i);
  for (int i = 0; i < kLarge; i++) CHECK(check(large[i], large_n[i], 100u + (unsigned)i), "large block %d changed", i);

  /* Allocation goes on under MCL_FUTURE: it works, or fails cleanly. */
  for (int i = 0; i < kSmall; i++) {
    size_t n = 16 + (size_t)(i * 131) % 6000;
    errno = 0;
    unsigned char* p = realloc(small[i], n);
    if (!p) {
      CHECK(errno == ENOMEM, "realloc(small, %zu) failed with errno %d", n, errno);
      CHECK(check(small[i], small_n[i], (unsigned)i), "a failed realloc changed its block");
      continue;
    }
    CHECK(check_prefix(p, n < small_n[i] ? n : small_n[i], (unsigned)i), "realloc of small block %d lost contents", i);
    small[i] = p;
    small_n[i] = n;
    fill(p, n, (unsigned)i);
  }
  size_t grown = 64 << 10;
  unsigned char* buf = malloc(grown);
  if (buf) fill(buf, grown, 7);
  int grow_failed = 0;
  while (buf && grown < ((size_t)48 << 20)) {
    errno = 0;
    unsigned char* q = realloc(buf, grown * 2);
    if (!q) {
      CHECK(errno == ENOMEM, "realloc(%zu) failed with errno %d", grown * 2, errno);
      CHECK(check(buf, grown, 7), "a failed realloc of %zu bytes changed its block", grown);
      grow_failed = 1;
      break;
    }
    CHECK(check(q, grown, 7), "realloc to %zu bytes lost contents", grown * 2);
    buf = q;
    grown *= 2;
    fill(buf, grown, 7);
  }
  if (!user) CHECK(!grow_failed && buf, "without a lock limit the buffer must grow to 48 MiB");
  free(buf);
  for (int i = 0; i < kSmall; i++) {
    CHECK(check(small[i], small_n[i], (unsigned)i), "small block %d changed", i);
    free(small[i]);
  }
  for (int i = 0; i < kLarge; i++) free(large[i]);
  printf("grown=%zu\n", grown);
  if (failures) return 1;
  printf("mlock_guest ok\n");
  return 0;
}

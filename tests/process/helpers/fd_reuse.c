/* The program's descriptors stay the program's (issue 15). Run under
 * LD_PRELOAD of libremalloc.so (not linked against it: it finds remalloc's
 * option and statistics calls with dlsym).
 *
 *   fd_reuse closeall [uffd]
 *       Large reallocs with the mremap mover (and with the uffd mover) make
 *       remalloc open its /proc maps descriptor (and its userfaultfd). Then
 *       the program closes every descriptor from 3 up (close_range, or a
 *       loop to sysconf(_SC_OPEN_MAX)), as daemons and shells do, and makes
 *       a pipe: it gets the numbers remalloc had when remalloc keeps its
 *       descriptors low.
 *   fd_reuse dup2 [uffd]
 *       The same start; then the program dup2s a temporary file of its own
 *       (known contents, file offset 123) onto every number remalloc's
 *       descriptors have (found in /proc/self/fd by their links).
 *
 * Then, in both modes, the program forks at once (remalloc's fork handlers
 * meet numbers that are the program's now), makes more large reallocs
 * (remalloc must open new descriptors and go on moving: its move counters
 * grow) and forks again. Each child, before any allocation, must find the
 * program's descriptors intact and hold none of the parent's remalloc
 * descriptors; it reallocs with the movers, checks again and writes through
 * the pipe, which the parent reads. The program's descriptors are intact
 * when each still names the same file (fstat), open, and for the file at its
 * offset with its contents. Every block's contents are checked after every
 * realloc; every descriptor remalloc holds must be close-on-exec. "uffd"
 * adds the uffd mover (where the kernel has UFFDIO_MOVE).
 *
 * The program defines ioctl and close itself, exported (-rdynamic), so that
 * remalloc's calls reach them: an ioctl or a close of one of the program's
 * descriptors made by anyone but the program is recorded and reported
 * (the program's own closes use the system call directly).
 *
 * Prints "fd_reuse MODE ok ..." and exits 0, or says what went wrong and
 * exits 1 (2: remalloc is not preloaded). */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "remalloc/remalloc.h"

#define MiB ((size_t)1 << 20)

/* ---- the program's descriptors, and who touches them ---- */
#define MAX_WATCH 16
static int g_watch[MAX_WATCH];
static int g_nwatch;
static char g_violations[1024];
static volatile int g_nviolations;

static void watch(int fd) {
  if (g_nwatch < MAX_WATCH) g_watch[g_nwatch++] = fd;
}
static int watched(int fd) {
  for (int i = 0; i < g_nwatch; i++)
    if (g_watch[i] == fd) return 1;
  return 0;
}
/* Async-signal-safe enough for an atfork handler: no allocation. */
static void violation(const char* what, int fd, unsigned long req) {
  size_t len = strlen(g_violations);
  if (len + 64 < sizeof g_violations)
    snprintf(g_violations + len, sizeof g_violations - len, " %s(%d, 0x%lx) in pid %d;", what, fd, req,
             (int)syscall(SYS_getpid));
  g_nviolations++;
}

int ioctl(int fd, unsigned long req, ...) {
  va_list ap;
  va_start(ap, req);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  if (watched(fd)) violation("ioctl", fd, req);
  return (int)syscall(SYS_ioctl, fd, req, arg);
}

int close(int fd) {
  if (watched(fd)) violation("close", fd, 0);
  return (int)syscall(SYS_close, fd);
}

static int own_close(int fd) { return (int)syscall(SYS_close, fd); }

/* ---- remalloc's calls ---- */
static int (*p_option_set)(const char*, long);
static void (*p_stats_get)(remalloc_stats_t*);

static void set_mover(const char* m) {
  long v = strcmp(m, "mremap") == 0 ? 0 : 1;
  if (p_option_set("mover", v) != 0) {
    fprintf(stderr, "fd_reuse: remalloc_option_set(mover, %ld) failed\n", v);
    exit(1);
  }
}

/* ---- blocks with checked contents ---- */
static uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
struct block {
  uint64_t* p;
  size_t len;
  uint64_t seed;
};
static void fill(struct block* b, size_t from) {
  for (size_t i = from / 8; i < b->len / 8; i++) b->p[i] = mix64(b->seed + i);
}
/* Grows b to `len` with realloc and checks every word it had. */
static void grow(struct block* b, size_t len, const char* where) {
  uint64_t* q = realloc(b->p, len);
  if (!q) {
    fprintf(stderr, "fd_reuse: %s: realloc(%zu) failed\n", where, len);
    exit(1);
  }
  for (size_t i = 0; i < b->len / 8; i++) {
    if (q[i] != mix64(b->seed + i)) {
      fprintf(stderr, "fd_reuse: %s: CORRUPTION at word %zu of %zu after realloc %zu -> %zu\n", where, i,
              b->len / 8, b->len, len);
      exit(1);
    }
  }
  size_t old = b->len;
  b->p = q;
  b->len = len;
  fill(b, old);
}
/* A few growths of a new block and one of an old one, with `mover`. */
static void reallocs(const char* mover, struct block* keep, uint64_t seed, const char* where) {
  set_mover(mover);
  struct block b = {malloc(MiB), MiB, seed};
  if (!b.p) {
    fprintf(stderr, "fd_reuse: %s: malloc failed\n", where);
    exit(1);
  }
  fill(&b, 0);
  for (size_t n = 2; n <= 6; n += 2) grow(&b, n * MiB, where);
  free(b.p);
  if (keep) grow(keep, keep->len + MiB, where);
}

static void stats(remalloc_stats_t* s) {
  memset(s, 0, sizeof *s);
  p_stats_get(s);
}

/* ---- remalloc's descriptors, as /proc/self/fd shows them ---- */
struct held {
  int fd[8];
  int n;
  int uffd, maps;
};
static void scan(struct held* h) {
  memset(h, 0, sizeof *h);
  DIR* d = opendir("/proc/self/fd");
  if (!d) {
    perror("fd_reuse: /proc/self/fd");
    exit(1);
  }
  struct dirent* e;
  while ((e = readdir(d))) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd < 3 || fd == dirfd(d) || watched(fd)) continue;
    char path[64], link[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t r = readlink(path, link, sizeof link - 1);
    if (r < 0) continue;
    link[r] = 0;
    int uffd = strcmp(link, "anon_inode:[userfaultfd]") == 0;
    int maps = strncmp(link, "/proc/", 6) == 0 && r > 5 && strcmp(link + r - 5, "/maps") == 0;
    if (!uffd && !maps) continue;
    h->uffd += uffd;
    h->maps += maps;
    if (h->n < 8) h->fd[h->n++] = fd;
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0 || !(fl & FD_CLOEXEC)) {
      fprintf(stderr, "fd_reuse: remalloc's descriptor %d (%s) is not close-on-exec\n", fd, link);
      exit(1);
    }
  }
  closedir(d);
}

static void close_from_3(void) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0) return;
#endif
  long max = sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > 65536) max = 65536;
  for (long fd = 3; fd < max; fd++) own_close((int)fd);
}

static int check_violations(const char* who) {
  if (!g_nviolations) return 0;
  fprintf(stderr, "fd_reuse: %s: the program's descriptors were touched by someone else:%s\n", who, g_violations);
  return 1;
}

/* Each of fds[0..n) must be open and be the file (dev, ino). */
static int check_same(const char* who, const int* fds, int n, dev_t dev, ino_t ino) {
  for (int i = 0; i < n; i++) {
    struct stat st;
    if (fstat(fds[i], &st) != 0) {
      fprintf(stderr, "fd_reuse: %s: the program's descriptor %d is closed (%s)\n", who, fds[i], strerror(errno));
      return 1;
    }
    if (st.st_dev != dev || st.st_ino != ino) {
      fprintf(stderr, "fd_reuse: %s: the program's descriptor %d is another file now\n", who, fds[i]);
      return 1;
    }
  }
  return 0;
}

#define FILE_BYTES 8192
#define FILE_OFFSET 123
static unsigned char file_byte(size_t i) { return (unsigned char)(mix64(i / 8) >> (8 * (i % 8))); }

/* The temporary file at every number of fds: same file, offset, contents. */
static int check_file(const char* who, const int* fds, int n, dev_t dev, ino_t ino) {
  if (check_same(who, fds, n, dev, ino)) return 1;
  for (int i = 0; i < n; i++) {
    off_t at = lseek(fds[i], 0, SEEK_CUR);
    if (at != FILE_OFFSET) {
      fprintf(stderr, "fd_reuse: %s: the program's file at %d is at offset %lld, not %d\n", who, fds[i],
              (long long)at, FILE_OFFSET);
      return 1;
    }
  }
  unsigned char buf[FILE_BYTES];
  if (pread(fds[0], buf, sizeof buf, 0) != FILE_BYTES) {
    fprintf(stderr, "fd_reuse: %s: the program's file reads short\n", who);
    return 1;
  }
  for (size_t i = 0; i < FILE_BYTES; i++) {
    if (buf[i] != file_byte(i)) {
      fprintf(stderr, "fd_reuse: %s: the program's file changed at byte %zu\n", who, i);
      return 1;
    }
  }
  return 0;
}

/* What the program holds: the pipe (closeall) or the file at every number
 * in mine[] (dup2). */
static int g_dup2_mode, g_use_uffd;
static int g_pipe[2] = {-1, -1};
static struct stat g_pipe_st, g_file_st;
static int g_mine[MAX_WATCH];
static int g_nmine;

static int check_mine(const char* who) {
  if (check_violations(who)) return 1;
  return !g_dup2_mode ? check_same(who, g_pipe, 2, g_pipe_st.st_dev, g_pipe_st.st_ino)
                      : check_file(who, g_mine, g_nmine, g_file_st.st_dev, g_file_st.st_ino);
}

/* Forks; the child checks what the program holds before any allocation
 * (remalloc's fork handlers ran), holds none of the parent's remalloc
 * descriptors, reallocs with both movers, checks again and writes through
 * the pipe. The parent reallocs meanwhile, waits, checks and reads. */
static int fork_and_check(int round, struct block* keep) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fd_reuse: fork");
    return 1;
  }
  char who[32];
  if (pid == 0) {
    alarm(120); /* a deadlock becomes SIGALRM */
    snprintf(who, sizeof who, "child %d", round);
    if (check_mine(who)) _exit(1);
    struct held hc;
    scan(&hc);
    if (hc.n) {
      fprintf(stderr, "fd_reuse: %s: holds %d of the parent's remalloc descriptors (first %d)\n", who, hc.n,
              hc.fd[0]);
      _exit(1);
    }
    reallocs("mremap", keep, 100 + (uint64_t)round, who);
    if (g_use_uffd) reallocs("uffd", keep, 200 + (uint64_t)round, who);
    if (check_mine(who)) _exit(1);
    if (!g_dup2_mode && write(g_pipe[1], "child ok", 8) != 8) {
      fprintf(stderr, "fd_reuse: %s: write to the pipe: %s\n", who, strerror(errno));
      _exit(1);
    }
    _exit(0);
  }
  snprintf(who, sizeof who, "parent, fork %d", round);
  reallocs("mremap", keep, 300 + (uint64_t)round, who);
  if (g_use_uffd) reallocs("uffd", keep, 400 + (uint64_t)round, who);
  int st = 0;
  if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "fd_reuse: child %d %s %d\n", round, WIFSIGNALED(st) ? "killed by signal" : "exited with",
            WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    return 1;
  }
  if (check_mine(who)) return 1;
  if (!g_dup2_mode) {
    char buf[16] = "";
    ssize_t r = read(g_pipe[0], buf, sizeof buf - 1); /* non-blocking: the parent holds the write end too */
    if (r != 8 || memcmp(buf, "child ok", 8) != 0) {
      fprintf(stderr, "fd_reuse: %s: read %zd bytes from the pipe, not the child's message\n", who, r);
      return 1;
    }
  }
  return 0;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  g_use_uffd = argc > 2 && strcmp(argv[2], "uffd") == 0;
  g_dup2_mode = strcmp(mode, "dup2") == 0;
  if (!g_dup2_mode && strcmp(mode, "closeall") != 0) {
    fprintf(stderr, "usage: fd_reuse closeall|dup2 [uffd]\n");
    return 1;
  }
  p_option_set = (int (*)(const char*, long))dlsym(RTLD_DEFAULT, "remalloc_option_set");
  p_stats_get = (void (*)(remalloc_stats_t*))dlsym(RTLD_DEFAULT, "remalloc_stats_get");
  if (!p_option_set || !p_stats_get) {
    fprintf(stderr, "fd_reuse: remalloc is not preloaded\n");
    return 2;
  }
  /* Every growth moves the block. */
  if (p_option_set("grow_inplace", 0) != 0) return 1;

  /* Before: remalloc opens its descriptors. */
  struct block keep = {malloc(MiB), MiB, 77};
  fill(&keep, 0);
  reallocs("mremap", &keep, 1, "before");
  if (g_use_uffd) reallocs("uffd", &keep, 2, "before");
  remalloc_stats_t s0;
  stats(&s0);
  if (s0.moves_mremap == 0 || (g_use_uffd && s0.moves_uffd == 0)) {
    fprintf(stderr, "fd_reuse: the movers did not move (mremap %zu, uffd %zu)\n", s0.moves_mremap, s0.moves_uffd);
    return 1;
  }
  struct held h0;
  scan(&h0);
  if (g_use_uffd && h0.uffd == 0) {
    fprintf(stderr, "fd_reuse: remalloc holds no userfaultfd after uffd moves\n");
    return 1;
  }
  char held[128] = "";
  for (int i = 0; i < h0.n; i++)
    snprintf(held + strlen(held), sizeof held - strlen(held), "%s%d", i ? "," : "", h0.fd[i]);

  /* The program takes descriptors back. */
  if (!g_dup2_mode) {
    close_from_3();
    if (pipe(g_pipe) != 0) {
      perror("fd_reuse: pipe");
      return 1;
    }
    watch(g_pipe[0]);
    watch(g_pipe[1]);
    fstat(g_pipe[0], &g_pipe_st);
    fcntl(g_pipe[0], F_SETFL, O_NONBLOCK);
  } else {
    const char* dir = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/fd_reuse.XXXXXX", dir && *dir ? dir : "/tmp");
    int tmp = mkstemp(path);
    if (tmp < 0) {
      perror("fd_reuse: mkstemp");
      return 1;
    }
    unlink(path);
    unsigned char buf[FILE_BYTES];
    for (size_t i = 0; i < FILE_BYTES; i++) buf[i] = file_byte(i);
    if (write(tmp, buf, sizeof buf) != FILE_BYTES || lseek(tmp, FILE_OFFSET, SEEK_SET) != FILE_OFFSET) {
      perror("fd_reuse: temporary file");
      return 1;
    }
    fstat(tmp, &g_file_st);
    watch(tmp);
    g_mine[g_nmine++] = tmp;
    for (int i = 0; i < h0.n; i++) {
      if (dup2(tmp, h0.fd[i]) != h0.fd[i]) {
        perror("fd_reuse: dup2");
        return 1;
      }
      watch(h0.fd[i]);
      g_mine[g_nmine++] = h0.fd[i];
    }
  }
  if (check_mine("parent")) return 1;

  /* Fork at once: remalloc's fork handlers meet numbers that are the
   * program's now. */
  if (fork_and_check(1, &keep)) return 1;

  /* More large reallocs: remalloc keeps working (new descriptors) and
   * leaves the program's alone; then fork again. */
  reallocs("mremap", &keep, 3, "after");
  if (g_use_uffd) reallocs("uffd", &keep, 4, "after");
  if (check_mine("parent")) return 1;
  remalloc_stats_t s1;
  stats(&s1);
  if (s1.moves_mremap == s0.moves_mremap || (g_use_uffd && s1.moves_uffd == s0.moves_uffd)) {
    fprintf(stderr, "fd_reuse: the movers stopped moving after the close (mremap %zu -> %zu, uffd %zu -> %zu)\n",
            s0.moves_mremap, s1.moves_mremap, s0.moves_uffd, s1.moves_uffd);
    return 1;
  }
  struct held h1;
  scan(&h1); /* checks close-on-exec of what remalloc opened again */
  if (fork_and_check(2, &keep)) return 1;

  free(keep.p);
  remalloc_stats_t s2;
  stats(&s2);
  printf("fd_reuse %s ok held=%s pipe=%d,%d mremap=%zu uffd=%zu copy=%zu\n", mode, held, g_pipe[0], g_pipe[1],
         s2.moves_mremap, s2.moves_uffd, s2.moves_copy);
  return 0;
}

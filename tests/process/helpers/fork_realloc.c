/* fork N times (argv[1]) from a process whose 8 threads keep growing and
 * shrinking large blocks (128 KiB to 8 MiB) with realloc. Every block is
 * filled with a pattern derived from its own seed (not its address), and the
 * part that survives each realloc is checked in full. Each fork child
 * allocates, reallocs a large block (checking it), frees and exits.
 * argv[2] (optional) is the base seed. Prints
 *   "fork_realloc ok forks=N ops=M seed=S"
 * or, on a corrupted block, the seed, thread, block, offset and the number
 * of forks done, and exits 1. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 8
#define BLOCKS 4
#define MIN_SIZE ((size_t)128 << 10)
#define MAX_SIZE ((size_t)8 << 20)

static atomic_int g_stop;
static atomic_long g_ops;
static atomic_int g_forks;
static atomic_int g_bad;
static uint64_t g_seed;

static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* Word i of the block with seed s. */
static inline uint64_t pattern(uint64_t s, size_t i) { return s * 0x9e3779b97f4a7c15ull + i * 0xd6e8feb86659fd93ull; }

static void fill(uint64_t* w, size_t from, size_t to, uint64_t s) {
  for (size_t i = from; i < to; i++) w[i] = pattern(s, i);
}

/* Index of the first wrong word in [0, n), or SIZE_MAX. */
static size_t check(const uint64_t* w, size_t n, uint64_t s) {
  for (size_t i = 0; i < n; i++)
    if (w[i] != pattern(s, i)) return i;
  return SIZE_MAX;
}

static size_t pick_size(uint64_t r) { return (MIN_SIZE + r % (MAX_SIZE - MIN_SIZE)) & ~(size_t)7; }

static void* churn(void* arg) {
  int t = (int)(intptr_t)arg;
  uint64_t r = mix64(g_seed + (uint64_t)t);
  uint64_t* blk[BLOCKS] = {0};
  size_t len[BLOCKS] = {0};
  uint64_t seed[BLOCKS] = {0};
  while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
    r = mix64(r);
    int k = (int)(r % BLOCKS);
    size_t n = pick_size(r >> 8);
    if (!blk[k] || (r >> 56) % 8 == 0) {
      free(blk[k]);
      seed[k] = mix64(r ^ 0x5eed);
      blk[k] = malloc(n);
      if (!blk[k]) {
        fprintf(stderr, "fork_realloc: thread %d: malloc(%zu) failed\n", t, n);
        atomic_store(&g_bad, 1);
        break;
      }
      fill(blk[k], 0, n / 8, seed[k]);
    } else {
      uint64_t* q = realloc(blk[k], n);
      if (!q) {
        fprintf(stderr, "fork_realloc: thread %d: realloc(%zu) failed\n", t, n);
        atomic_store(&g_bad, 1);
        break;
      }
      blk[k] = q;
      size_t keep = (len[k] < n ? len[k] : n) / 8;
      size_t bad = check(q, keep, seed[k]);
      if (bad != SIZE_MAX) {
        fprintf(stderr,
                "fork_realloc: CORRUPTION: base seed %llu thread %d block %d (seed %llu) word %zu of %zu "
                "after realloc %zu -> %zu at %p; forks done %d ops %ld\n",
                (unsigned long long)g_seed, t, k, (unsigned long long)seed[k], bad, keep, len[k], n,
                (void*)q, atomic_load(&g_forks), atomic_load(&g_ops));
        atomic_store(&g_bad, 1);
        break;
      }
      if (n / 8 > keep) fill(q, keep, n / 8, seed[k]);
    }
    len[k] = n;
    atomic_fetch_add_explicit(&g_ops, 1, memory_order_relaxed);
  }
  for (int k = 0; k < BLOCKS; k++) {
    if (blk[k] && check(blk[k], len[k] / 8, seed[k]) != SIZE_MAX) {
      fprintf(stderr, "fork_realloc: CORRUPTION at the end: thread %d block %d\n", t, k);
      atomic_store(&g_bad, 1);
    }
    free(blk[k]);
  }
  return NULL;
}

static int child(int i) {
  alarm(120); /* a deadlock in the child becomes SIGALRM */
  uint64_t s = mix64(g_seed ^ (uint64_t)i);
  size_t n = ((size_t)1 << 20) + (size_t)(s % 64) * 4096;
  uint64_t* p = malloc(n);
  if (!p) return 10;
  fill(p, 0, n / 8, s);
  char* small = malloc(100);
  if (!small) return 11;
  memset(small, 7, 100);
  uint64_t* q = realloc(p, 8 * n);
  if (!q) return 12;
  if (check(q, n / 8, s) != SIZE_MAX) return 13;
  q = realloc(q, n / 2);
  if (!q || check(q, n / 16, s) != SIZE_MAX) return 14;
  free(q);
  free(small);
  return 0;
}

int main(int argc, char** argv) {
  int forks = argc > 1 ? atoi(argv[1]) : 100;
  g_seed = argc > 2 ? strtoull(argv[2], NULL, 10) : (uint64_t)getpid() * 7919u;
  pthread_t th[THREADS];
  for (int t = 0; t < THREADS; t++)
    if (pthread_create(&th[t], NULL, churn, (void*)(intptr_t)t) != 0) return 2;
  int failed = 0;
  for (int i = 0; i < forks && !atomic_load(&g_bad); i++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      failed = 1;
      break;
    }
    if (pid == 0) _exit(child(i));
    int st = 0;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "fork_realloc: child %d (seed %llu) %s %d\n", i, (unsigned long long)g_seed,
              WIFSIGNALED(st) ? "killed by signal" : "exited with", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
      failed = 1;
      break;
    }
    atomic_fetch_add(&g_forks, 1);
  }
  atomic_store(&g_stop, 1);
  for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
  if (failed || atomic_load(&g_bad)) return 1;
  printf("fork_realloc ok forks=%d ops=%ld seed=%llu\n", atomic_load(&g_forks), atomic_load(&g_ops),
         (unsigned long long)g_seed);
  return 0;
}

/* pthread_cancel of allocating threads. Rounds of 8 threads allocate, fill,
 * check and free blocks of every size (small, large, reallocs) in a loop
 * whose cancellation point (usleep) falls between allocator calls, holding
 * blocks that a cleanup handler frees; the main thread cancels them at
 * random moments. After every round: the blocks the threads published are
 * intact and free from the main thread, and remalloc_validate() passes.
 * At the end the heaps of the cancelled threads were reused (the heap count
 * stays far below the number of threads) and the bytes in use are back
 * where they started. Prints "cancel ok threads=N heaps=H" and exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remalloc/remalloc.h"

#define THREADS 8
#define HELD 16

static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

struct Worker {
  int id;
  void* held[HELD];
  size_t len[HELD];
  atomic_long ops;
  void* published;  /* a block the main thread checks and frees */
  size_t published_len;
};

static void release_held(void* arg) {
  struct Worker* w = arg;
  for (int i = 0; i < HELD; i++) {
    free(w->held[i]);
    w->held[i] = NULL;
  }
}

static void* work(void* arg) {
  struct Worker* w = arg;
  pthread_cleanup_push(release_held, w);
  uint64_t r = mix64((uint64_t)w->id + 1);
  for (;;) {
    r = mix64(r);
    int k = (int)(r % HELD);
    size_t n = (r >> 8) % 16 == 0 ? 65536 + (r >> 20) % (4 << 20) : 1 + (r >> 20) % 3000;
    /* Cancellation is deferred: no cancellation point while a block is
     * between the allocator and w->held. */
    if (w->held[k] && (r >> 4) % 3 == 0) {
      void* q = realloc(w->held[k], n);
      if (q) {
        size_t keep = w->len[k] < n ? w->len[k] : n;
        for (size_t i = 0; i < keep; i++)
          if (((unsigned char*)q)[i] != (unsigned char)(k + w->id)) {
            fprintf(stderr, "cancel: thread %d block %d damaged by realloc\n", w->id, k);
            abort();
          }
        memset(q, k + w->id, n);
        w->held[k] = q;
        w->len[k] = n;
      }
    } else {
      free(w->held[k]);
      w->held[k] = malloc(n);
      w->len[k] = w->held[k] ? n : 0;
      if (w->held[k]) memset(w->held[k], k + w->id, n);
    }
    if (!w->published && (r >> 30) % 64 == 0) {
      size_t m = 100 + (r >> 40) % 100000;
      void* p = malloc(m);
      if (p) {
        memset(p, 0xc3, m);
        w->published_len = m;
        __atomic_store_n(&w->published, p, __ATOMIC_RELEASE);
      }
    }
    atomic_fetch_add_explicit(&w->ops, 1, memory_order_relaxed);
    if ((r >> 50) % 8 == 0) usleep(1); /* a cancellation point */
    pthread_testcancel();
  }
  pthread_cleanup_pop(0);
  return NULL;
}

static long json_field(const char* json, const char* key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char* p = strstr(json, pat);
  return p ? atol(p + strlen(pat)) : -1;
}

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 50;
  remalloc_stats_t before, after;
  void* warm = malloc(1);
  free(warm);
  remalloc_stats_get(&before);
  uint64_t r = 12345;
  long total_ops = 0;
  for (int round = 0; round < rounds; round++) {
    struct Worker w[THREADS];
    pthread_t th[THREADS];
    memset(w, 0, sizeof w);
    for (int t = 0; t < THREADS; t++) {
      w[t].id = round * THREADS + t;
      if (pthread_create(&th[t], NULL, work, &w[t]) != 0) return 2;
    }
    r = mix64(r);
    usleep((useconds_t)(r % 20000));
    for (int t = 0; t < THREADS; t++) pthread_cancel(th[t]);
    for (int t = 0; t < THREADS; t++) {
      void* res = NULL;
      pthread_join(th[t], &res);
      if (res != PTHREAD_CANCELED) {
        fprintf(stderr, "cancel: thread %d was not cancelled\n", w[t].id);
        return 3;
      }
      total_ops += atomic_load(&w[t].ops);
      unsigned char* p = w[t].published;
      if (p) {
        for (size_t i = 0; i < w[t].published_len; i++)
          if (p[i] != 0xc3) {
            fprintf(stderr, "cancel: round %d thread %d: published block damaged at %zu\n", round, t, i);
            return 4;
          }
        free(p);
      }
    }
    remalloc_validate();
  }
  remalloc_stats_get(&after);
  char json[8192];
  remalloc_stats_json(json, sizeof json);
  long heaps = json_field(json, "heaps");
  int threads = rounds * THREADS;
  printf("cancel: threads=%d ops=%ld heaps=%ld allocated before=%zu after=%zu\n", threads, total_ops, heaps,
         before.allocated, after.allocated);
  /* Each cancelled thread's heap is abandoned and adopted by a later thread. */
  if (heaps < 0 || heaps > 4 * THREADS) {
    fprintf(stderr, "cancel: %ld heaps for %d threads: cancelled threads' heaps were not reused\n", heaps, threads);
    return 5;
  }
  /* Blocks of cancelled threads were freed by their cleanup handlers; the
   * large-block reuse caches of exited threads are flushed. */
  if (after.allocated > before.allocated + (1 << 20)) {
    fprintf(stderr, "cancel: %zu bytes still allocated after all threads were cancelled (%zu before)\n",
            after.allocated, before.allocated);
    return 6;
  }
  printf("cancel ok threads=%d heaps=%ld\n", threads, heaps);
  return 0;
}

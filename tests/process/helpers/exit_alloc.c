/* Allocation at the edges of a process's life, with the standard names
 * (linked against libremalloc.so or run with it preloaded):
 *  - a pthread key created before the first allocation, whose destructor
 *    allocates in threads that exit;
 *  - threads still allocating while main calls exit();
 *  - atexit handlers and destructor functions that allocate and free.
 * The last handler to run prints "exit ok"; any failure exits non-zero. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_key_t key;
static atomic_int dtor_runs;
static atomic_int bad;

static void churn(int rounds) {
  for (int i = 0; i < rounds; ++i) {
    size_t n = (size_t)(i % 13) * 700 + (i % 29 == 0 ? ((size_t)3 << 20) : 1);
    char* p = malloc(n);
    if (!p) { ++bad; return; }
    memset(p, i, n);
    p = realloc(p, n * 2);
    if (!p || p[n - 1] != (char)i) ++bad;
    free(p);
  }
}

static void key_dtor(void* v) {
  churn(50);
  free(v);
  ++dtor_runs;
}

static void* short_thread(void* arg) {
  (void)arg;
  pthread_setspecific(key, malloc(100));
  churn(100);
  return NULL;
}

static void* endless_thread(void* arg) {
  (void)arg;
  for (;;) churn(100); /* still running when main exits */
  return NULL;
}

static void last_handler(void) {
  churn(10);
  if (bad) {
    static const char m[] = "exit_alloc: failures\n";
    (void)!write(2, m, sizeof m - 1);
    _exit(3);
  }
  static const char ok[] = "exit ok\n";
  (void)!write(1, ok, sizeof ok - 1);
}

static void first_handler(void) {
  char* s = strdup("atexit handler allocation");
  char* big = malloc((size_t)8 << 20);
  if (!s || !big) ++bad;
  else memset(big, 1, (size_t)8 << 20);
  free(big);
  free(s);
}

__attribute__((destructor)) static void fini(void) { churn(20); }

int main(void) {
  /* Before any allocation in this process's own code. */
  if (pthread_key_create(&key, key_dtor) != 0) return 2;
  atexit(last_handler);
  atexit(first_handler);
  pthread_t t[8];
  for (int i = 0; i < 8; ++i)
    if (pthread_create(&t[i], NULL, short_thread, NULL)) return 2;
  for (int i = 0; i < 8; ++i) pthread_join(t[i], NULL);
  if (dtor_runs != 8) {
    fprintf(stderr, "exit_alloc: key destructor ran %d times, want 8\n", (int)dtor_runs);
    return 4;
  }
  pthread_t e[2];
  for (int i = 0; i < 2; ++i)
    if (pthread_create(&e[i], NULL, endless_thread, NULL)) return 2;
  usleep(20000);
  exit(0); /* the endless threads are still allocating */
}

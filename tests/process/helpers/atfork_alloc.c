/* A program whose pthread_atfork handlers allocate (small and large blocks,
 * a realloc that moves), registered from a constructor before remalloc's
 * first call, so that remalloc's own handlers are registered after them:
 * glibc then runs remalloc's prepare handler first and the program's after
 * it, and runs the program's child and parent handlers before remalloc's.
 * Forks argv[1] times from a process where two threads keep allocating.
 * Prints "atfork ok" when every fork returned in parent and child. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int g_stop;
static atomic_int g_handler_calls;

static int churn_in_handler(const char* where) {
  char* small = malloc(48);
  char* large = malloc(300 << 10);
  if (!small || !large) return 0;
  memset(small, 0x5a, 48);
  memset(large, 0xa5, 300 << 10);
  char* grown = realloc(large, 3 << 20); /* a large realloc: may move pages */
  if (!grown || grown[0] != (char)0xa5 || grown[(300 << 10) - 1] != (char)0xa5) {
    fprintf(stderr, "atfork: %s handler: contents lost\n", where);
    return 0;
  }
  free(grown);
  free(small);
  atomic_fetch_add(&g_handler_calls, 1);
  return 1;
}

static void prepare(void) { if (!churn_in_handler("prepare")) abort(); }
static void parent(void) { if (!churn_in_handler("parent")) abort(); }
static void child(void) { if (!churn_in_handler("child")) _exit(3); }

__attribute__((constructor(101))) static void register_first(void) {
  pthread_atfork(prepare, parent, child);
}

static void* worker(void* arg) {
  (void)arg;
  while (!atomic_load(&g_stop)) {
    void* a[16];
    for (int i = 0; i < 16; i++) a[i] = malloc((size_t)(i * 4099) % 200000 + 1);
    for (int i = 0; i < 16; i++) free(a[i]);
  }
  return NULL;
}

int main(int argc, char** argv) {
  int forks = argc > 1 ? atoi(argv[1]) : 20;
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, NULL);
  int failed = 0;
  for (int i = 0; i < forks; i++) {
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); failed = 1; break; }
    if (pid == 0) {
      void* p = malloc(1000);
      if (!p) _exit(4);
      free(p);
      _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "atfork: child %d ended with status %d\n", i, st);
      failed = 1;
    }
  }
  atomic_store(&g_stop, 1);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  /* prepare + parent ran in this process for every fork */
  if (atomic_load(&g_handler_calls) != 2 * forks) {
    fprintf(stderr, "atfork: %d handler calls, expected %d\n", atomic_load(&g_handler_calls), 2 * forks);
    failed = 1;
  }
  if (!failed) printf("atfork ok\n");
  return failed;
}

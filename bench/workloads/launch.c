/* launch: runs one benchmark command and reports its resource usage.
 *
 *   bench_launch RUSAGE_FILE PRELOAD|- PROGRAM [ARGS...]
 *
 * Forks, sets LD_PRELOAD=PRELOAD in the child only ("-": none), execs
 * PROGRAM, waits, writes "maxrss_kib user_s sys_s minflt majflt" to
 * RUSAGE_FILE, and exits with the child's status (128+N when killed by
 * signal N). SIGTERM, SIGINT and SIGHUP sent to the launcher are passed on to
 * the child, so a server started through it can be stopped by the
 * launcher's PID and still have its usage written.
 *
 * Why not measure from the runner directly: ru_maxrss of a process keeps the
 * peak of the memory image it had before exec, and a child that Python forks
 * (or vforks) starts from Python's image, so every workload would seem to
 * need at least the runner's ~15 MiB. This launcher is small, so the floor it
 * leaves is about 1 MiB. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t child_pid;

static void forward(int sig) {
  if (child_pid > 0) kill(child_pid, sig);
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s RUSAGE_FILE PRELOAD|- PROGRAM [ARGS...]\n", argv[0]);
    return 125;
  }
  const char* out = argv[1];
  const char* preload = argv[2];
  unsetenv("LD_PRELOAD");
  /* Block the forwarded signals until the child's PID is known. */
  sigset_t fwd, old;
  sigemptyset(&fwd);
  sigaddset(&fwd, SIGTERM);
  sigaddset(&fwd, SIGINT);
  sigaddset(&fwd, SIGHUP);
  sigprocmask(SIG_BLOCK, &fwd, &old);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 125;
  }
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (strcmp(preload, "-") != 0) setenv("LD_PRELOAD", preload, 1);
    execvp(argv[3], argv + 3);
    perror(argv[3]);
    _exit(127);
  }
  child_pid = pid;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigprocmask(SIG_SETMASK, &old, NULL);
  /* On a timeout the runner kills our whole process group. */
  int status = 0;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0) {
    if (errno == EINTR) continue;
    perror("wait4");
    return 125;
  }
  FILE* f = fopen(out, "w");
  if (f) {
    fprintf(f, "%ld %.6f %.6f %ld %ld\n", ru.ru_maxrss,
            ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6,
            ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6, ru.ru_minflt, ru.ru_majflt);
    fclose(f);
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

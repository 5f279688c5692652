// forklat: fork latency after realloc growth (issue 16). N buffers (tiny 16,
// short and full 64) grow round-robin by 256 KiB steps to their final size
// (tiny 1 MiB, short 4 MiB, full 16 MiB), each new tail written; every
// other buffer is freed; then the process forks R times (tiny 20, short 50,
// full 100), each child exiting at once and the parent waiting for it.
// fork copies every VMA and page table of the process, so what the
// allocator left behind (VMAs split by page moves, page tables of free
// memory) shows here, as in Redis's latest_fork_usec after BGSAVE.
//
// Reports the median fork + exit + wait (region_seconds), the slowest, and
// the process's VMAs (lines of /proc/self/maps) when it forked.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "common.h"

int main(int argc, char** argv) {
  wl::Args a = wl::parse_args(argc, argv);
  const size_t nbuf = wl::pick<size_t>(a, 16, 64, 64);
  const size_t final_bytes = wl::pick<size_t>(a, 1, 4, 16) << 20;
  const int forks = wl::pick<int>(a, 20, 50, 100);
  const size_t step = 256 << 10;
  std::vector<unsigned char*> buf(nbuf, nullptr);
  for (size_t size = step; size <= final_bytes; size += step) {
    for (size_t i = 0; i < nbuf; i++) {
      unsigned char* p = static_cast<unsigned char*>(realloc(buf[i], size));
      if (!p) wl::oom("realloc", size);
      if (size > step && (p[0] != static_cast<unsigned char>(i) || p[size - step - 1] != static_cast<unsigned char>(i + 1)))
        wl::die("realloc lost the buffer's contents", p, size, 1);
      memset(p + size - step, 0, step);
      p[0] = static_cast<unsigned char>(i);
      p[size - 1] = static_cast<unsigned char>(i + 1);
      buf[i] = p;
    }
  }
  for (size_t i = 0; i < nbuf; i += 2) {
    free(buf[i]);
    buf[i] = nullptr;
  }
  long maps = 0;
  if (FILE* f = fopen("/proc/self/maps", "r")) {
    for (int c; (c = fgetc(f)) != EOF;) maps += c == '\n';
    fclose(f);
  }
  std::vector<double> t(static_cast<size_t>(forks));
  for (int k = 0; k < forks; k++) {
    double t0 = wl::now();
    pid_t pid = fork();
    if (pid < 0) wl::die("fork failed", static_cast<void*>(nullptr), 0, 0);
    if (pid == 0) _exit(0);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) wl::die("the child did not exit", static_cast<void*>(nullptr), 0, 0);
    t[static_cast<size_t>(k)] = wl::now() - t0;
  }
  for (size_t i = 1; i < nbuf; i += 2)
    if (buf[i][0] != static_cast<unsigned char>(i)) wl::die("a buffer changed across fork", buf[i], 1, 1);
  std::vector<double> s = t;
  std::sort(s.begin(), s.end());
  for (size_t i = 1; i < nbuf; i += 2) free(buf[i]);
  wl::Result("forklat", a)
      .num("region_seconds", s[s.size() / 2])
      .num("fork_max_seconds", s.back())
      .integer("forks", forks)
      .integer("maps_lines", maps)
      .print();
  return 0;
}

/* faultcost: what one page fault costs on this machine, with no allocator.
 *
 *   bench_faultcost [MIB] [REPS]     (default 1024 MiB, 3 repetitions)
 *
 * Maps MIB MiB of fresh anonymous memory, writes one byte per 4 KiB page
 * (the first touch of each page is a minor fault), unmaps it; reports the
 * median time and the minor faults taken, as one RESULT line (JSON). The
 * mapping is advised MADV_NOHUGEPAGE, so the figure is per 4 KiB page even
 * where transparent huge pages are enabled for every mapping.
 *
 * Then what remalloc's prefault pays instead (src/README.md): the same
 * pages populated with MADV_POPULATE_WRITE, one call per page and one per
 * 4 pages, and then written as before (populate_ns_per_page_1, _4; -1
 * where the kernel lacks the call): on a virtual machine the first write
 * to a populated page may still cost a trap to the hypervisor, and this is
 * the price of the two together. And one call per page on pages already
 * resident (populate_resident_ns). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long minflt(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Median ns per page (resident: per call) of populating len bytes of fresh
 * memory `chunk` pages per call and writing a byte per page, or of pages
 * already resident; -1 if the kernel refuses the call. */
static double populate_cost(size_t len, size_t chunk, int resident, int reps) {
  const size_t page = 4096;
  double best[100];
  for (int r = 0; r < reps; r++) {
    char* p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -1;
    madvise(p, len, MADV_NOHUGEPAGE);
    if (resident)
      for (size_t off = 0; off < len; off += page) p[off] = 1;
    double t0 = now();
    for (size_t off = 0; off < len; off += chunk * page)
      if (madvise(p + off, chunk * page, MADV_POPULATE_WRITE) != 0) {
        munmap(p, len);
        return -1;
      }
    if (!resident)
      for (size_t off = 0; off < len; off += page) p[off + page - 1] = 1;
    best[r] = now() - t0;
    int zero = p[len - 2] == 0 || resident; /* populated pages read as zeros */
    munmap(p, len);
    if (!zero) return -1;
  }
  for (int i = 1; i < reps; i++)
    for (int j = i; j > 0 && best[j] < best[j - 1]; j--) {
      double x = best[j];
      best[j] = best[j - 1];
      best[j - 1] = x;
    }
  return best[reps / 2] * 1e9 / (double)(len / page);
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  long mib = argc > 1 ? atol(argv[1]) : 1024;
  int reps = argc > 2 ? atoi(argv[2]) : 3;
  if (mib <= 0 || reps <= 0 || reps > 100) {
    fprintf(stderr, "usage: %s [MIB] [REPS]\n", argv[0]);
    return 2;
  }
  const size_t page = 4096, len = (size_t)mib << 20;
  double t[100];
  long faults = 0;
  for (int r = 0; r < reps; r++) {
    char* p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      perror("mmap");
      return 1;
    }
    madvise(p, len, MADV_NOHUGEPAGE);
    long f0 = minflt();
    double t0 = now();
    for (size_t off = 0; off < len; off += page) p[off] = (char)off | 1;
    t[r] = now() - t0;
    faults = minflt() - f0;
    for (size_t off = 0; off < len; off += 64 * page)
      if (p[off] != ((char)off | 1)) {
        fprintf(stderr, "CORRUPTION at offset %zu\n", off);
        return 1;
      }
    munmap(p, len);
  }
  qsort(t, reps, sizeof t[0], cmp);
  double med = t[reps / 2];
  size_t pages = len / page;
  /* A quarter of the size is plenty for the populate figures. */
  size_t plen = len / 4 >= 4 * page ? (len / 4) / (4 * page) * (4 * page) : 4 * page;
  double pop1 = populate_cost(plen, 1, 0, reps), pop4 = populate_cost(plen, 4, 0, reps);
  double popres = populate_cost(plen, 1, 1, reps);
  printf("RESULT {\"workload\": \"faultcost\", \"bytes\": %zu, \"pages\": %zu, \"reps\": %d, "
         "\"seconds\": %.6f, \"min_seconds\": %.6f, \"max_seconds\": %.6f, \"minflt\": %ld, "
         "\"ns_per_page\": %.1f, \"populate_ns_per_page_1\": %.1f, \"populate_ns_per_page_4\": %.1f, "
         "\"populate_resident_ns\": %.1f}\n",
         len, pages, reps, med, t[0], t[reps - 1], faults, med * 1e9 / pages, pop1, pop4, popres);
  return 0;
}

/* The VMA budget used up by the program's own mappings: the program splits
 * one mapping page by page (mprotect) until the kernel refuses (ENOMEM at
 * vm.max_map_count), then allocates, reallocs large blocks through moves and
 * frees. Every call must succeed from the arenas remalloc already holds (or
 * fail cleanly), no realloc may lose contents, and remalloc must not try
 * mremap moves it has no VMAs for (they are skipped for the budget, not
 * failed by the kernel). After the program unmaps its mappings, moves by
 * mremap and new arenas work again (a mover whose run-time probe met the
 * limit must not stay off). argv[1]: "warm" or "cold" (see main). Prints
 * "vma_exhaust ok" and exits 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "remalloc/remalloc.h"

static void fill(unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i += 512) p[i] = (unsigned char)(seed + i / 512);
}
static int check(const unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i += 512)
    if (p[i] != (unsigned char)(seed + i / 512)) return 0;
  return 1;
}

static long count_maps(void) {
  FILE* f = fopen("/proc/self/maps", "r");
  if (!f) return -1;
  long n = 0;
  int c;
  while ((c = fgetc(f)) != EOF) n += c == '\n';
  fclose(f);
  return n;
}

#define NBLK 8
/* Grows each block through moves: a blocker after it stops in-place growth. */
static int churn(unsigned char** blk, size_t* len, unsigned* seed, int rounds, const char* phase) {
  for (int r = 0; r < rounds; r++) {
    for (int k = 0; k < NBLK; k++) {
      void* blocker = malloc(200 << 10);
      size_t n = len[k] + (len[k] / 2 & ~(size_t)4095) + 4096;
      if (n > ((size_t)24 << 20)) n = 256 << 10;
      unsigned char* q = realloc(blk[k], n);
      if (!q) {
        fprintf(stderr, "vma_exhaust: %s: realloc(%zu -> %zu) failed (errno %d)\n", phase, len[k], n, errno);
        free(blocker);
        return 0;
      }
      size_t keep = len[k] < n ? len[k] : n;
      if (!check(q, keep, seed[k])) {
        fprintf(stderr, "vma_exhaust: %s: realloc(%zu -> %zu) lost the contents\n", phase, len[k], n);
        return 0;
      }
      seed[k] += 1;
      fill(q, n, seed[k]);
      blk[k] = q;
      len[k] = n;
      void* small[64];
      for (int i = 0; i < 64; i++) {
        small[i] = malloc(16 + (size_t)i * 40);
        if (!small[i]) {
          fprintf(stderr, "vma_exhaust: %s: small malloc failed\n", phase);
          return 0;
        }
        memset(small[i], i, 16);
      }
      for (int i = 0; i < 64; i++) free(small[i]);
      free(blocker);
    }
  }
  return 1;
}

int main(int argc, char** argv) {
  /* "warm": reallocs move blocks once before the limit is reached (the
   * movers' probes ran); "cold": the first move happens at the limit. */
  int warm = argc > 1 && strcmp(argv[1], "warm") == 0;
  unsigned char* blk[NBLK];
  size_t len[NBLK];
  unsigned seed[NBLK];
  /* Arena space to work in, reserved before the limit is reached. */
  void* room = malloc((size_t)200 << 20);
  free(room);
  for (int k = 0; k < NBLK; k++) {
    len[k] = 256 << 10;
    seed[k] = (unsigned)k * 31;
    blk[k] = malloc(len[k]);
    if (!blk[k]) return 2;
    fill(blk[k], len[k], seed[k]);
  }
  if (warm && !churn(blk, len, seed, 1, "before the limit")) return 8;
  long max_maps = 65530;
  FILE* f = fopen("/proc/sys/vm/max_map_count", "r");
  if (f) {
    if (fscanf(f, "%ld", &max_maps) != 1) max_maps = 65530;
    fclose(f);
  }
  /* One mapping, split page by page until the kernel says no. */
  size_t pages = (size_t)max_maps + 16;
  size_t ps = 4096;
  char* region = mmap(NULL, pages * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (region == MAP_FAILED) return 3;
  size_t splits = 0;
  for (size_t i = 1; i < pages; i += 2) {
    if (mprotect(region + i * ps, ps, PROT_READ) != 0) break;
    splits++;
  }
  long at_limit = count_maps();
  remalloc_stats_t s0, s1, s2;
  remalloc_stats_get(&s0);
  int ok = churn(blk, len, seed, 6, "at the limit");
  remalloc_stats_get(&s1);
  munmap(region, pages * ps);
  /* Room again: mremap moves and new arenas work. */
  void* huge = ok ? malloc((size_t)1 << 30) : NULL;
  if (huge) {
    memset(huge, 1, 4096);
    free(huge);
  }
  usleep(150000); /* remalloc recounts the VMAs at most every 100 ms */
  int ok2 = ok && churn(blk, len, seed, 6, "after unmapping");
  remalloc_stats_get(&s2);
  for (int k = 0; k < NBLK; k++) free(blk[k]);
  printf("vma_exhaust: max_map_count %ld, maps at the limit %ld (%zu splits); at the limit: moves mremap %zu, "
         "uffd %zu, copy %zu, budget fallbacks %zu, mover errors %zu; after: moves mremap %zu\n",
         max_maps, at_limit, splits, s1.moves_mremap - s0.moves_mremap, s1.moves_uffd - s0.moves_uffd,
         s1.moves_copy - s0.moves_copy, s1.fallback_budget - s0.fallback_budget,
         s1.fallback_error - s0.fallback_error, s2.moves_mremap - s1.moves_mremap);
  if (!ok || !ok2) return 4;
  if (!huge) {
    fprintf(stderr, "vma_exhaust: a new arena failed after the mappings were gone\n");
    return 5;
  }
  /* No mremap move at the limit, and none tried and refused by the kernel
   * (that would count as a mover error). These blocks stay below the mremap
   * threshold (8 MiB), so the policy moves them by UFFDIO_MOVE, which needs
   * no VMA, and never asks the budget; the engine tests VmaBudget* cover
   * mremap moves skipped for the budget. */
  if (s1.moves_mremap != s0.moves_mremap || s1.fallback_error != s0.fallback_error) {
    fprintf(stderr, "vma_exhaust: at the limit remalloc tried mremap moves instead of skipping them for the budget\n");
    return 6;
  }
  /* Cold: the blocks stayed in normal arenas (copied at the limit); the
   * mremap mover, first probed at the limit, must work now. (Warm: blocks
   * moved by uffd at the limit live in uffd arenas and keep moving by uffd.) */
  if (!warm && s2.moves_mremap == s1.moves_mremap) {
    fprintf(stderr, "vma_exhaust: no mremap move after the program's mappings were gone\n");
    return 7;
  }
  printf("vma_exhaust ok\n");
  return 0;
}

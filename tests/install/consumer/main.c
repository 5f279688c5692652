/* Linked against the installed libremalloc.so: malloc is remalloc's. */
#include <remalloc/remalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  void* p = malloc(10);
  void* q = remalloc_malloc(1 << 20);
  if (!p || !q) return 1;
  memset(q, 1, 1 << 20);
  printf("owns(malloc(10)) = %d, owns(remalloc_malloc) = %d, version %d.%d.%d\n", remalloc_owns(p),
         remalloc_owns(q), REMALLOC_VERSION_MAJOR, REMALLOC_VERSION_MINOR, REMALLOC_VERSION_PATCH);
  /* The installed header's statistics call (remalloc_stats_get_sized). */
  remalloc_stats_t st;
  remalloc_stats_get(&st);
  printf("stats: allocated %zu in %zu arenas\n", st.allocated, st.arenas);
  int ok = remalloc_owns(p) == 1 && remalloc_owns(q) == 1 && st.allocated >= (1 << 20) && st.arenas >= 1;
  free(p);
  remalloc_free(q);
  return ok ? 0 : 3;
}

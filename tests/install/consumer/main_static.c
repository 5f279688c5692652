/* Linked against the installed libremalloc.a: the prefixed API works. */
#include <remalloc/remalloc.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  char* p = remalloc_malloc(100);
  if (!p) return 1;
  strcpy(p, "static");
  p = remalloc_realloc(p, 8 << 20);
  if (!p || strcmp(p, "static") != 0) return 2;
  printf("static owns = %d\n", remalloc_owns(p));
  int ok = remalloc_owns(p) == 1;
  remalloc_free(p);
  return ok ? 0 : 3;
}

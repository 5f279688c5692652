/* Runs with libremalloc.so preloaded (LD_PRELOAD). libctorlib.so is a NEEDED
 * library whose constructor allocated before remalloc's own constructors
 * ran; libctorlib2.so (argv[1]) is dlopen'ed now and its constructor
 * allocates at that point. Both sets of blocks must be intact and owned by
 * remalloc. Prints "ctor ok" and exits 0 on success. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

int ctorlib_check(int (*owns)(const void*));

int main(int argc, char** argv) {
  int (*owns)(const void*) = (int (*)(const void*))dlsym(RTLD_DEFAULT, "remalloc_owns");
  if (!owns) {
    fprintf(stderr, "ctor_main: remalloc is not loaded\n");
    return 2;
  }
  int r = ctorlib_check(owns);
  if (r) {
    fprintf(stderr, "ctor_main: blocks of the NEEDED library's constructor: failure %d\n", r);
    return 3;
  }
  if (argc > 1) {
    void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      fprintf(stderr, "ctor_main: dlopen: %s\n", dlerror());
      return 4;
    }
    int (*check2)(int (*)(const void*)) = (int (*)(int (*)(const void*)))dlsym(h, "ctorlib2_check");
    if (!check2) return 5;
    r = check2(owns);
    if (r) {
      fprintf(stderr, "ctor_main: blocks of the dlopen'ed library's constructor: failure %d\n", r);
      return 6;
    }
    if (dlclose(h) != 0) return 7; /* runs its destructor: frees */
  }
  void* p = malloc(100);
  if (owns(p) != 1) return 8;
  free(p);
  printf("ctor ok\n");
  return 0;
}

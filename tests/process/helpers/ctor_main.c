/* Runs with libremalloc.so preloaded (LD_PRELOAD). libctorlib.so is a NEEDED
 * library whose constructor allocated before remalloc's own constructors
 * ran; libctorlib2.so (argv[1]) is dlopen'ed now and its constructor
 * allocates at that point. Both sets of blocks must be intact and owned by
 * remalloc. Prints "ctor ok" and exits 0 on success. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  /* argv[2]: load and unload the library that many times (its constructor
   * allocates, its destructor frees); the bytes in use must not grow. */
  int loops = argc > 2 ? atoi(argv[2]) : 1;
  size_t (*stats_json)(char*, size_t) = (size_t(*)(char*, size_t))dlsym(RTLD_DEFAULT, "remalloc_stats_json");
  long first_alloc = -1, last_alloc = -1;
  for (int i = 0; argc > 1 && i < loops; i++) {
    void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      fprintf(stderr, "ctor_main: dlopen: %s\n", dlerror());
      return 4;
    }
    int (*check2)(int (*)(const void*)) = (int (*)(int (*)(const void*)))dlsym(h, "ctorlib2_check");
    if (!check2) return 5;
    r = check2(owns);
    if (r) {
      fprintf(stderr, "ctor_main: blocks of the dlopen'ed library's constructor (load %d): failure %d\n", i, r);
      return 6;
    }
    if (dlclose(h) != 0) return 7; /* runs its destructor: frees */
    if (stats_json) {
      char buf[4096];
      stats_json(buf, sizeof buf);
      const char* a = strstr(buf, "\"allocated\":");
      long v = a ? atol(a + 12) : -1;
      if (i == 0) first_alloc = v;
      last_alloc = v;
    }
  }
  if (loops > 1 && last_alloc > first_alloc + (8L << 20)) {
    fprintf(stderr, "ctor_main: %ld bytes allocated after %d loads, %ld after the first: the destructor's frees were lost\n",
            last_alloc, loops, first_alloc);
    return 9;
  }
  void* p = malloc(100);
  if (owns(p) != 1) return 8;
  free(p);
  printf(loops > 1 ? "ctor ok loops=%d\n" : "ctor ok\n", loops);
  return 0;
}

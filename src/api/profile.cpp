// api: heap profiling's public side: remalloc_prof_dump and what happens at
// exit (REMALLOC_PROF_FINAL: a last profile and the leak summary;
// REMALLOC_PROF_LEAK_ERROR: exit status 1 when sampled blocks are still
// live). The sampling itself is in prof/; options.cpp passes the settings.
#include <unistd.h>

#include "api/api.h"
#include "api/options.h"
#include "base/format.h"
#include "prof/prof.h"
#include "remalloc/remalloc.h"

extern "C" int remalloc_prof_dump(const char* path) {
  remalloc::api::ensure_init();
  return remalloc::prof::dump(path, nullptr);
}

// A destructor function, like the statistics' at exit: with LD_PRELOAD the
// library is finalised last, after the program's own destructors freed what
// they free. Nothing is done unless asked.
__attribute__((destructor)) static void remalloc_prof_exit() {
  using namespace remalloc;
  api::ensure_init();
  bool final = options::get(options::kProfFinal) != 0;
  bool leak_error = options::get(options::kProfLeakError) != 0;
  if (!final && !leak_error) return;
  size_t leaked = prof::at_exit(final);
  if (leak_error && leaked) {
    Writer(2).str("remalloc: exiting with status 1: sampled blocks are still live (REMALLOC_PROF_LEAK_ERROR=1)\n");
    _exit(1);
  }
}

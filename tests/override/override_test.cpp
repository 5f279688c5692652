// The process is linked against libremalloc.so: the standard names, the
// __libc_* aliases and everything libc allocates internally are remalloc's.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "test_alloc.h"
#include "test_util.h"

using tu::opaque;

namespace {

TEST(Override, MallocIsRemalloc) {
  void* p = malloc(opaque(size_t{10}));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(remalloc_owns(p), 1) << "malloc in this process is not remalloc";
  EXPECT_EQ(malloc_usable_size(p), remalloc_usable_size(p));
  free(p);
  void* c = calloc(3, 7);
  void* r = realloc(nullptr, 100);
  void* a = aligned_alloc(256, 512);
  void* m = memalign(64, 100);
  void* v = valloc(10);
  void* pv = pvalloc(10);
  void* pm = nullptr;
  ASSERT_EQ(posix_memalign(&pm, 128, 300), 0);
  void* ra = reallocarray(nullptr, 10, 10);
  for (void* q : {c, r, a, m, v, pv, pm, ra}) {
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(remalloc_owns(q), 1) << q;
    free(q);
  }
}

TEST(Override, LibcInternalAllocationsAreRemalloc) {
  char* s = strdup("hello remalloc");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(remalloc_owns(s), 1);
  free(s);
  char* a = nullptr;
  ASSERT_GT(asprintf(&a, "%d-%s-%0500d", 42, "x", 7), 0);
  EXPECT_EQ(remalloc_owns(a), 1);
  free(a);
  char* rp = realpath("/proc/self/exe", nullptr);
  ASSERT_NE(rp, nullptr);
  EXPECT_EQ(remalloc_owns(rp), 1);
  free(rp);
  // stdio buffers, getline's buffer, open_memstream's growing buffer.
  char* buf = nullptr;
  size_t len = 0;
  FILE* ms = open_memstream(&buf, &len);
  ASSERT_NE(ms, nullptr);
  for (int i = 0; i < 100000; ++i) fprintf(ms, "line %d\n", i);
  fclose(ms);
  EXPECT_EQ(remalloc_owns(buf), 1);
  FILE* in = fmemopen(buf, len, "r");
  ASSERT_NE(in, nullptr);
  char* line = nullptr;
  size_t cap = 0;
  long lines = 0;
  while (getline(&line, &cap, in) > 0) ++lines;
  EXPECT_EQ(lines, 100000);
  EXPECT_EQ(remalloc_owns(line), 1);
  free(line);
  fclose(in);
  free(buf);
}

TEST(Override, LibcAliasesAndDlsymResolveToRemalloc) {
  using MallocFn = void* (*)(size_t);
  using FreeFn = void (*)(void*);
  for (const char* name : {"malloc", "__libc_malloc"}) {
    auto f = reinterpret_cast<MallocFn>(dlsym(RTLD_DEFAULT, name));
    ASSERT_NE(f, nullptr) << name;
    void* p = f(100);
    EXPECT_EQ(remalloc_owns(p), 1) << name << " does not reach remalloc";
    free(p);
  }
  for (const char* name : {"calloc", "__libc_calloc"}) {
    auto f = reinterpret_cast<void* (*)(size_t, size_t)>(dlsym(RTLD_DEFAULT, name));
    ASSERT_NE(f, nullptr) << name;
    void* p = f(10, 10);
    EXPECT_EQ(remalloc_owns(p), 1) << name;
    free(p);
  }
  for (const char* name : {"realloc", "__libc_realloc"}) {
    auto f = reinterpret_cast<void* (*)(void*, size_t)>(dlsym(RTLD_DEFAULT, name));
    ASSERT_NE(f, nullptr) << name;
    void* p = f(malloc(10), 1000);
    EXPECT_EQ(remalloc_owns(p), 1) << name;
    free(p);
  }
  for (const char* name : {"memalign", "__libc_memalign"}) {
    auto f = reinterpret_cast<void* (*)(size_t, size_t)>(dlsym(RTLD_DEFAULT, name));
    ASSERT_NE(f, nullptr) << name;
    void* p = f(64, 10);
    EXPECT_EQ(remalloc_owns(p), 1) << name;
    free(p);
  }
  for (const char* name : {"free", "__libc_free"}) {
    auto f = reinterpret_cast<FreeFn>(dlsym(RTLD_DEFAULT, name));
    ASSERT_NE(f, nullptr) << name;
    void* p = malloc(4 * tu::MiB);
    f(p);
    EXPECT_EQ(remalloc_owns(p), 0) << name << " did not free a remalloc block";
  }
  // The symbol the process uses is the one in libremalloc.so.
  Dl_info info{};
  ASSERT_NE(dladdr(dlsym(RTLD_DEFAULT, "malloc"), &info), 0);
  ASSERT_NE(info.dli_fname, nullptr);
  EXPECT_NE(std::string(info.dli_fname).find("libremalloc"), std::string::npos) << info.dli_fname;
}

TEST(Override, StdContainersWork) {
  std::map<int, std::string> m;
  for (int i = 0; i < 100000; ++i) m[i * 7 % 100003] = std::to_string(i) + std::string(i % 50, 'z');
  std::vector<std::string> v;
  for (auto& [k, s] : m) v.push_back(s);
  size_t total = 0;
  for (auto& s : v) total += s.size();
  EXPECT_GT(total, 100000u);
  EXPECT_EQ(remalloc_owns(v.data()), 1);
  std::vector<char> big;
  for (int i = 0; i < 50'000'000; i += 7) big.resize(static_cast<size_t>(i) + 1, 'q');
  EXPECT_EQ(big[1000], 'q');
}

}  // namespace

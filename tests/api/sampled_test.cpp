// The secure build's sampled guarded allocations (src/heap/sampled.h): one
// small allocation in REMALLOC_GUARD_SAMPLE gets a page of its own, placed
// against the guard page after it, and its page is guarded again (and kept
// in quarantine) once freed. The tests force the rate to 1 on the calling
// thread (remalloc_option_set applies to the caller at once) and put the
// default back afterwards; death tests set it inside the child.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "test_alloc.h"
#include "test_util.h"

#ifndef REMALLOC_TEST_SECURE
#define REMALLOC_TEST_SECURE 0
#endif

namespace {

size_t sampled_total() {
  remalloc_stats_t st;
  remalloc_stats_get(&st);
  return st.guarded_sampled;
}
size_t sampled_live() {
  remalloc_stats_t st;
  remalloc_stats_get(&st);
  return st.guarded_live;
}

constexpr size_t round16(size_t n) { return n ? (n + 15) & ~size_t{15} : 16; }

class Sampled : public testing::Test {
 protected:
  void SetUp() override {
    if (!REMALLOC_TEST_SECURE) GTEST_SKIP() << "sampled guarded allocations exist only in the secure build";
    GTEST_FLAG_SET(death_test_style, "fast");
    saved_ = remalloc_option_get("guard_sample");
  }
  void TearDown() override {
    if (REMALLOC_TEST_SECURE) remalloc_option_set("guard_sample", saved_);
  }
  static void sample_all() {
    if (remalloc_option_set("guard_sample", 1) != 0) std::abort();
  }
  static void sample_none() { remalloc_option_set("guard_sample", 0); }
  long saved_ = 0;
};

TEST_F(Sampled, OptionExistsOnlyInTheSecureBuild) {
  // (Skipped elsewhere by the fixture; there the option's range is 0..0.)
  EXPECT_EQ(remalloc_option_get("guard_sample"), 1000) << "the secure build's default rate";
  EXPECT_EQ(remalloc_option_set("guard_sample", 1), 0);
  EXPECT_EQ(remalloc_option_set("guard_sample", -1), -1);
}

TEST_F(Sampled, BlockEndsAtItsPageEndAndIsUsableToThere) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{16}, size_t{100}, size_t{1000}, size_t{4000}, size_t{4096}}) {
    size_t before = sampled_live();
    sample_all();
    char* p = static_cast<char*>(ta::malloc(n));
    sample_none();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(sampled_live(), before + 1) << "malloc(" << n << ") was not sampled";
    size_t u = ta::usable_size(p);
    EXPECT_EQ(u, round16(n)) << n;
    EXPECT_EQ((reinterpret_cast<uintptr_t>(p) + u) % 4096, 0u) << "not against the page end: " << n;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u);
    EXPECT_EQ(ta::owns(p), 1);
    std::memset(p, 0x5a, u);
    ta::free(p);
    EXPECT_EQ(sampled_live(), before) << n;
  }
}

TEST_F(Sampled, LargerThanAPageIsNeverSampled) {
  size_t before = sampled_total();
  sample_all();
  void* p = ta::malloc(4097);
  void* q = ta::malloc(60000);
  sample_none();
  EXPECT_EQ(sampled_total(), before);
  ta::free(p);
  ta::free(q);
}

// The pool is guarded with MADV_GUARD_INSTALL (no VMA split: the page of a
// sampled block lies inside the whole pool's VMA), or with mprotect where the
// kernel lacks guards or REMALLOC_GUARD_INSTALL=0 asks (the page becomes a
// VMA of its own). ctest runs this file both ways (api.sampled_mprotect).
TEST_F(Sampled, PoolIsGuardedByTheMechanismAskedFor) {
  const char* env = std::getenv("REMALLOC_GUARD_INSTALL");
  bool want_mprotect = (env && std::string(env) == "0") || madvise(nullptr, 0, 102 /* MADV_GUARD_INSTALL */) != 0;
  sample_all();
  size_t before = sampled_total();
  char* p = static_cast<char*>(ta::malloc(64));
  sample_none();
  ASSERT_EQ(sampled_total(), before + 1) << "not sampled";
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  unsigned long lo = 0, hi = 0;
  std::string maps = tu::read_file("/proc/self/maps");
  for (size_t at = 0; at < maps.size();) {
    size_t eol = maps.find('\n', at);
    if (eol == std::string::npos) eol = maps.size();
    unsigned long l, h;
    if (std::sscanf(maps.c_str() + at, "%lx-%lx", &l, &h) == 2 && l <= a && a < h) {
      lo = l;
      hi = h;
      break;
    }
    at = eol + 1;
  }
  ASSERT_NE(hi, 0u) << "the sampled block is in no mapping";
  if (want_mprotect) {
    EXPECT_EQ(hi - lo, 4096u) << "mprotect opens the block's page as a VMA of its own";
  } else {
    EXPECT_GE(hi - lo, 128u * 4096) << "guard pages must not split the pool's VMA";
  }
  ta::free(p);
}

TEST_F(Sampled, OverflowPastASampledBlockFaults) {
  for (size_t n : {size_t{8}, size_t{48}, size_t{200}, size_t{4096}}) {
    EXPECT_EXIT(
        {
          size_t before = sampled_total();
          sample_all();
          char* p = static_cast<char*>(ta::malloc(n));
          if (sampled_total() != before + 1) std::exit(2);  // not sampled: the test is void
          size_t u = ta::usable_size(p);
          std::memset(p, 1, u);                        // the whole usable size is writable
          reinterpret_cast<volatile char*>(p)[u] = 2;  // the first byte past it faults
          std::exit(0);
        },
        testing::KilledBySignal(SIGSEGV), "")
        << "no fault one byte past a sampled block of " << n;
  }
}

TEST_F(Sampled, UseAfterFreeFaultsWhileInQuarantine) {
  EXPECT_EXIT(
      {
        sample_all();
        size_t before = sampled_total();
        char* p = static_cast<char*>(ta::malloc(100));
        if (sampled_total() != before + 1) std::exit(2);
        std::memset(p, 7, 100);
        ta::free(p);
        // More sampled blocks of the same size take slots: never p's, which
        // stays in quarantine (guarded) behind them.
        for (int i = 0; i < 20; i++) {
          void* q = ta::malloc(100);
          if (q == p) std::exit(3);  // p's slot handed out again already
          std::memset(q, 1, 100);
        }
        std::printf("%d\n", reinterpret_cast<volatile char*>(p)[0]);  // faults
        std::exit(0);
      },
      testing::KilledBySignal(SIGSEGV), "");
  EXPECT_EXIT(
      {
        sample_all();
        char* p = static_cast<char*>(ta::malloc(32));
        ta::free(p);
        reinterpret_cast<volatile char*>(p)[8] = 1;  // a write faults too
        std::exit(0);
      },
      testing::KilledBySignal(SIGSEGV), "");
}

TEST_F(Sampled, DoubleFreeIsReported) {
  EXPECT_DEATH(
      {
        sample_all();
        size_t before = sampled_total();
        void* p = ta::malloc(48);
        if (sampled_total() != before + 1) std::exit(2);
        ta::free(p);
        ta::free(p);
        std::exit(0);
      },
      "double free detected");
  EXPECT_DEATH(
      {
        sample_all();
        void* p = ta::malloc(48);
        ta::free(p);
        void* q = ta::realloc(p, 64);
        std::exit(q ? 1 : 0);
      },
      "block already freed");
  EXPECT_DEATH(
      {
        sample_all();
        char* p = static_cast<char*>(ta::malloc(64));
        ta::free(p + 16);  // an interior pointer of a live sampled block
        std::exit(0);
      },
      "invalid pointer");
}

TEST_F(Sampled, DoubleFreeIsCountedAndIgnoredWithoutAbort) {
  size_t before = sampled_total();
  sample_all();
  void* p = ta::malloc(48);
  void* other = ta::malloc(48);
  sample_none();
  // Both sampled, or the second free below would free whatever block of the
  // slab took p's place.
  ASSERT_EQ(sampled_total(), before + 2) << "not sampled (the pool is full?)";
  remalloc_option_set("abort_on_invalid", 0);
  ta::free(p);
  size_t live = sampled_live();
  testing::internal::CaptureStderr();
  ta::free(p);  // warned, ignored
  std::string err = testing::internal::GetCapturedStderr();
  remalloc_option_set("abort_on_invalid", 1);
  EXPECT_NE(err.find("double free detected"), std::string::npos) << err;
  EXPECT_EQ(sampled_live(), live) << "the second free changed the pool";
  EXPECT_EQ(ta::owns(other), 1);
  ta::free(other);
}

TEST_F(Sampled, ContentsSurviveReallocOutOfAndIntoASampledBlock) {
  auto fill = [](char* p, size_t n, int seed) {
    for (size_t i = 0; i < n; i++) p[i] = char(seed + i * 7);
  };
  auto same = [](const char* p, size_t n, int seed) {
    for (size_t i = 0; i < n; i++)
      if (p[i] != char(seed + i * 7)) return false;
    return true;
  };
  size_t t0 = sampled_total();
  sample_all();
  char* p = static_cast<char*>(ta::malloc(100));
  ASSERT_EQ(sampled_total(), t0 + 1);
  fill(p, 100, 3);
  // Sampled to sampled (rate 1: the new block is sampled too).
  p = static_cast<char*>(ta::realloc(p, 300));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(sampled_total(), t0 + 2);
  EXPECT_EQ(ta::usable_size(p), 304u);
  EXPECT_TRUE(same(p, 100, 3));
  fill(p, 300, 4);
  // Out of the pool into a large block.
  p = static_cast<char*>(ta::realloc(p, 200000));
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(same(p, 300, 4));
  fill(p, 200000, 5);
  // Back into the pool.
  p = static_cast<char*>(ta::realloc(p, 2000));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(sampled_total(), t0 + 3);
  EXPECT_EQ((reinterpret_cast<uintptr_t>(p) + ta::usable_size(p)) % 4096, 0u);
  EXPECT_TRUE(same(p, 2000, 5));
  // Out of the pool into a slab block.
  sample_none();
  size_t live = sampled_live();
  p = static_cast<char*>(ta::realloc(p, 500));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(sampled_live(), live - 1);
  EXPECT_TRUE(same(p, 500, 5));
  // And from a slab block into the pool.
  sample_all();
  p = static_cast<char*>(ta::realloc(p, 1500));
  sample_none();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(sampled_total(), t0 + 4);
  EXPECT_TRUE(same(p, 500, 5));
  ta::free(p);
}

TEST_F(Sampled, FullPoolFallsBackToTheSmallHeaps) {
  std::vector<void*> v;
  size_t before = sampled_live();
  sample_all();
  for (int i = 0; i < 300; i++) v.push_back(ta::malloc(64));
  sample_none();
  size_t got = sampled_live() - before;
  EXPECT_GT(got, 0u);
  EXPECT_LE(got, 128u) << "more sampled blocks than the pool has slots";
  for (void* p : v) {
    ASSERT_NE(p, nullptr);
    std::memset(p, 1, 64);
  }
  for (void* p : v) ta::free(p);
  EXPECT_EQ(sampled_live(), before);
}

TEST_F(Sampled, DefaultRateSamplesAboutOneInAThousand) {
  remalloc_option_set("guard_sample", 1000);  // also re-arms this thread
  size_t before = sampled_total();
  std::vector<void*> v;
  for (int i = 0; i < 10000; i++) {
    v.push_back(ta::malloc(64));
    if (v.size() == 50) {
      for (void* p : v) ta::free(p);
      v.clear();
    }
  }
  for (void* p : v) ta::free(p);
  size_t n = sampled_total() - before;
  // Countdowns are drawn from [1, 1999]: at least 5 samples in 10,000.
  EXPECT_GE(n, 5u);
  EXPECT_LE(n, 50u);
}

}  // namespace

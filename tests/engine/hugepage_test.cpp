// The transparent huge page policy (src/pages/page_heap.cpp, "the huge page
// policy"): which blocks get MADV_HUGEPAGE (large blocks from the threshold,
// their whole 2 MiB granules, also after realloc growth), when none do (the
// option off, the system's mode not madvise, PR_SET_THP_DISABLE), and that
// shrinking and purging never split a huge page of a live block, nor leave
// a freed huge page half resident. The THP mode is forced through
// os::thp_mode_override so that the decisions are tested whatever the
// machine's setting; the tests that need the kernel to hand out huge pages
// say so and skip where it gives none.
#include <gtest/gtest.h>
#include <remalloc/remalloc.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "pages/page_heap.h"
#include "platform/os.h"
#include "test_util.h"

namespace {
namespace hp {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kGranule = 2 * kMiB;

remalloc_stats_t snap() {
  remalloc_stats_t s;
  remalloc_stats_get(&s);
  return s;
}

// What /proc/self/smaps says about the VMAs overlapping [lo, hi): the bytes
// of Rss and AnonHugePages counted in the part of each VMA inside the
// range (the kernel reports per VMA: tests keep the range one VMA or
// several whole ones), and whether every one of them has the hg flag.
struct Smaps {
  size_t rss = 0, huge = 0;
  bool all_hg = true;
  int vmas = 0;
};
Smaps smaps_of(const void* p, size_t n) {
  uintptr_t lo = reinterpret_cast<uintptr_t>(p), hi = lo + n;
  Smaps r;
  FILE* f = fopen("/proc/self/smaps", "r");
  if (!f) return r;
  char line[512];
  bool in = false;
  while (fgets(line, sizeof line, f)) {
    unsigned long s, e;
    char c;
    if (sscanf(line, "%lx-%lx %c", &s, &e, &c) == 3 && strchr(line, '-') < strchr(line, ' ')) {
      in = s < hi && e > lo;
      if (in) r.vmas++;
      continue;
    }
    if (!in) continue;
    unsigned long kb;
    if (sscanf(line, "Rss: %lu kB", &kb) == 1) r.rss += kb << 10;
    if (sscanf(line, "AnonHugePages: %lu kB", &kb) == 1) r.huge += kb << 10;
    if (strncmp(line, "VmFlags:", 8) == 0 && !strstr(line, " hg")) r.all_hg = false;
  }
  fclose(f);
  return r;
}

// Option and THP-mode settings for one test, undone at its end.
struct Settings {
  std::vector<std::pair<std::string, long>> saved;
  Settings() { remalloc::os::thp_mode_override(remalloc::os::kThpMadvise); }
  void set(const char* name, long v) {
    saved.emplace_back(name, remalloc_option_get(name));
    ASSERT_EQ(remalloc_option_set(name, v), 0) << name;
  }
  // Applies the mode now (options are applied on set).
  void mode(int m) {
    remalloc::os::thp_mode_override(m);
    set("hugepage", remalloc_option_get("hugepage"));
  }
  ~Settings() {
    remalloc::os::thp_mode_override(-1);
    for (auto it = saved.rbegin(); it != saved.rend(); ++it) remalloc_option_set(it->first.c_str(), it->second);
    remalloc_option_set("hugepage", remalloc_option_get("hugepage"));  // reads the system's mode again
    remalloc_trim(0);  // heals the freed advised runs
  }
};

void touch(void* p, size_t n) {
  for (size_t i = 0; i < n; i += 4096) static_cast<volatile char*>(p)[i] = char(i >> 12 | 1);
}
bool touched(const void* p, size_t n) {
  for (size_t i = 0; i < n; i += 4096)
    if (static_cast<const volatile char*>(p)[i] != char(i >> 12 | 1)) return false;
  return true;
}

// A block of n bytes, touched, on huge pages if the kernel gives them; the
// caller skips when it does not.
bool on_huge_pages(void* p, size_t n) { return smaps_of(p, n).huge >= n; }

}  // namespace hp

using namespace hp;


TEST(HugePages, LargeBlocksFromTheThresholdAreAdvisedInWholeGranules) {
  Settings s;
  s.set("hugepage", 1);
  remalloc_trim(0);
  remalloc_stats_t b = snap();
  EXPECT_EQ(b.thp_mode, size_t(remalloc::os::kThpMadvise));
  // Below the threshold: no advice.
  void* small = remalloc_malloc(kMiB);
  remalloc_stats_t a1 = snap();
  EXPECT_EQ(a1.huge_blocks, b.huge_blocks);
  // 16 MiB, 2 MiB aligned: eight granules, one VMA with the hg flag.
  void* big = remalloc_malloc(16 * kMiB);
  ASSERT_TRUE(tu::is_aligned(big, kGranule));
  remalloc_stats_t a2 = snap();
  EXPECT_EQ(a2.huge_blocks, b.huge_blocks + 1);
  EXPECT_EQ(a2.huge_advised, b.huge_advised + 16 * kMiB);
  Smaps m = smaps_of(big, 16 * kMiB);
  EXPECT_TRUE(m.all_hg);
  EXPECT_EQ(m.vmas, 1);
  // 3 MiB: its one whole granule; the last MiB shares a granule with the
  // next run and keeps small pages.
  void* odd = remalloc_malloc(3 * kMiB);
  ASSERT_TRUE(tu::is_aligned(odd, kGranule));
  remalloc_stats_t a3 = snap();
  EXPECT_EQ(a3.huge_blocks, b.huge_blocks + 2);
  EXPECT_EQ(a3.huge_advised, b.huge_advised + 18 * kMiB);
  EXPECT_TRUE(smaps_of(odd, kGranule).all_hg);
  EXPECT_FALSE(smaps_of(static_cast<char*>(odd) + kGranule, kMiB).all_hg);
  remalloc_free(odd);
  remalloc_free(big);
  remalloc_free(small);
  remalloc_stats_t a4 = snap();
  EXPECT_EQ(a4.huge_blocks, b.huge_blocks);
  EXPECT_EQ(a4.huge_advised, b.huge_advised);
}

TEST(HugePages, NoAdviceWhenTheOptionIsOffOrTheSystemModeIsNotMadvise) {
  Settings s;
  remalloc_stats_t b = snap();
  struct Case {
    long option;
    int mode;
    const char* what;
  } cases[] = {{0, remalloc::os::kThpMadvise, "REMALLOC_HUGEPAGE=0"},
               {1, remalloc::os::kThpNever, "mode never"},
               {1, remalloc::os::kThpAlways, "mode always (the kernel's own choice)"},
               {1, remalloc::os::kThpUnknown, "no THP in the kernel"}};
  for (const Case& c : cases) {
    s.set("hugepage", c.option);
    s.mode(c.mode);
    void* p = remalloc_malloc(16 * kMiB);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(snap().huge_blocks, b.huge_blocks) << c.what;
    EXPECT_FALSE(smaps_of(p, 16 * kMiB).all_hg) << c.what;
    remalloc_free(p);
  }
  // And back on: advised again.
  s.set("hugepage", 1);
  s.mode(remalloc::os::kThpMadvise);
  void* p = remalloc_malloc(16 * kMiB);
  EXPECT_EQ(snap().huge_blocks, b.huge_blocks + 1);
  remalloc_free(p);
}

TEST(HugePages, NoAdviceUnderPrSetThpDisable) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    remalloc::os::thp_mode_override(remalloc::os::kThpMadvise);
    if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0) _exit(3);
    remalloc_option_set("hugepage", 1);  // applies the options again: reads the flag
    remalloc_stats_t b = snap();
    void* p = remalloc_malloc(16 * kMiB);
    remalloc_stats_t a = snap();
    _exit(p && a.huge_blocks == b.huge_blocks ? 0 : 1);
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0) << "1: advised under PR_SET_THP_DISABLE; 3: prctl failed";
}

// A buffer grown by realloc from 64 KiB to 256 MiB (through in-place
// growth, UFFDIO_MOVE and mremap moves) ends advised, contents intact.
TEST(HugePages, ABufferGrownByReallocIsAdvised) {
  Settings s;
  s.set("hugepage", 1);
  remalloc_stats_t b = snap();
  size_t n = 64 << 10;
  auto* p = static_cast<unsigned char*>(remalloc_malloc(n));
  tu::fill(p, n, 77);
  while (n < 256 * kMiB) {
    size_t m = n + n / 2;
    p = static_cast<unsigned char*>(remalloc_realloc(p, m));
    ASSERT_NE(p, nullptr);
    tu::fill_range(p, n, m, 77);
    n = m;
  }
  EXPECT_EQ(tu::check(p, n, 77), SIZE_MAX);
  remalloc_stats_t a = snap();
  EXPECT_EQ(a.huge_blocks, b.huge_blocks + 1);
  uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + kGranule - 1) & ~(kGranule - 1);
  uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + n) & ~(kGranule - 1);
  EXPECT_GE(a.huge_advised, b.huge_advised + (hi - lo));
  EXPECT_TRUE(smaps_of(reinterpret_cast<void*>(lo), hi - lo).all_hg);
  remalloc_free(p);
}

// A block whose interior is advised is two VMAs (the advised granules and
// its small-page end): UFFDIO_MOVE, which takes one source VMA a call, moves
// it VMA by VMA instead of failing over to a copy.
TEST(HugePages, AnAdvisedBlockOfTwoVmasMovesByUffdWithoutCopying) {
  if (!tu::uffd_move_supported()) GTEST_SKIP() << "no UFFDIO_MOVE on this kernel";
  Settings s;
  s.set("hugepage", 1);
  s.set("grow_inplace", 0);
  s.set("mover", -1);
  void* p = remalloc_malloc(3 * kMiB);
  ASSERT_TRUE(tu::is_aligned(p, kGranule));
  EXPECT_GE(smaps_of(p, 3 * kMiB).vmas, 2) << "the interior and the end are two VMAs";
  tu::fill(p, 3 * kMiB, 5);
  remalloc_stats_t b = snap();
  void* q = remalloc_realloc(p, 5 * kMiB);  // below mremap_threshold: UFFDIO_MOVE first
  ASSERT_NE(q, nullptr);
  remalloc_stats_t a = snap();
  EXPECT_EQ(tu::check(q, 3 * kMiB, 5), SIZE_MAX);
  EXPECT_EQ(a.moves_uffd, b.moves_uffd + 1);
  EXPECT_EQ(a.bytes_copied, b.bytes_copied) << "the move fell back to copying";
  EXPECT_EQ(a.fallback_error, b.fallback_error);
  remalloc_free(q);
}

// A shrink in place keeps the granule its new end falls in, so purging the
// freed tail splits none of the block's huge pages.
TEST(HugePages, ShrinkingAndPurgingKeepTheLiveBlocksHugePagesWhole) {
  Settings s;
  s.set("hugepage", 1);
  remalloc_trim(0);
  void* p = remalloc_malloc(8 * kMiB);
  ASSERT_TRUE(tu::is_aligned(p, kGranule));
  touch(p, 8 * kMiB);
  if (!on_huge_pages(p, 8 * kMiB)) {
    remalloc_free(p);
    GTEST_SKIP() << "the kernel gave no huge pages (" << smaps_of(p, 8 * kMiB).huge << " bytes)";
  }
  void* q = remalloc_realloc(p, 5 * kMiB + 1);  // the end falls inside the third granule
  ASSERT_EQ(q, p);
  remalloc_trim(0);  // purges and heals every free run, the tail included
  Smaps m = smaps_of(p, 6 * kMiB);
  EXPECT_EQ(m.huge, 6 * kMiB) << "the live block's three huge pages are whole";
  EXPECT_TRUE(touched(p, 5 * kMiB));
  remalloc_free(p);
}

// A freed advised block purged a slice at a time (past the dirty cap, each
// allocator call purges a bounded number of pages) goes in whole granules:
// at every step what stays resident of it is whole huge pages.
TEST(HugePages, AFreedBlockIsPurgedInWholeGranules) {
  Settings s;
  s.set("hugepage", 1);
  s.set("purge_delay", 3'600'000);  // no decay, no heal: only the cap purges
  s.set("dirty_max", 1024);           // MiB: the free below purges nothing
  s.set("dirty_ratio", 0);
  remalloc_trim(0);
  const size_t n = 64 * kMiB;
  void* p = remalloc_malloc(n);
  touch(p, n);
  if (!on_huge_pages(p, n)) {
    remalloc_free(p);
    GTEST_SKIP() << "the kernel gave no huge pages (" << smaps_of(p, n).huge << " bytes)";
  }
  remalloc_free(p);
  EXPECT_EQ(smaps_of(p, n).rss, n) << "the free purged under the cap";
  s.set("dirty_max", 0);  // now every byte is past the cap
  // Each bounded purge (what an allocator call does: past the dirty cap,
  // 1 MiB of pages) takes a slice of the freed block.
  int steps = 0;
  for (;;) {
    Smaps m = smaps_of(p, n);
    EXPECT_EQ(m.rss, m.huge) << "after " << steps << " steps: " << (m.rss - m.huge)
                             << " bytes resident on split huge pages";
    if (m.rss == 0 || steps == 200 || m.rss != m.huge) break;
    remalloc::pages::purge(false);
    steps++;
  }
  EXPECT_GT(steps, 1) << "purged in one go: the test needs slices";
  EXPECT_EQ(smaps_of(p, n).rss, 0u);
}

}  // namespace

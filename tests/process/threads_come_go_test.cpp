// Threads that come and go (issue 15, part 3): the helper threads_come_go
// (1,000 threads each leave 160 KiB of small blocks in 24 size classes and
// exit; another thread frees every block; malloc_trim(0); 1,000 more
// threads start and exit) runs once with glibc's malloc and once under
// LD_PRELOAD of libremalloc, in the same test; remalloc's resident memory
// after the frees and the trim must be within twice glibc's. Before the fix
// the exited threads' slabs stayed with their abandoned heaps (269 MiB
// against glibc's 4 MiB here).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "test_util.h"

namespace {

const std::string kComeGoLib = REMALLOC_TEST_LIB;
const std::string kComeGoHelper = REMALLOC_TEST_THREADS_COME_GO;

// "key=N" in the helper's line, or -1.
long long come_go_field(const std::string& text, const std::string& key) {
  size_t at = text.find(" " + key + "=");
  if (at == std::string::npos) return -1;
  return std::atoll(text.c_str() + at + key.size() + 2);
}

TEST(ThreadsComeAndGo, ResidentAfterFreesAndTrimWithinTwiceGlibc) {
  size_t n = tu::scaled(1000, 100);
  std::vector<std::string> args = {kComeGoHelper, std::to_string(n)};
  tu::RunResult g = tu::run(args, {"-LD_PRELOAD"}, 300);
  ASSERT_TRUE(g.exited_ok()) << "glibc: " << g.describe();
  tu::RunResult r = tu::run(args, {"LD_PRELOAD=" + kComeGoLib}, 300);
  ASSERT_TRUE(r.exited_ok()) << "remalloc: " << r.describe();
  std::printf("  glibc:    %s  remalloc: %s", g.out.c_str(), r.out.c_str());
  RecordProperty("glibc", g.out);
  RecordProperty("remalloc", r.out);

  long long glibc_trimmed = come_go_field(g.out, "trimmed_kib"), trimmed = come_go_field(r.out, "trimmed_kib");
  ASSERT_GT(glibc_trimmed, 0) << g.out;
  ASSERT_GT(trimmed, 0) << r.out;
  // The helper measured something: the blocks were resident while held.
  EXPECT_GT(come_go_field(r.out, "exited_kib"), come_go_field(r.out, "base_kib") + static_cast<long long>(n) * 100)
      << r.out;
  // Slack: what remalloc keeps by design and glibc has no counterpart of,
  // one heap descriptor per thread that was ever live at once (about 2 KiB
  // each, never unmapped: slabs keep pointers to their heap), plus 1 MiB
  // for the arena map and the back[] entries of the arenas the slabs used
  // (4 bytes a page). Without the fix remalloc kept every exited thread's
  // slabs (269 MiB here); without the trim's descriptor purge, the page
  // heap's descriptors of their pages (192 bytes a page of the slabs: 73 MiB
  // with 16-page slabs, 13 MiB with small first slabs).
  long long slack = static_cast<long long>(n) * 2 + 1024;
  EXPECT_LE(trimmed, 2 * glibc_trimmed + slack)
      << "remalloc kept " << trimmed << " KiB after the frees and malloc_trim(0); glibc " << glibc_trimmed
      << " KiB\n  glibc:    " << g.out << "  remalloc: " << r.out;

  // One heap per thread live at once (the N threads and this one; the bare
  // threads allocate nothing), and the next N threads reuse them.
  long long heaps = come_go_field(r.out, "heaps_after_trim");
  EXPECT_GE(heaps, static_cast<long long>(n)) << r.out;
  EXPECT_LE(heaps, static_cast<long long>(n) + 2) << r.out;
  EXPECT_EQ(come_go_field(r.out, "heaps"), heaps) << "threads that came and went made heaps of their own\n" << r.out;
}

}  // namespace

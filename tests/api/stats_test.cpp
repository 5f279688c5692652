// Statistics (get, JSON, print), options and trim.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "test_alloc.h"
#include "test_util.h"

namespace {

std::string stats_json() {
  size_t need = remalloc_stats_json(nullptr, 0);
  std::string s(need + 1, '\0');
  size_t got = remalloc_stats_json(s.data(), s.size());
  // The figures may change between the two calls (this very string was
  // allocated); retry with room to spare.
  if (got >= s.size()) {
    s.assign(got + 4096, '\0');
    got = remalloc_stats_json(s.data(), s.size());
  }
  s.resize(std::strlen(s.c_str()));
  return s;
}

TEST(Stats, JsonParsesAndHasKeys) {
  void* big = ta::malloc(8 * tu::MiB);
  ASSERT_NE(big, nullptr);
  std::memset(big, 1, 8 * tu::MiB);
  std::string j = stats_json();
  ASSERT_FALSE(j.empty());
  EXPECT_EQ(j.front(), '{') << j;
  EXPECT_EQ(j.back(), '}') << j.substr(j.size() > 200 ? j.size() - 200 : 0);
  std::vector<std::string> keys;
  std::string err;
  ASSERT_TRUE(tu::json_valid(j, &keys, &err)) << "invalid JSON: " << err << "\n" << j;
  for (const char* k : {"allocated", "peak_allocated", "mapped", "resident", "moves_mremap", "moves_uffd",
                        "moves_copy", "bytes_moved", "bytes_copied", "grow_inplace", "vma_estimate"}) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << "JSON lacks key \"" << k << "\"\n" << j;
  }
  long long alloc = tu::json_number(j, "allocated");
  EXPECT_GE(alloc, static_cast<long long>(8 * tu::MiB)) << "JSON \"allocated\" below a live 8 MiB block";
  ta::free(big);
}

TEST(Stats, JsonTruncatesSafely) {
  size_t need = remalloc_stats_json(nullptr, 0);
  ASSERT_GT(need, 2u);
  for (size_t len : {size_t{1}, size_t{2}, size_t{10}, need / 2, need, need + 1}) {
    std::vector<char> buf(len + 64, 'X');
    size_t r = remalloc_stats_json(buf.data(), len);
    EXPECT_GE(r + 200, need) << "len " << len;  // figures may drift a little
    // NUL-terminated within len, nothing written past it.
    size_t nul = std::string(buf.data(), len).find('\0');
    EXPECT_NE(nul, std::string::npos) << "not NUL-terminated within " << len << " bytes";
    for (size_t i = len; i < buf.size(); ++i) ASSERT_EQ(buf[i], 'X') << "wrote past len " << len << " at " << i;
  }
}

TEST(Stats, GetTracksLargeBlocks) {
  remalloc_stats_t s0, s1, s2;
  remalloc_stats_get(&s0);
  const size_t n = 32 * tu::MiB;
  void* p = ta::malloc(n);
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, n);
  remalloc_stats_get(&s1);
  EXPECT_GE(s1.allocated, s0.allocated + n);
  EXPECT_GE(s1.peak_allocated, s1.allocated);
  EXPECT_GE(s1.mapped, s1.allocated);
  EXPECT_GE(s1.large_live, s0.large_live + 1);
  EXPECT_GE(s1.resident, n) << "resident must include the block just written";
  EXPECT_GE(s1.arenas, 1u);
  ta::free(p);
  remalloc_stats_get(&s2);
  EXPECT_LE(s2.allocated + n, s1.allocated);
  EXPECT_GE(s2.peak_allocated, s1.allocated) << "peak must remember the high-water mark";
  EXPECT_EQ(s2.large_live + 1, s1.large_live);
}

TEST(Stats, GetCountsSmallBlocks) {
  remalloc_stats_t s0, s1;
  remalloc_stats_get(&s0);
  std::vector<void*> v;
  for (int i = 0; i < 10000; ++i) v.push_back(ta::malloc(48));
  remalloc_stats_get(&s1);
  EXPECT_GE(s1.allocated, s0.allocated + 10000 * 48) << "small blocks missing from allocated";
  EXPECT_GE(s1.small_live + 100, s0.small_live + 10000) << "small_live (approximate) far off";
  for (void* p : v) ta::free(p);
}

std::string capture_print() {
  int fd = memfd_create("remalloc-stats", 0);
  if (fd < 0) return "";
  remalloc_stats_print(fd);
  std::string s;
  lseek(fd, 0, SEEK_SET);
  char buf[4096];
  ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(r));
  close(fd);
  return s;
}

// The kernel's own VMA count beside the estimate, and what moves hold: a
// block moved by mremap is a moved-in block until freed; its source run a
// split free run until the decay heals it.
static long maps_line_count() {
  long maps = 0;
  if (FILE* f = fopen("/proc/self/maps", "r")) {
    for (int c; (c = fgetc(f)) != EOF;) maps += c == '\n';
    fclose(f);
  }
  return maps;
}

TEST(Stats, CountsTheKernelsVmasAndWhatMovesHold) {
  // The maps file's lines counted before and after the statistics: the
  // process's mappings may change in between (the TSan runtime maps its
  // shadow lazily: 12 more lines once, in a loaded CI run).
  long before = maps_line_count();
  remalloc_stats_t b;
  remalloc_stats_get(&b);
  long after = maps_line_count();
  ASSERT_GT(b.vma_kernel, 0u) << "no count of /proc/self/maps";
  EXPECT_GE(double(b.vma_kernel), double(std::min(before, after)) - 8.0) << "the kernel's count is the maps file's lines";
  EXPECT_LE(double(b.vma_kernel), double(std::max(before, after)) + 8.0) << "the kernel's count is the maps file's lines";
  long mover = remalloc_option_get("mover");
  long inplace = remalloc_option_get("grow_inplace");
  ASSERT_EQ(remalloc_option_set("mover", 0), 0);  // mremap
  ASSERT_EQ(remalloc_option_set("grow_inplace", 0), 0);
  size_t n = size_t{1} << 20;
  char* p = static_cast<char*>(remalloc_malloc(n));
  ASSERT_NE(p, nullptr);
  memset(p, 7, n);
  char* q = static_cast<char*>(remalloc_realloc(p, 2 * n));
  ASSERT_NE(q, nullptr);
  remalloc_stats_t a;
  remalloc_stats_get(&a);
  remalloc_option_set("mover", mover);
  remalloc_option_set("grow_inplace", inplace);
  if (a.moves_mremap > b.moves_mremap) {
    EXPECT_EQ(a.vma_moved_blocks, b.vma_moved_blocks + 1) << "the block moved by mremap is not counted";
  } else {
    ADD_FAILURE() << "the forced mremap mover did not move the block (mremap with MREMAP_DONTUNMAP missing?)";
  }
  EXPECT_EQ(q[n - 1], 7);
  remalloc_free(q);
  remalloc_stats_t c;
  remalloc_stats_get(&c);
  EXPECT_EQ(c.vma_moved_blocks, b.vma_moved_blocks) << "a freed moved-in block still counted";
}

TEST(Stats, PrintWritesReadableReport) {
  void* big = ta::malloc(4 * tu::MiB);
  std::string s = capture_print();
  ASSERT_GT(s.size(), 40u) << s;
  for (unsigned char c : s) ASSERT_TRUE(c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f)) << "non-text byte " << int(c);
  std::string l = tu::lower(s);
  EXPECT_NE(l.find("mremap"), std::string::npos) << "report does not mention mremap moves:\n" << s;
  EXPECT_NE(l.find("peak"), std::string::npos) << "report does not mention the peak:\n" << s;
  ta::free(big);
  // An invalid fd is not a crash.
  remalloc_stats_print(-1);
  remalloc_stats_print(987654);
}

TEST(Options, UnknownNames) {
  EXPECT_EQ(remalloc_option_get("no_such_option_xyz"), -1);
  EXPECT_EQ(remalloc_option_set("no_such_option_xyz", 1), -1);
  EXPECT_EQ(remalloc_option_get(""), -1);
}

TEST(Options, KnownNamesCaseInsensitiveAndSettable) {
  for (const char* name : {"verbose", "stats"}) {
    long v = remalloc_option_get(name);
    ASSERT_GE(v, 0) << "option " << name << " unknown";
    std::string upper;
    for (const char* c = name; *c; ++c) upper += static_cast<char>(*c - 'a' + 'A');
    EXPECT_EQ(remalloc_option_get(upper.c_str()), v) << "option names are case-insensitive";
    EXPECT_EQ(remalloc_option_set(name, 0), 0);
    EXPECT_EQ(remalloc_option_get(name), 0);
    EXPECT_EQ(remalloc_option_set(upper.c_str(), 1), 0);
    EXPECT_EQ(remalloc_option_get(name), 1);
    EXPECT_EQ(remalloc_option_set(name, v), 0);
    EXPECT_EQ(remalloc_option_get(name), v);
  }
}

TEST(Trim, GivesFreedMemoryBack) {
  // Below the default dirty cap (128 MiB), so that the free itself keeps the
  // pages and the trim is what gives them back.
  const size_t n = 48 * tu::MiB;
  void* p = ta::malloc(n);
  ASSERT_NE(p, nullptr);
  std::memset(p, 3, n);
  size_t rss_full = tu::rss_bytes();
  ta::free(p);
  EXPECT_EQ(ta::trim(0), 1) << "48 MiB freed: trim must give memory back and say so";
  size_t rss_after = tu::rss_bytes();
  EXPECT_EQ(ta::trim(0), 0) << "a second trim right after has nothing left to give back";
  EXPECT_LE(rss_after + n / 2, rss_full) << "48 MiB freed and trimmed, RSS went from " << rss_full << " to "
                                         << rss_after;
  // Everything still works after a trim, and trimmed memory comes back.
  for (int i = 0; i < 3; ++i) {
    void* q = ta::calloc(1, n);
    ASSERT_NE(q, nullptr);
    ASSERT_EQ(tu::find_nonzero(q, n), SIZE_MAX);
    std::memset(q, 4, n);
    ta::free(q);
    ta::trim(1 * tu::MiB);
  }
}

TEST(Trim, WithLiveSmallBlocks) {
  std::vector<void*> v;
  for (int i = 0; i < 50000; ++i) {
    v.push_back(ta::malloc(100 + i % 900));
    std::memset(v.back(), i & 0xff, 100 + i % 900);
  }
  for (size_t i = 0; i < v.size(); i += 2) ta::free(v[i]);
  ta::trim(0);
  for (size_t i = 1; i < v.size(); i += 2) {
    auto* b = static_cast<unsigned char*>(v[i]);
    ASSERT_EQ(b[0], static_cast<unsigned char>(i & 0xff)) << "trim damaged a live block";
    ASSERT_EQ(b[99], static_cast<unsigned char>(i & 0xff));
    ta::free(v[i]);
  }
}

}  // namespace

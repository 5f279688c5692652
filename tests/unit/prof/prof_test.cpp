// prof/prof.h and prof/internal.h: the sampling rule (a block of s bytes is
// sampled with probability 1 - exp(-s/mean)), ln and exp without libm, the
// marks' radix tree, the stack table and records, and the profile text.
// The core objects run without the override here (the test framework
// allocates with the C library), so the thread's count is prof's
// thread-local one.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "prof/internal.h"
#include "prof/prof.h"

namespace {

using namespace remalloc;

TEST(ProfMath, LnAndExpMatchLibm) {
  for (double x : {1e-300, 1e-16, 1e-9, 0.001, 0.1, 0.5, 0.7071, 0.99999, 1.0, 1.5, 2.0, 3.3, 1e6, 1e300}) {
    EXPECT_NEAR(prof::ln(x), std::log(x), 1e-12 * std::fabs(std::log(x)) + 1e-15) << x;
  }
  for (double x : {-700.0, -50.0, -6.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 1.0, 20.0, 300.0}) {
    EXPECT_NEAR(prof::exp_(x), std::exp(x), 1e-12 * std::exp(x)) << x;
  }
  EXPECT_LT(prof::ln(0), -1e299);
  EXPECT_EQ(prof::exp_(-800), 0);
}

// The count: n allocations of s bytes, each sampled when the count runs
// out. The number sampled is binomial(n, 1 - exp(-s/mean)) (each block
// independently: counts are memoryless); checked within 5 standard
// deviations, for small and for large blocks.
TEST(ProfSampling, EachBlockIsSampledWithProbabilityOneMinusExpOfSizeOverMean) {
  prof::Config c = prof::config();
  c.active = true;
  c.sample = 4096;
  c.interval = 0;
  c.memory_limit = 0;
  prof::configure(c);
  for (size_t s : {size_t(16), size_t(1000), size_t(4096), size_t(20000)}) {
    const size_t n = 200000;
    size_t sampled = 0;
    for (size_t i = 0; i < n + 1; i++) {
      if (!prof::due(s)) continue;
      prof::Ticket t;
      if (!prof::begin(&t)) continue;  // the first: only draws the count
      sampled++;
      prof::end(t, nullptr, s);  // no block: nothing recorded
    }
    double p = 1 - std::exp(-double(s) / 4096.0);
    double mean = double(n) * p, sd = std::sqrt(double(n) * p * (1 - p));
    EXPECT_NEAR(double(sampled), mean, 5 * sd + 1) << s << " bytes: " << sampled << " sampled, expected " << mean;
  }
  c.active = false;
  prof::configure(c);
  // Off: nothing is sampled, and the count restarts at kProfIdleBytes.
  size_t sampled = 0;
  for (int i = 0; i < 100000; i++) {
    if (!prof::due(4096)) continue;
    prof::Ticket t;
    if (prof::begin(&t)) sampled++;
  }
  EXPECT_EQ(sampled, 0u);
}

TEST(ProfMarks, OneBitPerPageAnywhere) {
  const uintptr_t addrs[] = {uintptr_t(1) << 12, uintptr_t(0x7f1234560000), uintptr_t(0x7f1234561000),
                             uintptr_t(0x5555deadb000), (uintptr_t(1) << 47) - 4096};
  EXPECT_FALSE(prof::is_marked(reinterpret_cast<void*>(addrs[1])));
  {
    LockGuard g(prof::g_lock);
    for (uintptr_t a : addrs) prof::set_mark_locked(a);
  }
  for (uintptr_t a : addrs) {
    EXPECT_TRUE(prof::is_marked(reinterpret_cast<void*>(a))) << std::hex << a;
    EXPECT_FALSE(prof::is_marked_slow(reinterpret_cast<void*>(a + 8192))) << std::hex << a;
  }
  EXPECT_FALSE(prof::is_marked_slow(reinterpret_cast<void*>(uintptr_t(0x7f1234562000))));
  EXPECT_FALSE(prof::is_marked_slow(reinterpret_cast<void*>(uintptr_t(1) << 50)));  // outside 47 bits
  prof::clear_mark(addrs[1]);
  EXPECT_FALSE(prof::is_marked_slow(reinterpret_cast<void*>(addrs[1])));
  EXPECT_TRUE(prof::is_marked_slow(reinterpret_cast<void*>(addrs[2])));  // its neighbour kept
  for (uintptr_t a : addrs) prof::clear_mark(a);
  for (uintptr_t a : addrs) EXPECT_FALSE(prof::is_marked_slow(reinterpret_cast<void*>(a)));
}

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Stacks are interned by their frames; records count live blocks against
// their stack; the profile prints raw counts, the first frame less one.
TEST(ProfTable, StacksRecordsAndTheProfileText) {
  const uintptr_t a[] = {0x401234, 0x402000, 0x403000};
  const uintptr_t b[] = {0x401234, 0x402004};
  char path[] = "/tmp/remalloc-prof-unit-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    LockGuard g(prof::g_lock);
    prof::Stack* sa = prof::intern_locked(a, 3);
    prof::Stack* sb = prof::intern_locked(b, 2);
    ASSERT_TRUE(sa && sb);
    EXPECT_NE(sa, sb);
    EXPECT_EQ(prof::intern_locked(a, 3), sa);
    EXPECT_NE(prof::intern_locked(a, 2), sa);  // a prefix is another stack
    sa->alloc_objs += 3;
    sa->alloc_bytes += 300;
    prof::add_record_locked(0x10000000, 100, sa);
    prof::add_record_locked(0x10001000, 100, sa);
    sb->alloc_objs += 1;
    sb->alloc_bytes += 7000;
    prof::add_record_locked(0x10002000, 7000, sb);
    EXPECT_EQ(sa->live_objs, 2u);
    EXPECT_EQ(sa->live_bytes, 200u);
    prof::Record* r = prof::take_record_locked(0x10001000);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->stack, sa);
    prof::free_record_locked(r);
    EXPECT_EQ(prof::take_record_locked(0x10001000), nullptr);
    EXPECT_EQ(sa->live_objs, 1u);
    EXPECT_EQ(sa->live_bytes, 100u);
  }
  EXPECT_TRUE(prof::is_marked(reinterpret_cast<void*>(0x10002000)));
  prof::Config c = prof::config();
  c.sample = 4096;
  prof::configure(c);
  ASSERT_EQ(prof::dump(path, nullptr), 0);
  std::string text = read_all(path);
  unlink(path);
  // Header: the sums (the stack of a[0..1] has no counts).
  EXPECT_EQ(text.rfind("heap profile: 2: 7100 [4: 7300] @ heap_v2/4096\n", 0), 0u) << text;
  EXPECT_NE(text.find("\n 1: 100 [3: 300] @ 0x401233 0x402000 0x403000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\n 1: 7000 [1: 7000] @ 0x401233 0x402004\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\n\nMAPPED_LIBRARIES:\n"), std::string::npos) << text;
  EXPECT_NE(text.find("[stack]"), std::string::npos) << "the maps follow";
  // A path that cannot be written: -1 with errno.
  errno = 0;
  EXPECT_EQ(prof::dump("/nonexistent-dir/x.heap", nullptr), -1);
  EXPECT_EQ(errno, ENOENT);
}

}  // namespace

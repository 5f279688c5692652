// Freeing a pointer remalloc never gave out, or a large block twice, is
// reported on stderr with the address and aborts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "test_alloc.h"
#include "test_util.h"

namespace {

int g_global_array[64];

// Matches a death's stderr when it mentions the address (hex, any case,
// with or without 0x and leading zeros).
testing::Matcher<const std::string&> mentions(const void* addr) {
  std::string h = tu::hex(addr);
  return testing::Truly([h](const std::string& err) { return tu::lower(err).find(h) != std::string::npos; });
}

// "fast" death tests fork without exec, so the child has the parent's
// addresses: the parent knows which address the message must mention.
class InvalidFree : public testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "fast"); }
};

using InvalidFreeDeathTest = InvalidFree;

TEST_F(InvalidFreeDeathTest, StackAddress) {
  char buf[64];
  void* p = tu::opaque(static_cast<void*>(buf + 16));
  EXPECT_EXIT(ta::free(p), testing::KilledBySignal(SIGABRT), mentions(p));
}

TEST_F(InvalidFreeDeathTest, GlobalAddress) {
  void* p = tu::opaque(static_cast<void*>(g_global_array + 4));
  EXPECT_EXIT(ta::free(p), testing::KilledBySignal(SIGABRT), mentions(p));
}

TEST_F(InvalidFreeDeathTest, InsideLargeBlock) {
  char* big = static_cast<char*>(ta::malloc(4 * tu::MiB));
  ASSERT_NE(big, nullptr);
  for (size_t off : {size_t{16}, size_t{4096}, 2 * tu::MiB + 64}) {
    void* p = tu::opaque(static_cast<void*>(big + off));
    EXPECT_EXIT(ta::free(p), testing::KilledBySignal(SIGABRT), mentions(p)) << "offset " << off;
  }
  ta::free(big);
}

TEST_F(InvalidFreeDeathTest, SmallBlockPlus8) {
  char* q = static_cast<char*>(ta::malloc(64));
  ASSERT_NE(q, nullptr);
  void* p = tu::opaque(static_cast<void*>(q + 8));
  EXPECT_EXIT(ta::free(p), testing::KilledBySignal(SIGABRT), mentions(p));
  ta::free(q);
}

TEST_F(InvalidFreeDeathTest, MediumBlockPlus16) {
  char* q = static_cast<char*>(ta::malloc(3000));
  ASSERT_NE(q, nullptr);
  void* p = tu::opaque(static_cast<void*>(q + 16));
  EXPECT_EXIT(ta::free(p), testing::KilledBySignal(SIGABRT), mentions(p));
  ta::free(q);
}

TEST_F(InvalidFreeDeathTest, ForeignMmapPage) {
  void* m = mmap(nullptr, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  void* p = tu::opaque(static_cast<void*>(static_cast<char*>(m) + 4096));
  EXPECT_EXIT(ta::free(p), testing::KilledBySignal(SIGABRT), mentions(p));
  EXPECT_EXIT(ta::free(m), testing::KilledBySignal(SIGABRT), mentions(m));
  munmap(m, 1 << 16);
}

TEST_F(InvalidFreeDeathTest, ForeignAllocatorBlock) {
  if (ta::kOverride) GTEST_SKIP() << "the process's malloc is remalloc here";
  void* p = ::malloc(100);  // glibc's (or the sanitizer's) block
  EXPECT_EXIT(ta::free(p), testing::KilledBySignal(SIGABRT), mentions(p));
  ::free(p);
}

TEST_F(InvalidFreeDeathTest, DoubleFreeLargeBlock) {
  for (size_t n : {2 * tu::MiB, 40 * tu::MiB}) {
    EXPECT_EXIT(
        {
          void* p = ta::malloc(n);
          std::memset(p, 1, 4096);
          ta::free(p);
          ta::free(tu::opaque(p));
        },
        testing::KilledBySignal(SIGABRT), testing::Not(testing::IsEmpty()))
        << "size " << n;
  }
}

TEST_F(InvalidFreeDeathTest, DoubleFreeLargeBlockMentionsAddress) {
  // Same, with the address known to the parent: the block is allocated
  // before the death test forks, freed twice in the child.
  void* p = ta::malloc(8 * tu::MiB);
  ASSERT_NE(p, nullptr);
  EXPECT_EXIT(
      {
        ta::free(p);
        ta::free(tu::opaque(p));
      },
      testing::KilledBySignal(SIGABRT), mentions(p));
  ta::free(p);
}

TEST_F(InvalidFreeDeathTest, ReallocOfInvalidPointer) {
  char buf[64];
  void* p = tu::opaque(static_cast<void*>(buf + 16));
  EXPECT_EXIT((void)!ta::realloc(p, 100), testing::KilledBySignal(SIGABRT), mentions(p));
  char* big = static_cast<char*>(ta::malloc(4 * tu::MiB));
  void* q = tu::opaque(static_cast<void*>(big + 8192));
  EXPECT_EXIT((void)!ta::realloc(q, 8 * tu::MiB), testing::KilledBySignal(SIGABRT), mentions(q));
  ta::free(big);
}

TEST_F(InvalidFreeDeathTest, FreedLargeBlockReallocAborts) {
  void* p = ta::malloc(6 * tu::MiB);
  ASSERT_NE(p, nullptr);
  EXPECT_EXIT(
      {
        ta::free(p);
        (void)!ta::realloc(tu::opaque(p), 12 * tu::MiB);
      },
      testing::KilledBySignal(SIGABRT), mentions(p));
  ta::free(p);
}

}  // namespace

// The validator (remalloc_validate, run by itself in the checked build) and
// the checked build's detection of writes into freed blocks and past a
// block's end into the next free block.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "remalloc/remalloc.h"
#include "test_alloc.h"
#include "test_util.h"

#ifndef REMALLOC_TEST_CHECKED
#define REMALLOC_TEST_CHECKED 0
#endif

namespace {

testing::Matcher<const std::string&> says(const char* what, const void* addr) {
  std::string h = tu::hex(addr);
  std::string w = what;
  return testing::Truly([h, w](const std::string& err) {
    std::string l = tu::lower(err);
    return l.find(h) != std::string::npos && l.find(w) != std::string::npos;
  });
}

class Checked : public testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "fast"); }
};

TEST_F(Checked, ValidatorAcceptsAHeapInUse) {
  std::vector<void*> blocks;
  for (size_t i = 0; i < tu::scaled(3000, 300); i++) {
    size_t n = (i * 7919) % 5 == 0 ? (i % 64 + 1) * 40960 : i % 3000 + 1;
    blocks.push_back(ta::malloc(n));
    if (i % 3 == 0) {
      ta::free(blocks[i / 2]);
      blocks[i / 2] = nullptr;
    }
    if (i % 7 == 0 && blocks[i]) blocks[i] = ta::realloc(blocks[i], n * 3);
  }
  EXPECT_EQ(remalloc_validate(), 0);
  for (void* p : blocks) ta::free(p);
  EXPECT_EQ(remalloc_validate(), 0);
}

constexpr uintptr_t kNowhere = 0x5a5a5a5a5a50;  // in no arena, never dereferenced

TEST_F(Checked, ValidatorCatchesADamagedFreeList) {
  // A freed block's link overwritten with an address outside its slab: the
  // validator of the owner's slabs reports it.
  void* keep = ta::malloc(64);
  void* p = ta::malloc(64);
  ASSERT_NE(p, nullptr);
  EXPECT_EXIT(
      {
        ta::free(p);
        *static_cast<uintptr_t*>(p) = kNowhere;
        remalloc_validate();
        _exit(0);
      },
      testing::KilledBySignal(SIGABRT), says("free list", reinterpret_cast<void*>(kNowhere)));
  ta::free(p);
  ta::free(keep);
}

#if REMALLOC_TEST_CHECKED
TEST_F(Checked, WriteIntoFreedBlockIsReported) {
  for (size_t n : {48, 1000, 20000}) {
    void* keep = ta::malloc(n);
    void* p = ta::malloc(n);
    ASSERT_NE(p, nullptr);
    char* where = static_cast<char*>(p) + n / 2;
    EXPECT_EXIT(
        {
          ta::free(p);
          *where = 1;  // use after free
          void* q = ta::malloc(n);  // hands p out again: the poison is broken
          ta::free(q);
          _exit(0);
        },
        testing::KilledBySignal(SIGABRT), says("write into a freed block", where));
    ta::free(p);
    ta::free(keep);
  }
}

TEST_F(Checked, WritePastABlockIntoTheNextFreeBlockIsReported) {
  // Two neighbouring blocks of one slab; the second is freed, then the
  // first overflows into its link word.
  void* a = ta::malloc(64);
  void* b = ta::malloc(64);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(static_cast<char*>(b) - static_cast<char*>(a), 64) << "blocks not adjacent";
  EXPECT_EXIT(
      {
        ta::free(b);
        memset(a, 'x', 72);  // 8 bytes past the end of a
        void* q = ta::malloc(64);
        ta::free(q);
        _exit(0);
      },
      testing::KilledBySignal(SIGABRT), says("overwritten", b));
  ta::free(b);
  ta::free(a);
}
#endif

}  // namespace

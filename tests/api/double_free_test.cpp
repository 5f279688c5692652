// Double and invalid frees of small blocks: freeing a small block twice,
// reallocating a freed one, each from the owner thread and from another
// thread, is reported with the address and aborts (glibc does the same). With
// abort turned off it is a counted warning and the second free is ignored:
// the block never gets two owners.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "remalloc/remalloc.h"
#include "test_alloc.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using tu::says;

class SmallDoubleFree : public testing::TestWithParam<size_t> {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "fast"); }
};

TEST_P(SmallDoubleFree, TwiceInARowAborts) {
  void* p = ta::malloc(GetParam());
  ASSERT_NE(p, nullptr);
  EXPECT_EXIT(
      {
        ta::free(p);
        ta::free(tu::opaque(p));
      },
      testing::KilledBySignal(SIGABRT), says("double free", p));
  ta::free(p);
}

TEST_P(SmallDoubleFree, TwiceWithOtherFreesBetweenAborts) {
  // p is no longer at the head of the slab's free list. (`keep`, from the
  // same slab, keeps it in use: an empty slab goes back to the page heap,
  // and a free into it is then reported as an invalid pointer instead.)
  void* keep = ta::malloc(GetParam());
  void* p = ta::malloc(GetParam());
  ASSERT_NE(p, nullptr);
  EXPECT_EXIT(
      {
        std::vector<void*> more;
        for (int i = 0; i < 50; i++) more.push_back(ta::malloc(GetParam()));
        ta::free(p);
        for (void* q : more) ta::free(q);
        ta::free(tu::opaque(p));
      },
      testing::KilledBySignal(SIGABRT), says("double free", p));
  ta::free(p);
  ta::free(keep);
}

TEST_P(SmallDoubleFree, ReallocOfFreedBlockAborts) {
  void* p = ta::malloc(GetParam());
  ASSERT_NE(p, nullptr);
  EXPECT_EXIT(
      {
        ta::free(p);
        void* q = ta::realloc(tu::opaque(p), GetParam() * 2);
        ta::free(q);
      },
      testing::KilledBySignal(SIGABRT), says("realloc", p));
  ta::free(p);
}

TEST_P(SmallDoubleFree, SecondFreeFromAnotherThreadAborts) {
  void* p = ta::malloc(GetParam());
  ASSERT_NE(p, nullptr);
  EXPECT_EXIT(
      {
        // The thread exists before p is freed, so that its own state is
        // not allocated in p's place.
        std::atomic<bool> go{false};
        std::thread t([p, &go] {
          while (!go.load()) std::this_thread::yield();
          ta::free(tu::opaque(p));
        });
        ta::free(p);
        go.store(true);
        t.join();
      },
      testing::KilledBySignal(SIGABRT), says("double free", p));
  ta::free(p);
}

TEST_P(SmallDoubleFree, TwiceFromAnotherThreadAborts) {
  void* p = ta::malloc(GetParam());
  ASSERT_NE(p, nullptr);
  EXPECT_EXIT(
      {
        std::thread t([p] {
          ta::free(p);
          ta::free(tu::opaque(p));
        });
        t.join();
      },
      testing::KilledBySignal(SIGABRT), says("double free", p));
  ta::free(p);
}

TEST_P(SmallDoubleFree, WarningModeNeverGivesOneBlockTwice) {
  // A counted warning instead of an abort: the second free is ignored, so
  // the next two allocations of the size are two different blocks.
  ASSERT_EQ(remalloc_option_set("abort_on_invalid", 0), 0);
  size_t n = GetParam();
  void* p = ta::malloc(n);
  ASSERT_NE(p, nullptr);
  auto invalid_frees = [] {
    std::string json(1 << 16, '\0');
    json.resize(remalloc_stats_json(json.data(), json.size()));
    return tu::json_number(json, "invalid_frees");
  };
  long long before = invalid_frees();
  ta::free(p);
  ta::free(tu::opaque(p));
  long long after = invalid_frees();
  void* a = ta::malloc(n);
  void* b = ta::malloc(n);
  ASSERT_EQ(remalloc_option_set("abort_on_invalid", 1), 0);
  EXPECT_NE(a, b) << "one block handed out twice after a double free";
  EXPECT_GE(before, 0);
  EXPECT_EQ(after, before + 1);
  ta::free(a);
  ta::free(b);
}

TEST_P(SmallDoubleFree, LiveBlockThatLooksFreedIsFreedNormally) {
  // A program may store anything in its block, even bytes equal to the
  // free mark: the owner's check finds the block on no list and frees it.
  size_t n = GetParam();
  std::vector<void*> live;
  for (int i = 0; i < 8; i++) live.push_back(ta::malloc(n));
  for (void* q : live) {
    ASSERT_NE(q, nullptr);
    static_cast<uintptr_t*>(q)[1] = reinterpret_cast<uintptr_t>(q) ^ 0x9d3b5f2a6c718e43ull;
  }
  for (void* q : live) ta::free(q);
  // Each comes back once.
  std::vector<void*> again;
  for (int i = 0; i < 8; i++) again.push_back(ta::malloc(n));
  for (size_t i = 0; i < again.size(); i++)
    for (size_t j = i + 1; j < again.size(); j++) EXPECT_NE(again[i], again[j]);
  for (void* q : again) ta::free(q);
}

INSTANTIATE_TEST_SUITE_P(Sizes, SmallDoubleFree, testing::Values(16, 48, 1024, 60000),
                         [](const testing::TestParamInfo<size_t>& i) { return std::to_string(i.param); });

}  // namespace

// platform/vma.h: the VMA estimate and budget. The estimate is the last
// count of /proc/self/maps plus what note_added reported since; can_add
// refuses past the budget, recounting first when something changed;
// set_budget(0) restores the default, a quarter of vm.max_map_count.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

#include "platform/vma.h"
#include "test_util.h"

namespace {

using namespace remalloc;

// Lines of /proc/self/maps, read without allocating (so that the count
// itself does not change the mappings).
size_t maps_lines() {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[4096];
  size_t n = 0;
  ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0)
    for (ssize_t i = 0; i < r; i++) n += buf[i] == '\n';
  close(fd);
  return n;
}

// `n` mappings that cannot merge with each other (alternate protections
// over one reservation), unmapped at the end of the scope.
class Mappings {
 public:
  explicit Mappings(size_t n) : bytes_(2 * n * 4096) {
    base_ = mmap(nullptr, bytes_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base_ == MAP_FAILED) {
      base_ = nullptr;
      return;
    }
    for (size_t i = 0; i < n; i++)
      mprotect(static_cast<char*>(base_) + 2 * i * 4096, 4096, PROT_READ);
  }
  ~Mappings() {
    if (base_) munmap(base_, bytes_);
  }
  bool ok() const { return base_ != nullptr; }

 private:
  void* base_;
  size_t bytes_;
};

class Vma : public ::testing::Test {
 protected:
  void SetUp() override {
    vma::set_budget(0);
    vma::recount();
  }
  void TearDown() override {
    vma::set_budget(0);
    vma::recount();
  }
};

TEST_F(Vma, EstimateIsTheCountOfProcSelfMaps) {
  size_t before = maps_lines();
  vma::recount();
  size_t e = vma::estimate();
  size_t after = maps_lines();
  EXPECT_GE(e, before < after ? before : after);
  EXPECT_LE(e, before > after ? before : after);
  EXPECT_GT(e, 5u) << "a process has more mappings than that";
}

TEST_F(Vma, RecountSeesNewMappings) {
  size_t e0 = vma::estimate();
  Mappings m(100);
  ASSERT_TRUE(m.ok());
  // Without a recount the estimate does not know about them...
  EXPECT_EQ(vma::estimate(), e0);
  vma::recount();
  // ...with one it counts each (one reservation cut into 100 read-only pages
  // and 100 PROT_NONE gaps: 199 VMAs more; allow for the C library's own).
  size_t e1 = vma::estimate();
  EXPECT_GE(e1, e0 + 199);
  EXPECT_LE(e1, e0 + 210);
  EXPECT_EQ(e1, maps_lines());
}

TEST_F(Vma, NoteAddedRaisesTheEstimateUntilTheNextCount) {
  size_t e0 = vma::estimate();
  vma::note_added(5);
  EXPECT_EQ(vma::estimate(), e0 + 5);
  vma::note_added(1000);
  EXPECT_EQ(vma::estimate(), e0 + 1005);
  vma::recount();
  EXPECT_EQ(vma::estimate(), e0) << "a recount replaces what note_added reported";
}

TEST_F(Vma, CanAddRefusesPastTheBudget) {
  size_t e = vma::estimate();
  vma::set_budget(e + 10);
  EXPECT_EQ(vma::budget(), e + 10);
  EXPECT_TRUE(vma::can_add(0));
  EXPECT_TRUE(vma::can_add(10));
  EXPECT_FALSE(vma::can_add(11));
  EXPECT_FALSE(vma::can_add(1000));
  vma::note_added(10);
  EXPECT_TRUE(vma::can_add(0));
  vma::recount();  // forget the 10: they were never mapped
  vma::set_budget(e / 2);
  EXPECT_FALSE(vma::can_add(0)) << "the process is already past this budget";
  EXPECT_FALSE(vma::can_add(1));
}

// The estimate only over-counts: when it says no and something changed
// since the last count, can_add recounts and answers from the real count.
TEST_F(Vma, CanAddRecountsWhenTheEstimateSaysNo) {
  size_t e = vma::estimate();
  vma::set_budget(e + 20);
  vma::note_added(1000);  // reported, but nothing was mapped
  EXPECT_EQ(vma::estimate(), e + 1000);
  EXPECT_TRUE(vma::can_add(10)) << "can_add did not recount";
  EXPECT_LE(vma::estimate(), e + 5) << "the recount did not replace the estimate";

  // Mappings made behind the estimate's back are seen by that recount too.
  Mappings m(50);
  ASSERT_TRUE(m.ok());
  vma::note_changed();
  vma::note_added(1000);
  EXPECT_FALSE(vma::can_add(10)) << "the real count is past the budget";
  EXPECT_GE(vma::estimate(), e + 99);
}

TEST_F(Vma, SetBudgetZeroRestoresTheDefault) {
  size_t def = tu::max_map_count() / 4;
  EXPECT_EQ(vma::budget(), def);
  vma::set_budget(12345);
  EXPECT_EQ(vma::budget(), 12345u);
  vma::set_budget(0);
  EXPECT_EQ(vma::budget(), def);
  vma::set_budget(1);
  EXPECT_EQ(vma::budget(), 1u);
  EXPECT_FALSE(vma::can_add(0));
  vma::set_budget(0);
  EXPECT_EQ(vma::budget(), def);
  EXPECT_TRUE(vma::can_add(3));
}

}  // namespace

// platform/movers.h: the mremap mover never leaves a block split between
// its source and its destination. Since Linux 6.17 one move-only mremap may
// span several VMAs and fail after moving the first ones; the mover moves
// VMA by VMA (each call all or nothing) and finishes by copying when a later
// VMA refuses. These tests build sources of two VMAs the way remalloc's
// arenas get them (a block that grew into pages moved in by an earlier
// mremap) and check every page of the result.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "base/base.h"
#include "platform/movers.h"

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

namespace {

using namespace remalloc;

constexpr size_t kPages = 16;  // the block: two VMAs of 8 pages
constexpr size_t kHalf = kPages / 2;

uint64_t word_of(size_t page, size_t i) { return (uint64_t(page) << 32) ^ (i * 0x9e3779b97f4a7c15ull) ^ 0x5eed; }

void fill_page(char* p, size_t page) {
  auto* w = reinterpret_cast<uint64_t*>(p);
  for (size_t i = 0; i < kPageSize / 8; i++) w[i] = word_of(page, i);
}

// Pages of [p, p + kPages pages) that do not hold their pattern, as text
// ("" when all do).
std::string wrong_pages(const char* p) {
  std::string bad;
  for (size_t page = 0; page < kPages; page++) {
    const auto* w = reinterpret_cast<const uint64_t*>(p + page * kPageSize);
    for (size_t i = 0; i < kPageSize / 8; i++) {
      if (w[i] != word_of(page, i)) {
        bad += std::to_string(page) + (w[i] == 0 ? "(zero) " : "(other) ");
        break;
      }
    }
  }
  return bad;
}

bool reads_zero(const char* p, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (p[i]) return false;
  return true;
}

// Number of /proc/self/maps lines that overlap [p, p + len).
size_t vmas_over(const char* p, size_t len) {
  FILE* f = fopen("/proc/self/maps", "r");
  if (!f) return 0;
  size_t n = 0;
  unsigned long lo, hi;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "%lx-%lx", &lo, &hi) != 2) continue;
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (lo < a + len && hi > a) n++;
  }
  fclose(f);
  return n;
}

// A reservation of 3 x kPages pages: the source block at its start (its
// second half moved in from elsewhere by mremap, so a VMA of its own, as in
// an arena after a DONTUNMAP move), the destination after it.
class TwoVmaBlock {
 public:
  TwoVmaBlock() {
    size_t bytes = 3 * kPages * kPageSize;
    base_ = static_cast<char*>(mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (base_ == MAP_FAILED) {
      base_ = nullptr;
      return;
    }
    for (size_t page = 0; page < kHalf; page++) fill_page(src() + page * kPageSize, page);
    // The second half: written in another mapping, moved in.
    char* other = static_cast<char*>(
        mmap(nullptr, kHalf * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (other == MAP_FAILED) return;
    for (size_t page = kHalf; page < kPages; page++) fill_page(other + (page - kHalf) * kPageSize, page);
    void* r = mremap(other, kHalf * kPageSize, kHalf * kPageSize, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
                     src() + kHalf * kPageSize);
    moved_in_ = r == src() + kHalf * kPageSize;
    munmap(other, kHalf * kPageSize);
  }
  ~TwoVmaBlock() {
    if (base_) munmap(base_, 3 * kPages * kPageSize);
  }
  bool ready() const { return base_ && moved_in_; }
  char* src() const { return base_; }
  char* dst() const { return base_ + 2 * kPages * kPageSize; }
  size_t len() const { return kPages * kPageSize; }

 private:
  char* base_ = nullptr;
  bool moved_in_ = false;
};

bool moves_by_vma() { return std::string(movers::mremap_mode()).find("VMA by VMA") != std::string::npos; }

TEST(MremapMover, MovesABlockOfTwoVmasByRemappingBoth) {
  if (!movers::mremap_dontunmap_available()) GTEST_SKIP() << "no mremap(MREMAP_DONTUNMAP) here";
  if (!moves_by_vma()) GTEST_SKIP() << "no PROCMAP_QUERY here: " << movers::mremap_mode();
  TwoVmaBlock b;
  ASSERT_TRUE(b.ready()) << "could not build a block of two VMAs";
  ASSERT_EQ(vmas_over(b.src(), b.len()), 2u) << "the source should span two VMAs";
  ASSERT_EQ(wrong_pages(b.src()), "");

  movers::Outcome out;
  ASSERT_TRUE(movers::move_mremap(b.dst(), b.src(), b.len(), &out)) << "errno " << out.err;
  EXPECT_EQ(wrong_pages(b.dst()), "") << "pages lost or wrong at the destination";
  EXPECT_TRUE(reads_zero(b.src(), b.len())) << "the source should read zeros after a move";
  EXPECT_EQ(out.moved, b.len()) << "every page should be remapped, none copied";
  EXPECT_EQ(out.copied, 0u);
  EXPECT_EQ(out.calls, 2) << "one mremap call per VMA";
  EXPECT_TRUE(out.src_clean);
  EXPECT_FALSE(out.partial);
}

// The second VMA is registered with a userfaultfd, which a multi-VMA mremap
// refuses after moving the first (EFAULT): the block must still end whole
// at one place, and the mover must say which.
TEST(MremapMover, AVmaThatRefusesTheMoveLeavesNoBlockSplit) {
  if (!movers::mremap_dontunmap_available()) GTEST_SKIP() << "no mremap(MREMAP_DONTUNMAP) here";
  TwoVmaBlock b;
  ASSERT_TRUE(b.ready()) << "could not build a block of two VMAs";
  int fd = int(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0) GTEST_SKIP() << "no userfaultfd here (errno " << errno << ")";
  struct uffdio_api api;
  memset(&api, 0, sizeof api);
  api.api = UFFD_API;
  struct uffdio_register reg;
  memset(&reg, 0, sizeof reg);
  reg.range.start = reinterpret_cast<uintptr_t>(b.src() + kHalf * kPageSize);
  reg.range.len = kHalf * kPageSize;
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  if (ioctl(fd, UFFDIO_API, &api) != 0 || ioctl(fd, UFFDIO_REGISTER, &reg) != 0) {
    close(fd);
    GTEST_SKIP() << "cannot register a range with userfaultfd here (errno " << errno << ")";
  }
  ASSERT_EQ(vmas_over(b.src(), b.len()), 2u) << "the source should span two VMAs";

  movers::Outcome out;
  bool ok = movers::move_mremap(b.dst(), b.src(), b.len(), &out);
  close(fd);
  // The property, whatever the kernel: the block is whole at one place.
  if (ok) {
    EXPECT_EQ(wrong_pages(b.dst()), "") << "pages lost or wrong at the destination";
    EXPECT_TRUE(reads_zero(b.src(), b.len())) << "the source should read zeros after a move";
    EXPECT_EQ(out.moved + out.copied, b.len());
  } else {
    EXPECT_EQ(wrong_pages(b.src()), "") << "mremap failed (errno " << out.err
                                        << ") but the source lost pages: the block is split";
  }
  // With the VMA boundaries at hand the mover remaps the plain VMA and
  // finishes the move (by remapping or copying the registered one).
  if (moves_by_vma()) {
    EXPECT_TRUE(ok) << "errno " << out.err;
    EXPECT_GE(out.moved, kHalf * kPageSize) << "the plain VMA should be remapped";
  }
}

}  // namespace

// The validator (remalloc_validate, run by itself in the checked build) and
// the checked build's detection of writes into freed blocks and past a
// block's end into the next free block.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "remalloc/remalloc.h"
#include "test_alloc.h"
#include "test_matchers.h"
#include "test_util.h"

#ifndef REMALLOC_TEST_CHECKED
#define REMALLOC_TEST_CHECKED 0
#endif

namespace {

using tu::says;

// The blocks these tests damage are slab blocks: the secure build's sampled
// blocks (one small malloc in REMALLOC_GUARD_SAMPLE, each on a page of its
// own that faults once freed) are tested in sampled_test.cpp, so sampling
// is off while these run (0 is a valid value in every build).
class NoSampling : public testing::Test {
 protected:
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "fast");
    saved_ = remalloc_option_get("guard_sample");
    ASSERT_EQ(remalloc_option_set("guard_sample", 0), 0);
  }
  void TearDown() override { remalloc_option_set("guard_sample", saved_); }
  long saved_ = 0;
};

class Checked : public NoSampling {};

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
      testing::KilledBySignal(SIGABRT),
      // The secure build stores links encoded: the validator reports what
      // the overwritten link decodes to, not the value written.
      REMALLOC_TEST_SECURE ? testing::HasSubstr("slab free list leaves the slab")
                           : says("free list", reinterpret_cast<void*>(kNowhere)));
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
  // Two neighbouring blocks of one slab (the free list need not hand them
  // out in address order: look for a pair); the second is freed, then the
  // first overflows into its link word.
  std::vector<void*> blocks;
  void* a = nullptr;
  void* b = nullptr;
  for (int i = 0; i < 1024 && !a; i++) {
    void* p = ta::malloc(64);
    ASSERT_NE(p, nullptr);
    for (void* q : blocks) {
      if (static_cast<char*>(p) - static_cast<char*>(q) == 64) a = q, b = p;
      if (static_cast<char*>(q) - static_cast<char*>(p) == 64) a = p, b = q;
      if (a) break;
    }
    blocks.push_back(p);
  }
  ASSERT_NE(a, nullptr) << "no two neighbouring 64-byte blocks among 1024";
  EXPECT_EXIT(
      {
        ta::free(b);
        memset(a, 'x', 72);  // 8 bytes past the end of a
        void* q = ta::malloc(64);
        ta::free(q);
        _exit(0);
      },
      testing::KilledBySignal(SIGABRT), says("overwritten", b));
  for (void* p : blocks) ta::free(p);
}
#endif

}  // namespace

// --- the secure build (cmake -DREMALLOC_SECURE=ON) -------------------------
#ifndef REMALLOC_TEST_SECURE
#define REMALLOC_TEST_SECURE 0
#endif

namespace {

// Does this kernel have MADV_GUARD_INSTALL (Linux 6.13)? The same probe as
// remalloc's: without it the secure build adds no guard pages.
bool kernel_has_guards() {
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  bool ok = madvise(p, 4096, 102) == 0;
  munmap(p, 4096);
  return ok;
}

class Secure : public NoSampling {
 protected:
  void SetUp() override {
    if (!REMALLOC_TEST_SECURE) GTEST_SKIP() << "not the secure build";
    NoSampling::SetUp();
  }
};

TEST_F(Secure, WriteJustPastALargeBlockHitsItsGuardPage) {
  if (!kernel_has_guards()) GTEST_SKIP() << "kernel without MADV_GUARD_INSTALL";
  for (size_t n : {size_t{70000}, size_t{300000}, 3 * tu::MiB, 4 * tu::MiB}) {
    EXPECT_EXIT(
        {
          char* p = static_cast<char*>(ta::malloc(n));
          size_t u = ta::usable_size(p);
          std::memset(p, 1, u);  // the whole usable size is writable
          p = static_cast<char*>(ta::realloc(p, 3 * n));  // and after a realloc that moves
          u = ta::usable_size(p);
          std::memset(p, 2, u);
          reinterpret_cast<volatile char*>(p)[u] = 3;  // the first byte past it
          std::exit(0);
        },
        testing::KilledBySignal(SIGSEGV), "")
        << "no guard page after a block of " << n;
  }
}

TEST_F(Secure, WriteJustPastASlabHitsItsGuardPage) {
  if (!kernel_has_guards()) GTEST_SKIP() << "kernel without MADV_GUARD_INSTALL";
  EXPECT_EXIT(
      {
        // For every new block, look at the page after the one holding its
        // end. While that page starts another block of the slab (owned:
        // 1 KiB blocks start on every page), it is left alone (it may be a
        // free block, poisoned in the checked build). Once it starts no
        // block, the block is the last of its slab and that page must be
        // the slab's guard: the write (64 bytes in) faults.
        for (int i = 0; i < 100000; i++) {
          char* p = static_cast<char*>(ta::malloc(1024));
          std::memset(p, 1, 1024);
          uintptr_t next_page = (reinterpret_cast<uintptr_t>(p) + 1024 + 4095) & ~uintptr_t{4095};
          if (ta::owns(reinterpret_cast<void*>(next_page))) continue;
          reinterpret_cast<volatile char*>(next_page)[64] = 2;
        }
        std::exit(0);
      },
      testing::KilledBySignal(SIGSEGV), "");
}

TEST_F(Secure, OverwrittenFreeListLinkIsCaught) {
  // A use after free writes a pointer over a freed block's link: the next
  // allocation that hands the block out decodes it to an address outside
  // the slab and aborts, instead of handing out the forged address.
  EXPECT_DEATH(
      {
        static char target[64];
        void* p = ta::malloc(48);
        ta::free(p);
        *static_cast<void**>(p) = target;  // the forged link
        void* a = ta::malloc(48);
        void* b = ta::malloc(48);
        std::printf("%p %p\n", a, b);
        std::exit(b == target ? 1 : 0);
      },
      "link was overwritten");
}

TEST_F(Secure, NewSlabsHandOutBlocksInShuffledOrder) {
  // In the normal build a fresh slab hands out consecutive blocks; here the
  // order within each page is random.
  std::vector<char*> ps;
  for (int i = 0; i < 256; i++) ps.push_back(static_cast<char*>(ta::malloc(32)));
  size_t ascending = 0;
  for (size_t i = 1; i < ps.size(); i++) ascending += ps[i] == ps[i - 1] + 32;
  for (char* p : ps) ta::free(p);
  EXPECT_LT(ascending, ps.size() / 4) << "blocks handed out in address order";
}

}  // namespace

// realloc keeps contents through every path of the relocation engine:
// small -> large -> huge (256 MiB) and back, in-place growth and shrink,
// moves by each mover, injected mover failures, moves after fork, and
// thousands of moves within the VMA limit.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "test_alloc.h"
#include "test_util.h"

namespace {

size_t reloc_events(const remalloc_stats_t& s) {
  return s.realloc_inplace + s.grow_inplace + s.shrink_inplace + s.moves_mremap + s.moves_uffd + s.moves_copy;
}
size_t moves(const remalloc_stats_t& s) { return s.moves_mremap + s.moves_uffd + s.moves_copy; }

// Grows and shrinks one block through the chain, checking the pattern of the
// part that must survive each step, and filling the new tail.
void realloc_chain(const std::vector<size_t>& chain, bool with_blockers) {
  const uint64_t seed = 0xc0ffee;
  void* p = nullptr;
  size_t have = 0;
  std::vector<void*> blockers;
  for (size_t n : chain) {
    void* q = ta::realloc(p, n);
    ASSERT_NE(q, nullptr) << "realloc(" << have << " -> " << n << ")";
    ASSERT_TRUE(tu::is_aligned(q, 16));
    ASSERT_GE(ta::usable_size(q), n);
    size_t keep = have < n ? have : n;
    size_t bad = tu::check(q, keep, seed);
    ASSERT_EQ(bad, SIZE_MAX) << "realloc " << have << " -> " << n << " (" << p << " -> " << q
                             << ") lost contents at offset " << bad;
    tu::fill_range(q, keep, n, seed);
    p = q;
    have = n;
    if (with_blockers) {
      // Something right after the block, so that the next growth cannot
      // simply claim the following pages.
      void* b = ta::malloc(n / 2 + 1);
      ASSERT_NE(b, nullptr);
      blockers.push_back(b);
    }
  }
  ASSERT_EQ(tu::check(p, have, seed), SIZE_MAX);
  ta::free(p);
  for (void* b : blockers) ta::free(b);
}

std::vector<size_t> up_and_down(size_t top) {
  std::vector<size_t> up = {1, 8, 16, 24, 100, 250, 1000, 4000, 4096, 8191, 16384, 65536, 100000, 262144, 1 << 20,
                            (1 << 20) + 1, 3 << 20, 8 << 20, 32 << 20};
  for (size_t s = 64 * tu::MiB; s <= top; s *= 2) up.push_back(s);
  std::vector<size_t> all = up;
  for (size_t i = up.size(); i-- > 0;) all.push_back(up[i] - (i % 3));  // back down, slightly different sizes
  return all;
}

TEST(Realloc, SmallToHugeAndBack) { realloc_chain(up_and_down(tu::scale() < 1 ? 64 * tu::MiB : 256 * tu::MiB), false); }

TEST(Realloc, SmallToHugeAndBackWithBlockers) {
  realloc_chain(up_and_down(tu::scale() < 1 ? 64 * tu::MiB : 256 * tu::MiB), true);
}

TEST(Realloc, StepwiseGrowthByOddAmounts) {
  std::vector<size_t> chain;
  for (size_t n = 1; n < 3 * tu::MiB; n = n * 5 / 4 + 13) chain.push_back(n);
  realloc_chain(chain, false);
  realloc_chain(chain, true);
}

TEST(Realloc, SameSizeAndSmallShrinksKeepPointerOrContents) {
  for (size_t n : {size_t{64}, size_t{5000}, 4 * tu::MiB}) {
    void* p = ta::malloc(n);
    ASSERT_NE(p, nullptr);
    tu::fill(p, n, n);
    void* q = ta::realloc(p, n);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q, p) << "realloc to the same size moved the block";
    q = ta::realloc(q, n - 1);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(tu::check(q, n - 1, n), SIZE_MAX);
    ta::free(q);
  }
}

TEST(Realloc, UsableSizeAfterShrinkIsSafeToWrite) {
  // After a shrink gave tail pages back, the usable size must shrink too:
  // writing the whole usable size must not touch a block that reused them.
  for (size_t big : {size_t{512} << 10, 8 * tu::MiB, 64 * tu::MiB}) {
    for (size_t small : {big / 2 + 4096, big / 4, big / 16, size_t{70000}, size_t{3000}, size_t{100}}) {
      void* p = ta::malloc(big);
      ASSERT_NE(p, nullptr);
      tu::fill(p, small, 3);
      p = ta::realloc(p, small);
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(tu::check(p, small, 3), SIZE_MAX);
      // Neighbours that may take the freed tail.
      std::vector<std::pair<void*, size_t>> others;
      for (size_t n : {big / 8, big / 4, big / 2, size_t{100000}}) {
        void* q = ta::malloc(n);
        ASSERT_NE(q, nullptr);
        tu::fill(q, n, n);
        others.emplace_back(q, n);
      }
      size_t u = ta::usable_size(p);
      ASSERT_GE(u, small);
      std::memset(p, 0xee, u);  // the whole usable size
      for (auto& [q, n] : others) {
        ASSERT_EQ(tu::check(q, n, n), SIZE_MAX)
            << "writing usable_size(" << u << ") of a block shrunk from " << big << " to " << small
            << " damaged a neighbour at " << q;
        ta::free(q);
      }
      ta::free(p);
    }
  }
}

TEST(Realloc, PingPongAcrossSizeClassAndLargeBoundaries) {
  // Usable sizes of the size classes, found by probing, and the sizes just
  // around them (the small/large boundary included): realloc back and forth.
  std::vector<size_t> edges;
  size_t last = 0;
  for (size_t n = 1; n <= 4 * tu::MiB; n += (n < 4096 ? 1 : n < 256 * tu::KiB ? 16 : 4096)) {
    void* p = ta::malloc(n);
    size_t u = ta::usable_size(p);
    ta::free(p);
    if (u != last) {
      edges.push_back(u);
      last = u;
    }
  }
  ASSERT_GT(edges.size(), 20u);
  void* p = nullptr;
  size_t have = 0;
  const uint64_t seed = 5150;
  uint64_t r = 1;
  for (int i = 0; i < 3000; ++i) {
    r = tu::mix64(r);
    size_t e = edges[r % edges.size()];
    size_t n = e + (r >> 32) % 3 - 1;  // e - 1, e, e + 1
    if (n == 0) n = 1;
    void* q = ta::realloc(p, n);
    ASSERT_NE(q, nullptr);
    size_t keep = have < n ? have : n;
    ASSERT_EQ(tu::check(q, keep, seed), SIZE_MAX) << "realloc " << have << " -> " << n;
    tu::fill_range(q, keep, n, seed);
    ASSERT_GE(ta::usable_size(q), n);
    p = q;
    have = n;
  }
  ta::free(p);
}

TEST(Realloc, LargeShrinkInPlaceReturnsTail) {
  const size_t big = 64 * tu::MiB;
  void* p = ta::malloc(big);
  ASSERT_NE(p, nullptr);
  tu::fill(p, big, 5);
  remalloc_stats_t s0, s1;
  remalloc_stats_get(&s0);
  void* q = ta::realloc(p, big / 4);
  ASSERT_NE(q, nullptr);
  remalloc_stats_get(&s1);
  EXPECT_EQ(q, p) << "shrinking a large block should not move it";
  EXPECT_EQ(tu::check(q, big / 4, 5), SIZE_MAX);
  EXPECT_GT(reloc_events(s1), reloc_events(s0)) << "a large shrink was not counted";
  EXPECT_LE(s1.allocated + big / 2, s0.allocated) << "shrink did not give the tail back";
  ta::free(q);
}

TEST(Realloc, LargeGrowthIsCountedAndMovesPages) {
  // A growth blocked by a neighbour must move; the move is counted, and
  // for blocks this big it must not be a byte copy unless the movers are
  // unavailable (then it counts as a fallback).
  const size_t n = 64 * tu::MiB;
  void* p = ta::malloc(n);
  ASSERT_NE(p, nullptr);
  tu::fill(p, n, 77);
  void* blocker = ta::malloc(n);
  ASSERT_NE(blocker, nullptr);
  remalloc_stats_t s0, s1;
  remalloc_stats_get(&s0);
  void* q = ta::realloc(p, 4 * n);
  ASSERT_NE(q, nullptr);
  remalloc_stats_get(&s1);
  ASSERT_EQ(tu::check(q, n, 77), SIZE_MAX);
  EXPECT_GT(reloc_events(s1), reloc_events(s0)) << "large growth not counted";
  if (moves(s1) > moves(s0)) {
    EXPECT_GE((s1.bytes_moved - s0.bytes_moved) + (s1.bytes_copied - s0.bytes_copied), n)
        << "a move of " << n << " bytes did not count its bytes";
    if (s1.moves_copy > s0.moves_copy) {
      EXPECT_GT(s1.fallback_budget + s1.fallback_error + s1.fallback_fork + s1.fallback_small,
                s0.fallback_budget + s0.fallback_error + s0.fallback_fork + s0.fallback_small)
          << "a 64 MiB block was copied without a counted reason";
    }
  }
  tu::fill_range(q, n, 4 * n, 77);
  EXPECT_EQ(tu::check(q, 4 * n, 77), SIZE_MAX);
  ta::free(blocker);
  ta::free(q);
}

TEST(Realloc, ManyBlocksGrowInTurns) {
  // Blocks of different sizes interleaved in the address space grow in
  // turns, so that growths alternate between in-place claims and moves.
  const int k = 24;
  std::vector<void*> b(k, nullptr);
  std::vector<size_t> sz(k, 0);
  for (int round = 0; round < 8; ++round) {
    for (int i = 0; i < k; ++i) {
      size_t n = (size_t{64} << 10) * (1 + i % 5) * (round + 1) + i * 4099;
      void* q = ta::realloc(b[i], n);
      ASSERT_NE(q, nullptr);
      ASSERT_EQ(tu::check(q, sz[i], 1000 + i), SIZE_MAX) << "block " << i << " round " << round;
      tu::fill_range(q, sz[i], n, 1000 + i);
      b[i] = q;
      sz[i] = n;
    }
  }
  for (int i = 0; i < k; ++i) {
    ASSERT_EQ(tu::check(b[i], sz[i], 1000 + i), SIZE_MAX);
    ta::free(b[i]);
  }
}

TEST(Realloc, InjectedMoverFailuresLoseNothing) {
  // For each mover and each step of it, one injected failure: realloc must
  // either succeed with the whole contents (a slower mover finished the
  // job) or return NULL with the old block intact.
  const size_t n = 24 * tu::MiB;
  for (const char* mover : {"mremap", "uffd", "copy"}) {
    for (int step = 0; step <= 2; ++step) {
      for (int count : {1, 1000}) {
        void* p = ta::malloc(n);
        ASSERT_NE(p, nullptr);
        tu::fill(p, n, step * 31 + count);
        void* blocker = ta::malloc(n);
        ASSERT_NE(blocker, nullptr);
        remalloc_inject_mover_failure(mover, step, count);
        errno = 0;
        void* q = ta::realloc(p, 3 * n);
        int e = errno;
        if (q == nullptr) {
          EXPECT_EQ(e, ENOMEM) << mover << " step " << step;
          ASSERT_EQ(tu::check(p, n, step * 31 + count), SIZE_MAX)
              << "failed realloc (" << mover << " step " << step << ") damaged the old block";
          q = p;
        } else {
          size_t bad = tu::check(q, n, step * 31 + count);
          ASSERT_EQ(bad, SIZE_MAX) << "realloc with " << mover << " failing at step " << step << " x" << count
                                   << " lost contents at offset " << bad;
          tu::fill_range(q, n, 3 * n, step * 31 + count);
          EXPECT_EQ(tu::check(q, 3 * n, step * 31 + count), SIZE_MAX);
        }
        remalloc_inject_mover_failure(mover, step, 0);  // clear what is left
        ta::free(blocker);
        ta::free(q);
      }
    }
  }
  // The allocator still works normally afterwards.
  realloc_chain(up_and_down(32 * tu::MiB), true);
}

TEST(Realloc, MovesAfterForkDoNotTouchTheChild) {
  // After fork the parent's large blocks share pages with the child. When
  // the parent moves them, the child's copies must stay as they were, and
  // the child can realloc its own copies too.
  const size_t n = 16 * tu::MiB;
  std::vector<void*> blocks;
  for (int i = 0; i < 4; ++i) {
    void* p = ta::malloc(n);
    ASSERT_NE(p, nullptr);
    tu::fill(p, n, 500 + i);
    blocks.push_back(p);
  }
  int go[2], done[2];
  ASSERT_EQ(pipe(go), 0);
  ASSERT_EQ(pipe(done), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(60);
    char c;
    if (read(go[0], &c, 1) != 1) _exit(10);
    for (int i = 0; i < 4; ++i)
      if (tu::check(blocks[i], n, 500 + i) != SIZE_MAX) _exit(20 + i);  // parent's moves leaked in
    for (int i = 0; i < 4; ++i) {
      void* blocker = ta::malloc(n);
      void* q = ta::realloc(blocks[i], 3 * n);
      if (!q || !blocker) _exit(30 + i);
      if (tu::check(q, n, 500 + i) != SIZE_MAX) _exit(40 + i);
      tu::fill_range(q, n, 3 * n, 500 + i);
      if (tu::check(q, 3 * n, 500 + i) != SIZE_MAX) _exit(50 + i);
      ta::free(q);
      ta::free(blocker);
    }
    (void)!write(done[1], "x", 1);
    _exit(0);
  }
  std::vector<void*> blockers;
  for (int i = 0; i < 4; ++i) {
    blockers.push_back(ta::malloc(n));
    void* q = ta::realloc(blocks[i], 2 * n);
    ASSERT_NE(q, nullptr);
    ASSERT_EQ(tu::check(q, n, 500 + i), SIZE_MAX) << "parent block " << i << " after move";
    std::memset(q, 0xee, 2 * n);  // scribble over the parent's copy
    blocks[i] = q;
  }
  ASSERT_EQ(write(go[1], "g", 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "child failed: " << (WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status))
      << " (20..23: child saw the parent's writes, 30..: child realloc failed)";
  for (void* p : blocks) ta::free(p);
  for (void* p : blockers) ta::free(p);
  close(go[0]);
  close(go[1]);
  close(done[0]);
  close(done[1]);
}

TEST(Realloc, ThousandsOfMovesStayWithinVmaLimit) {
  // Every forced move of a large block may leave it a VMA of its own. With
  // more live moved blocks than half of vm.max_map_count the allocator must
  // keep the process's VMAs away from the limit (its budget) and never fail
  // an allocation because of it.
  // Each move of a 1 MiB block leaves about two VMAs: 3/4 of the budget in
  // moves crosses it.
  remalloc_stats_t s0;
  remalloc_stats_get(&s0);
  const size_t budget = s0.vma_budget ? s0.vma_budget : tu::max_map_count() / 4;
  const size_t count = tu::scaled(budget * 3 / 4, 1000);
  const size_t limit = tu::max_map_count();
  std::vector<void*> live;
  std::vector<void*> spacers;
  for (size_t i = 0; i < count; ++i) {
    size_t n = (size_t{1} << 20) + (i % 7) * 4096;
    auto* p = static_cast<unsigned char*>(ta::malloc(n));
    ASSERT_NE(p, nullptr) << "iteration " << i;
    p[0] = static_cast<unsigned char>(i);
    p[n - 1] = static_cast<unsigned char>(i >> 8);
    spacers.push_back(ta::malloc(64 * tu::KiB + 4096 * (i % 3)));
    auto* q = static_cast<unsigned char*>(ta::realloc(p, 3 * n));
    ASSERT_NE(q, nullptr) << "iteration " << i;
    ASSERT_EQ(q[0], static_cast<unsigned char>(i));
    ASSERT_EQ(q[n - 1], static_cast<unsigned char>(i >> 8));
    q[3 * n - 1] = 1;
    live.push_back(q);
    if (i % 2 == 1) {  // free every other spacer: holes everywhere
      ta::free(spacers[i - 1]);
      spacers[i - 1] = nullptr;
    }
  }
  size_t vmas = tu::vma_count();
  remalloc_stats_t s;
  remalloc_stats_get(&s);
  EXPECT_LT(vmas, limit - limit / 10) << "VMAs after " << count << " moves (vma_estimate " << s.vma_estimate
                                      << ", budget " << s.vma_budget << ")";
  RecordProperty("vmas", std::to_string(vmas));
  EXPECT_GT(s.vma_budget, 0u);
  for (size_t i = 0; i < live.size(); ++i) {
    auto* q = static_cast<unsigned char*>(live[i]);
    size_t n = (size_t{1} << 20) + (i % 7) * 4096;
    ASSERT_EQ(q[0], static_cast<unsigned char>(i));
    ASSERT_EQ(q[n - 1], static_cast<unsigned char>(i >> 8));
    ta::free(q);
  }
  for (void* sp : spacers) ta::free(sp);
}

}  // namespace

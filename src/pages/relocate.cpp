// page heap: the relocation engine, policy only. realloc of a large block,
// in order of preference: stay (fits), shrink (tail pages go back), grow in
// place (claim the free pages that follow), move (onto the front of a new
// run, by the cheapest mover that is safe now). The bookkeeping of each step
// is a primitive of page_heap.cpp (resize_in_place, take_move_dst,
// release_moved, finish_move), each under the page heap's lock; this file
// takes none, and writes no span field the page heap owns (span.h). The
// movers and the VMA budget are the PageHeap's platform's. Nothing is ever lost: a mover either finishes or leaves
// the whole block at its source, and if every mover fails realloc returns
// NULL with the block intact.
#include <cerrno>
#include <cstring>

#include "base/format.h"
#include "pages/internal.h"
#include "platform/movers.h"

namespace remalloc::pages {

#if REMALLOC_DEBUG >= 3
// Checked build: every move is witnessed. A hash of each piece of the block
// (a page, or 1/512 of the block when larger) is taken before the mover
// runs and compared, after it, at the destination (the move finished) or at
// the source (it failed, so the block must be whole there). A mover that
// loses, mixes or half-moves pages is reported where it happens, naming the
// mover and the pages, instead of as a corrupted block much later. The
// hashes live on the stack (4 KiB): witnessing maps nothing, so it changes
// no VMA count.
class MoveWitness {
 public:
  static constexpr size_t kPieces = 512;
  MoveWitness(const void* src, size_t len) {
    size_t pages = len >> kPageShift;
    piece_pages_ = (pages + kPieces - 1) / kPieces;
    if (piece_pages_ == 0) piece_pages_ = 1;
    pieces_ = (pages + piece_pages_ - 1) / piece_pages_;
    pages_ = pages;
    for (size_t i = 0; i < pieces_; i++) hashes_[i] = hash(static_cast<const char*>(src), i);
  }

  void check(const void* at, const void* from, const void* to, int kind, bool moved) const {
    for (size_t i = 0; i < pieces_; i++) {
      if (hash(static_cast<const char*>(at), i) == hashes_[i]) continue;
      size_t first = i * piece_pages_, end = first + piece_pages_ < pages_ ? first + piece_pages_ : pages_;
      const char* p = static_cast<const char*>(at) + (first << kPageShift);
      bool zeros = true;
      for (size_t b = 0; b < ((end - first) << kPageShift) && zeros; b++) zeros = p[b] == 0;
      Writer w(2);
      w.str("remalloc: checked build: the ").str(movers::kind_name(kind)).str(" mover ")
          .str(moved ? "moved" : "failed to move").str(" a block of ").u64(pages_).str(" pages from ").ptr(from)
          .str(" to ").ptr(to).str(", and its pages ").u64(first).chr('-').u64(end - 1)
          .str(moved ? " at the destination" : " at the source")
          .str(zeros ? " read zeros\n" : " hold other bytes\n");
      w.flush();
      fatal("relocation: a move changed the contents of a block", p);
    }
  }

 private:
  uint64_t hash(const char* base, size_t piece) const {
    size_t first = piece * piece_pages_;
    size_t end = first + piece_pages_ < pages_ ? first + piece_pages_ : pages_;
    const uint64_t* w = reinterpret_cast<const uint64_t*>(base + (first << kPageShift));
    size_t words = (end - first) << (kPageShift - 3);
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < words; i++) h = (h ^ w[i]) * 0x100000001b3ull + i;
    return h;
  }
  size_t pages_ = 0;
  size_t piece_pages_ = 1;
  size_t pieces_ = 0;
  uint64_t hashes_[kPieces];
};
#endif

// Makes sure the uffd registration of dst's arena is current (after fork
// the child re-registers).
bool PageHeap::uffd_ready(Arena* a) {
  uint32_t gen = platform_->uffd_generation();
  if (a->uffd_gen == gen) return true;
  if (!platform_->uffd_register(reinterpret_cast<void*>(a->base), a->bytes())) return false;
  a->uffd_gen = gen;
  return true;
}

void* PageHeap::realloc_large_unguarded(Span* s, size_t new_size) {
  RM_ASSERT(s->kind == kSpanLarge && new_size > 0);
  size_t new_pages = pages_of(new_size);
  if (new_pages == 0) new_pages = 1;
  const Config& config = config_;
  if (new_pages <= s->npages) {
    // Growing into the room the block already has, or a shrink too small to
    // give a page back: nothing moves.
    if (new_size >= s->requested || s->npages - new_pages <= config.shrink_slack_pages) {
      s->requested = new_size;
      count(kCount_realloc_inplace);
      return reinterpret_cast<void*>(s->start);
    }
    resize_in_place(s, new_pages, new_size);
    count(kCount_shrink_inplace);
    return reinterpret_cast<void*>(s->start);
  }
  if (config.grow_inplace && resize_in_place(s, new_pages, new_size)) {
    count(kCount_grow_inplace);
    return reinterpret_cast<void*>(s->start);
  }

  // Move. Choose the movers to try, cheapest safe first.
  const size_t len = s->bytes();
  const bool huge = (new_pages << kPageShift) >= config.huge_threshold;
  // mremap first (see the policy below) for huge blocks from this size.
  const bool big = huge && (new_pages << kPageShift) >= config.mremap_threshold;
  // Huge blocks move to a 2 MiB boundary plus the source's offset inside
  // 2 MiB: with equal offsets the kernel moves whole page-table pages.
  const size_t align = huge ? (kHugePageSize >> kPageShift) : 1;
  const size_t phase = huge ? (s->start >> kPageShift) & ((kHugePageSize >> kPageShift) - 1) : 0;
  int order[4];
  int n = 0;
  bool small = len < config.move_threshold;
  int forced = config.mover;
  if (forced == movers::kMremap || forced == movers::kUffd) {
    order[n++] = forced;
  } else if (forced != movers::kCopy && !small) {
    // The policy. Below the huge threshold mremap cannot move whole
    // page-table pages, so it costs what UFFDIO_MOVE costs per page, but it
    // leaves two VMAs behind that never merge again: UFFDIO_MOVE first, which
    // changes no VMA. Huge blocks move 2 MiB phase-aligned, where mremap
    // moves whole page-table pages (1 GiB in 0.1-3 ms against 11-15 ms):
    // mremap first, also out of an arena registered for uffd moves (the
    // block then lands in a normal arena, where its next moves are fast).
    const bool uffd = platform_->uffd_available();
    if (!big && uffd) order[n++] = movers::kUffd;
    if ((big || s->arena->region == kRegionNormal) && platform_->mremap_available()) {
      if (platform_->vma_can_add(3) || (heal_for_budget() && platform_->vma_can_add(3)))
        order[n++] = movers::kMremap;
      else
        count(kCount_fallback_budget);
    }
    if (big && uffd) order[n++] = movers::kUffd;
  }
  if (small && forced < 0) count(kCount_fallback_small);
  order[n++] = movers::kCopy;

  // A block that grows by moving will likely grow again: give it as much
  // room again (address space only; untouched pages cost no memory), so the
  // next growths stay in place. Without the room if that fails.
  size_t room_pages = config.grow_headroom ? new_pages : 0;
  Span* dst = nullptr;
  void* result = nullptr;
  for (int i = 0; i < n && !result; i++) {
    int kind = order[i];
    Region want = kind == movers::kUffd ? kRegionUffd : kRegionNormal;
    if (kind == movers::kMremap &&
        ((s->arena->region != kRegionNormal && !big && forced != movers::kMremap) ||
         !platform_->mremap_available() || !platform_->vma_can_add(3))) {
      count(kCount_fallback_budget);
      continue;
    }
    if (kind == movers::kUffd && !platform_->uffd_available()) continue;
    if (dst && (kind != movers::kCopy && dst->arena->region != want)) {
      release_moved(dst, false, false);
      dst = nullptr;
    }
    if (!dst && room_pages) dst = take_move_dst(new_pages + room_pages, align, phase, want, new_size);
    if (!dst) dst = take_move_dst(new_pages, align, phase, want, new_size);
    if (!dst && kind == movers::kUffd) continue;  // no uffd arena: try the next
    if (!dst) break;
    if (kind == movers::kUffd && !uffd_ready(dst->arena)) continue;
    void* to = reinterpret_cast<void*>(dst->start);
    void* from = reinterpret_cast<void*>(s->start);
    movers::Outcome out;
    bool ok;
#if REMALLOC_DEBUG >= 3
    MoveWitness witness(from, len);
#endif
    if (kind == movers::kMremap) {
      ok = platform_->move_mremap(to, from, len, &out);
      if (out.calls) platform_->vma_note_added(2 * size_t(out.calls));
      if (out.calls > 1) count(kCount_moves_multi_vma);
      // Refused (the program's own mappings may have used up
      // vm.max_map_count, unseen by the estimate): recount, so the next
      // moves skip mremap for the budget instead of failing one by one.
      if (!ok) platform_->vma_recount();
    } else if (kind == movers::kUffd) {
      ok = platform_->move_uffd(to, from, len, &out);
    } else {
      ok = platform_->move_copy(to, from, len, !small, &out);
    }
#if REMALLOC_DEBUG >= 3
    witness.check(ok ? to : from, from, to, kind, ok);
#endif
    if (out.fork_busy) count(kCount_fallback_fork);
    if (!ok) {
      count(kCount_fallback_error);
      continue;
    }
    if (out.partial) count(kCount_fallback_error);
    count(kind == movers::kMremap ? kCount_moves_mremap
          : kind == movers::kUffd ? kCount_moves_uffd
                                  : kCount_moves_copy);
    count(kCount_bytes_moved, out.moved);
    count(kCount_bytes_copied, out.copied);
    // dst's flags change under the lock, with the release of the source.
    finish_move(s, dst, out.src_clean, kind == movers::kMremap && out.moved);
    result = to;
  }
  if (!result) {
    if (dst) release_moved(dst, false, false);
    errno = ENOMEM;
  }
  return result;
}

// The secure build's guard page after a large block comes off while the
// engine works (movers must not meet it: guards travel with mremap and make
// the copy mover fault) and goes back on the last page of the result, or of
// the old block when realloc fails.
void* PageHeap::realloc_large(Span* s, size_t new_size) {
  size_t g = guard_tail_pages() << kPageShift;
  if (!g) return realloc_large_unguarded(s, new_size);
  void* p = reinterpret_cast<void*>(s->start);
  // The engine compares the new size with the bytes asked for (a shrink
  // gives pages back only below them): both count the guard page here.
  size_t asked = s->requested;
  set_requested(s, asked + g);
  guard_remove_tail(s);
  void* q = realloc_large_unguarded(s, new_size + g);
  Span* t = span_of(q ? q : p);
  guard_install_tail(t);
  set_requested(t, q ? new_size : asked);
  return q;
}

}  // namespace remalloc::pages

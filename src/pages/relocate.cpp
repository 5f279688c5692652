// page heap: the relocation engine. realloc of a large block, in order of
// preference: stay (fits), shrink (tail pages go back), grow in place (claim
// the free pages that follow), move (onto the front of a new run, by the
// cheapest mover that is safe now). Nothing is ever lost: a mover either
// finishes or leaves the whole block at its source, and if every mover fails
// realloc returns NULL with the block intact.
#include <cerrno>
#include <cstring>

#include "pages/internal.h"
#include "platform/movers.h"
#include "platform/os.h"
#include "platform/vma.h"

namespace remalloc::pages {

static void* shrink(Span* s, size_t new_pages, size_t new_size) {
  LockGuard g(g_lock);
  Arena* a = s->arena;
  size_t idx = index_of(a, s);
  size_t tail = s->npages - new_pages;
  s->npages = new_pages;
  s->requested = new_size;
  g_large_bytes -= tail << kPageShift;
  uint8_t flags = kFreeDirty | ((s->flags & kLargeMovedIn) ? kFreeSplit : 0);
  put_run_locked(a, idx + new_pages, tail, flags, os::now_ns());
  count(kShrink_inplace);
  return reinterpret_cast<void*>(s->start);
}

static bool grow_in_place(Span* s, size_t new_pages, size_t new_size) {
  LockGuard g(g_lock);
  Arena* a = s->arena;
  size_t idx = index_of(a, s);
  Span* r = free_run_at(a, idx + s->npages);
  size_t need = new_pages - s->npages;
  if (!r || r->npages < need) return false;
  size_t ridx = index_of(a, r);
  size_t rn = r->npages;
  uint8_t rflags = r->flags;
  uint64_t rt = r->free_ns;
  unlink_free_locked(r);
  r->kind = kSpanNone;
  r->flags = 0;
  if (rn > need) make_free(a, ridx + need, rn - need, rflags, rt, r->maint_lo, r->maint_hi);
  s->npages = new_pages;
  s->requested = new_size;
  if (rflags & kFreeSplit) s->flags |= kLargeMovedIn;
  g_large_bytes += need << kPageShift;
  note_peak_locked();
  count(kGrow_inplace);
  return true;
}

static Span* take_dst(size_t npages, size_t align, size_t phase, Region region,
                      size_t new_size) {
  LockGuard g(g_lock);
  Span* d = take_run_locked(npages, align, region, true, phase);
  if (!d) return nullptr;
  uint8_t f = d->flags;
  init_large(d, npages, new_size);
  d->flags = (f & kFreeSplit) ? kLargeMovedIn : 0;
  g_large_live++;
  g_large_bytes += d->bytes();
  note_peak_locked();
  return d;
}

// Gives back a large span whose pages are clean (src_clean) or dirty.
static void release(Span* s, bool clean, bool split) {
  LockGuard g(g_lock);
  g_large_live--;
  g_large_bytes -= s->bytes();
  Arena* a = s->arena;
  size_t idx = index_of(a, s);
  size_t n = s->npages;
  uint8_t flags = (clean ? 0 : kFreeDirty) | (split || (s->flags & kLargeMovedIn) ? kFreeSplit : 0);
  if (a->region != kRegionNormal) flags &= uint8_t(~kFreeSplit);
  s->kind = kSpanNone;
  s->flags = 0;
  put_run_locked(a, idx, n, flags, os::now_ns());
}

// Makes sure the uffd registration of dst's arena is current (after fork
// the child re-registers).
static bool uffd_ready(Arena* a) {
  uint32_t gen = movers::uffd_generation();
  if (a->uffd_gen == gen) return true;
  if (!movers::uffd_register(reinterpret_cast<void*>(a->base), a->bytes())) return false;
  a->uffd_gen = gen;
  return true;
}

void* realloc_large(Span* s, size_t new_size) {
  size_t new_pages = pages_of(new_size);
  if (new_pages == 0) new_pages = 1;
  if (new_pages <= s->npages) {
    // Growing into the room the block already has, or a shrink too small to
    // give a page back: nothing moves.
    if (new_size >= s->requested || s->npages - new_pages <= g_config.shrink_slack_pages) {
      s->requested = new_size;
      count(kRealloc_inplace);
      return reinterpret_cast<void*>(s->start);
    }
    return shrink(s, new_pages, new_size);
  }
  if (g_config.grow_inplace && grow_in_place(s, new_pages, new_size)) return reinterpret_cast<void*>(s->start);

  // Move. Choose the movers to try, cheapest safe first.
  const size_t len = s->bytes();
  const bool huge = (new_pages << kPageShift) >= g_config.huge_threshold;
  // Huge blocks move to a 2 MiB boundary plus the source's offset inside
  // 2 MiB: with equal offsets the kernel moves whole page-table pages.
  const size_t align = huge ? (kHugePageSize >> kPageShift) : 1;
  const size_t phase = huge ? (s->start >> kPageShift) & ((kHugePageSize >> kPageShift) - 1) : 0;
  int order[4];
  int n = 0;
  bool small = len < g_config.move_threshold;
  int forced = g_config.mover;
  if (forced == movers::kMremap || forced == movers::kUffd) {
    order[n++] = forced;
  } else if (forced != movers::kCopy && !small) {
    if (s->arena->region == kRegionNormal && movers::mremap_dontunmap_available()) {
      if (vma::can_add(3) || (heal_for_budget() && vma::can_add(3)))
        order[n++] = movers::kMremap;
      else
        count(kFallback_budget);
    }
    if (movers::uffd_move_available()) order[n++] = movers::kUffd;
  }
  if (small && forced < 0) count(kFallback_small);
  order[n++] = movers::kCopy;

  // A block that grows by moving will likely grow again: give it as much
  // room again (address space only; untouched pages cost no memory), so the
  // next growths stay in place. Without the room if that fails.
  size_t room_pages = g_config.grow_headroom ? new_pages : 0;
  Span* dst = nullptr;
  void* result = nullptr;
  for (int i = 0; i < n && !result; i++) {
    int kind = order[i];
    Region want = kind == movers::kUffd ? kRegionUffd : kRegionNormal;
    if (kind == movers::kMremap &&
        (s->arena->region != kRegionNormal || !movers::mremap_dontunmap_available() ||
         !vma::can_add(3))) {
      count(kFallback_budget);
      continue;
    }
    if (kind == movers::kUffd && !movers::uffd_move_available()) continue;
    if (dst && (kind != movers::kCopy && dst->arena->region != want)) {
      release(dst, false, false);
      dst = nullptr;
    }
    if (!dst && room_pages) dst = take_dst(new_pages + room_pages, align, phase, want, new_size);
    if (!dst) dst = take_dst(new_pages, align, phase, want, new_size);
    if (!dst && kind == movers::kUffd) continue;  // no uffd arena: try the next
    if (!dst) break;
    if (kind == movers::kUffd && !uffd_ready(dst->arena)) continue;
    void* to = reinterpret_cast<void*>(dst->start);
    void* from = reinterpret_cast<void*>(s->start);
    movers::Outcome out;
    bool ok;
    if (kind == movers::kMremap) {
      ok = movers::move_mremap(to, from, len, &out);
      if (out.moved) vma::note_added(2);
    } else if (kind == movers::kUffd) {
      ok = movers::move_uffd(to, from, len, &out);
    } else {
      ok = movers::move_copy(to, from, len, !small, &out);
    }
    if (out.fork_busy) count(kFallback_fork);
    if (!ok) {
      count(kFallback_error);
      continue;
    }
    if (out.partial) count(kFallback_error);
    count(kind == movers::kMremap ? kMoves_mremap : kind == movers::kUffd ? kMoves_uffd : kMoves_copy);
    count(kBytes_moved, out.moved);
    count(kBytes_copied, out.copied);
    bool remapped = kind == movers::kMremap && out.moved;
    if (remapped) dst->flags |= kLargeMovedIn;
    release(s, out.src_clean, remapped);
    result = to;
  }
  if (!result) {
    if (dst) release(dst, false, false);
    errno = ENOMEM;
  }
  return result;
}

}  // namespace remalloc::pages

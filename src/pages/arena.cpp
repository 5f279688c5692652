// page heap: arena reservation, the arena map, and the validators of
// arenas and of the span/slab contract.
#include <cstring>

#include "pages/free_runs.h"
#include "pages/internal.h"
#include "platform/movers.h"
#include "platform/os.h"
#include "platform/vma.h"

namespace remalloc::pages {

Arena* g_arena_map[kArenaMapSize];
Arena* g_arenas;
size_t g_arena_count;
size_t g_mapped_bytes;
size_t g_meta_bytes;

static Arena* make_arena(size_t bytes, Region region) {
  void* base = os::reserve(bytes, kArenaGranule);
  if (!base) return nullptr;
  size_t npages = bytes >> kPageShift;
  // `back` covers whole map granules even when the arena is smaller (under
  // RLIMIT_AS): span_of() indexes it for any address of the granule. Entries
  // past the arena lead to the first descriptor, which contains no such
  // address, so a foreign pointer there is reported, never followed.
  size_t back_pages = align_up(bytes, kArenaGranule) >> kPageShift;
  size_t meta_bytes =
      align_up(sizeof(Arena), 64) + npages * sizeof(Span) + back_pages * sizeof(uint32_t);
  meta_bytes = align_up(meta_bytes, kPageSize);
  char* meta = static_cast<char*>(os::reserve(meta_bytes, kPageSize));
  if (!meta) {
    os::release(base, bytes);
    return nullptr;
  }
  Arena* a = reinterpret_cast<Arena*>(meta);
  a->base = reinterpret_cast<uintptr_t>(base);
  a->npages = npages;
  a->meta = reinterpret_cast<Span*>(meta + align_up(sizeof(Arena), 64));
  a->back = reinterpret_cast<uint32_t*>(a->meta + npages);
  for (size_t i = npages; i < back_pages; i++) a->back[i] = uint32_t(i);
  a->meta_bytes = meta_bytes;
  a->region = region;
  a->uffd_gen = 0;
  if (region == kRegionUffd) {
    if (!movers::uffd_register(base, bytes)) {
      os::release(base, bytes);
      os::release(meta, meta_bytes);
      return nullptr;
    }
    a->uffd_gen = movers::uffd_generation();
  }
  vma::note_added(2);
  return a;
}

Arena* new_arena_locked(size_t npages, size_t align_pages, Region region) {
  size_t need = (npages + (align_pages > 1 ? align_pages : 0)) << kPageShift;
  if (need >> kPageShift != npages + (align_pages > 1 ? align_pages : 0)) return nullptr;
  // Arenas are whole map granules (64 MiB) unless address space is short:
  // under RLIMIT_AS they go down to the request rounded to 2 MiB, one arena
  // per granule still (the reservation is granule-aligned).
  size_t min_bytes = align_up(need, kHugePageSize);
  size_t granule_bytes = align_up(need, kArenaGranule);
  // Room to grow: big blocks get an arena several times their size, so they
  // can grow in place; address space is cheap, VMAs and copies are not.
  size_t want = g_config.arena_bytes;
  if (need >= want / 4) want = align_up(need * 4, kArenaGranule);
  if (want < granule_bytes) want = granule_bytes;
  Arena* a = nullptr;
  // Under RLIMIT_AS a big reservation may fail: halve down to the minimum.
  for (size_t bytes = want;;) {
    a = make_arena(bytes, region);
    if (a || bytes == min_bytes) break;
    // Once a halved reservation failed too, address space is short: take
    // just what the request needs.
    size_t half = align_up(bytes / 2, kArenaGranule);
    bytes = bytes < want || half < min_bytes || half == bytes ? min_bytes : half;
  }
  if (!a) return nullptr;
  for (uintptr_t p = a->base; p < a->base + a->bytes(); p += kArenaGranule)
    g_arena_map[p >> kArenaMapShift] = a;
  a->next_arena = g_arenas;
  g_arenas = a;
  g_arena_count++;
  g_mapped_bytes += a->bytes();
  g_meta_bytes += a->meta_bytes;
  // The whole arena is one clean free run.
  free_runs::make_run(a, 0, a->npages, 0, 0, 0, 0);
  return a;
}

void validate_arenas_locked(ArenaTally* t) {
  size_t count = 0, mapped = 0;
  for (Arena* a = g_arenas; a; a = a->next_arena) {
    count++;
    mapped += a->bytes();
    if (a->base & (kArenaGranule - 1)) fatal("arena: base not aligned to the map granule", reinterpret_cast<void*>(a->base));
    for (uintptr_t p = a->base; p < a->base + a->bytes(); p += kArenaGranule)
      if (g_arena_map[p >> kArenaMapShift] != a) fatal("arena: map entry does not lead to its arena", reinterpret_cast<void*>(p));
    // The runs tile the arena: from each run's first page, its npages lead
    // to the next run's first page.
    for (size_t idx = 0; idx < a->npages;) {
      Span* s = &a->meta[idx];
      uint8_t kind = __atomic_load_n(&s->kind, __ATOMIC_RELAXED);
      if (s->npages == 0 || idx + s->npages > a->npages || s->arena != a ||
          s->start != a->base + (idx << kPageShift))
        fatal("arena: runs do not tile the arena", reinterpret_cast<void*>(a->base + (idx << kPageShift)));
      if (a->back[idx] != 0) fatal("arena: back[] of a run's first page is not 0", reinterpret_cast<void*>(s->start));
      switch (kind) {
        case kSpanFree: t->free_bytes += s->bytes(); t->free_runs++; break;
        case kSpanLarge: t->large_bytes += s->bytes(); break;
        case kSpanCached: t->cached_bytes += s->bytes(); break;
        case kSpanSlab:
          t->slab_bytes += s->bytes();
          for (size_t i = 1; i < s->npages; i++)
            if (a->back[idx + i] != i) fatal("arena: back[] wrong inside a slab", reinterpret_cast<void*>(s->start));
          break;
        default:
          // A run in transit: carved by a thread that has not set its kind
          // yet cannot be seen here (that happens under the lock).
          fatal("arena: a run of no kind", reinterpret_cast<void*>(s->start));
      }
      validate_span(s, false);
      t->runs++;
      idx += s->npages;
    }
  }
  if (count != g_arena_count || mapped != g_mapped_bytes) fatal("arena: arena count or bytes do not add up", nullptr);
}

void validate_span(const Span* s, bool owner) {
  const void* at = reinterpret_cast<const void*>(s->start);
  uint8_t kind = __atomic_load_n(&s->kind, __ATOMIC_RELAXED);
  if (kind != kSpanSlab) {
    // Not a slab: slab_bytes must be 0 (free() relies on it to tell kinds).
    if (s->slab_bytes != 0) fatal("span: slab_bytes set on a span that is not a slab", at);
    if ((kind == kSpanLarge || kind == kSpanCached) && s->requested > s->bytes())
      fatal("span: a large block asked for more than it holds", at);
    return;
  }
  // Other threads' slabs: their owner writes the slab fields without a
  // lock, so only what never changes while slab_bytes is set is read.
  uint32_t slab_bytes = __atomic_load_n(&s->slab_bytes, __ATOMIC_RELAXED);
  if (slab_bytes == 0) return;  // a slab being set up or let go by its heap
  if (slab_bytes != s->bytes() - (guard_tail_pages() << kPageShift)) fatal("span: slab_bytes differs from the slab's pages", at);
  if (!owner) return;
  if (s->block_size == 0 || size_t(s->capacity) * s->block_size > s->slab_bytes || s->bump > s->capacity)
    fatal("span: slab geometry inconsistent", at);
  // The free list: in range, on block boundaries, no longer than the blocks
  // linked in and not handed out.
  // Blocks on the owner's list = blocks linked in - blocks handed out (a
  // block freed remotely counts as handed out until the owner collects it).
  if (s->used > s->bump) fatal("span: slab hands out more blocks than it linked in", at);
  size_t n = 0, limit = s->bump - s->used;
  for (void* b = s->free_list; b; b = link_load(b)) {
    uintptr_t off = reinterpret_cast<uintptr_t>(b) - s->start;
    if (off >= s->slab_bytes || off % s->block_size) fatal("span: slab free list leaves the slab", b);
    if (++n > limit) fatal("span: slab free list longer than its free blocks (a cycle?)", b);
  }
  if (n != limit) fatal("span: slab free list shorter than its free blocks", at);
}

}  // namespace remalloc::pages

// page heap: arena reservation and the arena map.
#include <cstring>

#include "pages/internal.h"
#include "platform/movers.h"
#include "platform/os.h"
#include "platform/vma.h"

namespace remalloc::pages {

Arena* g_arena_map[kArenaMapSize];
Arena* g_arenas;
size_t g_arena_count;
size_t g_mapped_bytes;

static Arena* make_arena(size_t bytes, Region region) {
  void* base = os::reserve(bytes, kArenaGranule);
  if (!base) return nullptr;
  size_t npages = bytes >> kPageShift;
  size_t meta_bytes = align_up(sizeof(Arena), 64) + npages * sizeof(Span) + npages * sizeof(uint32_t);
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
  size_t min_bytes = align_up(need, kArenaGranule);
  // Room to grow: big blocks get an arena several times their size, so they
  // can grow in place; address space is cheap, VMAs and copies are not.
  size_t want = g_config.arena_bytes;
  if (need >= want / 4) want = align_up(need * 4, kArenaGranule);
  if (want < min_bytes) want = min_bytes;
  Arena* a = nullptr;
  // Under RLIMIT_AS a big reservation may fail: halve down to the minimum.
  for (size_t bytes = want;; bytes = align_up(bytes / 2, kArenaGranule)) {
    if (bytes < min_bytes) bytes = min_bytes;
    a = make_arena(bytes, region);
    if (a || bytes == min_bytes) break;
  }
  if (!a) return nullptr;
  for (uintptr_t p = a->base; p < a->base + a->bytes(); p += kArenaGranule)
    g_arena_map[p >> kArenaMapShift] = a;
  a->next_arena = g_arenas;
  g_arenas = a;
  g_arena_count++;
  g_mapped_bytes += a->bytes();
  // The whole arena is one clean free run.
  put_run_locked(a, 0, a->npages, 0, 0);
  return a;
}

}  // namespace remalloc::pages

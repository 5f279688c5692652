// page heap: the secure build's guard pages and free-list key.
//
// A large block or slab of the secure build is one page longer than it
// needs; its last page holds a guard (MADV_GUARD_INSTALL: a page-table
// marker, no VMA split), so a linear overflow off its end faults. The guard
// sits after the block's bytes, so it never lies in a 2 MiB range the block
// covers whole (a guard there would stop a huge page). It is removed before
// the pages are given back or moved (free_span(), and realloc_large() around
// the relocation engine), since guards survive MADV_DONTNEED, travel with
// mremap and make the copy mover fault. On kernels without guards (EINVAL)
// no page is added. The page heap owns the guard: alloc_large and
// alloc_slab add the page and install it, free_span and realloc_large take
// it off and put it back; callers never see it.
#include "pages/internal.h"
#include "platform/os.h"

namespace remalloc::pages {

uintptr_t g_link_key = 0;

size_t guard_tail_pages_slow() { return os::guards_available() ? 1 : 0; }

void PageHeap::guard_install_tail(Span* s) {
  if (!guard_tail_pages()) return;
  RM_ASSERT(s->npages > guard_tail_pages());
  // A failure (ENOMEM for page tables) leaves the page unguarded: harmless.
  platform_->guard_install(reinterpret_cast<void*>(s->end() - kPageSize), kPageSize);
}

void PageHeap::guard_remove_tail(Span* s) {
  if (!guard_tail_pages()) return;
  platform_->guard_remove(reinterpret_cast<void*>(s->end() - kPageSize), kPageSize);
}

}  // namespace remalloc::pages

// page heap: OsPlatform, the real platform (see platform.h): each function
// forwards to src/platform/.
#include "pages/platform.h"

#include "platform/os.h"
#include "platform/vma.h"

namespace remalloc::pages {

void* OsPlatform::reserve_inaccessible(size_t size, size_t align) { return os::reserve_inaccessible(size, align); }
bool OsPlatform::commit(void* p, size_t size) { return os::commit(p, size); }
void OsPlatform::release(void* p, size_t size) { os::release(p, size); }
bool OsPlatform::purge(void* p, size_t size) { return os::purge(p, size); }
bool OsPlatform::remap_fresh(void* p, size_t size) { return os::remap_fresh(p, size); }
bool OsPlatform::advise_hugepage(void* p, size_t size, bool on) { return os::advise_hugepage(p, size, on); }
bool OsPlatform::populate(void* p, size_t size) { return os::populate_write(p, size); }
bool OsPlatform::guard_install(void* p, size_t size) { return os::guard_install(p, size); }
bool OsPlatform::guard_remove(void* p, size_t size) { return os::guard_remove(p, size); }
uint64_t OsPlatform::now_ns() { return os::now_ns(); }

bool OsPlatform::mremap_available() { return movers::mremap_dontunmap_available(); }
bool OsPlatform::uffd_available() { return movers::uffd_move_available(); }
bool OsPlatform::move_mremap(void* dst, void* src, size_t len, movers::Outcome* out) {
  return movers::move_mremap(dst, src, len, out);
}
bool OsPlatform::move_uffd(void* dst, void* src, size_t len, movers::Outcome* out) {
  return movers::move_uffd(dst, src, len, out);
}
bool OsPlatform::move_copy(void* dst, void* src, size_t len, bool purge_src, movers::Outcome* out) {
  return movers::move_copy(dst, src, len, purge_src, out);
}
bool OsPlatform::uffd_register(void* base, size_t len) { return movers::uffd_register(base, len); }
uint32_t OsPlatform::uffd_generation() { return movers::uffd_generation(); }

bool OsPlatform::vma_can_add(size_t n) { return vma::can_add(n); }
void OsPlatform::vma_note_added(size_t n) { vma::note_added(n); }
void OsPlatform::vma_note_changed() { vma::note_changed(); }
void OsPlatform::vma_recount() { vma::recount(); }
size_t OsPlatform::vma_estimate() { return vma::estimate(); }
size_t OsPlatform::vma_budget() { return vma::budget(); }

}  // namespace remalloc::pages

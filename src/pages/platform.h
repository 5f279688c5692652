// page heap: the platform the page heap runs on, as an interface. Every
// system call the page heap makes on its own arenas (reserve, commit,
// purge, heal, guard pages, huge page advice, populating fresh slab
// pages), the three movers and their
// userfaultfd registration, the VMA budget and the clock go through a
// Platform, so a test can build a PageHeap on a fake that counts calls,
// models VMAs and fails chosen calls (tests/unit/pages/fake_platform.h).
// OsPlatform forwards to src/platform/ (os, movers, vma); the process-wide
// page heap uses it.
//
// The contract of each function is that of the platform/ function it
// forwards to (os.h, movers.h, vma.h): page-aligned addresses and lengths,
// failures by return value with errno set, never an abort. A virtual call
// costs a few nanoseconds next to system calls that cost microseconds;
// the paths that make none (carving runs, grow in place) make no platform
// call either, apart from the clock (src/README.md has the measurement).
//
// Not here: the arena map's leaves (process-wide, reserved with
// os::reserve: every PageHeap registers its arenas in the one map that
// free's fast path reads) and mincore for statistics.
#pragma once
#include <cstddef>
#include <cstdint>

#include "platform/movers.h"

namespace remalloc::pages {

class Platform {
 public:
  // ---- address space (os.h)
  virtual void* reserve_inaccessible(size_t size, size_t align) = 0;
  virtual bool commit(void* p, size_t size) = 0;
  virtual void release(void* p, size_t size) = 0;
  virtual bool purge(void* p, size_t size) = 0;        // MADV_DONTNEED
  virtual bool remap_fresh(void* p, size_t size) = 0;  // heal: mmap(MAP_FIXED)
  virtual bool advise_hugepage(void* p, size_t size, bool on) = 0;
  virtual bool populate(void* p, size_t size) = 0;  // MADV_POPULATE_WRITE
  virtual bool guard_install(void* p, size_t size) = 0;
  virtual bool guard_remove(void* p, size_t size) = 0;
  virtual uint64_t now_ns() = 0;

  // ---- the movers (movers.h)
  virtual bool mremap_available() = 0;
  virtual bool uffd_available() = 0;
  virtual bool move_mremap(void* dst, void* src, size_t len, movers::Outcome* out) = 0;
  virtual bool move_uffd(void* dst, void* src, size_t len, movers::Outcome* out) = 0;
  virtual bool move_copy(void* dst, void* src, size_t len, bool purge_src, movers::Outcome* out) = 0;
  virtual bool uffd_register(void* base, size_t len) = 0;
  virtual uint32_t uffd_generation() = 0;

  // ---- the VMA budget (vma.h)
  virtual bool vma_can_add(size_t n) = 0;
  virtual void vma_note_added(size_t n) = 0;
  virtual void vma_note_changed() = 0;
  virtual void vma_recount() = 0;
  virtual size_t vma_estimate() = 0;
  virtual size_t vma_budget() = 0;

 protected:
  constexpr Platform() = default;
  ~Platform() = default;  // never deleted through the interface
};

// The real platform: src/platform/. Stateless; the process-wide page heap
// holds a constant-initialised one.
class OsPlatform final : public Platform {
 public:
  constexpr OsPlatform() = default;
  void* reserve_inaccessible(size_t size, size_t align) override;
  bool commit(void* p, size_t size) override;
  void release(void* p, size_t size) override;
  bool purge(void* p, size_t size) override;
  bool remap_fresh(void* p, size_t size) override;
  bool advise_hugepage(void* p, size_t size, bool on) override;
  bool populate(void* p, size_t size) override;
  bool guard_install(void* p, size_t size) override;
  bool guard_remove(void* p, size_t size) override;
  uint64_t now_ns() override;
  bool mremap_available() override;
  bool uffd_available() override;
  bool move_mremap(void* dst, void* src, size_t len, movers::Outcome* out) override;
  bool move_uffd(void* dst, void* src, size_t len, movers::Outcome* out) override;
  bool move_copy(void* dst, void* src, size_t len, bool purge_src, movers::Outcome* out) override;
  bool uffd_register(void* base, size_t len) override;
  uint32_t uffd_generation() override;
  bool vma_can_add(size_t n) override;
  void vma_note_added(size_t n) override;
  void vma_note_changed() override;
  void vma_recount() override;
  size_t vma_estimate() override;
  size_t vma_budget() override;
};

}  // namespace remalloc::pages

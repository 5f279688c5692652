// A fake pages::Platform for unit tests of the page heap (tcmalloc's mock_*
// in spirit): real memory, so contents can be checked, but every call is
// counted, any call can be made to fail on demand with the errno the real
// one would give, availability of the movers is a switch, the clock is a
// number the test advances, and VMAs are a model the test can read.
//
// The VMA model: every reservation is a row of pages, each page labelled
// with the VMA it belongs to; the count is the number of runs of equal
// labels in all live reservations. Pages start in label 0 (one VMA per
// reservation). An mremap move gives the destination a fresh label (a
// moved-in VMA never merges with its neighbours) and the source another
// (MREMAP_DONTUNMAP leaves it mapped, split off); a heal (remap_fresh)
// gives its range label 0 again, so it merges with unmoved neighbours. A
// uffd or copy move changes no label. split_vmas() is the count less one
// per reservation: what moves added and heals did not take back.
//
// Moves copy the bytes (memcpy) and purge the source (MADV_DONTNEED on the
// real, read-write NORESERVE reservation, so it reads as zeros without
// being touched). Reservations are made read-write: commit() only counts.
#pragma once
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "pages/platform.h"
#include "platform/os.h"

namespace remalloc::test {

class FakePlatform final : public pages::Platform {
 public:
  enum Call {
    kReserve, kCommit, kRelease, kPurge, kHeal, kHugeAdvise, kGuardInstall, kGuardRemove, kPopulate,
    kMoveMremap, kMoveUffd, kMoveCopy, kUffdRegister, kVmaRecount, kNumCalls
  };

  FakePlatform() = default;
  ~FakePlatform() {
    for (Reservation& r : res_) os::release(reinterpret_cast<void*>(r.base), r.pages * kPageSize);
  }

  // ---- what the test controls
  // The next `count` calls of `c` (-1: every one) fail with `err`.
  void fail(Call c, int err, int count = 1) {
    fail_err_[c] = err;
    fail_count_[c] = count;
  }
  bool mremap_ok = true;          // mremap_available()
  bool uffd_ok = true;            // uffd_available()
  uint64_t clock_ns = 1'000'000'000;  // now_ns()
  size_t budget = 1 << 20;        // vma_budget()

  // ---- what the test reads
  int calls[kNumCalls] = {};  // calls made, failed ones included
  struct Populated {
    uintptr_t start;
    size_t bytes;
  };
  std::vector<Populated> populated;  // populate()'s ranges, in order
  size_t vmas() const {
    size_t n = 0;
    for (const Reservation& r : res_) {
      if (!r.live) continue;
      for (size_t i = 0; i < r.pages; i++)
        if (i == 0 || r.label[i] != r.label[i - 1]) n++;
    }
    return n;
  }
  size_t live_reservations() const {
    size_t n = 0;
    for (const Reservation& r : res_) n += r.live;
    return n;
  }
  size_t split_vmas() const { return vmas() - live_reservations(); }
  size_t moves_noted = 0;  // VMAs the page heap said it added (vma_note_added)

  // ---- Platform
  void* reserve_inaccessible(size_t size, size_t align) override {
    calls[kReserve]++;
    if (failing(kReserve)) return nullptr;
    void* p = os::reserve(size, align);
    if (!p) return nullptr;
    res_.push_back(Reservation{reinterpret_cast<uintptr_t>(p), size / kPageSize,
                               std::vector<uint32_t>(size / kPageSize, 0), true});
    return p;
  }
  bool commit(void*, size_t) override {
    calls[kCommit]++;
    return !failing(kCommit);
  }
  void release(void* p, size_t size) override {
    calls[kRelease]++;
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    for (Reservation& r : res_) {
      if (!r.live || a < r.base || a >= r.base + r.pages * kPageSize) continue;
      // The whole reservation, or its tail (trim).
      size_t first = (a - r.base) / kPageSize;
      r.pages = first;
      r.label.resize(first);
      if (first == 0) r.live = false;
      break;
    }
    os::release(p, size);
  }
  bool purge(void* p, size_t size) override {
    calls[kPurge]++;
    if (failing(kPurge)) return false;
    return os::purge(p, size);
  }
  bool remap_fresh(void* p, size_t size) override {
    calls[kHeal]++;
    if (failing(kHeal)) return false;
    label(reinterpret_cast<uintptr_t>(p), size, 0);
    return os::purge(p, size);
  }
  bool advise_hugepage(void*, size_t, bool) override {
    calls[kHugeAdvise]++;
    return !failing(kHugeAdvise);
  }
  // Records each range (populated: the test reads them) and populates the
  // real pages, as the kernel would.
  bool populate(void* p, size_t size) override {
    calls[kPopulate]++;
    if (failing(kPopulate)) return false;
    populated.push_back({reinterpret_cast<uintptr_t>(p), size});
    return os::populate_write(p, size);
  }
  bool guard_install(void*, size_t) override {
    calls[kGuardInstall]++;
    return !failing(kGuardInstall);
  }
  bool guard_remove(void*, size_t) override {
    calls[kGuardRemove]++;
    return !failing(kGuardRemove);
  }
  uint64_t now_ns() override { return clock_ns; }

  bool mremap_available() override { return mremap_ok; }
  bool uffd_available() override { return uffd_ok; }
  bool move_mremap(void* dst, void* src, size_t len, movers::Outcome* out) override {
    calls[kMoveMremap]++;
    if (failing(kMoveMremap, out)) return false;
    move_bytes(dst, src, len);
    label(reinterpret_cast<uintptr_t>(dst), len, ++next_label_);
    label(reinterpret_cast<uintptr_t>(src), len, ++next_label_);
    out->moved = len;
    out->calls = 1;
    out->src_clean = true;
    return true;
  }
  bool move_uffd(void* dst, void* src, size_t len, movers::Outcome* out) override {
    calls[kMoveUffd]++;
    if (failing(kMoveUffd, out)) return false;
    // UFFDIO_MOVE works only into a registered range (EINVAL otherwise):
    // the page heap must have put dst in an arena it registered.
    if (!registered(reinterpret_cast<uintptr_t>(dst), len)) {
      out->err = errno = EINVAL;
      return false;
    }
    move_bytes(dst, src, len);
    out->moved = len;
    out->src_clean = true;
    return true;
  }
  bool move_copy(void* dst, void* src, size_t len, bool purge_src, movers::Outcome* out) override {
    calls[kMoveCopy]++;
    if (failing(kMoveCopy, out)) return false;
    memcpy(dst, src, len);
    if (purge_src) os::purge(src, len);
    out->copied = len;
    out->src_clean = purge_src;
    return true;
  }
  bool uffd_register(void* base, size_t len) override {
    calls[kUffdRegister]++;
    if (failing(kUffdRegister)) return false;
    uffd_ranges_.push_back({reinterpret_cast<uintptr_t>(base), len});
    return true;
  }
  uint32_t uffd_generation() override { return 1; }

  bool vma_can_add(size_t n) override { return vmas() + n <= budget; }
  void vma_note_added(size_t n) override { moves_noted += n; }
  void vma_note_changed() override {}
  void vma_recount() override { calls[kVmaRecount]++; }
  size_t vma_estimate() override { return vmas(); }
  size_t vma_budget() override { return budget; }

 private:
  struct Reservation {
    uintptr_t base;
    size_t pages;
    std::vector<uint32_t> label;
    bool live;
  };
  struct Range {
    uintptr_t base;
    size_t len;
  };

  bool failing(Call c, movers::Outcome* out = nullptr) {
    if (fail_count_[c] == 0) return false;
    if (fail_count_[c] > 0) fail_count_[c]--;
    errno = fail_err_[c];
    if (out) out->err = fail_err_[c];
    return true;
  }
  void label(uintptr_t a, size_t len, uint32_t l) {
    for (Reservation& r : res_) {
      if (!r.live || a < r.base || a >= r.base + r.pages * kPageSize) continue;
      size_t first = (a - r.base) / kPageSize;
      for (size_t i = first; i < first + len / kPageSize && i < r.pages; i++) r.label[i] = l;
      return;
    }
  }
  bool registered(uintptr_t a, size_t len) const {
    for (const Range& r : uffd_ranges_)
      if (a >= r.base && a + len <= r.base + r.len) return true;
    return false;
  }
  static void move_bytes(void* dst, void* src, size_t len) {
    memcpy(dst, src, len);
    os::purge(src, len);
  }

  std::vector<Reservation> res_;
  std::vector<Range> uffd_ranges_;
  int fail_err_[kNumCalls] = {};
  int fail_count_[kNumCalls] = {};
  uint32_t next_label_ = 0;
};

}  // namespace remalloc::test

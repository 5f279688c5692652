// api: statistics. The text report is an accounting sum: bytes in blocks
// (slabs + large) plus free runs equals what the arenas hold; then the
// relocation engine's counters and the VMA estimate.
#include "api/stats.h"

#include "api/api.h"
#include "api/options.h"
#include "base/format.h"
#include "platform/os.h"
#include "platform/vma.h"
#include "remalloc/remalloc.h"

using namespace remalloc;

extern "C" void remalloc_stats_get(remalloc_stats_t* out) {
  if (!out) return;
  api::ensure_init();
  pages::Stats ps;
  pages::get_stats(&ps);
  pages::RelocStats rs;
  pages::get_reloc_stats(&rs);
  heap::Stats hs;
  heap::get_stats(&hs);
  *out = remalloc_stats_t{};
  size_t small_bytes = 0;
  for (unsigned c = 0; c < sc::kNumClasses; c++) small_bytes += hs.live_by_class[c] * sc::kInfo[c].size;
  out->allocated = ps.large_bytes + small_bytes;
  out->peak_allocated = ps.peak_bytes;
  out->mapped = ps.mapped;
  out->resident = os::resident_bytes();
  out->arenas = ps.arenas;
  out->large_live = ps.large_live;
  out->small_live = hs.blocks_live;
  out->purged_bytes = ps.purged_bytes;
  out->realloc_inplace = rs.realloc_inplace;
  out->grow_inplace = rs.grow_inplace;
  out->shrink_inplace = rs.shrink_inplace;
  out->moves_mremap = rs.moves_mremap;
  out->moves_uffd = rs.moves_uffd;
  out->moves_copy = rs.moves_copy;
  out->bytes_moved = rs.bytes_moved;
  out->bytes_copied = rs.bytes_copied;
  out->fallback_budget = rs.fallback_budget;
  out->fallback_error = rs.fallback_error;
  out->fallback_fork = rs.fallback_fork;
  out->fallback_small = rs.fallback_small;
  out->vma_estimate = vma::estimate();
  out->vma_budget = vma::budget();
  out->vma_heals = ps.heals;
}

#define RM_STATS_FIELDS(X)                                                                  \
  X(allocated) X(peak_allocated) X(mapped) X(resident) X(arenas) X(large_live) X(small_live) \
  X(purged_bytes) X(realloc_inplace) X(grow_inplace) X(shrink_inplace) X(moves_mremap)       \
  X(moves_uffd) X(moves_copy) X(bytes_moved) X(bytes_copied) X(fallback_budget)             \
  X(fallback_error) X(fallback_fork) X(fallback_small) X(vma_estimate) X(vma_budget)        \
  X(vma_heals)

extern "C" size_t remalloc_stats_json(char* buf, size_t len) {
  remalloc_stats_t st;
  remalloc_stats_get(&st);
  heap::Stats hs;
  heap::get_stats(&hs);
  BufWriter w(buf, len);
  w.str("{");
#define X(f) w.str("\"" #f "\":").u64(st.f).str(",");
  RM_STATS_FIELDS(X)
#undef X
  w.str("\"invalid_frees\":").u64(api::g_invalid_frees.load());
  w.str(",\"heaps\":").u64(hs.heaps).str(",\"slabs\":").u64(hs.slabs);
  w.str(",\"size_classes\":[");
  bool first = true;
  for (unsigned c = 0; c < sc::kNumClasses; c++) {
    if (!hs.slabs_by_class[c]) continue;
    if (!first) w.chr(',');
    first = false;
    w.str("{\"size\":").u64(sc::kInfo[c].size).str(",\"live\":").u64(hs.live_by_class[c]);
    w.str(",\"slabs\":").u64(hs.slabs_by_class[c]).str("}");
  }
  w.str("]}");
  return w.needed();
}

extern "C" void remalloc_stats_print(int fd) {
  remalloc_stats_t st;
  remalloc_stats_get(&st);
  pages::Stats ps;
  pages::get_stats(&ps);
  heap::Stats hs;
  heap::get_stats(&hs);
  Writer w(fd);
  w.str("remalloc statistics\n");
  w.str("  in live blocks").pad_to(36).bytes(st.allocated).chr('\n');
  w.str("  held for blocks (slabs + large)").pad_to(36).bytes(ps.slab_bytes + ps.large_bytes).str("   peak ").bytes(st.peak_allocated).chr('\n');
  w.str("    slabs").pad_to(36).bytes(ps.slab_bytes).str(" in ").u64(ps.slabs).str(" slabs, ")
      .u64(hs.blocks_live).str(" live small blocks\n");
  w.str("    large blocks").pad_to(36).bytes(ps.large_bytes).str(" in ").u64(ps.large_live).str(" blocks\n");
  w.str("  free runs").pad_to(36).bytes(ps.free_bytes).str(" (").bytes(ps.dirty_bytes).str(" not yet purged)\n");
  w.str("  = reserved by arenas").pad_to(36).bytes(ps.mapped).str(" in ").u64(ps.arenas).str(" arenas\n");
  w.str("  resident (RSS)").pad_to(36).bytes(st.resident).chr('\n');
  w.str("  purged").pad_to(36).bytes(st.purged_bytes).chr('\n');
  w.str("  heaps").pad_to(36).u64(hs.heaps).str(" (").u64(hs.abandoned).str(" abandoned)\n");
  w.str("  invalid frees").pad_to(36).u64(api::g_invalid_frees.load()).chr('\n');
  w.str("  small blocks by size class (size: live/slabs)\n   ");
  int col = 0;
  for (unsigned c = 0; c < sc::kNumClasses; c++) {
    if (!hs.slabs_by_class[c]) continue;
    w.chr(' ').u64(sc::kInfo[c].size).chr(':').u64(hs.live_by_class[c]).chr('/').u64(hs.slabs_by_class[c]);
    if (++col % 6 == 0) w.str("\n   ");
  }
  w.chr('\n');
  w.str("relocation engine\n");
  w.str("  realloc stayed in place").pad_to(36).u64(st.realloc_inplace).chr('\n');
  w.str("  grown in place").pad_to(36).u64(st.grow_inplace).chr('\n');
  w.str("  shrunk in place").pad_to(36).u64(st.shrink_inplace).chr('\n');
  w.str("  moved by mremap").pad_to(36).u64(st.moves_mremap).chr('\n');
  w.str("  moved by UFFDIO_MOVE").pad_to(36).u64(st.moves_uffd).chr('\n');
  w.str("  moved by copying").pad_to(36).u64(st.moves_copy).chr('\n');
  w.str("  bytes moved / copied").pad_to(36).bytes(st.bytes_moved).str(" / ").bytes(st.bytes_copied).chr('\n');
  w.str("  fallbacks budget/error/fork/small").pad_to(36).u64(st.fallback_budget).chr('/')
      .u64(st.fallback_error).chr('/').u64(st.fallback_fork).chr('/').u64(st.fallback_small).chr('\n');
  w.str("  VMAs (estimate / budget)").pad_to(36).u64(st.vma_estimate).str(" / ").u64(st.vma_budget)
      .str(", healed ").u64(st.vma_heals).chr('\n');
}

namespace remalloc::api {
void print_stats_at_exit() {
  long mode = options::get(options::kStats);
  if (mode == 1) {
    remalloc_stats_print(2);
  } else if (mode == 2) {
    char buf[8192];
    size_t n = remalloc_stats_json(buf, sizeof buf);
    (void)n;
    Writer w(2);
    w.str(buf).chr('\n');
  }
}
}  // namespace remalloc::api

// Statistics at exit: a destructor function (not a C++ static object), so
// it needs no runtime support and runs in both the shared and static library.
__attribute__((destructor)) static void remalloc_at_exit() {
  remalloc::api::ensure_init();
  if (remalloc::options::get(remalloc::options::kStats)) remalloc::api::print_stats_at_exit();
}

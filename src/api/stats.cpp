// api: statistics. The text report is an accounting sum: bytes in blocks
// (slabs + large) plus free runs equals what the arenas hold; then the
// relocation engine's counters and the VMA estimate.
#include "api/stats.h"

#include <cstddef>
#include <cstring>

#include "api/api.h"
#include "api/background.h"
#include "api/options.h"
#include "base/format.h"
#include "heap/sampled.h"
#include "platform/os.h"
#include "platform/vma.h"
#include "remalloc/remalloc.h"

using namespace remalloc;

namespace {

// One report's figures: the page heap and the small heaps, each read once.
struct Snapshot {
  remalloc_stats_t st;
  pages::Stats ps;
  heap::Stats hs;
};

void gather(Snapshot* s) {
  api::ensure_init();
  pages::get_stats(&s->ps);
  heap::get_stats(&s->hs);
  const pages::Stats& ps = s->ps;
  const heap::Stats& hs = s->hs;
  remalloc_stats_t* out = &s->st;
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
#define X(name, label, doc) out->name = ps.counters[pages::kCount_##name];
  REMALLOC_RELOC_COUNTERS(X)
#undef X
  out->vma_estimate = vma::estimate();
  out->vma_budget = vma::budget();
  out->vma_heals = ps.heals;
  long maps = os::count_maps();
  out->vma_kernel = maps > 0 ? size_t(maps) : 0;
  out->vma_moved_blocks = ps.moved_blocks;
  out->vma_split_runs = ps.split_runs;
  out->thp_mode = size_t(os::thp_mode());
  out->huge_blocks = ps.huge_blocks;
  out->huge_advised = ps.huge_bytes;
  long huge = pages::huge_backed_bytes();
  out->huge_backed = huge > 0 ? size_t(huge) : 0;
  out->large_bytes = ps.large_bytes;
  out->slab_slack = ps.slab_bytes > small_bytes ? ps.slab_bytes - small_bytes : 0;
  out->free_unpurged = ps.dirty_bytes;
  out->metadata = ps.meta_resident;
  out->dirty_cap = ps.dirty_cap;
  out->bg_running = background::running() ? 1 : 0;
  out->bg_purged_bytes = ps.bg_purged_bytes;
  out->bg_heals = ps.bg_heals;
  out->bg_wakeups = background::wakeups();
  out->memory_limit = options::memory_limit();
  out->memory_headroom = out->memory_limit > out->resident ? out->memory_limit - out->resident : 0;
  if constexpr (kSecure) {
    sampled::Stats gs;
    sampled::get_stats(&gs);
    out->guarded_sampled = gs.total;
    out->guarded_live = gs.live;
    out->small_live += gs.live;  // sampled blocks are small blocks too
    out->allocated += gs.live_bytes;
  }
}

}  // namespace

// The ABI of remalloc_stats_t (see the public header): 0.1's struct, frozen
// here, must stay its prefix, field for field; fields are only appended.
namespace {
struct StatsV0_1 {
  size_t allocated, peak_allocated, mapped, resident, arenas, large_live, small_live, purged_bytes;
  size_t realloc_inplace, grow_inplace, shrink_inplace, moves_mremap, moves_uffd, moves_copy;
  size_t bytes_moved, bytes_copied, fallback_budget, fallback_error, fallback_fork, fallback_small;
  size_t vma_estimate, vma_budget, vma_heals;
};
constexpr size_t kStatsSizeV0_1 = sizeof(StatsV0_1);
static_assert(kStatsSizeV0_1 == 184, "0.1's remalloc_stats_t was 23 size_t fields");
#define RM_SAME_OFFSET(f) \
  static_assert(offsetof(remalloc_stats_t, f) == offsetof(StatsV0_1, f), "remalloc_stats_t: 0.1's field " #f " moved");
RM_SAME_OFFSET(allocated) RM_SAME_OFFSET(peak_allocated) RM_SAME_OFFSET(mapped) RM_SAME_OFFSET(resident)
RM_SAME_OFFSET(arenas) RM_SAME_OFFSET(large_live) RM_SAME_OFFSET(small_live) RM_SAME_OFFSET(purged_bytes)
RM_SAME_OFFSET(realloc_inplace) RM_SAME_OFFSET(grow_inplace) RM_SAME_OFFSET(shrink_inplace)
RM_SAME_OFFSET(moves_mremap) RM_SAME_OFFSET(moves_uffd) RM_SAME_OFFSET(moves_copy) RM_SAME_OFFSET(bytes_moved)
RM_SAME_OFFSET(bytes_copied) RM_SAME_OFFSET(fallback_budget) RM_SAME_OFFSET(fallback_error)
RM_SAME_OFFSET(fallback_fork) RM_SAME_OFFSET(fallback_small) RM_SAME_OFFSET(vma_estimate)
RM_SAME_OFFSET(vma_budget) RM_SAME_OFFSET(vma_heals)
#undef RM_SAME_OFFSET
// Appended fields (0.2 on) are all size_t, so the struct has no padding.
static_assert(sizeof(remalloc_stats_t) % sizeof(size_t) == 0);
static_assert(offsetof(remalloc_stats_t, large_bytes) + sizeof(size_t) == sizeof(remalloc_stats_t),
              "remalloc_stats_t: a field was added, but not at the end");
}  // namespace

// Writes min(size, sizeof) bytes of one snapshot, zeroes the caller's bytes
// past the library's struct (a caller compiled against a newer header), and
// returns the library's size.
extern "C" size_t remalloc_stats_get_sized(remalloc_stats_t* out, size_t size) {
  if (!out) return sizeof(remalloc_stats_t);
  Snapshot s;
  gather(&s);
  size_t n = size < sizeof(remalloc_stats_t) ? size : sizeof(remalloc_stats_t);
  memcpy(out, &s.st, n);
  if (size > n) memset(reinterpret_cast<char*>(out) + n, 0, size - n);
  return sizeof(remalloc_stats_t);
}

// The 0.1 entry point: programs built against 0.1's header pass a struct of
// 184 bytes and no size, so it writes exactly that, forever. (Parenthesised:
// the header's macro of the same name makes new callers pass their size.)
extern "C" void(remalloc_stats_get)(remalloc_stats_t* out) { remalloc_stats_get_sized(out, kStatsSizeV0_1); }

extern "C" size_t remalloc_stats_json(char* buf, size_t len) {
  Snapshot s;
  gather(&s);
  const remalloc_stats_t& st = s.st;
  const heap::Stats& hs = s.hs;
  BufWriter w(buf, len);
  w.str("{");
#define F(f) w.str("\"" #f "\":").u64(st.f).str(",");
  F(allocated) F(peak_allocated) F(mapped) F(resident) F(arenas) F(large_live) F(small_live)
  F(purged_bytes)
#define X(name, label, doc) F(name)
  REMALLOC_RELOC_COUNTERS(X)
#undef X
  F(vma_estimate) F(vma_budget) F(vma_heals) F(vma_kernel) F(vma_moved_blocks) F(vma_split_runs)
  F(slab_slack) F(free_unpurged) F(metadata) F(dirty_cap)
  F(bg_running) F(bg_purged_bytes) F(bg_heals) F(bg_wakeups) F(memory_limit) F(memory_headroom)
  F(guarded_sampled) F(guarded_live)
  F(thp_mode) F(huge_blocks) F(huge_advised) F(huge_backed) F(large_bytes)
#undef F
  w.str("\"free_bytes\":").u64(s.ps.free_bytes).str(",\"dirty_bytes\":").u64(s.ps.dirty_bytes);
  w.str(",\"slab_bytes\":").u64(s.ps.slab_bytes);
  w.str(",\"meta_bytes\":").u64(s.ps.meta_bytes);
  w.str(",\"invalid_frees\":").u64(api::g_invalid_frees.load());
  w.str(",\"heaps\":").u64(hs.heaps).str(",\"slabs\":").u64(hs.slabs);
  w.str(",\"foreign_cached\":").u64(hs.blocks_cached);
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
  Snapshot s;
  gather(&s);
  const remalloc_stats_t& st = s.st;
  const pages::Stats& ps = s.ps;
  const heap::Stats& hs = s.hs;
  Writer w(fd);
  w.str("remalloc statistics\n");
  w.str("  in live blocks").pad_to(36).bytes(st.allocated).chr('\n');
  w.str("  held for blocks (slabs + large)").pad_to(36).bytes(ps.slab_bytes + ps.large_bytes).str("   peak ").bytes(st.peak_allocated).chr('\n');
  w.str("    slabs").pad_to(36).bytes(ps.slab_bytes).str(" in ").u64(ps.slabs).str(" slabs, ")
      .u64(hs.blocks_live).str(" live small blocks, ").u64(hs.blocks_cached)
      .str(" cached by threads that freed them\n");
  w.str("    large blocks").pad_to(36).bytes(ps.large_bytes).str(" in ").u64(ps.large_live).str(" blocks\n");
  w.str("  free runs").pad_to(36).bytes(ps.free_bytes).str(" (").bytes(ps.dirty_bytes).str(" not yet purged)\n");
  w.str("  = reserved by arenas").pad_to(36).bytes(ps.mapped).str(" in ").u64(ps.arenas).str(" arenas\n");
  w.str("  arena metadata (reserved)").pad_to(36).bytes(ps.meta_bytes).chr('\n');
  w.str("  resident (RSS)").pad_to(36).bytes(st.resident).chr('\n');
  w.str("    in live blocks").pad_to(36).bytes(st.allocated).chr('\n');
  w.str("    slab slack").pad_to(36).bytes(st.slab_slack).chr('\n');
  w.str("    free, not yet purged").pad_to(36).bytes(st.free_unpurged).str(" (cap ").bytes(st.dirty_cap).str(")\n");
  w.str("    metadata").pad_to(36).bytes(st.metadata).chr('\n');
  w.str("  memory limit").pad_to(36);
  if (st.memory_limit)
    w.bytes(st.memory_limit).str(", headroom ").bytes(st.memory_headroom).chr('\n');
  else
    w.str("none\n");
  w.str("  background thread").pad_to(36).str(st.bg_running ? "running" : "off").str(", purged ")
      .bytes(st.bg_purged_bytes).str(", healed ").u64(st.bg_heals).str(", woke ").u64(st.bg_wakeups).chr('\n');
  w.str("  purged").pad_to(36).bytes(st.purged_bytes).chr('\n');
  w.str("  heaps").pad_to(36).u64(hs.heaps).str(" (").u64(hs.abandoned).str(" abandoned)\n");
  if constexpr (kSecure)
    w.str("  sampled guarded blocks").pad_to(36).u64(st.guarded_sampled).str(" (").u64(st.guarded_live)
        .str(" live)\n");
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
#define X(name, label, doc) w.str("  " label).pad_to(36).u64(st.name).chr('\n');
  REMALLOC_RELOC_COUNTERS(X)
#undef X
  w.str("  VMAs (estimate / budget)").pad_to(36).u64(st.vma_estimate).str(" / ").u64(st.vma_budget)
      .str(", healed ").u64(st.vma_heals).chr('\n');
  w.str("  VMAs (kernel's count)").pad_to(36).u64(st.vma_kernel).str(" (moved-in blocks ").u64(st.vma_moved_blocks)
      .str(", split free runs ").u64(st.vma_split_runs).str(")\n");
  w.str("transparent huge pages (system mode ").str(os::thp_mode_name(int(st.thp_mode))).str(")\n");
  w.str("  large blocks advised").pad_to(36).u64(st.huge_blocks).str(", ").bytes(st.huge_advised)
      .str(" in whole 2 MiB granules\n");
  w.str("  on huge pages").pad_to(36).bytes(st.huge_backed).str(" of ").bytes(st.large_bytes)
      .str(" held for large blocks (");
  w.u64(st.large_bytes ? st.huge_backed * 100 / st.large_bytes : 0).str("%)\n");
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

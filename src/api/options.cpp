// api: the options table.
#include "api/options.h"

#include "api/api.h"
#include "api/background.h"
#include "platform/cgroup.h"

#include "base/format.h"
#include "heap/heap.h"
#include "heap/sampled.h"
#include "pages/page_heap.h"
#include "platform/movers.h"
#include "platform/os.h"
#include "platform/vma.h"
#include "prof/prof.h"

namespace remalloc::options {

// One row per option: everything about it is written here once.
enum Kind : uint8_t { kInt, kBool, kEnum, kString };
struct Option {
  const char* name;  // lower case, without prefix
  long value;        // effective value (starts as the default)
  Kind kind;
  long min, max;     // accepted range (kInt); kBool is 0..1
  const char* unit;
  const char* doc;
};

static Option g_options[kNumOptions] = {
    {"verbose", 0, kBool, 0, 1, "", "print the effective options at start-up (1)"},
    {"stats", 0, kEnum, 0, 2, "", "print statistics at exit: 1 text, 2 (or json) JSON"},
    {"purge_delay", 100, kInt, 0, 3'600'000, "ms", "free pages are given back after this delay (0: at once)"},
    {"arena_size", 256, kInt, 64, 1L << 20, "MiB", "address space reserved per arena"},
    {"mover", -1, kEnum, -1, 2, "", "large-block mover: auto, mremap, uffd or copy"},
    {"move_threshold", 128, kInt, 0, 1L << 30, "KiB", "blocks below this size are copied, not remapped"},
    {"huge_threshold", 2048, kInt, 4, 1L << 30, "KiB", "blocks at or above this size are 2 MiB aligned"},
    {"hugepage", 1, kBool, 0, 1, "",
     "transparent huge pages for large blocks from hugepage_threshold: MADV_HUGEPAGE on their whole 2 MiB "
     "granules, kept whole (0 off; off anyway where the system's THP mode is not madvise or under PR_SET_THP_DISABLE)"},
    {"vma_budget", 0, kInt, 0, 1L << 31, "", "VMAs remalloc may let the process reach (0: max_map_count/4)"},
    {"abort_on_invalid", 1, kBool, 0, 1, "", "abort on an invalid free (0: warn and count)"},
    {"grow_inplace", 1, kBool, 0, 1, "", "grow large blocks in place when free pages follow (0: always move)"},
    {"dirty_max", 128, kInt, 0, 1L << 30, "MiB",
     "free memory kept unpurged at most (or dirty_ratio of the footprint if larger); past it, purge at once"},
    {"grow_headroom", 1, kBool, 0, 1, "", "a block moved by realloc gets as much room again to grow into (1)"},
    {"background", 0, kBool, 0, 1, "", "a purger thread returns free pages after the delay, even while idle (1)"},
    {"dirty_ratio", 25, kInt, 0, 1000, "%", "the dirty cap is at least this share of the bytes held for blocks"},
    {"memory_limit", 0, kInt, 0, 1L << 30, "MiB", "memory limit to stay under (0: the cgroup's, if any)"},
    {"cgroup", 1, kBool, 0, 1, "", "read the memory cgroup limit (memory.max/high, memory.limit_in_bytes)"},
    // Secure build only (its range is 0..0 elsewhere, so setting it fails).
    {"guard_sample", kSecure ? 1000 : 0, kInt, 0, kSecure ? 1L << 30 : 0, "",
     "secure build: 1 in N small allocations gets its own page against a guard page (0 off)"},
    // Secure build only, read at start-up (guarded pages exist by then).
    {"guard_install", kSecure ? 1 : 0, kBool, 0, kSecure ? 1 : 0, "",
     "secure build, start-up only: MADV_GUARD_INSTALL where the kernel has it (0: as if it had not: "
     "mprotect for sampled pages, no tail guards)"},
    // Heap profiling (src/prof/, the README's "Heap profiling").
    {"prof", 0, kBool, 0, 1, "", "sampled heap profiling (1): live and total bytes by allocation stack"},
    {"prof_sample", 512 * 1024, kInt, 1, 1L << 40, "B", "mean bytes allocated between two samples (per thread)"},
    {"prof_interval", 0, kInt, 0, 1L << 40, "B", "write a profile every this many bytes allocated (0: never)"},
    {"prof_final", 0, kBool, 0, 1, "", "at exit: write a profile and print a leak summary on stderr (1)"},
    {"prof_leak_error", 0, kBool, 0, 1, "", "at exit: exit status 1 when sampled blocks are still live (1)"},
    {"prof_limit", 90, kInt, 0, 100, "%", "write a profile when resident memory passes this share of the memory limit (0: never)"},
    {"prof_unwind", 0, kEnum, 0, 2, "",
     "stacks: auto (frame pointers, libgcc's unwinder where they end early), fp or libgcc"},
    {"prof_prefix", 0, kString, 0, 0, "", "profiles are written to PREFIX.PID.SEQ.heap (default: remalloc)"},
    {"mremap_threshold", 8192, kInt, 4, 1L << 30, "KiB",
     "blocks at or above this size move by mremap first; smaller ones by UFFDIO_MOVE (no new VMAs)"},
    {"hugepage_threshold", 2048, kInt, 2048, 1L << 30, "KiB", "large blocks from this size may get huge pages (hugepage)"},
    {"prefault", 1, kBool, 0, 1, "",
     "a slab's fresh pages are populated with one MADV_POPULATE_WRITE call as its blocks are first handed out, "
     "not a page fault each (0 off)"},
    {"foreign_cache", 64, kInt, 0, 1L << 20, "MiB",
     "with more than 8 threads per CPU: blocks a thread frees of other threads' slabs are kept for its own "
     "allocations, within this budget shared by all threads (0 off)"},
};

// The THP settings found by the last apply() (REMALLOC_VERBOSE prints them).
static int g_thp_mode;
static bool g_thp_process_off;

static char g_prof_prefix[1024] = "remalloc";

static bool lower_eq(const char* a, const char* b) {
  for (;; a++, b++) {
    char ca = *a >= 'A' && *a <= 'Z' ? char(*a + 32) : *a;
    char cb = *b >= 'A' && *b <= 'Z' ? char(*b + 32) : *b;
    if (ca != cb) return false;
    if (!ca) return true;
  }
}

// The name of value v of an enum option, or nullptr.
static const char* enum_name(Id id, long v) {
  if (id == kMover) return v < 0 ? "auto" : movers::kind_name(int(v));
  if (id == kStats) return v == 0 ? "off" : v == 1 ? "text" : "json";
  if (id == kProfUnwind) return v == 0 ? "auto" : v == 1 ? "fp" : "libgcc";
  return nullptr;
}

bool valid(Id id, long v) {
  const Option& o = g_options[id];
  return v >= o.min && v <= o.max;
}

static bool parse(Id id, const char* s, long* out) {
  const Option& o = g_options[id];
  if (o.kind == kEnum) {
    for (long v = o.min; v <= o.max; v++) {
      if (lower_eq(s, enum_name(id, v))) {
        *out = v;
        return true;
      }
    }
  }
  if (o.kind == kBool) {
    if (lower_eq(s, "true") || lower_eq(s, "yes") || lower_eq(s, "on")) {
      *out = 1;
      return true;
    }
    if (lower_eq(s, "false") || lower_eq(s, "no") || lower_eq(s, "off")) {
      *out = 0;
      return true;
    }
  }
  bool neg = *s == '-';
  if (neg) s++;
  if (*s == 0) return false;
  long v = 0;
  for (const char* p = s; *p; p++) {
    if (*p < '0' || *p > '9') return false;
    v = v * 10 + (*p - '0');
    if (v > (1L << 40)) return false;
  }
  *out = neg ? -v : v;
  return valid(id, *out);
}

static void refuse(const char* var, const char* text, long v, bool numeric) {
  Writer w(2);
  w.str("remalloc: warning: ignoring ").str(var).chr('=');
  if (numeric)
    w.i64(v);
  else
    w.str(text);
  w.str(" (bad value; the option keeps its value)\n");
}

static int g_state = 0;  // 0 not read, 1 read
static cgroup::Limits g_limits;

size_t memory_limit() {
  long mib = g_options[kMemoryLimit].value;
  if (mib > 0) return size_t(mib) << 20;
  return g_options[kCgroup].value ? cgroup::effective(g_limits) : 0;
}

int cgroup_version() { return g_limits.version; }

size_t refresh_limits() {
  g_limits = g_options[kCgroup].value ? cgroup::read() : cgroup::Limits{0, 0, 0};
  apply();
  return memory_limit();
}

void init() {
  if (g_state) return;
  g_state = 1;
  char var[64];
  for (int i = 0; i < kNumOptions; i++) {
    // REMALLOC_ + upper-case name
    size_t n = 0;
    for (const char* p = "REMALLOC_"; *p; p++) var[n++] = *p;
    for (const char* p = g_options[i].name; *p && n + 1 < sizeof var; p++)
      var[n++] = *p >= 'a' && *p <= 'z' ? char(*p - 32) : *p;
    var[n] = 0;
    const char* val = os::env_lookup(var);
    if (!val) continue;
    if (g_options[i].kind == kString) {
      size_t k = 0;
      while (val[k] && k + 1 < sizeof g_prof_prefix) k++;
      if (k == 0 || val[k]) {
        refuse(var, val, 0, false);
        continue;
      }
      __builtin_memcpy(g_prof_prefix, val, k);
      g_prof_prefix[k] = 0;
      continue;
    }
    long v;
    if (parse(Id(i), val, &v))
      g_options[i].value = v;
    else
      refuse(var, val, 0, false);
  }
  if (g_options[kCgroup].value) g_limits = cgroup::read();
  if (kSecure && !g_options[kGuardInstall].value) os::disable_guards();
  apply();
}

long get(Id id) { return g_options[id].value; }

bool set(Id id, long value) {
  if (!valid(id, value) || g_options[id].kind == kString) {
    if (g_options[kVerbose].value) {
      char var[64] = "REMALLOC_";
      size_t n = 9;
      for (const char* p = g_options[id].name; *p && n + 1 < sizeof var; p++)
        var[n++] = *p >= 'a' && *p <= 'z' ? char(*p - 32) : *p;
      var[n] = 0;
      refuse(var, nullptr, value, true);
    }
    return false;
  }
  // Guards already installed cannot be taken back for mprotect: start-up only.
  if (id == kGuardInstall && value != g_options[id].value) return false;
  g_options[id].value = value;
  apply();
  // remalloc_option_set("guard_sample", n) applies to the caller at once.
  if (kSecure && id == kGuardSample) sampled::rearm_thread();
  return true;
}

int find(const char* nm) {
  if (!nm) return -1;
  // Accept an optional REMALLOC_ prefix.
  const char* pre = "REMALLOC_";
  const char* p = nm;
  const char* q = pre;
  while (*q && (*p == *q || *p == *q + 32)) p++, q++;
  if (*q == 0) nm = p;
  for (int i = 0; i < kNumOptions; i++)
    if (lower_eq(nm, g_options[i].name)) return i;
  return -1;
}

const char* name(Id id) { return g_options[id].name; }

void apply() {
  pages::Config c = pages::config();
  long d = g_options[kPurgeDelay].value;
  c.purge_delay_ns = uint64_t(d < 0 ? 0 : d) * 1000000ull;
  long a = g_options[kArenaSize].value;
  c.arena_bytes = align_up(size_t(a) << 20, kArenaGranule);
  c.mover = int(g_options[kMover].value);
  c.move_threshold = size_t(g_options[kMoveThreshold].value) << 10;
  c.huge_threshold = size_t(g_options[kHugeThreshold].value) << 10;
  c.mremap_threshold = size_t(g_options[kMremapThreshold].value) << 10;
  // Transparent huge pages: advice only where the system asks for it
  // (madvise). Under "always" every aligned 2 MiB range may get a huge page
  // anyway (advice would only cost VMAs); "never" means never; and a
  // process that set PR_SET_THP_DISABLE (or inherited it) wants none.
  g_thp_mode = os::thp_mode();
  g_thp_process_off = os::thp_disabled_for_process();
  c.hugepage = g_options[kHugepage].value != 0 && g_thp_mode == os::kThpMadvise && !g_thp_process_off;
  c.hugepage_threshold = size_t(g_options[kHugepageThreshold].value) << 10;
  c.grow_inplace = g_options[kGrowInplace].value != 0;
  c.dirty_max = size_t(g_options[kDirtyMax].value) << 20;
  c.grow_headroom = g_options[kGrowHeadroom].value != 0;
  c.prefault = g_options[kPrefault].value != 0 && !api::future_locked();
  // The foreign cache pays off only where owners of slabs are mostly not
  // running (heap/foreign.cpp).
  heap::configure_foreign(size_t(g_options[kForeignCache].value) << 20, 8 * os::cpu_count());
  c.dirty_ratio = size_t(g_options[kDirtyRatio].value);
  c.memory_limit = memory_limit();
  pages::configure(c);
  background::configure(g_options[kBackground].value != 0);
  vma::set_budget(size_t(g_options[kVmaBudget].value));
  if constexpr (kSecure) sampled::configure(g_options[kGuardSample].value);
  prof::Config pc;
  pc.active = g_options[kProf].value != 0;
  pc.sample = size_t(g_options[kProfSample].value);
  pc.interval = size_t(g_options[kProfInterval].value);
  pc.memory_limit = c.memory_limit;
  pc.limit_percent = unsigned(g_options[kProfLimit].value);
  pc.unwind = int(g_options[kProfUnwind].value);
  pc.prefix = g_prof_prefix;
  prof::configure(pc);
}

const char* prof_prefix() { return g_prof_prefix; }

void print_thp(int fd) {
  Writer w(fd);
  char defrag[32];
  os::thp_defrag(defrag, sizeof defrag);
  w.str("remalloc: transparent huge pages: the system's mode ").str(os::thp_mode_name(g_thp_mode))
      .str(", defrag ").str(defrag).str("; ");
  if (pages::config().hugepage)
    w.str("MADV_HUGEPAGE on the whole 2 MiB granules of large blocks from ")
        .u64(size_t(g_options[kHugepageThreshold].value) >> 10).str(" MiB\n");
  else if (!g_options[kHugepage].value)
    w.str("off (REMALLOC_HUGEPAGE=0)\n");
  else if (g_thp_process_off)
    w.str("off (the process set PR_SET_THP_DISABLE)\n");
  else if (g_thp_mode == os::kThpAlways)
    w.str("no advice (the kernel gives huge pages to every aligned 2 MiB range)\n");
  else
    w.str("off (the system's mode)\n");
}

void print(int fd) {
  Writer w(fd);
  w.str("remalloc: options (set with REMALLOC_<NAME>):\n");
  for (int i = 0; i < kNumOptions; i++) {
    const Option& o = g_options[i];
    w.str("remalloc:   ").str(o.name).pad_to(32);
    if (o.kind == kEnum)
      w.str(enum_name(Id(i), o.value));
    else if (o.kind == kString)
      w.str(i == kProfPrefix ? g_prof_prefix : "");
    else
      w.i64(o.value);
    if (*o.unit) w.chr(' ').str(o.unit);
    w.pad_to(46).str(o.doc).chr('\n');
  }
}

}  // namespace remalloc::options

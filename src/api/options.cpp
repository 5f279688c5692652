// api: the options table.
#include "api/options.h"

#include "base/format.h"
#include "pages/internal.h"
#include "platform/os.h"
#include "platform/vma.h"

namespace remalloc::options {

struct Option {
  const char* name;  // lower case, without prefix
  long value;
  const char* unit;
  const char* doc;
};

static Option g_options[kNumOptions] = {
    {"verbose", 0, "", "print the effective options at start-up (1)"},
    {"stats", 0, "", "print statistics at exit: 1 text, 2 JSON"},
    {"purge_delay", 10, "ms", "free pages are given back after this delay (0: at once)"},
    {"arena_size", 256, "MiB", "address space reserved per arena"},
    {"mover", -1, "", "large-block mover: auto, mremap, uffd or copy"},
    {"move_threshold", 128, "KiB", "blocks below this size are copied, not remapped"},
    {"huge_threshold", 2048, "KiB", "blocks at or above this size are 2 MiB aligned"},
    {"hugepage", 0, "", "advise transparent huge pages for huge blocks (1)"},
    {"vma_budget", 0, "", "VMAs remalloc may let the process reach (0: max_map_count/4)"},
    {"abort_on_invalid", 1, "", "abort on an invalid free (0: warn and count)"},
    {"grow_inplace", 1, "", "grow large blocks in place when free pages follow (0: always move)"},
    {"dirty_max", 1024, "MiB", "free memory kept unpurged at most (or the peak footprint if larger); past it, purge at once"},
    {"grow_headroom", 1, "", "a block moved by realloc gets as much room again to grow into (1)"},
};

static bool lower_eq(const char* a, const char* b) {
  for (;; a++, b++) {
    char ca = *a >= 'A' && *a <= 'Z' ? char(*a + 32) : *a;
    char cb = *b >= 'A' && *b <= 'Z' ? char(*b + 32) : *b;
    if (ca != cb) return false;
    if (!ca) return true;
  }
}

static const char* const kMoverNames[] = {"mremap", "uffd", "copy"};

static bool parse(Id id, const char* s, long* out) {
  if (id == kMover) {
    if (lower_eq(s, "auto")) {
      *out = -1;
      return true;
    }
    for (int i = 0; i < 3; i++)
      if (lower_eq(s, kMoverNames[i])) {
        *out = i;
        return true;
      }
    return false;
  }
  if (id == kVerbose || id == kHugepage || id == kAbortOnInvalid || id == kGrowInplace ||
      id == kGrowHeadroom) {
    if (lower_eq(s, "true") || lower_eq(s, "yes") || lower_eq(s, "on")) {
      *out = 1;
      return true;
    }
    if (lower_eq(s, "false") || lower_eq(s, "no") || lower_eq(s, "off")) {
      *out = 0;
      return true;
    }
  }
  if (id == kStats && lower_eq(s, "json")) {
    *out = 2;
    return true;
  }
  if (*s == 0) return false;
  long v = 0;
  for (const char* p = s; *p; p++) {
    if (*p < '0' || *p > '9') return false;
    v = v * 10 + (*p - '0');
    if (v > (1L << 40)) return false;
  }
  *out = v;
  return true;
}

static int g_state = 0;  // 0 not read, 1 read

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
    long v;
    if (parse(Id(i), val, &v)) {
      g_options[i].value = v;
    } else {
      Writer w(2);
      w.str("remalloc: warning: ignoring ").str(var).str("=").str(val).str(" (bad value)\n");
    }
  }
  apply();
}

long get(Id id) { return g_options[id].value; }

void set(Id id, long value) {
  g_options[id].value = value;
  apply();
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
  pages::Config& c = pages::g_config;
  long d = g_options[kPurgeDelay].value;
  c.purge_delay_ns = uint64_t(d < 0 ? 0 : d) * 1000000ull;
  long a = g_options[kArenaSize].value;
  if (a < 64) a = 64;
  c.arena_bytes = align_up(size_t(a) << 20, kArenaGranule);
  c.mover = int(g_options[kMover].value);
  c.move_threshold = size_t(g_options[kMoveThreshold].value) << 10;
  size_t ht = size_t(g_options[kHugeThreshold].value) << 10;
  c.huge_threshold = ht < kPageSize ? kPageSize : ht;
  c.hugepage = g_options[kHugepage].value != 0;
  c.grow_inplace = g_options[kGrowInplace].value != 0;
  c.dirty_max = size_t(g_options[kDirtyMax].value) << 20;
  c.grow_headroom = g_options[kGrowHeadroom].value != 0;
  vma::set_budget(size_t(g_options[kVmaBudget].value));
}

void print(int fd) {
  Writer w(fd);
  w.str("remalloc: options (set with REMALLOC_<NAME>):\n");
  for (int i = 0; i < kNumOptions; i++) {
    const Option& o = g_options[i];
    w.str("remalloc:   ").str(o.name).pad_to(30);
    if (i == kMover)
      w.str(o.value < 0 ? "auto" : kMoverNames[o.value]);
    else
      w.i64(o.value);
    if (*o.unit) w.chr(' ').str(o.unit);
    w.pad_to(44).str(o.doc).chr('\n');
  }
}

}  // namespace remalloc::options

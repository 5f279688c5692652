// prof: the tables: distinct stacks with their counts, the records of live
// sampled blocks, the side bitmap that marks sampled blocks, and the pool all
// of them live in (chunks reserved with os::reserve, never returned: a
// program has a bounded number of allocation sites, and records are reused).
//
// Invariants (under g_lock): every record is in exactly one hash chain and its
// address's mark is set, except while its owner moves it (realloc_before ..
// realloc_after, when it is out of the table and unmarked); a stack's
// live_objs is the number of records pointing at it, live_bytes their sizes.
#include <atomic>

#include "platform/os.h"
#include "prof/internal.h"

namespace remalloc::prof {

Mutex g_lock;
Stack* g_all_stacks;
size_t g_stack_count, g_live_records;
std::atomic<bool> g_any_marked{false};

// ---- pool -----------------------------------------------------------------------
static char* g_pool_cur;
static char* g_pool_end;
constexpr size_t kPoolChunk = size_t{1} << 20;

// Zeroed memory (fresh pages) for the tables; nullptr when the system
// refuses (the sample is then dropped).
static void* pool_alloc_locked(size_t bytes) {
  bytes = align_up(bytes, 16);
  if (size_t(g_pool_end - g_pool_cur) < bytes) {
    size_t chunk = bytes > kPoolChunk ? align_up(bytes, kPageSize) : kPoolChunk;
    char* p = static_cast<char*>(os::reserve(chunk, kPageSize));
    if (!p) return nullptr;
    g_pool_cur = p;
    g_pool_end = p + chunk;
  }
  void* r = g_pool_cur;
  g_pool_cur += bytes;
  return r;
}

// ---- stacks -------------------------------------------------------------------------
constexpr size_t kStackBuckets = size_t{1} << 14;
static Stack** g_stack_buckets;

static uint64_t hash_frames(const uintptr_t* f, uint32_t n) {
  uint64_t h = 0x84222325cbf29ce4ull ^ n;
  for (uint32_t i = 0; i < n; i++) {
    h ^= f[i];
    h *= 0x100000001b3ull;
    h ^= h >> 29;
  }
  return h;
}

Stack* intern_locked(const uintptr_t* frames, uint32_t depth) {
  if (!g_stack_buckets) {
    g_stack_buckets = static_cast<Stack**>(pool_alloc_locked(kStackBuckets * sizeof(Stack*)));
    if (!g_stack_buckets) return nullptr;
  }
  uint64_t h = hash_frames(frames, depth);
  Stack** b = &g_stack_buckets[h & (kStackBuckets - 1)];
  for (Stack* s = *b; s; s = s->next) {
    if (s->hash != h || s->depth != depth) continue;
    uint32_t i = 0;
    while (i < depth && s->frames[i] == frames[i]) i++;
    if (i == depth) return s;
  }
  Stack* s = static_cast<Stack*>(pool_alloc_locked(sizeof(Stack) + depth * sizeof(uintptr_t)));
  if (!s) return nullptr;
  s->hash = h;
  s->depth = depth;
  for (uint32_t i = 0; i < depth; i++) s->frames[i] = frames[i];
  s->next = *b;
  *b = s;
  s->all_next = g_all_stacks;
  g_all_stacks = s;
  g_stack_count++;
  return s;
}

// ---- records ------------------------------------------------------------------------
constexpr size_t kRecordBuckets = size_t{1} << 16;
static Record** g_record_buckets;
static Record* g_free_records;

static size_t record_bucket(uintptr_t addr) {
  return size_t((addr >> kPageShift) * 0x9e3779b97f4a7c15ull >> 48) & (kRecordBuckets - 1);
}

void add_record_locked(uintptr_t addr, size_t size, Stack* st) {
  if (!g_record_buckets) {
    g_record_buckets = static_cast<Record**>(pool_alloc_locked(kRecordBuckets * sizeof(Record*)));
    if (!g_record_buckets) return;
  }
  Record* r = g_free_records;
  if (r)
    g_free_records = r->next;
  else if (!(r = static_cast<Record*>(pool_alloc_locked(sizeof(Record)))))
    return;
  r->addr = addr;
  r->size = size;
  r->stack = st;
  st->live_objs++;
  st->live_bytes += size;
  put_record_locked(r);
  set_mark_locked(addr);
}

void put_record_locked(Record* r) {
  Record** b = &g_record_buckets[record_bucket(r->addr)];
  r->next = *b;
  *b = r;
  g_live_records++;
}

Record* take_record_locked(uintptr_t addr) {
  if (!g_record_buckets) return nullptr;
  for (Record** pp = &g_record_buckets[record_bucket(addr)]; *pp; pp = &(*pp)->next) {
    Record* r = *pp;
    if (r->addr == addr) {
      *pp = r->next;
      r->next = nullptr;
      g_live_records--;
      return r;
    }
  }
  return nullptr;
}

void free_record_locked(Record* r) {
  r->stack->live_objs--;
  r->stack->live_bytes -= r->size;
  r->next = g_free_records;
  g_free_records = r;
}

// ---- marks ---------------------------------------------------------------------------
// A radix tree over page numbers: 512 roots in .bss (256 GiB each), 4096
// leaves per root (64 MiB each, the arena granule), 16384 bits per leaf.
// Levels are made under g_lock and published with release stores; bits are
// set and cleared with atomic or/and (neighbouring blocks belong to other
// threads), always by the block's owner.
struct MarkLeaf {
  std::atomic<uint64_t> bits[(size_t{1} << 26 >> kPageShift) / 64];
};
struct MarkMid {
  std::atomic<MarkLeaf*> leaf[4096];
};
static std::atomic<MarkMid*> g_mark_root[512];
static_assert(sizeof(MarkLeaf) == 2048, "one bit per page of a 64 MiB granule");

static std::atomic<uint64_t>* mark_word(uintptr_t a, bool make) {
  if (a >> 47) return nullptr;
  std::atomic<MarkMid*>& r = g_mark_root[a >> 38];
  MarkMid* mid = r.load(std::memory_order_acquire);
  if (!mid) {
    if (!make || !(mid = static_cast<MarkMid*>(pool_alloc_locked(sizeof(MarkMid))))) return nullptr;
    r.store(mid, std::memory_order_release);
  }
  std::atomic<MarkLeaf*>& l = mid->leaf[(a >> 26) & 4095];
  MarkLeaf* leaf = l.load(std::memory_order_acquire);
  if (!leaf) {
    if (!make || !(leaf = static_cast<MarkLeaf*>(pool_alloc_locked(sizeof(MarkLeaf))))) return nullptr;
    l.store(leaf, std::memory_order_release);
  }
  return &leaf->bits[((a >> kPageShift) & 16383) >> 6];
}

void set_mark_locked(uintptr_t a) {
  std::atomic<uint64_t>* w = mark_word(a, true);
  if (!w) return;
  w->fetch_or(uint64_t{1} << ((a >> kPageShift) & 63), std::memory_order_relaxed);
  g_any_marked.store(true, std::memory_order_relaxed);
}

void clear_mark(uintptr_t a) {
  if (std::atomic<uint64_t>* w = mark_word(a, false))
    w->fetch_and(~(uint64_t{1} << ((a >> kPageShift) & 63)), std::memory_order_relaxed);
}

bool is_marked_slow(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::atomic<uint64_t>* w = mark_word(a, false);
  return w && (w->load(std::memory_order_relaxed) >> ((a >> kPageShift) & 63) & 1);
}

// ---- arithmetic without libm -----------------------------------------------------
double ln(double x) {
  if (!(x > 0)) return -1e300;
  // x = m * 2^e, m in [1, 2); ln m = 2 atanh(t), t = (m - 1) / (m + 1) <= 1/3.
  uint64_t bits;
  __builtin_memcpy(&bits, &x, 8);
  int e = int((bits >> 52) & 0x7ff) - 1023;
  bits = (bits & ((uint64_t{1} << 52) - 1)) | (uint64_t{1023} << 52);
  double m;
  __builtin_memcpy(&m, &bits, 8);
  if (m > 1.4142135623730951) {  // keep t small: m in [0.707, 1.414)
    m *= 0.5;
    e++;
  }
  double t = (m - 1) / (m + 1), t2 = t * t, s = 0, term = t;
  for (int k = 1; k <= 21; k += 2) {
    s += term / k;
    term *= t2;
  }
  return 2 * s + e * 0.6931471805599453;
}

double exp_(double x) {
  if (x < -700) return 0;
  if (x > 700) return 1e300;
  // x = k ln2 + r, |r| <= ln2 / 2; e^r by its series.
  double kf = x / 0.6931471805599453;
  long k = long(kf < 0 ? kf - 0.5 : kf + 0.5);
  double r = x - double(k) * 0.6931471805599453, term = 1, s = 1;
  for (int i = 1; i <= 18; i++) {
    term *= r / i;
    s += term;
  }
  uint64_t bits = uint64_t(1023 + k) << 52;
  double p;
  __builtin_memcpy(&p, &bits, 8);
  return s * p;
}

}  // namespace remalloc::prof

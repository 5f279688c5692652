// platform: mremap(DONTUNMAP|FIXED), UFFDIO_MOVE and copy-then-purge movers.
#include "platform/movers.h"
#include "base/sys.h"

#include <fcntl.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "base/base.h"
#include "base/lock.h"
#include "platform/os.h"

// Debian bookworm's headers predate these; define them locally.
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1ULL << 16)
#endif
#ifndef UFFDIO_MOVE
struct uffdio_move {
  __u64 dst;
  __u64 src;
  __u64 len;
  __u64 mode;
  __s64 move;
};
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
#define UFFDIO_MOVE _IOWR(UFFDIO, 0x05, struct uffdio_move)
#endif

// PROCMAP_QUERY (Linux 6.11): the VMA that covers an address, asked of an
// open /proc/self/maps.
struct rm_procmap_query {
  __u64 size;
  __u64 query_flags;
  __u64 query_addr;
  __u64 vma_start;
  __u64 vma_end;
  __u64 vma_flags;
  __u64 vma_page_size;
  __u64 vma_offset;
  __u64 inode;
  __u32 dev_major;
  __u32 dev_minor;
  __u32 vma_name_size;
  __u32 build_id_size;
  __u64 vma_name_addr;
  __u64 build_id_addr;
};
#define RM_PROCMAP_QUERY _IOWR('f', 17, struct rm_procmap_query)

namespace remalloc::movers {

const char* kind_name(int kind) {
  switch (kind) {
    case kMremap: return "mremap";
    case kUffd: return "uffd";
    case kCopy: return "copy";
  }
  return "?";
}

// ---- failure injection ------------------------------------------------------
static std::atomic<int> g_inject_step[kNumKinds];
static std::atomic<int> g_inject_count[kNumKinds];

void inject_failure(int kind, int step, int count) {
  if (kind < 0 || kind >= kNumKinds) return;
  // Step 3 is the uffd mover's alone (a failure that misreports what it
  // moved); the others treat it as step 2.
  int top = kind == kUffd ? 3 : 2;
  g_inject_step[kind].store(step < 0 ? 0 : step > top ? top : step, std::memory_order_relaxed);
  g_inject_count[kind].store(count, std::memory_order_release);
}

// Returns the step at which this call must fail, or -1.
static int take_injection(int kind) {
  int c = g_inject_count[kind].load(std::memory_order_acquire);
  while (c > 0) {
    if (g_inject_count[kind].compare_exchange_weak(c, c - 1)) {
      return g_inject_step[kind].load(std::memory_order_relaxed);
    }
  }
  return -1;
}

// Finishes a move whose first `done` bytes are at dst: copies the rest and
// purges it from src.
static void finish_by_copy(char* dst, char* src, size_t len, size_t done, Outcome* out) {
  memcpy(dst + done, src + done, len - done);
  out->copied += len - done;
  out->partial = true;
  out->src_clean = os::purge(src + done, len - done);
}

// ---- where a failed UFFDIO_MOVE left the pages ------------------------------
// UFFDIO_MOVE's report of a failure is not the whole truth. On 6.18, with
// threads moving small blocks out of 2 MiB granules that had held huge pages
// (huge-page-advised VMAs whose large folios the moves split), a call
// returned EEXIST with `move` = -EEXIST after it had moved the first page:
// the source's page 0 read zeros (fuzz.auto, mt, checked build: 3 of 3
// EEXIST failures in 60 runs, never without the huge page policy). So after
// any failure the pages past `done` are found where they are: dst was purged
// before the move, so a page present (or swapped) there came from src.
// /proc/self/pagemap says which (present and swapped bits; open for this
// call only); without it, mincore (resident pages; a moved page that is
// swapped out would be missed, so it is the fallback only).
namespace {
constexpr uint64_t kPmPresent = 1ull << 63;
constexpr uint64_t kPmSwapped = 1ull << 62;
constexpr size_t kScanPages = 512;  // 4 KiB of pagemap entries a read

class DstScan {
 public:
  DstScan() : fd_(sys::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) {}
  ~DstScan() {
    if (fd_ >= 0) sys::close(fd_);
  }
  DstScan(const DstScan&) = delete;
  DstScan& operator=(const DstScan&) = delete;
  // Sets at[i] for each of the n (<= kScanPages) pages from p that holds a
  // page. False when neither pagemap nor mincore can tell.
  bool scan(const char* p, size_t n, bool* at) {
    uint64_t ent[kScanPages];
    if (fd_ >= 0 && read_all(ent, n * sizeof(uint64_t), off_t((reinterpret_cast<uintptr_t>(p) >> kPageShift) * 8))) {
      for (size_t i = 0; i < n; i++) at[i] = ent[i] & (kPmPresent | kPmSwapped);
      return true;
    }
    unsigned char vec[kScanPages];
    if (mincore(const_cast<char*>(p), n << kPageShift, vec) != 0) return false;
    for (size_t i = 0; i < n; i++) at[i] = vec[i] & 1;
    return true;
  }

 private:
  bool read_all(void* buf, size_t len, off_t off) {
    char* b = static_cast<char*>(buf);
    while (len) {
      ssize_t r = sys::pread(fd_, b, len, off);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      b += r;
      len -= size_t(r);
      off += r;
    }
    return true;
  }
  int fd_;
};
}  // namespace

// After a failed UFFDIO_MOVE whose first `done` bytes are known to be at
// dst: copies each later page that is not at dst from src, so that the whole
// block is at dst (true), or returns false when no page at all left src
// (then src is whole and dst holds nothing). A page the scan cannot place
// is taken as not moved only when no page was seen moved.
static bool finish_failed_uffd(char* dst, char* src, size_t len, size_t done, Outcome* out) {
  int saved = errno;
  DstScan scan;
  bool at[kScanPages];
  size_t pages = (len - done) >> kPageShift;
  size_t found = 0;
  bool known = true;
  for (size_t i = 0; i < pages && known; i += kScanPages) {
    size_t n = pages - i < kScanPages ? pages - i : kScanPages;
    known = scan.scan(dst + done + (i << kPageShift), n, at);
    for (size_t j = 0; known && j < n; j++) found += at[j];
  }
  if (!known) {
    // Nothing can place the pages: the kernel's word is all there is.
    errno = saved;
    if (done == 0) return false;
    finish_by_copy(dst, src, len, done, out);
    return true;
  }
  if (found == 0 && done == 0) {
    errno = saved;
    return false;
  }
  for (size_t i = 0; i < pages; i += kScanPages) {
    size_t n = pages - i < kScanPages ? pages - i : kScanPages;
    char* d = dst + done + (i << kPageShift);
    char* s = src + done + (i << kPageShift);
    if (!scan.scan(d, n, at)) {
      // Readable a moment ago, not now: copying blind could write a moved
      // page's empty source over it. Stop rather than guess.
      fatal("uffd mover: cannot tell which pages a failed move left where", d);
    }
    for (size_t j = 0; j < n; j++) {
      if (at[j]) continue;
      size_t k = j;
      while (k < n && !at[k]) k++;
      memcpy(d + (j << kPageShift), s + (j << kPageShift), (k - j) << kPageShift);
      out->copied += (k - j) << kPageShift;
      j = k - 1;
    }
  }
  out->moved += found << kPageShift;
  out->partial = true;
  out->src_clean = os::purge(src + done, len - done);
  errno = saved;
  return true;
}

// ---- descriptors -------------------------------------------------------------
// remalloc keeps at most two descriptors: the userfaultfd of the uffd mover
// and a /proc maps file for PROCMAP_QUERY. Both are O_CLOEXEC. Their numbers
// belong to the program as much as to us: it may close every descriptor from
// 3 up (closefrom, close_range, a loop to sysconf(_SC_OPEN_MAX)) and get the
// same numbers back from its next open or pipe, or dup2 a file of its own
// onto one. So each kept descriptor remembers the device and inode fstat gave
// when it was opened, and before each use (ioctl, close) fstat must still
// say so; otherwise the number is forgotten, never closed (it is the
// program's now), and a new descriptor is opened lazily. Inodes tell files
// apart here: every userfaultfd has an inode of its own (measured on 6.18:
// three in a row got 17979, 17983, 17985, while eventfds share one), and
// /proc/<pid>/task/<tid>/maps has one per thread, distinct from the
// /proc/self/maps a program may open itself.
//
// What the check cannot cover: another thread of the program closing one of
// our descriptors and opening a file at its number between our fstat and our
// ioctl (a program that closes descriptors it does not own while other
// threads allocate), as with any library that keeps a descriptor.
//
// New descriptors are moved to the lowest free number at or above kFdFloor
// (F_DUPFD_CLOEXEC; the number it was opened at when that fails, e.g. under
// an RLIMIT_NOFILE at or below it): away from the numbers programs choose by
// hand (shells' `exec 3>file` uses 3..9, bash's `{var}` 10 up, `exec
// 200>lock`, bash's 255), and off 3 and 4, which a program that closed
// everything expects its next open or pipe to get. Below 64, the size of the
// descriptor table a process starts with, so the table need not grow for us.
struct KeptFd {
  int fd = -1;
  dev_t dev = 0;
  ino_t ino = 0;
};
constexpr int kFdFloor = 48;

// Keeps `fd`, just opened by the caller: raises its number and records what
// it is. False (fd closed) when fstat fails.
static bool keep_fd(KeptFd* k, int fd) {
  int high = fcntl(fd, F_DUPFD_CLOEXEC, kFdFloor);
  if (high >= 0) {
    sys::close(fd);  // ours: opened a moment ago by the caller
    fd = high;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    sys::close(fd);
    return false;
  }
  k->fd = fd;
  k->dev = st.st_dev;
  k->ino = st.st_ino;
  return true;
}

// Does k's number still name the file we opened? Cost: one fstat (about
// 1 us on the test VM, as much as a PROCMAP_QUERY).
static bool still_ours(const KeptFd& k) {
  if (k.fd < 0) return false;
  struct stat st;
  return fstat(k.fd, &st) == 0 && st.st_dev == k.dev && st.st_ino == k.ino;
}

// ---- VMA boundaries -----------------------------------------------------------
// Since Linux 6.17 a move-only mremap (MREMAP_FIXED, equal sizes) may span
// several VMAs, and it moves them one after the other: when one fails
// (ENOMEM at vm.max_map_count or for page tables, EFAULT at a VMA armed by a
// userfaultfd), those before it stay moved and the call still fails
// (measured on 6.18: the first VMA's pages at dst, its source reading zeros,
// errno EFAULT). A caller that takes the failure for "nothing moved" loses
// data. So the mremap mover never hands the kernel more than one VMA: it
// asks where the VMA under the next address ends (PROCMAP_QUERY) and moves
// VMA by VMA, each call all or nothing. Without the query, a single call is
// safe only on a kernel that refuses multi-VMA moves whole (probed).
//
// The maps file is /proc/thread-self/maps of the thread that opened it (it
// answers for the whole process, and goes on answering after that thread
// exits): its inode is not the one of the /proc/self/maps a program opens
// for itself, so the inode check tells ours from the program's. Where only
// /proc/self/maps opens (no thread-self), a program's own /proc/self/maps
// put at our number passes the check: querying it is then harmless
// (PROCMAP_QUERY reads the same process's VMAs, does not move the file
// position and keeps no state in the file), but it is not ours to close, so
// the fork child closes the maps descriptor only when it is per thread.
static Mutex g_maps_lock;
static KeptFd g_maps;
static bool g_maps_per_thread = false;  // g_maps is /proc/<pid>/task/<tid>/maps

static bool maps_open_locked() {
  int fd = sys::open("/proc/thread-self/maps", O_RDONLY | O_CLOEXEC);
  bool per_thread = fd >= 0;
  if (fd < 0) fd = sys::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || !keep_fd(&g_maps, fd)) return false;
  g_maps_per_thread = per_thread;
  return true;
}

// The end of the VMA that covers `addr`, or 0 when it cannot be told.
static uintptr_t vma_end_at(uintptr_t addr) {
  LockGuard g(g_maps_lock);
  if (!still_ours(g_maps)) {
    g_maps.fd = -1;  // closed by the program, or its file now: leave it
    if (!maps_open_locked()) return 0;
  }
  struct rm_procmap_query q;
  memset(&q, 0, sizeof q);
  q.size = sizeof q;
  q.query_addr = addr;
  if (ioctl(g_maps.fd, RM_PROCMAP_QUERY, &q) == 0) {
    return q.vma_start <= addr && addr < q.vma_end ? uintptr_t(q.vma_end) : 0;
  }
  if (errno != ENOENT) {  // no PROCMAP_QUERY here (before 6.11): let it go
    // Ours by the fstat just above, unless it is /proc/self/maps (see above).
    if (g_maps_per_thread) sys::close(g_maps.fd);
    g_maps.fd = -1;
  }
  return 0;
}

// ---- mremap -----------------------------------------------------------------
static std::atomic<int> g_mremap_state{0};  // 0 unknown, 1 yes, 2 no
static std::atomic<bool> g_mremap_by_vma{false};  // set by the probe, before state 1

static void* raw_mremap(void* src, size_t len, void* dst) {
  return mremap(src, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst);
}

// Does this kernel move a range of two VMAs in one call (6.17+)? Probed on
// two written pages of different protections.
static bool kernel_moves_several_vmas() {
  char* region = static_cast<char*>(os::reserve(4 * kPageSize, kPageSize));
  if (!region) return true;  // cannot tell: assume the unsafe kind
  region[0] = 1;
  region[kPageSize] = 2;
  bool several = true;
  if (mprotect(region + kPageSize, kPageSize, PROT_READ) == 0) {
    void* r = raw_mremap(region, 2 * kPageSize, region + 2 * kPageSize);
    several = !(r == MAP_FAILED && errno == EFAULT && region[0] == 1);
  }
  os::release(region, 4 * kPageSize);
  return several;
}

bool mremap_dontunmap_available() {
  int s = g_mremap_state.load(std::memory_order_acquire);
  if (s) return s == 1;
  // Probe: move one written page into a mapped destination; the source must
  // stay mapped and read zero.
  bool ok = false;
  char* region = static_cast<char*>(os::reserve(4 * kPageSize, kPageSize));
  if (region) {
    char* src = region;
    char* dst = region + 2 * kPageSize;
    src[0] = 42;
    void* r = raw_mremap(src, kPageSize, dst);
    bool no_room = r == MAP_FAILED && errno == ENOMEM;
    ok = r == dst && dst[0] == 42 && src[0] == 0;
    // Moves go VMA by VMA where the VMA boundaries can be asked for.
    bool by_vma = ok && vma_end_at(reinterpret_cast<uintptr_t>(dst)) >= reinterpret_cast<uintptr_t>(dst + kPageSize);
    os::release(region, 4 * kPageSize);
    if (no_room) return false;  // at vm.max_map_count: probe again later
    // Without the boundaries, only a kernel that refuses multi-VMA moves
    // whole is safe to hand a range that may span several.
    if (ok && !by_vma && kernel_moves_several_vmas()) ok = false;
    g_mremap_by_vma.store(by_vma, std::memory_order_relaxed);
  } else {
    // No page to probe with (out of address space, or the program used up
    // vm.max_map_count): say no now and probe again next time, instead of
    // turning the mover off for the life of the process.
    return false;
  }
  g_mremap_state.store(ok ? 1 : 2, std::memory_order_release);
  return ok;
}

const char* mremap_mode() {
  if (!mremap_dontunmap_available()) return "no";
  return g_mremap_by_vma.load(std::memory_order_relaxed) ? "yes (VMA by VMA)" : "yes (one call: this kernel refuses multi-VMA moves whole)";
}

bool move_mremap(void* dstp, void* srcp, size_t len, Outcome* out) {
  char* dst = static_cast<char*>(dstp);
  char* src = static_cast<char*>(srcp);
  int fail_step = take_injection(kMremap);
  // With injection the move is cut in three steps, so that a failure can
  // land in the first, the middle or the last (one step below three pages).
  size_t third = align_down(len / 3, kPageSize);
  bool three = fail_step >= 0 && third > 0;
  size_t fail_at = !three || fail_step == 0 ? 0 : fail_step == 1 ? third : 2 * third;
  const bool by_vma = g_mremap_by_vma.load(std::memory_order_relaxed);
  size_t done = 0;
  while (done < len) {
    size_t chunk = len - done;
    if (three && done < 2 * third) chunk = (done < third ? third : 2 * third) - done;
    // Where the VMA ends cannot be told: do not guess, fail this step.
    bool unknown = false;
    if (by_vma) {
      uintptr_t at = reinterpret_cast<uintptr_t>(src + done);
      uintptr_t end = vma_end_at(at);
      unknown = end == 0;
      if (!unknown && end - at < chunk) chunk = end - at;
    }
    bool fail = fail_step >= 0 && done == fail_at;
    void* r = fail || unknown ? MAP_FAILED : raw_mremap(src + done, chunk, dst + done);
    if (r != dst + done) {
      out->err = fail ? ENOMEM : unknown ? EFAULT : errno;
      if (done == 0) return false;
      finish_by_copy(dst, src, len, done, out);
      return true;
    }
    done += chunk;
    out->moved += chunk;
    out->calls++;
  }
  out->src_clean = true;
  return true;
}

// ---- userfaultfd ------------------------------------------------------------
static Mutex g_uffd_lock;
static KeptFd g_uffd;
static std::atomic<int> g_uffd_state{0};  // 0 unknown, 1 yes, 2 no
static std::atomic<uint32_t> g_uffd_gen{1};

// Our userfaultfd, checked (see "descriptors"), opened when there is none.
static int uffd_open_locked() {
  if (still_ours(g_uffd)) return g_uffd.fd;
  if (g_uffd.fd >= 0) {
    // The program closed it or put a file of its own at its number. Closed
    // for good, the kernel dropped its registrations; alive elsewhere (a
    // dup, a fork child that holds it) it keeps them, and registering with
    // the next one fails with EBUSY until it goes (measured), so moves fall
    // back meanwhile. Either way the arenas register again: a new generation.
    g_uffd.fd = -1;
    g_uffd_gen.fetch_add(1, std::memory_order_acq_rel);
  }
  int fd = int(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
  if (fd < 0) fd = int(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0) return -1;
  struct uffdio_api api;
  memset(&api, 0, sizeof api);
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_MOVE;
  if (ioctl(fd, UFFDIO_API, &api) != 0 || !(api.features & UFFD_FEATURE_MOVE)) {
    sys::close(fd);
    return -1;
  }
  if (!keep_fd(&g_uffd, fd)) return -1;
  return g_uffd.fd;
}

static bool register_locked(void* base, size_t len) {
  int fd = uffd_open_locked();
  if (fd < 0) return false;
  struct uffdio_register reg;
  memset(&reg, 0, sizeof reg);
  reg.range.start = reinterpret_cast<uintptr_t>(base);
  reg.range.len = len;
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  return ioctl(fd, UFFDIO_REGISTER, &reg) == 0;
}

// 1: works, 0: does not, -1: could not tell (no memory to probe with).
static int uffd_probe() {
  // Register a small region, move a written page from outside into it.
  char* region = static_cast<char*>(os::reserve(2 * kPageSize, kPageSize));
  char* src = static_cast<char*>(os::reserve(kPageSize, kPageSize));
  if (!region || !src) {
    if (region) os::release(region, 2 * kPageSize);
    if (src) os::release(src, kPageSize);
    return -1;
  }
  bool ok = false;
  if (region && src) {
    LockGuard g(g_uffd_lock);
    bool registered = register_locked(region, 2 * kPageSize);
    if (!registered && errno == ENOMEM) {  // no VMA to spare: probe again later
      os::release(region, 2 * kPageSize);
      os::release(src, kPageSize);
      return -1;
    }
    if (registered) {
      src[0] = 7;
      struct uffdio_move m;
      memset(&m, 0, sizeof m);
      m.dst = reinterpret_cast<uintptr_t>(region);
      m.src = reinterpret_cast<uintptr_t>(src);
      m.len = kPageSize;
      m.mode = UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES;
      ok = ioctl(g_uffd.fd, UFFDIO_MOVE, &m) == 0 && region[0] == 7 && src[0] == 0;
    }
  }
  os::release(region, 2 * kPageSize);
  os::release(src, kPageSize);
  return ok ? 1 : 0;
}

bool uffd_move_available() {
  int s = g_uffd_state.load(std::memory_order_acquire);
  if (s) return s == 1;
  int r = uffd_probe();
  if (r < 0) return false;  // probe again next time (see mremap's probe)
  if (r == 0) {  // no moves here: keep no userfaultfd either
    LockGuard g(g_uffd_lock);
    if (still_ours(g_uffd)) sys::close(g_uffd.fd);
    g_uffd.fd = -1;
  }
  g_uffd_state.store(r == 1 ? 1 : 2, std::memory_order_release);
  return r == 1;
}

bool uffd_register(void* base, size_t len) {
  if (!uffd_move_available()) return false;
  LockGuard g(g_uffd_lock);
  return register_locked(base, len);
}

uint32_t uffd_generation() { return g_uffd_gen.load(std::memory_order_acquire); }

void fork_prepare() {
  g_uffd_lock.fork_acquire();
  g_maps_lock.fork_acquire();
}
void fork_parent() {
  g_maps_lock.fork_release();
  g_uffd_lock.fork_release();
}

void after_fork_child() {
  g_uffd_lock.reset_in_child();
  g_maps_lock.reset_in_child();
  // Both descriptors, if we hold any, are the parent's: its userfaultfd
  // refuses moves here (and our VMAs lost their registration), its maps file
  // describes its VMAs. The child opens its own on first use (the new
  // generation tells arenas to register again). Each is closed only when
  // fstat shows it is still ours, which cannot change before the close: the
  // child runs this one thread. Why close rather than forget: a child that
  // keeps the parent's userfaultfd keeps its registrations alive, and a
  // parent that lost its own (the program closed it) could not register
  // with a new one until the child exits; and each generation of a forking
  // child that never execs would hold one more maps file.
  if (still_ours(g_uffd)) sys::close(g_uffd.fd);
  g_uffd.fd = -1;
  g_uffd_gen.fetch_add(1, std::memory_order_acq_rel);
  if (g_maps_per_thread && still_ours(g_maps)) sys::close(g_maps.fd);
  g_maps.fd = -1;
}

bool move_uffd(void* dstp, void* srcp, size_t len, Outcome* out) {
  char* dst = static_cast<char*>(dstp);
  char* src = static_cast<char*>(srcp);
  int fail_step = take_injection(kUffd);
  int fd;
  {
    LockGuard g(g_uffd_lock);
    fd = uffd_open_locked();
  }
  if (fd < 0 || fail_step == 0) {
    out->err = fd < 0 ? ENOSYS : EIO;
    return false;
  }
  // UFFDIO_MOVE refuses populated destination pages (even the zero page).
  if (!os::purge(dst, len)) {
    out->err = errno;
    return false;
  }
  size_t limit = len;
  if (fail_step == 1) limit = align_down(len / 2, kPageSize);
  if (fail_step == 2) limit = len > kPageSize ? len - kPageSize : 0;
  if (fail_step == 3) limit = align_down(len / 2, kPageSize);
  size_t done = 0;
  int err = 0;
  // UFFDIO_MOVE takes one source VMA a call (EINVAL, nothing moved, for a
  // range over two): a block whose whole 2 MiB granules carry huge page
  // advice is one VMA for them and another for its ends. On that EINVAL
  // the move goes on VMA by VMA (PROCMAP_QUERY, as the mremap mover does).
  bool by_vma = false;
  while (done < limit) {
    struct uffdio_move m;
    memset(&m, 0, sizeof m);
    m.dst = reinterpret_cast<uintptr_t>(dst + done);
    m.src = reinterpret_cast<uintptr_t>(src + done);
    m.len = limit - done;
    if (by_vma) {
      uintptr_t end = vma_end_at(m.src);
      if (end > m.src && end - m.src < m.len) m.len = end - m.src;
    }
    m.mode = UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES;
    int r = ioctl(fd, UFFDIO_MOVE, &m);
    if (m.move > 0) done += size_t(m.move);
    if (r == 0) {
      done += size_t(m.len) - (m.move > 0 ? size_t(m.move) : 0);
      if (done >= limit) break;
      continue;  // that VMA is done: the next one
    }
    if (errno == EINVAL && m.move <= 0 && !by_vma) {
      by_vma = true;
      continue;
    }
    if (errno == EAGAIN && m.move > 0) continue;
    err = errno;
    break;
  }
  if (fail_step == 3 && err == 0 && done > 0) {
    // The failure 6.18 showed (see finish_failed_uffd): pages moved, and the
    // call reports that none did.
    done = 0;
    err = EEXIST;
  }
  out->moved += done;
  if (done == len) {
    out->src_clean = true;
    return true;
  }
  out->err = err ? err : EIO;
  out->fork_busy = err == EBUSY;
  // Where the pages past `done` are is found, not taken from the report.
  return finish_failed_uffd(dst, src, len, done, out);
}

// ---- copy -------------------------------------------------------------------
bool move_copy(void* dst, void* src, size_t len, bool purge_src, Outcome* out) {
  int fail_step = take_injection(kCopy);
  if (fail_step == 0) {
    out->err = EIO;
    return false;
  }
  if (fail_step == 1) {
    memcpy(dst, src, len / 2);  // a half-done copy: src is still whole
    out->err = EIO;
    return false;
  }
  memcpy(dst, src, len);
  out->copied += len;
  if (purge_src && fail_step != 2) out->src_clean = os::purge(src, len);
  return true;
}

}  // namespace remalloc::movers

// platform: mremap(DONTUNMAP|FIXED), UFFDIO_MOVE and copy-then-purge movers.
#include "platform/movers.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
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
  g_inject_step[kind].store(step < 0 ? 0 : step > 2 ? 2 : step, std::memory_order_relaxed);
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

// ---- mremap -----------------------------------------------------------------
static std::atomic<int> g_mremap_state{0};  // 0 unknown, 1 yes, 2 no

static void* raw_mremap(void* src, size_t len, void* dst) {
  return mremap(src, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst);
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
    os::release(region, 4 * kPageSize);
    if (no_room) return false;  // at vm.max_map_count: probe again later
  } else {
    // No page to probe with (out of address space, or the program used up
    // vm.max_map_count): say no now and probe again next time, instead of
    // turning the mover off for the life of the process.
    return false;
  }
  g_mremap_state.store(ok ? 1 : 2, std::memory_order_release);
  return ok;
}

bool move_mremap(void* dstp, void* srcp, size_t len, Outcome* out) {
  char* dst = static_cast<char*>(dstp);
  char* src = static_cast<char*>(srcp);
  int fail_step = take_injection(kMremap);
  // Normally one call; with injection, three steps so a failure can land in
  // the first, the middle or the last.
  size_t npages = len >> kPageShift;
  size_t steps = fail_step >= 0 && npages >= 3 ? 3 : 1;
  size_t done = 0;
  for (size_t i = 0; i < steps; i++) {
    size_t chunk = i + 1 == steps ? len - done : align_down(len / steps, kPageSize);
    bool fail = fail_step >= 0 && (size_t(fail_step) == i || (steps == 1 && fail_step >= 0));
    void* r = fail ? MAP_FAILED : raw_mremap(src + done, chunk, dst + done);
    if (r != dst + done) {
      out->err = fail ? ENOMEM : errno;
      if (done == 0) return false;
      finish_by_copy(dst, src, len, done, out);
      return true;
    }
    done += chunk;
    out->moved += chunk;
  }
  out->src_clean = true;
  return true;
}

// ---- userfaultfd ------------------------------------------------------------
static Mutex g_uffd_lock;
static int g_uffd_fd = -1;
static std::atomic<int> g_uffd_state{0};  // 0 unknown, 1 yes, 2 no
static std::atomic<uint32_t> g_uffd_gen{1};

static int uffd_open_locked() {
  if (g_uffd_fd >= 0) return g_uffd_fd;
  int fd = int(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
  if (fd < 0) fd = int(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0) return -1;
  struct uffdio_api api;
  memset(&api, 0, sizeof api);
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_MOVE;
  if (ioctl(fd, UFFDIO_API, &api) != 0 || !(api.features & UFFD_FEATURE_MOVE)) {
    close(fd);
    return -1;
  }
  g_uffd_fd = fd;
  return fd;
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
      ok = ioctl(g_uffd_fd, UFFDIO_MOVE, &m) == 0 && region[0] == 7 && src[0] == 0;
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
  g_uffd_state.store(r == 1 ? 1 : 2, std::memory_order_release);
  return r == 1;
}

bool uffd_register(void* base, size_t len) {
  if (!uffd_move_available()) return false;
  LockGuard g(g_uffd_lock);
  return register_locked(base, len);
}

uint32_t uffd_generation() { return g_uffd_gen.load(std::memory_order_acquire); }

void fork_prepare() { g_uffd_lock.fork_acquire(); }
void fork_parent() { g_uffd_lock.fork_release(); }

void after_fork_child() {
  g_uffd_lock.reset_in_child();
  // The parent's descriptor refuses moves in the child and our VMAs lost
  // their registration: drop it; the next uffd move opens a new one and
  // re-registers (the generation tells arenas to).
  if (g_uffd_fd >= 0) close(g_uffd_fd);
  g_uffd_fd = -1;
  g_uffd_gen.fetch_add(1, std::memory_order_acq_rel);
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
  size_t done = 0;
  int err = 0;
  while (done < limit) {
    struct uffdio_move m;
    memset(&m, 0, sizeof m);
    m.dst = reinterpret_cast<uintptr_t>(dst + done);
    m.src = reinterpret_cast<uintptr_t>(src + done);
    m.len = limit - done;
    m.mode = UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES;
    int r = ioctl(fd, UFFDIO_MOVE, &m);
    if (m.move > 0) done += size_t(m.move);
    if (r == 0) {
      done = limit;
      break;
    }
    if (errno == EAGAIN && m.move > 0) continue;
    err = errno;
    break;
  }
  out->moved += done;
  if (done == len) {
    out->src_clean = true;
    return true;
  }
  out->err = err ? err : EIO;
  out->fork_busy = err == EBUSY;
  if (done == 0) return false;  // nothing moved: the block is whole at src
  finish_by_copy(dst, src, len, done, out);
  return true;
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

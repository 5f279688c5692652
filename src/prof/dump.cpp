// prof: heap profiles and the leak summary at exit. No stdio, no allocation:
// a buffer on the stack and write(2) (sys::write).
//
// The format is gperftools' text heap profile, version 2, which jeprof
// (Debian's libjemalloc-dev), google-pprof (google-perftools) and Go's pprof
// read:
//
//   heap profile: <live objs>: <live bytes> [<alloc objs>: <alloc bytes>] @ heap_v2/<mean>
//    <live objs>: <live bytes> [<alloc objs>: <alloc bytes>] @ 0x<pc> 0x<ret> ...
//   ...
//
//   MAPPED_LIBRARIES:
//   <the process's /proc/self/maps>
//
// Counts are raw samples: the viewers scale a line by 1 / (1 - exp(-m/mean)),
// m being the line's mean block size. Stacks start at the program's call into
// the allocator; the viewers subtract 1 from every address but the first (they
// take it for a program counter), so the first is written as its return
// address less one, inside the call instruction, like the others.
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <dlfcn.h>

#include "base/format.h"
#include "base/sys.h"
#include "prof/internal.h"

namespace remalloc::prof {

namespace {

// A buffered file writer that remembers whether every write succeeded.
class Out {
 public:
  explicit Out(int fd) : fd_(fd) {}
  Out(const Out&) = delete;
  Out& operator=(const Out&) = delete;
  Out& put(const char* s, size_t n) {
    while (n) {
      if (len_ == sizeof buf_) flush();
      size_t k = sizeof buf_ - len_ < n ? sizeof buf_ - len_ : n;
      __builtin_memcpy(buf_ + len_, s, k);
      len_ += k;
      s += k;
      n -= k;
    }
    return *this;
  }
  Out& str(const char* s) { return put(s, __builtin_strlen(s)); }
  Out& u64(uint64_t v) {
    char t[24];
    return put(t, format_u64(t, v));
  }
  Out& hex(uint64_t v) {
    char t[18];
    return put(t, format_hex(t, v));
  }
  bool flush() {
    const char* p = buf_;
    while (len_) {
      ssize_t w = sys::write(fd_, p, len_);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        ok_ = false;
        len_ = 0;
        break;
      }
      p += w;
      len_ -= size_t(w);
    }
    return ok_;
  }

 private:
  int fd_;
  size_t len_ = 0;
  bool ok_ = true;
  char buf_[2048];
};

void counts(Out& o, uint64_t lo, uint64_t lb, uint64_t ao, uint64_t ab) {
  o.u64(lo).str(": ").u64(lb).str(" [").u64(ao).str(": ").u64(ab).str("]");
}

std::atomic<uint64_t> g_seq{0};

// PREFIX.PID.SEQ.heap into `out` (PATH_MAX bytes).
void profile_name(char* out) {
  BufWriter w(out, PATH_MAX);
  w.str(config().prefix ? config().prefix : "remalloc").chr('.').u64(uint64_t(getpid())).chr('.')
      .u64(g_seq.fetch_add(1, std::memory_order_relaxed)).str(".heap");
}

// While a dump runs on this thread, every allocation it makes reaches a slow
// path and counts as nested (none is expected).
struct Busy {
  bool was;
  int64_t* left;
  int64_t saved;
  Busy() {
    uint32_t* gen;
    left = count_word(&gen);
    saved = *left;
    was = tl_busy;
    tl_busy = true;
    *left = -1;
  }
  ~Busy() {
    *left = saved;
    tl_busy = was;
  }
};

}  // namespace

int dump(const char* path, char* written) {
  Busy busy;
  char name[PATH_MAX];
  if (!path) {
    profile_name(name);
    path = name;
  }
  if (written) {
    BufWriter w(written, PATH_MAX);
    w.str(path);
  }
  int fd = sys::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    g_dump_failures.fetch_add(1, std::memory_order_relaxed);
    return -1;
  }
  Out o(fd);
  {
    LockGuard g(g_lock);
    uint64_t lo = 0, lb = 0, ao = 0, ab = 0;
    for (Stack* s = g_all_stacks; s; s = s->all_next) {
      lo += s->live_objs;
      lb += s->live_bytes;
      ao += s->alloc_objs;
      ab += s->alloc_bytes;
    }
    o.str("heap profile: ");
    counts(o, lo, lb, ao, ab);
    o.str(" @ heap_v2/").u64(config().sample).str("\n");
    for (Stack* s = g_all_stacks; s; s = s->all_next) {
      o.str(" ");
      counts(o, s->live_objs, s->live_bytes, s->alloc_objs, s->alloc_bytes);
      o.str(" @");
      for (uint32_t i = 0; i < s->depth; i++) o.str(" ").hex(i == 0 ? s->frames[0] - 1 : s->frames[i]);
      o.str("\n");
    }
  }
  o.str("\nMAPPED_LIBRARIES:\n");
  int maps = sys::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (maps >= 0) {
    char buf[1024];
    for (;;) {
      ssize_t n = sys::read(maps, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      o.put(buf, size_t(n));
    }
    sys::close(maps);
  }
  bool ok = o.flush();
  int saved = errno;
  if (sys::close(fd) != 0) ok = false;
  if (!ok) {
    g_dump_failures.fetch_add(1, std::memory_order_relaxed);
    errno = saved ? saved : EIO;
    return -1;
  }
  g_dumps.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

namespace {
constexpr int kTop = 5;
constexpr int kTopFrames = 6;
struct Top {
  double bytes, objs;
  uint32_t depth;
  uintptr_t frames[kTopFrames];
};
}  // namespace

size_t at_exit(bool write_profile) {
  Busy busy;
  char name[PATH_MAX];
  name[0] = 0;
  bool written = write_profile && dump(nullptr, name) == 0;
  Top top[kTop];
  int ntop = 0;
  double total_bytes = 0, total_objs = 0;
  size_t live_samples, samples;
  double mean = double(config().sample);
  {
    LockGuard g(g_lock);
    live_samples = g_live_records;
    samples = g_samples.load(std::memory_order_relaxed);
    for (Stack* s = g_all_stacks; s; s = s->all_next) {
      if (!s->live_objs) continue;
      // The viewers' scaling: 1 / (1 - exp(-(mean block size) / mean)).
      double scale = 1 / (1 - exp_(-(double(s->live_bytes) / double(s->live_objs)) / mean));
      double b = double(s->live_bytes) * scale, n = double(s->live_objs) * scale;
      total_bytes += b;
      total_objs += n;
      // The kTop largest, largest first.
      int at;
      if (ntop < kTop)
        at = ntop++;
      else if (b > top[kTop - 1].bytes)
        at = kTop - 1;
      else
        continue;
      top[at].bytes = b;
      top[at].objs = n;
      top[at].depth = s->depth < kTopFrames ? s->depth : kTopFrames;
      for (uint32_t i = 0; i < top[at].depth; i++) top[at].frames[i] = s->frames[i];
      for (; at > 0 && top[at - 1].bytes < top[at].bytes; at--) {
        Top t = top[at];
        top[at] = top[at - 1];
        top[at - 1] = t;
      }
    }
  }
  // Printed without prof's lock: dladdr takes the loader lock, which a thread
  // in dlopen may hold while it waits for prof's lock in a sampled malloc.
  Writer w(2);
  w.str("remalloc: heap profile at exit: ").u64(live_samples).str(" of ").u64(samples)
      .str(" sampled blocks still live");
  if (live_samples)
    w.str(", about ").bytes(uint64_t(total_bytes)).str(" in ").u64(uint64_t(total_objs + 0.5))
        .str(" blocks when scaled");
  w.str("\n");
  for (int i = 0; i < ntop; i++) {
    w.str("remalloc:   ").bytes(uint64_t(top[i].bytes)).str(" in ").u64(uint64_t(top[i].objs + 0.5))
        .str(" blocks from");
    for (uint32_t f = 0; f < top[i].depth; f++) {
      uintptr_t pc = top[i].frames[f] - 1;
      w.str(" ");
      Dl_info info;
      bool found = dladdr(reinterpret_cast<void*>(pc), &info) != 0;
      if (found && info.dli_sname && info.dli_saddr) {
        w.str(info.dli_sname).str("+").hex(pc - reinterpret_cast<uintptr_t>(info.dli_saddr));
      } else if (found && info.dli_fname && info.dli_fbase) {
        const char* base = info.dli_fname;
        for (const char* c = info.dli_fname; *c; c++)
          if (*c == '/') base = c + 1;
        w.str(*base ? base : "?").str("+").hex(pc - reinterpret_cast<uintptr_t>(info.dli_fbase));
      } else {
        w.ptr(reinterpret_cast<void*>(pc));
      }
    }
    w.str("\n");
  }
  if (written) {
    char exe[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    w.str("remalloc: heap profile written to ").str(name).str("; view it with: jeprof --text ")
        .str(n > 0 ? exe : "PROGRAM").str(" ").str(name).str("\n");
  } else if (write_profile) {
    w.str("remalloc: the heap profile at exit could not be written (").str(name).str(")\n");
  }
  Counters c = counters();
  w.str("remalloc: sampler: ").u64(c.samples).str(" samples, ").u64(c.stacks).str(" stacks, ")
      .u64(c.fp_walks).str(" frame-pointer walks, ").u64(c.unwinder_walks).str(" unwinder walks, ")
      .u64(c.dumps).str(" profiles written, ").u64(c.dump_failures).str(" failed, ")
      .u64(c.nested_allocs).str(" allocations inside the sampler\n");
  return live_samples ? size_t(total_bytes) : 0;
}

void reset_seq_in_child() { g_seq.store(0, std::memory_order_relaxed); }

}  // namespace remalloc::prof

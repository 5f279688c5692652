// platform: memory cgroup limits (see cgroup.h).
#include "platform/cgroup.h"
#include "base/sys.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace remalloc::cgroup {

// A value at or above this is "no limit" (v1 reports 2^63 rounded down to
// a page for an unlimited group).
constexpr unsigned long long kUnlimited = 1ull << 60;

static long read_small(const char* path, char* buf, size_t cap) {
  int fd = sys::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t n = 0;
  while (n + 1 < cap) {
    ssize_t r = sys::read(fd, buf + n, cap - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += size_t(r);
  }
  sys::close(fd);
  buf[n] = 0;
  return long(n);
}

// A limit file's value in bytes; 0 for "max", missing or unlimited.
static size_t read_limit(const char* path) {
  char buf[64];
  if (read_small(path, buf, sizeof buf) <= 0) return 0;
  if (buf[0] < '0' || buf[0] > '9') return 0;  // "max"
  unsigned long long v = 0;
  for (const char* p = buf; *p >= '0' && *p <= '9'; p++) {
    v = v * 10 + unsigned(*p - '0');
    if (v >= kUnlimited) return 0;
  }
  return size_t(v);
}

static size_t min_set(size_t a, size_t b) {
  if (!a) return b;
  if (!b) return a;
  return a < b ? a : b;
}

// Appends s to buf at *n (bounded).
static void put(char* buf, size_t cap, size_t* n, const char* s, size_t len) {
  for (size_t i = 0; i < len && *n + 1 < cap; i++) buf[(*n)++] = s[i];
  buf[*n] = 0;
}
static size_t slen(const char* s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

// For the group at `rel` (a path starting with '/') under `mount`, and each
// ancestor up to the mount's root: the smallest value of `file`.
static size_t walk(const char* mount, const char* rel, size_t rel_len, const char* file) {
  size_t best = 0;
  for (;;) {
    char path[512];
    size_t n = 0;
    put(path, sizeof path, &n, mount, slen(mount));
    put(path, sizeof path, &n, rel, rel_len);
    put(path, sizeof path, &n, "/", 1);
    put(path, sizeof path, &n, file, slen(file));
    best = min_set(best, read_limit(path));
    if (rel_len == 0) break;
    while (rel_len > 0 && rel[rel_len - 1] != '/') rel_len--;  // to the parent
    if (rel_len > 0) rel_len--;                                // drop the '/'
  }
  return best;
}

Limits read() {
  Limits out{0, 0, 0};
  char buf[4096];
  if (read_small("/proc/self/cgroup", buf, sizeof buf) <= 0) return out;
  // Lines "id:controllers:/path". v1 memory: controllers list has "memory";
  // v2: id 0 and an empty controller list.
  for (char* line = buf; *line;) {
    char* end = line;
    while (*end && *end != '\n') end++;
    char* c1 = line;
    while (c1 < end && *c1 != ':') c1++;
    char* c2 = c1 < end ? c1 + 1 : end;
    while (c2 < end && *c2 != ':') c2++;
    if (c2 < end) {
      const char* ctl = c1 + 1;
      size_t ctl_len = size_t(c2 - ctl);
      const char* rel = c2 + 1;
      size_t rel_len = size_t(end - rel);
      if (rel_len == 1 && rel[0] == '/') rel_len = 0;
      bool memory = false;
      for (const char* p = ctl; p < c2;) {
        const char* q = p;
        while (q < c2 && *q != ',') q++;
        if (q - p == 6 && p[0] == 'm' && p[1] == 'e' && p[2] == 'm' && p[3] == 'o' && p[4] == 'r' && p[5] == 'y')
          memory = true;
        p = q < c2 ? q + 1 : q;
      }
      if (memory) {
        size_t v = walk("/sys/fs/cgroup/memory", rel, rel_len, "memory.limit_in_bytes");
        if (v) {
          out.max = min_set(out.max, v);
          out.version = 1;
        }
      } else if (ctl_len == 0 && line[0] == '0') {
        // The unified hierarchy: /sys/fs/cgroup itself on a v2-only
        // system, /sys/fs/cgroup/unified on a hybrid one.
        static const char* const kMounts[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
        for (const char* mount : kMounts) {
          size_t mx = walk(mount, rel, rel_len, "memory.max");
          size_t hi = walk(mount, rel, rel_len, "memory.high");
          if (mx || hi) {
            out.max = min_set(out.max, mx);
            out.high = min_set(out.high, hi);
            out.version = 2;
            break;
          }
        }
      }
    }
    line = *end ? end + 1 : end;
  }
  return out;
}

}  // namespace remalloc::cgroup

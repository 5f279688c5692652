// Shared helpers of the benchmark workloads: argument parsing, timing,
// deterministic random numbers, the address-derived fill pattern that every
// workload writes into its blocks and checks before freeing them, RSS
// readings, and the one machine-readable RESULT line each program prints.
//
// Workloads never link remalloc: the allocator under test is chosen with
// LD_PRELOAD, so every allocator runs the very same binary.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <string>
#include <thread>

namespace wl {

// ---------------------------------------------------------------- args

enum class Scale { tiny, short_, full };

struct Args {
  Scale scale = Scale::short_;
  const char* scale_name = "short";
  int threads = 0;          // 0 until parsed: then nproc unless given
  std::string which;        // --case NAME (programs with several cases)
  uint64_t seed = 0x5eed;
};

// Picks a value by scale: pick(a, tiny, short, full).
template <class T>
T pick(const Args& a, T tiny, T shrt, T full) {
  return a.scale == Scale::tiny ? tiny : a.scale == Scale::short_ ? shrt : full;
}

inline int online_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

[[noreturn]] inline void usage(const char* prog, const char* extra) {
  fprintf(stderr,
          "usage: %s [tiny|short|full] [THREADS] [--scale S] [--threads N]%s%s\n"
          "  scale defaults to short, threads to the number of online CPUs\n",
          prog, extra ? " " : "", extra ? extra : "");
  exit(2);
}

// Accepts positional `SCALE [THREADS]` and the options --scale, --threads,
// --case, --seed (either `--opt V` or `--opt=V`).
inline Args parse_args(int argc, char** argv, const char* extra_usage = nullptr) {
  Args a;
  int positional = 0;
  auto set_scale = [&](const char* s) {
    if (!strcmp(s, "tiny")) { a.scale = Scale::tiny; a.scale_name = "tiny"; }
    else if (!strcmp(s, "short")) { a.scale = Scale::short_; a.scale_name = "short"; }
    else if (!strcmp(s, "full")) { a.scale = Scale::full; a.scale_name = "full"; }
    else usage(argv[0], extra_usage);
  };
  auto set_threads = [&](const char* s) {
    char* end = nullptr;
    long n = strtol(s, &end, 10);
    if (!end || *end || n < 1 || n > 1024) usage(argv[0], extra_usage);
    a.threads = static_cast<int>(n);
  };
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    std::string val;
    bool has_val = false;
    if (arg.rfind("--", 0) == 0) {
      size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        val = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        has_val = true;
      } else if (arg != "--help") {
        if (i + 1 >= argc) usage(argv[0], extra_usage);
        val = argv[++i];
        has_val = true;
      }
    }
    if (arg == "--help" || arg == "-h") usage(argv[0], extra_usage);
    else if (arg == "--scale" && has_val) set_scale(val.c_str());
    else if (arg == "--threads" && has_val) set_threads(val.c_str());
    else if (arg == "--case" && has_val) a.which = val;
    else if (arg == "--seed" && has_val) a.seed = strtoull(val.c_str(), nullptr, 0);
    else if (arg.rfind("-", 0) == 0) usage(argv[0], extra_usage);
    else if (positional == 0) { set_scale(arg.c_str()); positional++; }
    else if (positional == 1) { set_threads(arg.c_str()); positional++; }
    else usage(argv[0], extra_usage);
  }
  if (a.threads == 0) a.threads = online_cpus();
  return a;
}

// ---------------------------------------------------------------- time

inline double now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// ---------------------------------------------------------------- random

// splitmix64: the mixer behind both the RNG and the fill pattern.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(mix64(seed) | 1) {}
  uint64_t next() {  // xorshift64*
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545f4914f6cdd1dull;
  }
  // Uniform in [0, n).
  uint64_t below(uint64_t n) { return static_cast<uint64_t>((static_cast<__uint128_t>(next()) * n) >> 64); }
  // Uniform in [lo, hi].
  uint64_t range(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

// ---------------------------------------------------------------- failure

[[noreturn]] inline void die_at(const char* what, uintptr_t addr, size_t n, size_t off) {
  fprintf(stderr, "CORRUPTION: %s: block 0x%zx size %zu offset %zu\n", what, static_cast<size_t>(addr), n, off);
  fflush(stderr);
  _exit(3);
}

// Takes the block as an address only (never reads through it).
template <class T>
[[noreturn]] inline void die(const char* what, T* p, size_t n, size_t off) {
  die_at(what, reinterpret_cast<uintptr_t>(p), n, off);
}

[[noreturn]] inline void oom(const char* what, size_t n) {
  fprintf(stderr, "FAILED: %s of %zu bytes returned NULL\n", what, n);
  fflush(stderr);
  _exit(4);
}

// ---------------------------------------------------------------- pattern

// The pattern of a block depends on its address and a cookie, so a block that
// was handed out twice, overlapped, or moved without its contents fails the
// check. Written words: all of the first 128 bytes, one word at every 4 KiB,
// and the last bytes; enough to catch overlap and lost pages without making
// every workload a memset benchmark.
constexpr uint64_t kCookie = 0xc0ffee5eedull;

inline uint64_t pattern_word(const void* base, size_t off, uint64_t cookie) {
  return mix64(reinterpret_cast<uintptr_t>(base) ^ cookie ^ (static_cast<uint64_t>(off) << 40) ^ off);
}

template <class F>
inline void for_pattern_offsets(size_t n, F&& f) {
  size_t head = n < 128 ? n : 128;
  size_t end = 0;  // end of the last position handed out; positions never overlap
  for (; end + 8 <= head; end += 8) f(end, size_t{8});
  for (size_t o = 4096; o + 8 <= n; o += 4096) {
    f(o, size_t{8});
    end = o + 8;
  }
  if (n >= end + 8) {
    f(n - 8, size_t{8});  // the last word
  } else {
    for (size_t i = end; i < n; i++) f(i, size_t{1});  // the last few bytes
  }
}

inline void fill(void* p, size_t n, uint64_t cookie = kCookie) {
  unsigned char* b = static_cast<unsigned char*>(p);
  for_pattern_offsets(n, [&](size_t off, size_t w) {
    uint64_t v = pattern_word(p, off, cookie);
    memcpy(b + off, &v, w);
  });
}

inline void check(const void* p, size_t n, uint64_t cookie = kCookie) {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  for_pattern_offsets(n, [&](size_t off, size_t w) {
    uint64_t v = pattern_word(p, off, cookie);
    if (memcmp(b + off, &v, w) != 0) die("pattern mismatch", p, n, off);
  });
}

inline void* xmalloc(size_t n) {
  void* p = malloc(n);
  if (p == nullptr) oom("malloc", n);
  if (n >= 16 && reinterpret_cast<uintptr_t>(p) % 16 != 0) die("misaligned pointer", p, n, 0);
  return p;
}

// ---------------------------------------------------------------- pages

constexpr size_t kPage = 4096;

// Writes the page index (xor a cookie) into the first word of every page of
// [from, to) of buf. Realloc workloads use this to touch only a new tail.
inline void touch_pages(void* buf, size_t from, size_t to, uint64_t cookie = kCookie) {
  unsigned char* b = static_cast<unsigned char*>(buf);
  size_t first = (from + kPage - 1) / kPage;
  for (size_t pg = first; pg * kPage + 8 <= to; pg++) {
    uint64_t v = pg ^ cookie;
    memcpy(b + pg * kPage, &v, 8);
  }
}

// Checks the first word of `samples` pages spread evenly over [0, n), plus
// the first and the last page.
inline void check_pages(const void* buf, size_t n, size_t samples, uint64_t cookie = kCookie) {
  const unsigned char* b = static_cast<const unsigned char*>(buf);
  size_t pages = n / kPage;  // only whole pages carry an index
  if (pages == 0) return;
  auto one = [&](size_t pg) {
    uint64_t v;
    memcpy(&v, b + pg * kPage, 8);
    if (v != (pg ^ cookie)) die("page index mismatch", buf, n, pg * kPage);
  };
  one(0);
  one(pages - 1);
  if (samples == 0) return;
  size_t step = pages / samples ? pages / samples : 1;
  for (size_t pg = step / 2; pg < pages; pg += step) one(pg);
}

// ---------------------------------------------------------------- RSS

struct Rss {
  long rss_kib = -1;  // VmRSS
  long hwm_kib = -1;  // VmHWM (peak)
};

inline Rss read_rss() {
  Rss r;
  FILE* f = fopen("/proc/self/status", "re");
  if (!f) return r;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, "VmRSS:", 6)) r.rss_kib = strtol(line + 6, nullptr, 10);
    else if (!strncmp(line, "VmHWM:", 6)) r.hwm_kib = strtol(line + 6, nullptr, 10);
  }
  fclose(f);
  return r;
}

// Huge-page coverage of the mappings that hold [addr, addr + len): the sums
// of Rss and AnonHugePages of every VMA of /proc/self/smaps that overlaps the
// range (whole VMAs: smaps does not split them; an allocator's arena may be
// larger than the buffer). Reads with open/read into a static buffer: no
// allocation, so it does not disturb the heap it measures. -1 when smaps
// cannot be read.
struct Coverage {
  long rss_kib = -1;
  long huge_kib = -1;   // AnonHugePages
  int vmas = 0;         // VMAs overlapping the range
  double percent() const { return rss_kib > 0 ? 100.0 * static_cast<double>(huge_kib) / static_cast<double>(rss_kib) : 0.0; }
};

inline Coverage huge_coverage(const void* addr, size_t len) {
  Coverage c;
  int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return c;
  c.rss_kib = c.huge_kib = 0;
  static char buf[1 << 16];
  char line[512];
  size_t ll = 0;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(addr), hi = lo + len;
  bool in = false;
  auto one = [&](char* ln) {
    unsigned long a = 0, b = 0;
    // A VMA header: "start-end perms ..."; field lines start with a capital.
    if (ln[0] >= 'A' && ln[0] <= 'Z') {
      if (!in) return;
      if (!strncmp(ln, "Rss:", 4)) c.rss_kib += strtol(ln + 4, nullptr, 10);
      else if (!strncmp(ln, "AnonHugePages:", 14)) c.huge_kib += strtol(ln + 14, nullptr, 10);
      return;
    }
    if (sscanf(ln, "%lx-%lx", &a, &b) == 2) {
      in = a < hi && b > lo;
      if (in) c.vmas++;
    }
  };
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; i++) {
      char ch = buf[i];
      if (ch == '\n') {
        line[ll] = 0;
        one(line);
        ll = 0;
      } else if (ll + 1 < sizeof line) {
        line[ll++] = ch;
      }
    }
  }
  close(fd);
  return c;
}

// Is the preloaded allocator (if any) actually mapped into this process?
// Reported in the RESULT line so the runner can notice a preload that did
// not take.
inline int preload_mapped() {
  const char* pre = getenv("LD_PRELOAD");
  if (!pre || !*pre) return -1;  // nothing preloaded
  std::string want = pre;
  size_t sp = want.find_first_of(" :");
  if (sp != std::string::npos) want = want.substr(0, sp);
  size_t slash = want.rfind('/');
  if (slash != std::string::npos) want = want.substr(slash + 1);
  FILE* f = fopen("/proc/self/maps", "re");
  if (!f) return 0;
  char line[4096];
  int found = 0;
  while (!found && fgets(line, sizeof line, f))
    if (strstr(line, want.c_str())) found = 1;
  fclose(f);
  return found;
}

// ---------------------------------------------------------------- result

// Builds `RESULT {"workload": ..., ...}` on a fixed buffer (no allocation
// while printing) and writes it to stdout as the program's last line.
class Result {
 public:
  Result(const char* workload, const Args& a) {
    pos_ = snprintf(buf_, sizeof buf_, "RESULT {\"workload\": \"%s\", \"scale\": \"%s\", \"threads\": %d",
                    workload, a.scale_name, a.threads);
    if (!a.which.empty()) str("case", a.which.c_str());
  }
  Result& num(const char* k, double v) { return app(", \"%s\": %.9g", k, v); }
  Result& integer(const char* k, long long v) { return app(", \"%s\": %lld", k, v); }
  Result& str(const char* k, const char* v) { return app(", \"%s\": \"%s\"", k, v); }
  void print() {
    Rss r = read_rss();
    integer("vm_hwm_kib", r.hwm_kib);
    integer("vm_rss_kib", r.rss_kib);
    int pm = preload_mapped();
    if (pm >= 0) integer("preload_mapped", pm);
    app("}\n");
    fputs(buf_, stdout);
    fflush(stdout);
    if (pm == 0) {  // the numbers above are not the allocator's that was asked for
      fprintf(stderr, "FAILED: LD_PRELOAD=%s is not mapped into the process\n", getenv("LD_PRELOAD"));
      exit(5);
    }
  }

 private:
  template <class... T>
  Result& app(const char* fmt, T... v) {
    if (pos_ < static_cast<int>(sizeof buf_))
      pos_ += snprintf(buf_ + pos_, sizeof buf_ - static_cast<size_t>(pos_), fmt, v...);
    return *this;
  }
  char buf_[4096];
  int pos_ = 0;
};

}  // namespace wl

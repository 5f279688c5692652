#include "test_util.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

extern char** environ;

// Older kernel headers (Debian bookworm) lack these.
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1ULL << 16)
#endif

namespace tu {

static inline uint8_t pattern_byte(size_t i, uint64_t seed) {
  return static_cast<uint8_t>(mix64(seed + i / 8) >> (8 * (i % 8)));
}

void fill_range(void* p, size_t from, size_t to, uint64_t seed) {
  auto* b = static_cast<uint8_t*>(p);
  size_t i = from;
  for (; i < to && (i % 8) != 0; ++i) b[i] = pattern_byte(i, seed);
  for (; i + 8 <= to; i += 8) {
    uint64_t w = mix64(seed + i / 8);
    std::memcpy(b + i, &w, 8);
  }
  for (; i < to; ++i) b[i] = pattern_byte(i, seed);
}

size_t check_range(const void* p, size_t from, size_t to, uint64_t seed) {
  const auto* b = static_cast<const uint8_t*>(p);
  size_t i = from;
  for (; i < to && (i % 8) != 0; ++i)
    if (b[i] != pattern_byte(i, seed)) return i;
  for (; i + 8 <= to; i += 8) {
    uint64_t w;
    std::memcpy(&w, b + i, 8);
    if (w != mix64(seed + i / 8)) {
      for (size_t j = i; j < i + 8; ++j)
        if (b[j] != pattern_byte(j, seed)) return j;
    }
  }
  for (; i < to; ++i)
    if (b[i] != pattern_byte(i, seed)) return i;
  return SIZE_MAX;
}

void fill(void* p, size_t n, uint64_t seed) { fill_range(p, 0, n, seed); }
size_t check(const void* p, size_t n, uint64_t seed) { return check_range(p, 0, n, seed); }

size_t find_nonzero(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  size_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(b + i) % 8) != 0; ++i)
    if (b[i]) return i;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, b + i, 8);
    if (w) {
      for (size_t j = i; j < i + 8; ++j)
        if (b[j]) return j;
    }
  }
  for (; i < n; ++i)
    if (b[i]) return i;
  return SIZE_MAX;
}

double scale() {
  static double s = [] {
    double v = 1.0;
    if (const char* e = std::getenv("REMALLOC_TEST_SCALE")) {
      double f = std::atof(e);
      if (f > 0) v = f;
    }
#if REMALLOC_TEST_SANITIZER == 1
    v *= 0.25;
#elif REMALLOC_TEST_SANITIZER == 2
    v *= 0.1;
#endif
    return v;
  }();
  return s;
}

int watchdog_seconds(int base_s) { return REMALLOC_TEST_SANITIZER ? base_s * 10 : base_s; }

int wait_child(int pid, const std::string& what, int base_s, std::string* report) {
  const int limit = watchdog_seconds(base_s);
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) {
      if (report) *report = what + ": waitpid failed: " + strerror(errno);
      return -1;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec > limit) {
      ::kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      if (report)
        *report = "watchdog: child still running after " + std::to_string(limit) + " s (" + what + "); killed";
      return status;
    }
    struct timespec nap = {0, 20 * 1000 * 1000};
    nanosleep(&nap, nullptr);
  }
}

bool uffd_move_supported() {
  static const bool ok = [] {
#if defined(__NR_userfaultfd)
    long fd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd < 0) fd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return false;
    struct uffdio_api api;
    std::memset(&api, 0, sizeof api);
    api.api = UFFD_API;
    api.features = UFFD_FEATURE_MOVE;
    bool r = ioctl(static_cast<int>(fd), UFFDIO_API, &api) == 0 && (api.features & UFFD_FEATURE_MOVE);
    ::close(static_cast<int>(fd));
    return r;
#else
    return false;
#endif
  }();
  return ok;
}

std::string read_file(const std::string& path) {
  std::string s;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return s;
  char buf[65536];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    s.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  return s;
}

size_t rss_bytes() {
  std::string s = read_file("/proc/self/statm");
  unsigned long size = 0, res = 0;
  if (std::sscanf(s.c_str(), "%lu %lu", &size, &res) != 2) return 0;
  return res * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

size_t vma_count() {
  std::string s = read_file("/proc/self/maps");
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

size_t max_map_count() {
  std::string s = read_file("/proc/sys/vm/max_map_count");
  return s.empty() ? 65530 : std::strtoull(s.c_str(), nullptr, 10);
}

bool RunResult::exited_ok() const {
  return !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string RunResult::describe() const {
  std::string d;
  if (timed_out) d += "TIMED OUT; ";
  if (WIFEXITED(status)) d += "exit code " + std::to_string(WEXITSTATUS(status));
  else if (WIFSIGNALED(status)) d += std::string("killed by signal ") + strsignal(WTERMSIG(status));
  else d += "status " + std::to_string(status);
  auto clip = [](const std::string& s) {
    return s.size() > 6000 ? s.substr(0, 2000) + "\n[...]\n" + s.substr(s.size() - 4000) : s;
  };
  d += "\n--- stdout ---\n" + clip(out) + "\n--- stderr ---\n" + clip(err);
  return d;
}

RunResult run(const std::vector<std::string>& argv, const std::vector<std::string>& env,
              int timeout_s, const std::string& stdin_data) {
  RunResult r;
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) envs.emplace_back(*e);
  for (const std::string& m : env) {
    bool remove = !m.empty() && m[0] == '-';
    std::string name = remove ? m.substr(1) : m.substr(0, m.find('='));
    for (size_t i = 0; i < envs.size();) {
      if (envs[i].compare(0, name.size() + 1, name + "=") == 0) envs.erase(envs.begin() + i);
      else ++i;
    }
    if (!remove) envs.push_back(m);
  }
  std::vector<char*> av, ev;
  for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
  av.push_back(nullptr);
  for (const auto& e : envs) ev.push_back(const_cast<char*>(e.c_str()));
  ev.push_back(nullptr);

  int out[2], err[2], in[2];
  if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(in, O_CLOEXEC)) return r;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, av[0], &fa, nullptr, av.data(), ev.data());
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  ::close(err[1]);
  ::close(in[0]);
  if (rc != 0) {
    ::close(out[0]);
    ::close(err[0]);
    ::close(in[1]);
    r.err = std::string("posix_spawn failed: ") + strerror(rc);
    r.status = 127 << 8;
    return r;
  }
  // Feed stdin (small inputs only; larger ones could block).
  if (!stdin_data.empty()) {
    size_t off = 0;
    while (off < stdin_data.size()) {
      ssize_t w = ::write(in[1], stdin_data.data() + off, stdin_data.size() - off);
      if (w <= 0) break;
      off += static_cast<size_t>(w);
    }
  }
  ::close(in[1]);

  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  bool out_open = true, err_open = true;
  char buf[65536];
  while (out_open || err_open) {
    struct pollfd fds[2] = {{out_open ? out[0] : -1, POLLIN, 0}, {err_open ? err[0] : -1, POLLIN, 0}};
    int pr = ::poll(fds, 2, 200);
    if (pr < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n > 0) (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
        else if (n == 0 || errno != EINTR) (i == 0 ? out_open : err_open) = false;
      }
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec > watchdog_seconds(timeout_s) && !r.timed_out) {
      r.timed_out = true;
      ::kill(pid, SIGKILL);
    }
  }
  ::close(out[0]);
  ::close(err[0]);
  while (waitpid(pid, &r.status, 0) < 0 && errno == EINTR) {
  }
  return r;
}

namespace {
struct JsonParser {
  const std::string& s;
  size_t i = 0;
  std::vector<std::string>* keys;
  std::string err;
  int depth = 0;

  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  }
  bool fail(const char* what) {
    if (err.empty()) err = std::string(what) + " at offset " + std::to_string(i);
    return false;
  }
  bool str(std::string* outp) {
    if (i >= s.size() || s[i] != '"') return fail("expected string");
    ++i;
    std::string v;
    while (i < s.size() && s[i] != '"') {
      unsigned char c = static_cast<unsigned char>(s[i]);
      if (c < 0x20) return fail("control character in string");
      if (c == '\\') {
        ++i;
        if (i >= s.size()) return fail("bad escape");
        char e = s[i];
        if (e == 'u') {
          for (int k = 1; k <= 4; ++k)
            if (i + k >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + k])))
              return fail("bad \\u escape");
          i += 4;
        } else if (!std::strchr("\"\\/bfnrt", e)) {
          return fail("bad escape");
        }
        v += '?';
      } else {
        v += static_cast<char>(c);
      }
      ++i;
    }
    if (i >= s.size()) return fail("unterminated string");
    ++i;
    if (outp) *outp = v;
    return true;
  }
  bool num() {
    size_t st = i;
    if (i < s.size() && s[i] == '-') ++i;
    if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i]))) return fail("bad number");
    if (s[i] == '0') ++i;
    else while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i < s.size() && s[i] == '.') {
      ++i;
      if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i]))) return fail("bad fraction");
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i]))) return fail("bad exponent");
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    }
    return i > st;
  }
  bool lit(const char* w) {
    size_t n = std::strlen(w);
    if (s.compare(i, n, w) != 0) return fail("bad literal");
    i += n;
    return true;
  }
  bool value() {
    if (++depth > 200) return fail("too deep");
    ws();
    if (i >= s.size()) return fail("unexpected end");
    bool ok;
    char c = s[i];
    if (c == '{') {
      ++i;
      ws();
      if (i < s.size() && s[i] == '}') {
        ++i;
        ok = true;
      } else {
        for (;;) {
          ws();
          std::string k;
          if (!str(&k)) return false;
          if (keys) keys->push_back(k);
          ws();
          if (i >= s.size() || s[i] != ':') return fail("expected ':'");
          ++i;
          if (!value()) return false;
          ws();
          if (i < s.size() && s[i] == ',') { ++i; continue; }
          if (i < s.size() && s[i] == '}') { ++i; break; }
          return fail("expected ',' or '}'");
        }
        ok = true;
      }
    } else if (c == '[') {
      ++i;
      ws();
      if (i < s.size() && s[i] == ']') {
        ++i;
        ok = true;
      } else {
        for (;;) {
          if (!value()) return false;
          ws();
          if (i < s.size() && s[i] == ',') { ++i; continue; }
          if (i < s.size() && s[i] == ']') { ++i; break; }
          return fail("expected ',' or ']'");
        }
        ok = true;
      }
    } else if (c == '"') {
      ok = str(nullptr);
    } else if (c == 't') {
      ok = lit("true");
    } else if (c == 'f') {
      ok = lit("false");
    } else if (c == 'n') {
      ok = lit("null");
    } else {
      ok = num();
    }
    --depth;
    return ok;
  }
};
}  // namespace

bool json_valid(const std::string& text, std::vector<std::string>* keys, std::string* error) {
  JsonParser p{text, 0, keys, {}, 0};
  bool ok = p.value();
  if (ok) {
    p.ws();
    if (p.i != text.size()) ok = p.fail("trailing characters");
  }
  if (error) *error = p.err;
  return ok;
}

long long json_number(const std::string& text, const std::string& key) {
  std::string k = "\"" + key + "\"";
  size_t pos = text.find(k);
  if (pos == std::string::npos) return -1;
  pos += k.size();
  while (pos < text.size() && (text[pos] == ' ' || text[pos] == ':' || text[pos] == '\n')) ++pos;
  if (pos >= text.size() || !std::isdigit(static_cast<unsigned char>(text[pos]))) return -1;
  return std::strtoll(text.c_str() + pos, nullptr, 10);
}

std::string hex(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "%lx", static_cast<unsigned long>(reinterpret_cast<uintptr_t>(p)));
  return b;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace tu

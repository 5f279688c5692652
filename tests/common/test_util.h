// Helpers shared by the remalloc tests: byte patterns, opaque values,
// sub-processes, /proc readers and a small JSON checker. Nothing here
// allocates through the allocator under test except where the caller asks.
#ifndef REMALLOC_TESTS_TEST_UTIL_H
#define REMALLOC_TESTS_TEST_UTIL_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#ifndef REMALLOC_TEST_SANITIZER
#define REMALLOC_TEST_SANITIZER 0  // 0 none, 1 address+undefined, 2 thread
#endif

namespace tu {

inline constexpr size_t KiB = size_t{1} << 10;
inline constexpr size_t MiB = size_t{1} << 20;
inline constexpr size_t GiB = size_t{1} << 30;

// Hides a value from the optimiser, so that calls with constant arguments
// are made for real and allocation pairs are not elided.
template <class T>
inline T opaque(T v) {
  asm volatile("" : "+r"(v));
  return v;
}
inline void escape(const void* p) { asm volatile("" : : "g"(p) : "memory"); }

inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Pattern: byte i of a block is byte (i % 8) of mix64(seed + i / 8), so a
// prefix of a block can be checked after a realloc with the same seed.
void fill(void* p, size_t n, uint64_t seed);
// Returns the offset of the first wrong byte, or SIZE_MAX when all match.
size_t check(const void* p, size_t n, uint64_t seed);
// Fill/check from offset `from` (pattern positions are absolute offsets).
void fill_range(void* p, size_t from, size_t to, uint64_t seed);
size_t check_range(const void* p, size_t from, size_t to, uint64_t seed);
// Returns the offset of the first non-zero byte, or SIZE_MAX.
size_t find_nonzero(const void* p, size_t n);

inline bool is_aligned(const void* p, size_t a) {
  return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0;
}

// Scale of heavy loops: the factor of the REMALLOC_TEST_SCALE environment
// variable (tests/run.sh sets it; 1 when unset), times 0.25 under
// ASan+UBSan and 0.1 under TSan. Every heavy loop uses scaled().
double scale();
inline size_t scaled(size_t n, size_t min = 1) {
  double v = static_cast<double>(n) * scale();
  return v < static_cast<double>(min) ? min : static_cast<size_t>(v);
}

// Watchdogs, never assertions on time: a generous limit (base_s seconds, ten
// times that under a sanitizer) after which a test reports what was still
// running and fails, instead of hanging until ctest kills it without a word.
int watchdog_seconds(int base_s);

// Waits for child `pid`; `what` names what the child was doing. Past
// watchdog_seconds(base_s) the child is killed with SIGKILL and `*report`
// says so. Returns the wait status (or -1 on a waitpid error).
int wait_child(int pid, const std::string& what, int base_s, std::string* report);

// Can this kernel move pages with UFFDIO_MOVE (Linux 6.8+, and userfaultfd
// allowed for this process)? Probed once, without the allocator.
bool uffd_move_supported();

// Resident set size of this process in bytes (/proc/self/statm).
size_t rss_bytes();
// Number of lines in /proc/self/maps.
size_t vma_count();
size_t max_map_count();
// Whole contents of a file ("" if unreadable).
std::string read_file(const std::string& path);

struct RunResult {
  int status = -1;        // raw wait status
  bool timed_out = false;
  std::string out, err;
  bool exited_ok() const;  // exited with code 0
  std::string describe() const;
};
// Runs argv (PATH searched) with the current environment changed by `env`:
// "NAME=value" sets or replaces NAME, "-NAME" removes it. Captures stdout and
// stderr; kills the child after watchdog_seconds(timeout_s) seconds (the
// result then says TIMED OUT).
RunResult run(const std::vector<std::string>& argv,
              const std::vector<std::string>& env = {}, int timeout_s = 120,
              const std::string& stdin_data = "");

// Minimal JSON validator: true when `text` is one JSON value (RFC 8259
// syntax). Collects every object key it sees into `keys` when given.
bool json_valid(const std::string& text, std::vector<std::string>* keys = nullptr,
                std::string* error = nullptr);
// Value of the first "key": <number> found anywhere in the text, or -1.
long long json_number(const std::string& text, const std::string& key);

std::string hex(const void* p);  // lowercase, no 0x, no leading zeros
std::string lower(std::string s);

}  // namespace tu

#endif

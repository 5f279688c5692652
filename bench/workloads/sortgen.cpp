// sortgen: input and checker for the `sort` real-program workload.
//   sortgen gen tiny|short|full FILE   writes a deterministic text file
//   sortgen check INPUT OUTPUT         checks OUTPUT is INPUT's lines sorted
//                                      bytewise (LC_ALL=C order)
// Both print a RESULT line; `check` exits 3 when the output is wrong. The
// checksum it prints (of OUTPUT, order dependent) must be the same under
// every allocator.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>

namespace {

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(const char* s, size_t n, uint64_t h = 0xcbf29ce484222325ull) {
  for (size_t i = 0; i < n; i++) h = (h ^ static_cast<unsigned char>(s[i])) * 0x100000001b3ull;
  return h;
}

int usage() {
  fprintf(stderr, "usage: sortgen gen tiny|short|full FILE | sortgen check INPUT OUTPUT\n");
  return 2;
}

// Reads a file line by line (without the newline) into a callback.
template <class F>
bool for_lines(const char* path, F&& f) {
  FILE* in = fopen(path, "re");
  if (!in) {
    perror(path);
    return false;
  }
  char* line = nullptr;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, in)) >= 0) {
    if (n > 0 && line[n - 1] == '\n') n--;
    f(line, static_cast<size_t>(n));
  }
  free(line);
  fclose(in);
  return true;
}

int gen(const char* scale, const char* path) {
  size_t target;
  if (!strcmp(scale, "tiny")) target = 256u << 10;
  else if (!strcmp(scale, "short")) target = 16u << 20;
  else if (!strcmp(scale, "full")) target = 400u << 20;
  else return usage();
  FILE* out = fopen(path, "we");
  if (!out) {
    perror(path);
    return 1;
  }
  // Lines look like log records: a key drawn from a skewed set (so there are
  // duplicates and long common prefixes), a number, and random words.
  static const char* const words[] = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
                                      "hotel", "india", "juliet", "kilo", "lima", "mike", "november",
                                      "oscar", "papa", "quebec", "romeo", "sierra", "tango"};
  uint64_t s = 42;
  size_t bytes = 0, lines = 0;
  std::string line;
  while (bytes < target) {
    uint64_t r = mix64(s++);
    line.clear();
    line += "user";
    line += std::to_string((r & 0xffff) % ((r >> 16) % 7 == 0 ? 50 : 5000));
    line += ' ';
    line += std::to_string(mix64(r) % 1000000007);
    int nw = 1 + static_cast<int>((r >> 32) % 8);
    for (int w = 0; w < nw; w++) {
      line += ' ';
      line += words[mix64(r + static_cast<uint64_t>(w)) % 20];
    }
    line += '\n';
    fwrite(line.data(), 1, line.size(), out);
    bytes += line.size();
    lines++;
  }
  if (fclose(out) != 0) {
    perror(path);
    return 1;
  }
  printf("RESULT {\"workload\": \"sortgen\", \"bytes\": %zu, \"lines\": %zu}\n", bytes, lines);
  return 0;
}

int check(const char* in_path, const char* out_path) {
  // Multiset hash: the sum of a mixed hash of each line, order independent.
  uint64_t in_sum = 0, out_sum = 0, out_ordered = 0xcbf29ce484222325ull;
  size_t in_lines = 0, out_lines = 0;
  bool sorted = true;
  std::string prev;
  if (!for_lines(in_path, [&](const char* l, size_t n) {
        in_sum += mix64(fnv1a(l, n));
        in_lines++;
      }))
    return 1;
  if (!for_lines(out_path, [&](const char* l, size_t n) {
        out_sum += mix64(fnv1a(l, n));
        out_ordered = fnv1a(l, n, out_ordered);
        out_ordered = fnv1a("\n", 1, out_ordered);
        if (out_lines > 0) {
          size_t m = prev.size() < n ? prev.size() : n;
          int c = memcmp(prev.data(), l, m);
          if (c > 0 || (c == 0 && prev.size() > n)) sorted = false;
        }
        prev.assign(l, n);
        out_lines++;
      }))
    return 1;
  bool same = in_sum == out_sum && in_lines == out_lines;
  printf("RESULT {\"workload\": \"sortcheck\", \"lines\": %zu, \"sorted\": %d, \"same_lines\": %d, \"checksum\": \"%016llx\"}\n",
         out_lines, sorted ? 1 : 0, same ? 1 : 0, static_cast<unsigned long long>(out_ordered));
  if (!sorted || !same) {
    fprintf(stderr, "CORRUPTION: sort output %s\n", !sorted ? "is not sorted" : "lost or changed lines");
    return 3;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && !strcmp(argv[1], "gen")) return gen(argv[2], argv[3]);
  if (argc == 4 && !strcmp(argv[1], "check")) return check(argv[2], argv[3]);
  return usage();
}

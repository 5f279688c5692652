// base: formatter implementation (write(2), as sys::write: no allocation, no cancellation point).
#include "base/format.h"
#include "base/sys.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace remalloc {

size_t format_u64(char* out, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = char('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

static void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = sys::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += w;
    n -= size_t(w);
  }
}

void Writer::flush() {
  if (len_ == 0) return;
  // Remember the column so pad_to keeps working across flushes.
  size_t last_nl = len_;
  while (last_nl > 0 && buf_[last_nl - 1] != '\n') last_nl--;
  flushed_col_ = last_nl == 0 ? flushed_col_ + len_ : len_ - last_nl;
  write_all(fd_, buf_, len_);
  len_ = 0;
  line_start_ = 0;
}

Writer& Writer::chr(char c) {
  if (len_ == sizeof(buf_)) flush();
  buf_[len_++] = c;
  if (c == '\n') {
    line_start_ = len_;
    flushed_col_ = 0;
  }
  return *this;
}

Writer& Writer::str(const char* s) {
  while (*s) chr(*s++);
  return *this;
}

Writer& Writer::u64(uint64_t v) {
  char tmp[24];
  size_t n = format_u64(tmp, v);
  for (size_t i = 0; i < n; i++) chr(tmp[i]);
  return *this;
}

Writer& Writer::i64(int64_t v) {
  if (v < 0) {
    chr('-');
    return u64(uint64_t(0) - uint64_t(v));
  }
  return u64(uint64_t(v));
}

size_t format_hex(char* out, uint64_t v) {
  char tmp[16];
  size_t n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  out[0] = '0';
  out[1] = 'x';
  for (size_t i = 0; i < n; i++) out[2 + i] = tmp[n - 1 - i];
  return n + 2;
}

Writer& Writer::hex(uint64_t v) {
  char tmp[18];
  size_t n = format_hex(tmp, v);
  for (size_t i = 0; i < n; i++) chr(tmp[i]);
  return *this;
}

Writer& Writer::fixed(uint64_t scaled, unsigned decimals) {
  uint64_t div = 1;
  for (unsigned i = 0; i < decimals; i++) div *= 10;
  u64(scaled / div);
  if (decimals) {
    chr('.');
    uint64_t frac = scaled % div;
    char tmp[24];
    for (unsigned i = 0; i < decimals; i++) {
      tmp[decimals - 1 - i] = char('0' + frac % 10);
      frac /= 10;
    }
    for (unsigned i = 0; i < decimals; i++) chr(tmp[i]);
  }
  return *this;
}

Writer& Writer::bytes(uint64_t v) {
  static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  unsigned u = 0;
  uint64_t scaled = v * 10;
  while (u < 4 && v >= 1024) {
    scaled = (v * 10) / 1024;
    v /= 1024;
    u++;
  }
  if (u == 0) {
    u64(v);
  } else {
    fixed(scaled, 1);
  }
  return chr(' ').str(units[u]);
}

Writer& Writer::pad_to(size_t col) {
  size_t cur = (len_ - line_start_) + (line_start_ == 0 ? flushed_col_ : 0);
  while (cur < col) {
    chr(' ');
    cur++;
  }
  return *this;
}

BufWriter& BufWriter::chr(char c) {
  if (len_ + 1 < cap_) {
    buf_[len_] = c;
    buf_[len_ + 1] = 0;
  }
  len_++;
  return *this;
}

BufWriter& BufWriter::str(const char* s) {
  while (*s) chr(*s++);
  return *this;
}

BufWriter& BufWriter::u64(uint64_t v) {
  char tmp[24];
  size_t n = format_u64(tmp, v);
  for (size_t i = 0; i < n; i++) chr(tmp[i]);
  return *this;
}

BufWriter& BufWriter::i64(int64_t v) {
  if (v < 0) {
    chr('-');
    return u64(uint64_t(0) - uint64_t(v));
  }
  return u64(uint64_t(v));
}

void fatal(const char* what, const void* addr) {
  {
    Writer w(2);
    w.str("remalloc: error: ").str(what);
    if (addr) w.str(" (address ").ptr(addr).str(")");
    w.chr('\n');
  }
  abort();
}

void warning(const char* what, const void* addr) {
  Writer w(2);
  w.str("remalloc: warning: ").str(what);
  if (addr) w.str(" (address ").ptr(addr).str(")");
  w.chr('\n');
}

}  // namespace remalloc

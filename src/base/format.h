// base: a formatter that writes into a stack buffer and flushes with write(2).
// It never allocates, so it is safe inside malloc, before main and in fork.
#pragma once
#include "base/base.h"

namespace remalloc {

class Writer {
 public:
  explicit Writer(int fd) : fd_(fd) {}
  ~Writer() { flush(); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  Writer& str(const char* s);
  Writer& chr(char c);
  Writer& u64(uint64_t v);
  Writer& i64(int64_t v);
  Writer& hex(uint64_t v);  // 0x-prefixed
  Writer& ptr(const void* p) { return hex(reinterpret_cast<uintptr_t>(p)); }
  // Bytes with a binary unit (B, KiB, MiB, GiB), one decimal.
  Writer& bytes(uint64_t v);
  // Fixed-point decimal with `decimals` places (value given scaled).
  Writer& fixed(uint64_t scaled, unsigned decimals);
  // Pads with spaces up to column `col` of the current line.
  Writer& pad_to(size_t col);
  void flush();

 private:
  int fd_;
  size_t len_ = 0;
  size_t line_start_ = 0;  // offset of the current line's start (since last flush)
  size_t flushed_col_ = 0;
  char buf_[512];
};

// Writes into a caller's buffer (for JSON); never overflows, always NUL-ends.
class BufWriter {
 public:
  BufWriter(char* buf, size_t cap) : buf_(buf), cap_(cap) {
    if (cap_) buf_[0] = 0;
  }
  BufWriter& str(const char* s);
  BufWriter& chr(char c);
  BufWriter& u64(uint64_t v);
  BufWriter& i64(int64_t v);
  size_t needed() const { return len_; }

 private:
  char* buf_;
  size_t cap_;
  size_t len_ = 0;
};

size_t format_u64(char* out, uint64_t v);  // returns digits written, no NUL
// "0x" and lowercase hex digits (at most 18 chars); returns chars written, no NUL.
size_t format_hex(char* out, uint64_t v);

}  // namespace remalloc

// base/format.h: the formatter that never allocates. Writer (to a file
// descriptor, through a 512-byte buffer): numbers, pointers, bytes with
// binary units, fixed-point, pad_to across lines and flushes. BufWriter (into
// a caller's buffer): truncation, NUL termination, needed().
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

#include "base/format.h"

namespace {

using remalloc::BufWriter;
using remalloc::Writer;

// What `fill` writes through a Writer on a pipe (the Writer is destroyed,
// hence flushed, before the pipe is read). Keep it under the pipe's 64 KiB.
std::string written(const std::function<void(Writer&)>& fill) {
  int fds[2];
  if (pipe(fds) != 0) {
    ADD_FAILURE() << "pipe: " << strerror(errno);
    return {};
  }
  {
    Writer w(fds[1]);
    fill(w);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, size_t(n));
  close(fds[0]);
  return out;
}

std::string w_u64(uint64_t v) { return written([&](Writer& w) { w.u64(v); }); }
std::string w_i64(int64_t v) { return written([&](Writer& w) { w.i64(v); }); }
std::string w_bytes(uint64_t v) { return written([&](Writer& w) { w.bytes(v); }); }

TEST(Format, U64) {
  EXPECT_EQ(w_u64(0), "0");
  EXPECT_EQ(w_u64(7), "7");
  EXPECT_EQ(w_u64(10), "10");
  EXPECT_EQ(w_u64(1234567890), "1234567890");
  EXPECT_EQ(w_u64(UINT64_MAX), "18446744073709551615");
  char out[24];
  size_t n = remalloc::format_u64(out, 4096);
  EXPECT_EQ(std::string(out, n), "4096");
}

TEST(Format, I64) {
  EXPECT_EQ(w_i64(0), "0");
  EXPECT_EQ(w_i64(-1), "-1");
  EXPECT_EQ(w_i64(42), "42");
  EXPECT_EQ(w_i64(-1234567), "-1234567");
  EXPECT_EQ(w_i64(INT64_MAX), "9223372036854775807");
  EXPECT_EQ(w_i64(INT64_MIN), "-9223372036854775808");
}

TEST(Format, HexAndPtr) {
  EXPECT_EQ(written([](Writer& w) { w.hex(0); }), "0x0");
  EXPECT_EQ(written([](Writer& w) { w.hex(0xdeadbeef); }), "0xdeadbeef");
  EXPECT_EQ(written([](Writer& w) { w.hex(UINT64_MAX); }), "0xffffffffffffffff");
  EXPECT_EQ(written([](Writer& w) { w.ptr(nullptr); }), "0x0");
  EXPECT_EQ(written([](Writer& w) { w.ptr(reinterpret_cast<void*>(0x7f0012345000)); }), "0x7f0012345000");
}

TEST(Format, Fixed) {
  EXPECT_EQ(written([](Writer& w) { w.fixed(12345, 2); }), "123.45");
  EXPECT_EQ(written([](Writer& w) { w.fixed(5, 3); }), "0.005");
  EXPECT_EQ(written([](Writer& w) { w.fixed(1000, 3); }), "1.000");
  EXPECT_EQ(written([](Writer& w) { w.fixed(7, 0); }), "7");
}

// One decimal, truncated, in the largest unit the value reaches (up to TiB).
TEST(Format, BytesWithUnits) {
  EXPECT_EQ(w_bytes(0), "0 B");
  EXPECT_EQ(w_bytes(1), "1 B");
  EXPECT_EQ(w_bytes(1023), "1023 B");
  EXPECT_EQ(w_bytes(1024), "1.0 KiB");
  EXPECT_EQ(w_bytes(1536), "1.5 KiB");
  EXPECT_EQ(w_bytes(1024 * 1024 - 1), "1023.9 KiB");
  EXPECT_EQ(w_bytes(uint64_t{1} << 20), "1.0 MiB");
  EXPECT_EQ(w_bytes(uint64_t{3} << 29), "1.5 GiB");
  EXPECT_EQ(w_bytes(uint64_t{5} << 30), "5.0 GiB");
  EXPECT_EQ(w_bytes(uint64_t{1} << 40), "1.0 TiB");
  EXPECT_EQ(w_bytes(uint64_t{1} << 50), "1024.0 TiB");
  EXPECT_EQ(w_bytes(UINT64_MAX), "16777215.9 TiB");
}

TEST(Format, StrAndChr) {
  EXPECT_EQ(written([](Writer& w) { w.str("ab").chr('c').str("").str("d\n"); }), "abcd\n");
  EXPECT_EQ(written([](Writer&) {}), "");
}

TEST(Format, PadToColumns) {
  EXPECT_EQ(written([](Writer& w) { w.str("ab").pad_to(5).chr('|'); }), "ab   |");
  // Already past the column: nothing added.
  EXPECT_EQ(written([](Writer& w) { w.str("abcdef").pad_to(3).chr('|'); }), "abcdef|");
  // Columns count from the start of the current line.
  EXPECT_EQ(written([](Writer& w) { w.str("long line\nx").pad_to(4).chr('|'); }), "long line\nx   |");
  EXPECT_EQ(written([](Writer& w) { w.str("a\n").pad_to(2).chr('|').chr('\n').str("bc").pad_to(3).chr('|'); }),
            "a\n  |\nbc |");
}

// The buffer holds 512 bytes: longer output is flushed in pieces, complete
// and in order, and pad_to still counts columns across a flush.
TEST(Format, LongOutputAndPadToAcrossFlushes) {
  std::string expect;
  std::string got = written([&](Writer& w) {
    for (int i = 0; i < 3000; i++) {
      w.u64(uint64_t(i));
      expect += std::to_string(i);
      if (i % 10 == 9) {
        w.chr('\n');
        expect += '\n';
      } else {
        w.chr(' ');
        expect += ' ';
      }
    }
  });
  EXPECT_EQ(got, expect);

  // A line of 700 characters spans a flush; pad it to column 800.
  got = written([](Writer& w) {
    w.str("x\n");
    for (int i = 0; i < 700; i++) w.chr('a');
    w.pad_to(800).chr('|').chr('\n').str("b").pad_to(4).chr('|');
  });
  EXPECT_EQ(got, "x\n" + std::string(700, 'a') + std::string(100, ' ') + "|\nb   |");

  // A line that starts right after a flush.
  got = written([](Writer& w) {
    for (int i = 0; i < 511; i++) w.chr('a');
    w.chr('\n').str("cd").pad_to(6).chr('|');
  });
  EXPECT_EQ(got, std::string(511, 'a') + "\ncd    |");
}

TEST(Format, FlushWritesNowAndKeepsWorking) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  {
    Writer w(fds[1]);
    w.str("abc");
    w.flush();
    char buf[16] = {};
    ASSERT_EQ(read(fds[0], buf, sizeof buf), 3);
    EXPECT_STREQ(buf, "abc");
    w.pad_to(5).str("d");
    w.flush();
    std::memset(buf, 0, sizeof buf);
    ASSERT_EQ(read(fds[0], buf, sizeof buf), 3);
    EXPECT_STREQ(buf, "  d");
  }
  close(fds[1]);
  char buf[4];
  EXPECT_EQ(read(fds[0], buf, sizeof buf), 0) << "the destructor wrote again";
  close(fds[0]);
}

TEST(Format, BufWriterFits) {
  char buf[64];
  std::memset(buf, 'X', sizeof buf);
  BufWriter b(buf, sizeof buf);
  b.str("n=").u64(123).chr(',').i64(-45).chr(',').i64(INT64_MIN);
  EXPECT_STREQ(buf, "n=123,-45,-9223372036854775808");
  EXPECT_EQ(b.needed(), std::strlen("n=123,-45,-9223372036854775808"));
}

TEST(Format, BufWriterTruncatesAndAlwaysNulTerminates) {
  for (size_t cap = 1; cap <= 16; cap++) {
    char buf[32];
    std::memset(buf, 'X', sizeof buf);
    BufWriter b(buf, cap);
    b.str("hello ").u64(1234567890);
    std::string full = "hello 1234567890";  // 16 characters
    EXPECT_EQ(b.needed(), full.size()) << "cap " << cap;
    EXPECT_EQ(std::string(buf), full.substr(0, cap - 1)) << "cap " << cap;
    // Nothing written past cap.
    for (size_t i = cap; i < sizeof buf; i++) ASSERT_EQ(buf[i], 'X') << "cap " << cap << " byte " << i;
  }
  // Exactly room for the text and its NUL.
  char buf[18];
  std::memset(buf, 'X', sizeof buf);
  BufWriter b(buf, 17);
  b.str("hello 1234567890");
  EXPECT_STREQ(buf, "hello 1234567890");
  EXPECT_EQ(buf[17], 'X');
}

TEST(Format, BufWriterZeroCapacityWritesNothing) {
  char c = 'X';
  BufWriter b(&c, 0);
  b.str("abc").u64(99).chr('z');
  EXPECT_EQ(c, 'X');
  EXPECT_EQ(b.needed(), 6u);
  BufWriter empty(&c, 1);
  EXPECT_EQ(c, '\0');
  EXPECT_EQ(empty.needed(), 0u);
}

}  // namespace

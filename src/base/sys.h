// base: the descriptor system calls remalloc makes, none of them a
// cancellation point.
//
// In glibc open, read, pread, write and close are cancellation points: a
// thread of the program with deferred cancellation pending that enters one
// inside remalloc unwinds out of the allocator there, holding whatever lock
// it held (the movers' maps lock, the profiler's lock) and leaving its work
// half done; the next thread to take the lock waits forever. The cancel
// test (tests/process/helpers/cancel_alloc.c, checked build) hung in 1 run
// of 5 so: a thread cancelled in the open() of vma_end_at's reopen of
// /proc/thread-self/maps, the maps lock held, two others waiting on it.
// glibc's own malloc calls its __*_nocancel variants for the same reason;
// these are the same system calls made through syscall(2), which is not a
// cancellation point. errno is set as by the libc functions.
#pragma once
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>

namespace remalloc::sys {

inline int open(const char* path, int flags, int mode = 0) {
  return int(syscall(SYS_openat, AT_FDCWD, path, flags, mode));
}
inline ssize_t read(int fd, void* buf, size_t n) { return ssize_t(syscall(SYS_read, fd, buf, n)); }
inline ssize_t pread(int fd, void* buf, size_t n, off_t off) { return ssize_t(syscall(SYS_pread64, fd, buf, n, off)); }
inline ssize_t write(int fd, const void* buf, size_t n) { return ssize_t(syscall(SYS_write, fd, buf, n)); }
inline int close(int fd) { return int(syscall(SYS_close, fd)); }

}  // namespace remalloc::sys

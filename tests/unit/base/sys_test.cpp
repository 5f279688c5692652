// base/sys.h: remalloc's descriptor calls are not cancellation points. A
// thread with a cancellation request pending (deferred) makes each of them
// and must come out of all of them; it is cancelled at the
// pthread_testcancel after. With the libc functions (open, read, pread,
// write and close are cancellation points) it would unwind at the first.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <pthread.h>

#include <atomic>

#include "base/sys.h"

namespace {

using namespace remalloc;

std::atomic<int> g_reached{0};
std::atomic<bool> g_read_ok{false};

void* body(void*) {
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, nullptr);
  pthread_cancel(pthread_self());  // pending from here on
  pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, nullptr);
  int fd = sys::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  g_reached = 1;
  char buf[64];
  ssize_t n = sys::read(fd, buf, sizeof buf);
  g_reached = 2;
  ssize_t m = sys::pread(fd, buf, sizeof buf, 0);
  g_reached = 3;
  g_read_ok = fd >= 0 && n > 0 && m == n;
  sys::close(fd);
  g_reached = 4;
  int devnull = sys::open("/dev/null", O_WRONLY | O_CLOEXEC);
  ssize_t w = sys::write(devnull, "x", 1);
  sys::close(devnull);
  g_reached = w == 1 ? 5 : -5;
  pthread_testcancel();  // the request is still pending: cancelled here
  g_reached = 6;
  return nullptr;
}

TEST(Sys, DescriptorCallsAreNotCancellationPoints) {
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, nullptr, body, nullptr), 0);
  void* ret = nullptr;
  ASSERT_EQ(pthread_join(t, &ret), 0);
  EXPECT_EQ(ret, PTHREAD_CANCELED) << "the pending request should cancel the thread at pthread_testcancel";
  EXPECT_EQ(g_reached.load(), 5) << "the thread was cancelled inside a call (0 open, 1 read, 2 pread, 3 or 4 close/write)";
  EXPECT_TRUE(g_read_ok.load());
}

}  // namespace

// api.cpp's atfork handlers: the locks remalloc's prepare handler takes are
// held for the thread that forks, and for no other. Two threads that fork
// at once run the prepare handler at once; the second must wait until the
// first one's parent handler has let go. Before the fix the second found
// the first one's "held for fork" flag and its own "I am forking" bit and
// went through, so two forks ran with the page heap unlocked under one of
// them (seen in CI as a failed lock assertion in Fork.SpawnFromManyThreads).
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <thread>

namespace remalloc::api {
void fork_prepare();
void fork_parent();
}  // namespace remalloc::api

namespace {

TEST(ForkHandlers, APrepareOfASecondThreadWaitsForTheFirstOnesParentHandler) {
  std::atomic<bool> first_released{false};
  std::atomic<int> saw_released{-1};
  remalloc::api::fork_prepare();  // this thread "forks" first
  std::thread second([&] {
    remalloc::api::fork_prepare();  // must wait for the parent handler below
    saw_released = first_released.load() ? 1 : 0;
    remalloc::api::fork_parent();
  });
  // Give the second thread time to get past its prepare handler if it
  // could (nothing is timed: a slow machine only makes the test weaker).
  usleep(50 * 1000);
  first_released = true;
  remalloc::api::fork_parent();
  second.join();
  EXPECT_EQ(saw_released.load(), 1) << "the second thread's prepare handler did not wait for the first's parent handler";
}

}  // namespace

// A fixture for unit tests of the page heap: a fresh PageHeap on the fake
// platform per test, with 64 MiB arenas and neither the decay nor the dirty
// cap ever due (nothing is purged unless the test asks), checked by the
// validator and given back after each test.
#pragma once
#include <gtest/gtest.h>

#include <memory>

#include "pages/fake_platform.h"
#include "pages/internal.h"

namespace remalloc::test {

class QuietPageHeap : public ::testing::Test {
 protected:
  QuietPageHeap() {
    pages::Config cfg;
    cfg.arena_bytes = size_t{64} << 20;
    cfg.purge_delay_ns = uint64_t{1} << 60;  // the decay never comes due
    cfg.dirty_max = size_t{1} << 40;         // nor does the dirty cap
    h_->configure(cfg);
  }
  void TearDown() override {
    h_->validate();
    h_->release_all();
  }
  Span* slab(size_t npages) {
    Span* s = h_->alloc_slab(npages);
    EXPECT_NE(s, nullptr);
    return s;
  }

  FakePlatform fake_;
  std::unique_ptr<pages::PageHeap> h_ = std::make_unique<pages::PageHeap>(&fake_);
};

}  // namespace remalloc::test

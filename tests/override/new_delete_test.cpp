// Every C++ operator new / delete variant reaches remalloc: throwing,
// nothrow, sized, aligned (std::align_val_t) and arrays; impossible sizes
// throw std::bad_alloc (or return nullptr for nothrow) and call the
// new-handler first.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "test_alloc.h"
#include "test_util.h"

using tu::opaque;

namespace {

constexpr size_t kImpossible[] = {SIZE_MAX, SIZE_MAX - 15, static_cast<size_t>(PTRDIFF_MAX) + 1,
                                  static_cast<size_t>(PTRDIFF_MAX), size_t{1} << 56};

TEST(NewDelete, ScalarAndArray) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{5000}, 3 * tu::MiB}) {
    void* p = ::operator new(opaque(n));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(remalloc_owns(p), 1) << "operator new(" << n << ")";
    EXPECT_TRUE(tu::is_aligned(p, __STDCPP_DEFAULT_NEW_ALIGNMENT__));
    tu::fill(p, n, n);
    EXPECT_EQ(tu::check(p, n, n), SIZE_MAX);
    ::operator delete(p);

    void* a = ::operator new[](opaque(n));
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(remalloc_owns(a), 1) << "operator new[](" << n << ")";
    tu::fill(a, n, n);
    ::operator delete[](a);
  }
  void* z1 = ::operator new(opaque(size_t{0}));
  void* z2 = ::operator new(opaque(size_t{0}));
  EXPECT_NE(z1, z2) << "operator new(0) must return distinct pointers";
  ::operator delete(z1);
  ::operator delete(z2);
}

TEST(NewDelete, Sized) {
  for (size_t n : {size_t{1}, size_t{24}, size_t{100}, size_t{4096}, size_t{70000}, 5 * tu::MiB}) {
    void* p = ::operator new(opaque(n));
    tu::fill(p, n, 1);
    ::operator delete(p, n);
    void* a = ::operator new[](opaque(n));
    tu::fill(a, n, 2);
    ::operator delete[](a, n);
  }
  // Sized deletes through the language: a class with a sized usual
  // deallocation function and arrays of objects with destructors.
  struct Obj {
    char data[40];
    std::string s = "some string that does not fit SSO buffers at all";
  };
  for (int i = 0; i < 1000; ++i) {
    auto* o = new Obj;
    EXPECT_EQ(remalloc_owns(o), 1);
    delete o;
    auto* arr = new Obj[static_cast<size_t>(i % 17) + 1];
    delete[] arr;
  }
}

TEST(NewDelete, Nothrow) {
  for (size_t n : {size_t{0}, size_t{10}, size_t{100000}, 4 * tu::MiB}) {
    void* p = ::operator new(opaque(n), std::nothrow);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(remalloc_owns(p), 1);
    ::operator delete(p, std::nothrow);
    void* a = ::operator new[](opaque(n), std::nothrow);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(remalloc_owns(a), 1);
    ::operator delete[](a, std::nothrow);
  }
}

TEST(NewDelete, Aligned) {
  for (size_t al = 1; al <= 2 * tu::MiB; al <<= 1) {
    for (size_t n : {size_t{1}, al, al + 1, 3 * al + 5}) {
      auto a = static_cast<std::align_val_t>(al);
      void* p = ::operator new(opaque(n), a);
      ASSERT_NE(p, nullptr);
      ASSERT_TRUE(tu::is_aligned(p, al)) << "operator new(" << n << ", align " << al << ") = " << p;
      EXPECT_EQ(remalloc_owns(p), 1);
      tu::fill(p, n, al);
      ::operator delete(p, a);

      p = ::operator new[](opaque(n), a);
      ASSERT_TRUE(tu::is_aligned(p, al));
      ::operator delete[](p, a);

      p = ::operator new(opaque(n), a);
      ::operator delete(p, n, a);  // sized + aligned
      p = ::operator new[](opaque(n), a);
      ::operator delete[](p, n, a);

      p = ::operator new(opaque(n), a, std::nothrow);
      ASSERT_NE(p, nullptr);
      ASSERT_TRUE(tu::is_aligned(p, al));
      ::operator delete(p, a, std::nothrow);
      p = ::operator new[](opaque(n), a, std::nothrow);
      ASSERT_NE(p, nullptr);
      ASSERT_TRUE(tu::is_aligned(p, al));
      ::operator delete[](p, a, std::nothrow);
    }
  }
  struct alignas(256) Over {
    char c[300];
  };
  for (int i = 0; i < 100; ++i) {
    auto* o = new Over;
    EXPECT_TRUE(tu::is_aligned(o, 256));
    delete o;
    auto* arr = new Over[5];
    EXPECT_TRUE(tu::is_aligned(arr, 256));
    delete[] arr;
  }
}

TEST(NewDelete, DeleteNullIsNoop) {
  ::operator delete(nullptr);
  ::operator delete[](nullptr);
  ::operator delete(nullptr, size_t{0});
  ::operator delete[](nullptr, size_t{0});
  ::operator delete(nullptr, std::nothrow);
  ::operator delete[](nullptr, std::nothrow);
  ::operator delete(nullptr, std::align_val_t{64});
  ::operator delete[](nullptr, std::align_val_t{64});
  ::operator delete(nullptr, size_t{0}, std::align_val_t{64});
  ::operator delete[](nullptr, size_t{0}, std::align_val_t{64});
  ::operator delete(nullptr, std::align_val_t{64}, std::nothrow);
  ::operator delete[](nullptr, std::align_val_t{64}, std::nothrow);
}

TEST(NewDelete, ImpossibleSizeThrowsBadAlloc) {
  for (size_t n : kImpossible) {
    EXPECT_THROW(::operator delete(::operator new(opaque(n))), std::bad_alloc) << n;
    EXPECT_THROW(::operator delete[](::operator new[](opaque(n))), std::bad_alloc) << n;
    EXPECT_THROW(::operator delete(::operator new(opaque(n), std::align_val_t{64}), std::align_val_t{64}),
                 std::bad_alloc)
        << n;
    EXPECT_THROW(::operator delete[](::operator new[](opaque(n), std::align_val_t{4096}), std::align_val_t{4096}),
                 std::bad_alloc)
        << n;
  }
  // new-expressions too: 2^58 elements of 8 bytes reach the allocator as
  // 2^61 bytes (no overflow in the size computation).
  size_t huge = opaque(size_t{1} << 58);
  EXPECT_THROW(delete[] new uint64_t[huge], std::bad_alloc);
  EXPECT_THROW(
      {
        std::vector<char> v;
        v.reserve(opaque(static_cast<size_t>(PTRDIFF_MAX) - 10));
      },
      std::exception);
  // Still fine afterwards.
  auto* ok = new char[100];
  delete[] ok;
}

TEST(NewDelete, ImpossibleSizeNothrowReturnsNull) {
  for (size_t n : kImpossible) {
    EXPECT_EQ(::operator new(opaque(n), std::nothrow), nullptr) << n;
    EXPECT_EQ(::operator new[](opaque(n), std::nothrow), nullptr) << n;
    EXPECT_EQ(::operator new(opaque(n), std::align_val_t{64}, std::nothrow), nullptr) << n;
    EXPECT_EQ(::operator new[](opaque(n), std::align_val_t{1 << 20}, std::nothrow), nullptr) << n;
  }
  size_t huge = opaque(size_t{1} << 58);  // 2^61 bytes
  EXPECT_EQ(new (std::nothrow) uint64_t[huge], nullptr);
}

int g_handler_calls = 0;
void counting_handler() {
  // First call: let the allocator retry; second: give up.
  if (++g_handler_calls >= 2) std::set_new_handler(nullptr);
}
void throwing_handler() {
  ++g_handler_calls;
  throw std::bad_alloc();
}

TEST(NewDelete, NewHandlerIsCalledBeforeThrowing) {
  g_handler_calls = 0;
  std::set_new_handler(counting_handler);
  EXPECT_THROW((void)::operator new(opaque(SIZE_MAX - 100)), std::bad_alloc);
  EXPECT_EQ(g_handler_calls, 2) << "operator new must call the new-handler until it is removed";
  g_handler_calls = 0;
  std::set_new_handler(counting_handler);
  EXPECT_THROW((void)::operator new[](opaque(SIZE_MAX - 100), std::align_val_t{64}), std::bad_alloc);
  EXPECT_EQ(g_handler_calls, 2) << "aligned operator new[] must call the new-handler too";
  g_handler_calls = 0;
  std::set_new_handler(throwing_handler);
  EXPECT_THROW((void)::operator new(opaque(SIZE_MAX - 100), std::align_val_t{128}), std::bad_alloc);
  EXPECT_EQ(g_handler_calls, 1);
  std::set_new_handler(nullptr);
}

TEST(NewDelete, NothrowNewCallsNewHandler) {
  // [new.delete.single]: the nothrow form behaves as if it called the
  // throwing form inside a try block, so it calls the new-handler too and
  // turns a bad_alloc from the handler into nullptr.
  g_handler_calls = 0;
  std::set_new_handler(counting_handler);
  EXPECT_EQ(::operator new(opaque(SIZE_MAX - 100), std::nothrow), nullptr);
  EXPECT_EQ(g_handler_calls, 2) << "nothrow new must call the new-handler until it is removed";
  g_handler_calls = 0;
  std::set_new_handler(throwing_handler);
  EXPECT_EQ(::operator new(opaque(SIZE_MAX - 100), std::nothrow), nullptr)
      << "nothrow new turns the handler's bad_alloc into nullptr";
  EXPECT_EQ(g_handler_calls, 1);
  std::set_new_handler(nullptr);
}

TEST(NewDelete, SmartPointersUseRemalloc) {
  auto up = std::make_unique<std::string>(1000, 'u');
  auto sp = std::make_shared<std::vector<int>>(100000, 5);
  EXPECT_EQ(remalloc_owns(up.get()), 1);
  EXPECT_EQ(remalloc_owns(sp->data()), 1);
  std::unique_ptr<char[]> arr(new char[1 << 20]);
  std::memset(arr.get(), 1, 1 << 20);
}

}  // namespace

// base: bit tricks, assertions, constants. Never allocates, never calls libc's
// allocator. Every other layer includes this.
#pragma once
#include <cstddef>
#include <cstdint>

#ifndef REMALLOC_DEBUG
#define REMALLOC_DEBUG 0
#endif

// The secure build (cmake -DREMALLOC_SECURE=ON): encoded free-list links,
// randomised free-list order in new slabs, guard pages after large blocks
// and slabs. A build option, not a run-time one: see src/README.md.
#ifndef REMALLOC_SECURE
#define REMALLOC_SECURE 0
#endif

#define RM_LIKELY(x) __builtin_expect(!!(x), 1)
#define RM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define RM_NOINLINE __attribute__((noinline))
#define RM_INLINE inline __attribute__((always_inline))
#define RM_COLD __attribute__((cold, noinline))

namespace remalloc {

constexpr bool kSecure = REMALLOC_SECURE != 0;

constexpr size_t kPageShift = 12;
constexpr size_t kPageSize = size_t{1} << kPageShift;
constexpr size_t kHugePageShift = 21;
constexpr size_t kHugePageSize = size_t{1} << kHugePageShift;  // 2 MiB
constexpr size_t kMinAlign = 16;
// Largest size a user may ask for: anything above fails with ENOMEM, as in
// glibc (PTRDIFF_MAX), less room for rounding.
constexpr size_t kMaxAllocSize = (size_t{1} << 46);

RM_INLINE constexpr size_t align_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }
RM_INLINE constexpr size_t align_down(size_t x, size_t a) { return x & ~(a - 1); }
RM_INLINE constexpr bool is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }
RM_INLINE constexpr unsigned log2_floor(size_t x) { return 63u - unsigned(__builtin_clzll(x)); }
RM_INLINE constexpr unsigned log2_ceil(size_t x) { return x <= 1 ? 0 : log2_floor(x - 1) + 1; }
RM_INLINE constexpr size_t pages_of(size_t bytes) { return (bytes + kPageSize - 1) >> kPageShift; }

// Reports a fatal error (message and an address) on stderr and aborts.
[[noreturn]] void fatal(const char* what, const void* addr);
// Reports a warning on stderr.
void warning(const char* what, const void* addr);

}  // namespace remalloc

// Three assertion tiers tied to REMALLOC_DEBUG: cheap (1), internal (2),
// exhaustive (3). All compile to nothing at level 0.
#define RM_CHECK_AT(level, cond)                                     \
  do {                                                               \
    if (REMALLOC_DEBUG >= (level) && RM_UNLIKELY(!(cond)))           \
      ::remalloc::fatal("assertion failed: " #cond " at " __FILE__, \
                        nullptr);                                    \
  } while (0)
#define RM_ASSERT(cond) RM_CHECK_AT(1, cond)
#define RM_ASSERT_INTERNAL(cond) RM_CHECK_AT(2, cond)
#define RM_ASSERT_EXPENSIVE(cond) RM_CHECK_AT(3, cond)

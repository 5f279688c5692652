// override: calls the C++ new-handler for the nothrow forms of operator new,
// which must return nullptr when the handler throws. This file alone is
// compiled with exceptions; the C++ runtime pieces the catch needs are weak
// references (a C++ program, the only kind that calls operator new, has
// them), so libremalloc.so still has no libstdc++ dependency.
// The personality routine is referenced from the unwind tables, not from
// code, so the weak attribute must be given to the assembler directly.
asm(".weak __gxx_personality_v0");
extern "C" {
void* __cxa_begin_catch(void*) noexcept __attribute__((weak));
void __cxa_end_catch() __attribute__((weak));
}

namespace remalloc::cxx {

// Returns false when the handler threw (the exception is swallowed).
__attribute__((visibility("hidden"))) bool call_new_handler_nothrow(void (*handler)()) {
  try {
    handler();
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace remalloc::cxx

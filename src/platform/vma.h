// platform: the VMA budget. Page moves by mremap split VMAs; past
// vm.max_map_count every mmap/mremap in the process fails. remalloc keeps its
// estimate of the process's VMA count under a budget (a quarter of the limit
// unless an option says otherwise) and movers that add VMAs ask first.
#pragma once
#include <cstddef>

namespace remalloc::vma {

// Sets the budget (0: a quarter of vm.max_map_count). Thread-safe.
void set_budget(size_t budget);
size_t budget();
// Current estimate: the last count of /proc/self/maps plus what remalloc
// added since.
size_t estimate();
// May remalloc add `n` VMAs now? Recounts /proc/self/maps when the estimate
// says no (the estimate only ever over-counts).
bool can_add(size_t n);
void note_added(size_t n);
// Something may have lowered the count (a heal, an unmap): recount when next
// at the limit.
void note_changed();
// Recounts now (after healing, or when asked for statistics).
void recount();

}  // namespace remalloc::vma

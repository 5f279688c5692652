// api: statistics — gathering, the text report and the JSON form.
#pragma once
#include <atomic>
#include <cstddef>

namespace remalloc::api {
extern std::atomic<size_t> g_invalid_frees;
// Called at exit when REMALLOC_STATS is set.
void print_stats_at_exit();
}  // namespace remalloc::api

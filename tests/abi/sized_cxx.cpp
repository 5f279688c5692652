// tests/abi/sized.c compiled as C++: the header's remalloc_stats_get macro
// and remalloc_stats_get_sized from a C++ program.
#include "sized.c"

"""pybuild: CPython client of the allocator benchmarks. Grows a bytearray by
4 KiB appends (realloc of one big buffer), a list by append (realloc of its
pointer array), and builds the same bytes with b"".join (one big block);
checks that the two byte strings are equal and that the list is complete,
and prints one RESULT line.

usage: python3 pybuild.py MIB LIST_ITEMS
"""
import json
import os
import sys
import time
import zlib

CHUNK = 4096


def chunks(n):
    # 64 distinct 4 KiB chunks, each led by its index, in a rotating order.
    proto = [bytes([i]) * 8 + bytes([(i * 37) & 0xFF]) * (CHUNK - 8) for i in range(64)]
    return [proto[(i * 7) % 64] for i in range(n)]


def main():
    mib, nlist = int(sys.argv[1]), int(sys.argv[2])
    n = (mib << 20) // CHUNK
    parts = chunks(n)
    t0 = time.perf_counter()
    ba = bytearray()
    for c in parts:
        ba += c
    t1 = time.perf_counter()
    lst = []
    for i in range(nlist):
        lst.append(i)
    t2 = time.perf_counter()
    joined = b"".join(parts)
    t3 = time.perf_counter()
    if len(ba) != n * CHUNK or ba != joined:
        sys.exit("CORRUPTION: bytearray and joined bytes differ")
    if len(lst) != nlist or sum(lst) != nlist * (nlist - 1) // 2:
        sys.exit("CORRUPTION: list contents")
    res = {"workload": "cpython", "region_seconds": t3 - t0, "bytearray_seconds": t1 - t0,
           "list_seconds": t2 - t1, "join_seconds": t3 - t2, "bytes": len(joined),
           "list_items": len(lst), "checksum": zlib.adler32(joined)}
    pre = os.environ.get("LD_PRELOAD", "").split(":")[0].split(" ")[0]
    if pre:
        with open("/proc/self/maps") as f:
            res["preload_mapped"] = int(os.path.basename(pre) in f.read())
    print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()

"""pygrow: a real program for the allocator benchmarks. CPython grows a
large bytearray by appending (realloc of one big buffer), a list by appending
(realloc of its pointer array) and a dict by inserting (new tables, old ones
freed), checks what it built, and prints one RESULT line.

usage: python3 pygrow.py [tiny|short|full] [--threads N]   (N is ignored)
Run it with the interpreter binary itself (not a wrapper script) so that
LD_PRELOAD reaches the interpreter's malloc.
"""
import argparse
import json
import os
import sys
import time

SCALES = {
    # bytearray bytes, list items, dict items
    "tiny": (8 << 20, 200_000, 100_000),
    "short": (96 << 20, 1_500_000, 750_000),
    "full": (2048 << 20, 30_000_000, 10_000_000),
}
CHUNK = 64 << 10


def chunk(i):
    # A 64 KiB chunk whose first 8 bytes carry its index.
    return i.to_bytes(8, "little") + bytes([i & 0xFF]) * (CHUNK - 8)


def grow_bytearray(total):
    ba = bytearray()
    proto = bytes(CHUNK)
    for i in range(total // CHUNK):
        ba += proto
        ba[i * CHUNK:i * CHUNK + 9] = i.to_bytes(8, "little") + bytes([i & 0xFF])
    n = len(ba) // CHUNK
    for i in range(0, n, max(1, n // 512)):
        got = bytes(ba[i * CHUNK:i * CHUNK + 9])
        if got != chunk(i)[:9] or ba[i * CHUNK + CHUNK - 1] != 0:
            sys.exit(f"CORRUPTION: bytearray chunk {i}")
    if len(ba) != total // CHUNK * CHUNK:
        sys.exit("CORRUPTION: bytearray length")


def grow_list(n):
    lst = []
    for i in range(n):
        lst.append(i * 3)
    if len(lst) != n or sum(lst) != 3 * n * (n - 1) // 2:
        sys.exit("CORRUPTION: list contents")


def grow_dict(n):
    d = {}
    for i in range(n):
        d[i * 7] = i
    if len(d) != n or sum(d.values()) != n * (n - 1) // 2 or d[7 * (n - 1)] != n - 1:
        sys.exit("CORRUPTION: dict contents")


def main():
    ap = argparse.ArgumentParser(description="CPython growth workload")
    ap.add_argument("scale", nargs="?", default="short", choices=sorted(SCALES))
    ap.add_argument("--threads", type=int, default=1, help="accepted for uniformity; ignored")
    scale = ap.parse_args().scale
    nbytes, nlist, ndict = SCALES[scale]
    t = [time.perf_counter()]
    grow_bytearray(nbytes)
    t.append(time.perf_counter())
    grow_list(nlist)
    t.append(time.perf_counter())
    grow_dict(ndict)
    t.append(time.perf_counter())
    res = {
        "workload": "python",
        "scale": scale,
        "region_seconds": t[3] - t[0],
        "bytearray_seconds": t[1] - t[0],
        "list_seconds": t[2] - t[1],
        "dict_seconds": t[3] - t[2],
    }
    pre = os.environ.get("LD_PRELOAD", "").split(":")[0].split(" ")[0]
    if pre:
        with open("/proc/self/maps") as f:
            res["preload_mapped"] = int(os.path.basename(pre) in f.read())
    print("RESULT " + json.dumps(res), flush=True)
    if res.get("preload_mapped") == 0:
        sys.exit("FAILED: LD_PRELOAD=%s is not mapped into the process" % pre)


if __name__ == "__main__":
    main()

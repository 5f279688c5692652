"""Allocation-heavy Python workload with a deterministic checksum: large
dicts, lists, strings, bytearrays that grow (realloc) and shrink."""
import hashlib
import sys
import threading

h = hashlib.sha256()
scale = int(sys.argv[1]) if len(sys.argv) > 1 else 1

for round_ in range(3 * scale):
    d = {}
    for i in range(200_000):
        d[f"key-{i}-{round_}"] = [i, str(i * 7), (i, round_)]
    h.update(str(len(d)).encode())
    h.update(repr(d[f"key-{12345}-{round_}"]).encode())
    for i in range(0, 200_000, 2):
        del d[f"key-{i}-{round_}"]
    h.update(str(sum(v[0] for v in d.values())).encode())

    lst = [bytes([i % 251]) * (i % 1000) for i in range(50_000)]
    h.update(b"".join(lst[::97]))
    lst.sort(key=lambda b: (len(b), b[:1]))
    h.update(lst[-1][:16])
    del lst

    # bytearrays that grow to tens of MiB (large reallocs) and shrink
    ba = bytearray()
    for i in range(2000):
        ba += bytes([(i * 31 + round_) % 256]) * (10_000 + i * 13)
    h.update(hashlib.sha256(ba).digest())
    h.update(str(len(ba)).encode())
    del ba[1000:len(ba) - 1000]
    h.update(bytes(ba))
    big = bytearray(64 * 1024 * 1024)
    big[::4096] = b"\x01" * len(big[::4096])
    big.extend(b"tail" * 1000)
    h.update(hashlib.sha256(big).digest())
    del big

    s = "".join(chr(65 + (i % 26)) for i in range(1_000_000))
    h.update(s.upper().lower().encode()[:1000])
    words = s.split("Z")
    h.update(str(len(words)).encode())

# Threads allocating and freeing at once (the GIL interleaves them at every
# few bytecodes, so their blocks mix in the allocator's heaps).
results = {}


def worker(k):
    d = {i: bytearray((i * k) % 256 for _ in range(i % 300)) for i in range(20_000)}
    big = b"".join(bytes(v) for v in d.values())
    parts = [big[i:i + 70_000] for i in range(0, len(big), 70_000)]
    del d
    results[k] = hashlib.sha256(b"|".join(parts)).hexdigest()


threads = [threading.Thread(target=worker, args=(k,)) for k in range(1, 5)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for k in sorted(results):
    h.update(results[k].encode())

print(h.hexdigest())

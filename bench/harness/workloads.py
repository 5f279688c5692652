"""The workload table: every row of the report, its group, its command and
the hooks that prepare its input and check its output."""
import os
import shutil
import subprocess

from . import clients
from .clients import (CLIENT_REPS, clients_script, csize, lua_expect, perl_expect, prog,
                      py_expect, redis_append_phase, redis_mixed_phase, redis_run,
                      sqlite_expect, sqlite_setup)
from .common import HERE, bin_path, clean_env, parse_result, python_exe

# Groups in the order the report gives them.
GROUPS = ["small & multithreaded", "realloc growth", "hugepages", "real programs", "clients"]

# The hugepages group's tables of their own: [key, label, kind, heading].
STALL = ("stall_seconds", "first-touch stall", "time",
         "First-touch stall (the slowest single allocation or realloc plus the first touch "
         "of its first 2 MiB)")
COVERAGE = ("thp_percent", "huge-page coverage", "percent",
            "Huge-page coverage (AnonHugePages / Rss of the buffer's mappings)")
GROWTH = ("grow_seconds", "growth", "time",
          "Growth (realloc to the full size, every new word written, samples checked)")
HUGE_REPS = {"short": 3}


class Workload:
    """One row of the report.

    argv(ctx) gives the command; setup(ctx) runs once before the first
    repetition, check(ctx, run) after every run (it may add to run["result"]
    or set run["error"]); extras are RESULT keys tabulated besides time and
    RSS, as (key, label, kind) with kind "time" or "rss_kib"; a reference
    workload does not depend on the allocator and runs once a round, with
    nothing preloaded. reports=False: the program prints no RESULT line (its
    time is then the wall time). reps: {mode: repetitions} where the
    workload runs fewer than the others (unless --reps is given).

    Programs that are not ours: needs names the programs the workload runs
    (a tuple gives alternatives); when one is missing the workload is skipped
    with a note, and ctx["prog"][name] is the path found. expect(ctx) gives
    RESULT values every run must print exactly; same lists RESULT keys whose
    value must be identical under every allocator (an output checksum).
    own_malloc: the program links an allocator of its own (Debian's
    redis-server links jemalloc), so its glibc row preloads bench_glibcshim.
    run(ctx, preload, env) replaces the single process: it returns what
    run_process returns plus the RESULT dict (see redis_run).
    """

    def __init__(self, name, group, argv, doc, extras=(), setup=None, check=None,
                 env=None, reference=False, reports=True, needs=(), expect=None,
                 same=(), own_malloc=False, run=None, reps=None):
        self.name, self.group, self.argv, self.doc = name, group, argv, doc
        self.reports = reports  # prints a RESULT line
        self.extras = list(extras)
        self.setup, self.check = setup, check
        self.env = env or {}
        self.reference = reference
        self.needs = list(needs)
        self.expect = expect
        self.same = list(same)
        self.own_malloc = own_malloc
        self.run = run
        self.reps = reps or {}  # mode -> repetitions, where not REPS[mode]

    def meta(self, **more):
        """What results.json keeps of the workload: all the report needs."""
        m = {"group": self.group, "doc": self.doc, "reference": self.reference}
        m.update(more)
        m["extras"] = [list(e) for e in self.extras]
        return m


def native(name, *extra):
    return lambda ctx: [bin_path(ctx, "bench_" + name), ctx["scale"], "--threads", str(ctx["threads"])] + list(extra)


def fixed_threads(name, threads):
    """A row at a set number of threads, whatever --threads and the cores."""
    return lambda ctx: [bin_path(ctx, "bench_" + name), ctx["scale"], "--threads", str(threads)]


# Repetitions of the many-thread rows in short mode (six rows; the main
# command must stay short).
MT_REPS = {"short": 3}


def realloc_case(case):
    return native("realloc_growth", "--case", case)


def sort_setup(ctx):
    ctx["sort_input"] = os.path.join(ctx["work_dir"], "sort-input-%s.txt" % ctx["scale"])
    env = clean_env()
    subprocess.run([bin_path(ctx, "bench_sortgen"), "gen", ctx["scale"], ctx["sort_input"]],
                   check=True, stdout=subprocess.DEVNULL, env=env)


def sort_argv(ctx):
    out = os.path.join(ctx["work_dir"], "sort-output.txt")
    return [shutil.which("sort") or "/usr/bin/sort", "--parallel=%d" % ctx["threads"],
            "-T", ctx["work_dir"], "-o", out, ctx["sort_input"]]


def sort_check(ctx, run):
    out = os.path.join(ctx["work_dir"], "sort-output.txt")
    p = subprocess.run([bin_path(ctx, "bench_sortgen"), "check", ctx["sort_input"], out],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    res = parse_result(p.stdout)
    if p.returncode != 0 or res is None:
        run["error"] = "sort output check failed: " + (p.stderr.strip() or "rc %d" % p.returncode)
        return
    run["result"]["checksum"] = res["checksum"]
    run["result"]["lines"] = res["lines"]
    try:
        os.unlink(out)
    except OSError:
        pass


WORKLOADS = [
    Workload("churn", "small & multithreaded", native("churn"),
             "1 thread, small objects of random sizes and lifetimes (interpreter-like)"),
    Workload("larson", "small & multithreaded", native("larson"),
             "server-style: threads replace random blocks, hand blocks to each other and "
             "to their successor threads (~40% of frees remote)"),
    Workload("prodcons", "small & multithreaded", native("prodcons"),
             "producer/consumer pairs, every free remote"),
    Workload("falseshare", "small & multithreaded", native("falseshare"),
             "threads writing their own small blocks: active/passive false sharing, node locality"),
    Workload("frag", "small & multithreaded", native("frag"),
             "big heap of small blocks, 90% freed, other sizes allocated; final RSS",
             extras=[("rss_final_kib", "final RSS", "rss_kib")]),
    Workload("threadchurn", "small & multithreaded", native("threadchurn"),
             "threads come and go: 1,000 (short 250) threads live at once with 160 KiB of small "
             "blocks in 24 classes each, exit; another thread frees every block; malloc_trim(0); "
             "as many threads again start and exit",
             extras=[("overhead_kib_per_thread", "overhead per live thread", "rss_kib"),
                     ("freed_kib", "RSS after the frees", "rss_kib"),
                     ("trimmed_kib", "RSS after malloc_trim", "rss_kib")]),
] + [
    Workload("xthread-%d" % t, "small & multithreaded", fixed_threads("xthread", t),
             "%d threads allocate mixed sizes (16 B..4 KiB) into tables of 512 and hand half of "
             "the blocks they replace to random other threads, which free them; 1M blocks in all "
             "(full 20M)" % t, reps=MT_REPS)
    for t in (8, 32)
] + [
    Workload("threadlife-%d" % t, "small & multithreaded", fixed_threads("threadlife", t),
             "waves of %d short-lived threads, 4,000 allocations (16 B..4 KiB) each; a thread "
             "frees the 256 live blocks an exited thread of the last wave left it; 400 threads "
             "(full 4,000)" % t, reps=MT_REPS)
    for t in (8, 32)
] + [
    Workload("manyprod-%d" % t, "small & multithreaded", fixed_threads("manyprod", t),
             "%d producers, one consumer that checks and frees every block (16 B..4 KiB) from one "
             "lock-free inbox; 500k blocks (full 10M)" % t, reps=MT_REPS)
    for t in (8, 32)
] + [
    Workload("realloc-double", "realloc growth", realloc_case("double"),
             "one buffer doubled 1 MiB -> 1 GiB (short: 256 MiB)",
             extras=[("realloc_seconds", "in realloc", "time")]),
    Workload("realloc-step64k", "realloc growth", realloc_case("step64k"),
             "one buffer grown by 64 KiB steps to 256 MiB (short: 64 MiB)",
             extras=[("realloc_seconds", "in realloc", "time")]),
    Workload("realloc-rr64", "realloc growth", realloc_case("rr64"),
             "64 buffers grown round-robin by 256 KiB to 16 MiB each (short: 4 MiB)",
             extras=[("realloc_seconds", "in realloc", "time")]),
    Workload("realloc-rr64-2t", "realloc growth", realloc_case("rr64_2t"),
             "the rr64 workload in 2 threads at once, 64 buffers each",
             extras=[("realloc_seconds", "in realloc", "time")]),
    Workload("realloc-vector", "realloc growth", realloc_case("vector"),
             "vector/string growth (x2, x1.5) to final sizes 4 KiB..64 MiB (short: 16 MiB)",
             extras=[("realloc_seconds", "in realloc", "time")]),
    Workload("realloc-single-move", "realloc growth", realloc_case("single_move"),
             "realloc(p, 1 GiB + 2 MiB) of a touched 1 GiB block after a second 1 GiB block "
             "was allocated (short: 128 MiB)",
             extras=[("realloc_seconds", "in realloc", "time")]),
    Workload("mremap-reference", "realloc growth", realloc_case("mremap_ref"),
             "no allocator: one mremap(MAYMOVE|FIXED|DONTUNMAP) of 1 GiB between 2 MiB "
             "aligned regions, and memcpy into fresh memory",
             reference=True),
    Workload("fork-after-realloc", "realloc growth", native("forklat"),
             "fork + exit + wait (median of 50) after 64 buffers grew round-robin by 256 KiB to "
             "4 MiB (full: 16 MiB) and half were freed; the VMAs the process had then",
             extras=[("fork_max_seconds", "slowest fork", "time")]),
    Workload("hugebuf-random", "hugepages", native("hugebuf", "--case", "random"),
             "one buffer grown by realloc (x1.5 steps, every new word written) to 1 GiB "
             "(short: 256 MiB), then 32M (short: 8M) random 8-byte read-modify-writes; sum checked",
             extras=[GROWTH, STALL, COVERAGE], reps=HUGE_REPS),
    Workload("hugebuf-scan", "hugepages", native("hugebuf", "--case", "scan"),
             "the same buffer, then 4 sequential sums of all of it, each checked",
             extras=[GROWTH, STALL, COVERAGE], reps=HUGE_REPS),
    Workload("hugechurn", "hugepages", native("hugechurn"),
             "malloc, touch, free of 8 MiB..512 MiB blocks (short: ..64 MiB), two live",
             extras=[STALL, COVERAGE]),
    Workload("python", "real programs",
             lambda ctx: [python_exe(), os.path.join(HERE, "workloads", "pygrow.py"), ctx["scale"]],
             "CPython grows a bytearray, a list and a dict", env={"PYTHONHASHSEED": "0"}),
    Workload("sort", "real programs", sort_argv,
             "GNU sort of a generated text file (16 MiB short), output checked and compared",
             setup=sort_setup, check=sort_check, env={"LC_ALL": "C"}, reports=False),
    Workload("redis-append", "clients", None,
             "redis-server, redis-benchmark: APPEND 1 KiB to one key, 1 client, pipeline 32, "
             "to 384 MiB (short: 16 MiB); STRLEN and ranges checked; server's CPU, faults, RSS; "
             "then BGSAVE: the fork's latest_fork_usec",
             needs=["redis-server", "redis-benchmark"], own_malloc=True, reps=CLIENT_REPS,
             run=redis_run(redis_append_phase),
             extras=[("vmhwm_kib", "server VmHWM", "rss_kib"),
                     ("fork_seconds", "fork latency", "time",
                      "Fork latency (Redis `latest_fork_usec` of a BGSAVE after the APPEND phase)")]),
    Workload("redis-mixed", "clients", None,
             "redis-server, redis-benchmark: SET/GET, LPUSH, HSET, 4 clients, pipeline 16, "
             "values of 16 B, 256 B, 4 KiB over 10000 keys, 64k requests a test (short: 2k), "
             "then LRANGE_100; list length and value sizes checked",
             needs=["redis-server", "redis-benchmark"], own_malloc=True, reps=CLIENT_REPS,
             run=redis_run(redis_mixed_phase)),
    Workload("cpython-build", "clients",
             lambda ctx: [python_exe(), clients_script("pybuild.py"), str(csize(ctx, "py_mib")),
                          str(csize(ctx, "py_list"))],
             "CPython: bytearray += 4 KiB to 512 MiB (short: 16 MiB), list.append, the same "
             "bytes by b''.join; compared and checksummed",
             env={"PYTHONHASHSEED": "0"}, reps=CLIENT_REPS, expect=py_expect, same=["checksum"]),
    Workload("perl-append", "clients",
             lambda ctx: [prog(ctx, "perl"), clients_script("perlappend.pl"),
                          str(csize(ctx, "perl_mib"))],
             "Perl: $s .= 4 KiB piece, to 1 GiB (short: 32 MiB); length, pieces, checksum",
             needs=["perl"], reps=CLIENT_REPS, expect=perl_expect, same=["checksum"]),
    Workload("sqlite", "clients",
             lambda ctx: [prog(ctx, "sqlite3"), "-batch", "-bail", ":memory:",
                          ".read " + ctx["sqlite_script"]],
             "sqlite3 CLI: 1M rows (short: 40k) of varied text, indexed, group_concat over "
             "the table, a third deleted, VACUUM; counts, sums, integrity checked",
             needs=["sqlite3"], reps=CLIENT_REPS, setup=sqlite_setup, expect=sqlite_expect, same=["checksum"]),
    Workload("lua-grow", "clients",
             lambda ctx: [prog(ctx, "lua"), clients_script("luagrow.lua"),
                          str(csize(ctx, "lua_items")), str(csize(ctx, "lua_mib"))],
             "Lua: a table grown to 5M items (short: 200k) and a 2.5M-key hash, "
             "table.concat of 4 KiB pieces to 512 MiB (short: 16 MiB)",
             needs=[("lua5.4", "lua5.3", "lua")], reps=CLIENT_REPS, expect=lua_expect, same=["checksum"]),
]


"""Running: the allocators, the process runner with its VMA sampler and
launcher, one run of a workload and its checks, the microbenchmarks, the
page-fault cost and what the machine is. Everything it measures goes into
results.json; the report is drawn from that file alone."""
import glob
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time

from .common import (RUSAGE_KEYS, ROOT, bin_path, clean_env, parse_result, read_rusage)


# Known allocators: name -> library file names searched in the system's
# library directories (None: glibc, nothing preloaded).
KNOWN = {
    "glibc": None,
    "jemalloc": ["libjemalloc.so.2", "libjemalloc.so"],
    "mimalloc": ["libmimalloc.so.2", "libmimalloc.so"],
    "tcmalloc": ["libtcmalloc_minimal.so.4", "libtcmalloc_minimal.so", "libtcmalloc.so.4"],
    "remalloc": None,  # found next to the build (see find_remalloc)
}
# Built-in variants: a known allocator (None: glibc) run with settings of
# its own, a column of its own.
VARIANTS = {
    # glibc asking for transparent huge pages (madvise on its mmapped chunks
    # and heaps; glibc 2.35+).
    "glibc-hugetlb": (None, {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}),
}
DEFAULT_ALLOCATORS = ["glibc", "jemalloc", "mimalloc", "tcmalloc", "remalloc", "glibc-hugetlb"]
# Allocators of the default set that run in some groups only (named with
# --allocators or as an argument, they run everywhere).
DEFAULT_GROUP_ONLY = {"glibc-hugetlb": ("hugepages",)}

REPS = {"tiny": 1, "short": 5, "full": 3}
TIMEOUT = {"tiny": 120, "short": 300, "full": 3600}
MICRO_MIN_TIME = {"tiny": 0.01, "short": 0.05, "full": 0.5}
# The fault-cost probe (bench_faultcost): MiB first-touched, repetitions.
# Short measures 256 MiB (1 GiB costs several seconds where faults are dear)
# and states the 1 GiB figure at that rate.
FAULTCOST = {"tiny": (64, 1), "short": (256, 1), "full": (1024, 3)}

# ------------------------------------------------------------------ allocators

def lib_dirs():
    dirs = sorted(glob.glob("/usr/lib/*-linux-gnu")) + sorted(glob.glob("/lib/*-linux-gnu"))
    return dirs + ["/usr/lib64", "/usr/lib", "/usr/local/lib"]


def find_library(names):
    for d in lib_dirs():
        for n in names:
            p = os.path.join(d, n)
            if os.path.isfile(p):
                return p
    return None


def find_remalloc(bin_dir, given=None):
    if given:
        return os.path.abspath(given) if os.path.isfile(given) else None
    cands = []
    if bin_dir:
        cands.append(os.path.join(os.path.dirname(os.path.abspath(bin_dir)), "libremalloc.so"))
    cands.append(os.path.join(ROOT, "build", "libremalloc.so"))
    for c in cands:
        if os.path.isfile(c):
            return c
    return None


def resolve_allocators(specs, bin_dir, remalloc=None):
    """Returns ([(name, path or None)], [skip notes])."""
    out, notes, seen = [], [], set()
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        if "=" in spec:
            name, path = spec.split("=", 1)
            path = os.path.abspath(os.path.expanduser(path)) if path else None
            if path and not os.path.isfile(path):
                notes.append("%s: %s not found, skipped" % (name, path))
                continue
        elif spec == "glibc":
            name, path = spec, None
        elif spec in VARIANTS:
            name, path = spec, VARIANTS[spec][0]
        elif spec == "remalloc":
            name, path = spec, find_remalloc(bin_dir, remalloc)
            if not path:
                notes.append("remalloc: %s, skipped" % (
                    "%s not found" % remalloc if remalloc else
                    "libremalloc.so not built (looked next to the bench binaries and in build/)"))
                continue
        elif spec in KNOWN:
            name, path = spec, find_library(KNOWN[spec])
            if not path:
                notes.append("%s: not installed (%s), skipped" % (spec, " or ".join(KNOWN[spec])))
                continue
        else:
            sys.exit("compare: unknown allocator %r: give NAME=/path/to/lib.so or one of %s"
                     % (spec, ", ".join(list(KNOWN) + list(VARIANTS))))
        if name in seen:
            sys.exit("compare: allocator %r given twice" % name)
        seen.add(name)
        out.append((name, path))
    return out, notes


class VmaSampler:
    """Peak VMA count of the workload, sampled: every 10 ms a thread counts
    the lines of /proc/PID/maps of the launcher's child (the workload after
    its exec), or of PID itself when there is no launcher. A sample reads
    maps under the mmap lock for reading, a few microseconds; a peak shorter
    than 10 ms may be missed."""

    def __init__(self, pid, launcher):
        self.pid, self.launcher, self.peak = pid, launcher, None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def target(self):
        if not self.launcher:
            return self.pid
        try:
            with open("/proc/%d/task/%d/children" % (self.pid, self.pid)) as f:
                kids = f.read().split()
            return int(kids[0]) if kids else None
        except (OSError, ValueError):
            return None

    def loop(self):
        child = None
        while not self.stop.is_set():
            if child is None:
                child = self.target()
            if child is not None:
                try:
                    with open("/proc/%d/maps" % child, "rb") as f:
                        n = f.read().count(b"\n")
                    self.peak = n if self.peak is None else max(self.peak, n)
                except OSError:
                    pass
            self.stop.wait(0.01)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.peak


def run_process(ctx, argv, preload, env, timeout):
    """Runs argv with `preload` (None: nothing) through bench_launch; returns
    (rc, wall seconds, usage, stdout, stderr), usage a dict of RUSAGE_KEYS
    (the child's own, from wait4) and vma_peak (VmaSampler)."""
    launch = bin_path(ctx, "bench_launch")
    env = dict(env)
    env.pop("LD_PRELOAD", None)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(prefix="rusage-", dir=ctx["work_dir"]) as ru_file:
        if os.path.isfile(launch):
            full = [launch, ru_file.name, preload or "-"] + argv
        else:  # no launcher: RSS then includes the runner's image (~15 MiB floor)
            full = argv
            if preload:
                env["LD_PRELOAD"] = preload
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdout=out, stderr=err, env=env, cwd=ctx["work_dir"],
                             start_new_session=True)
        def kill():
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
        timer = threading.Timer(timeout, kill)
        timer.start()
        sampler = VmaSampler(p.pid, full is not argv)
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
            vma_peak = sampler.finish()
        wall = time.perf_counter() - t0
        rc = os.waitstatus_to_exitcode(status)
        p.returncode = rc  # reaped here; keep Popen from waiting again
        if full is not argv:
            usage = read_rusage(ru_file.name)
        else:
            usage = {"maxrss_kib": ru.ru_maxrss, "user_seconds": ru.ru_utime,
                     "sys_seconds": ru.ru_stime, "minflt": ru.ru_minflt, "majflt": ru.ru_majflt}
        usage["vma_peak"] = vma_peak
        out.seek(0)
        err.seek(0)
        return (rc, wall, usage, out.read().decode("utf-8", "replace"),
                err.read().decode("utf-8", "replace"))


class Progress:
    def __init__(self, total, quiet=False):
        self.total, self.done, self.t0 = total, 0, time.time()
        self.tty = sys.stderr.isatty()
        self.quiet = quiet

    def show(self, text):
        if self.quiet:
            return
        el = time.time() - self.t0
        eta = ""
        if self.done:
            eta = " eta %s" % fmt_clock(el / self.done * (self.total - self.done))
        line = "[%3d/%d] %s  %s%s" % (self.done + 1, self.total, fmt_clock(el), text, eta)
        if self.tty:
            sys.stderr.write("\r\033[K" + line[:150])
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def note(self, text):
        if self.tty and not self.quiet:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def finish(self):
        if self.tty and not self.quiet:
            sys.stderr.write("\r\033[K")
        sys.stderr.write("compare: %d runs in %s\n" % (self.done, fmt_clock(time.time() - self.t0)))


def fmt_clock(s):
    s = int(s)
    return "%d:%02d" % (s // 60, s % 60)


def usage_fields(usage):
    """The run's usage fields: peak RSS, CPU (user + sys), faults."""
    f = {k: usage.get(k) for k in RUSAGE_KEYS + ("vma_peak",)}
    if f["user_seconds"] is not None and f["sys_seconds"] is not None:
        f["cpu_seconds"] = f["user_seconds"] + f["sys_seconds"]
    else:
        f["cpu_seconds"] = None
    return f


def run_workload(w, ctx, alloc, path, rep, progress):
    env = clean_env()
    env.update(w.env)
    env.update(ctx.get("alloc_env", {}).get(alloc, {}))
    if path is None and w.own_malloc and not w.reference:
        # glibc's row of a program linking another allocator: glibc's malloc
        # through the shim, or the row would measure the linked allocator.
        path = ctx["glibc_shim"]
    progress.show("rep %d/%d  %-20s @ %s" % (rep + 1, ctx["reps"], w.name, alloc))
    if w.run:
        got = w.run(ctx, path, env)
        rc, wall, usage, out, err = got["rc"], got["wall"], got["ru"], got["out"], got["err"]
        result, error = got["result"], got["error"]
    else:
        rc, wall, usage, out, err = run_process(ctx, w.argv(ctx), path, env, ctx["timeout"])
        result, error = parse_result(out) or {}, None
    progress.done += 1
    run = {"workload": w.name, "group": w.group, "allocator": alloc, "rep": rep, "rc": rc,
           "wall_seconds": wall}
    run.update(usage_fields(usage))
    run["result"] = result
    if path:
        run["preload"] = path
    if error:
        run["error"] = error
        run["stderr_tail"] = err[-2000:]
    elif rc != 0:
        run["error"] = "exit status %d" % rc
        run["stderr_tail"] = err[-2000:]
    elif not run["result"] and w.reports:
        run["error"] = "no RESULT line"
    elif run["result"].get("preload_mapped") == 0:
        run["error"] = "LD_PRELOAD=%s did not take (not in /proc/self/maps)" % path
    elif "cannot be preloaded" in err:
        run["error"] = "LD_PRELOAD=%s did not take: %s" % (path, err.strip()[-300:])
    if "error" not in run and w.expect:
        want = w.expect(ctx)
        bad = ["%s = %r, expected %r" % (k, run["result"].get(k), v)
               for k, v in want.items() if run["result"].get(k) != v]
        if bad:
            run["error"] = "wrong output: " + "; ".join(bad)
            run["stdout_tail"] = out[-1000:]
    if "error" not in run and w.check:
        w.check(ctx, run)
    if "error" in run:
        progress.note("compare: FAILED %s @ %s (rep %d): %s\n%s"
                      % (w.name, alloc, rep + 1, run["error"], run.get("stderr_tail", "").strip()))
    return run


def rotated(seq, k):
    if not seq:
        return seq
    k %= len(seq)
    return seq[k:] + seq[:k]


def micro_reps(reps):
    return min(reps, 3)  # each run already repeats every benchmark until stable


def run_micro(ctx, allocs, progress):
    exe = bin_path(ctx, "bench_micro")
    if not os.path.isfile(exe):
        progress.note("compare: %s not built (Google Benchmark missing?), --micro skipped" % exe)
        return None
    runs = []
    reps = micro_reps(ctx["reps"])
    for rep in range(reps):
        for alloc, path in rotated(allocs, rep):
            progress.show("rep %d/%d  %-20s @ %s" % (rep + 1, reps, "micro", alloc))
            argv = [exe, "--benchmark_format=json",
                    "--benchmark_min_time=%g" % MICRO_MIN_TIME[ctx["scale"]]]
            env = clean_env()
            env.update(ctx.get("alloc_env", {}).get(alloc, {}))
            rc, wall, usage, out, err = run_process(ctx, argv, path, env, ctx["timeout"])
            progress.done += 1
            entry = {"allocator": alloc, "rep": rep, "rc": rc, "wall_seconds": wall}
            entry.update(usage_fields(usage))
            entry["benchmarks"] = []
            if rc != 0:
                entry["error"] = "exit status %d" % rc
                entry["stderr_tail"] = err[-2000:]
                progress.note("compare: FAILED micro @ %s: %s" % (alloc, err[-500:]))
            else:
                try:
                    data = json.loads(out)
                    for b in data.get("benchmarks", []):
                        if b.get("run_type", "iteration") != "iteration":
                            continue
                        scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
                        entry["benchmarks"].append({"name": b["name"],
                                                    "real_ns": b["real_time"] * scale,
                                                    "cpu_ns": b["cpu_time"] * scale})
                except (ValueError, KeyError) as e:
                    entry["error"] = "bad benchmark JSON: %s" % e
            runs.append(entry)
    return runs



def measure_fault_cost(ctx):
    """What a first-touch page fault costs on this machine: bench_faultcost
    maps fresh memory and writes one byte per 4 KiB page."""
    exe = bin_path(ctx, "bench_faultcost")
    if not os.path.isfile(exe):
        sys.stderr.write("compare: note: %s not built, fault cost not measured\n" % exe)
        return None
    mib, reps = FAULTCOST[ctx["scale"]]
    sys.stderr.write("compare: measuring the page-fault cost (first touch of %d MiB)\n" % mib)
    p = subprocess.run([exe, str(mib), str(reps)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=clean_env())
    res = parse_result(p.stdout)
    if p.returncode != 0 or not res:
        sys.stderr.write("compare: note: bench_faultcost failed: %s\n" % p.stderr.strip())
        return None
    return res



def read_first_line(path):
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return None


def package_version(path):
    """'PACKAGE VERSION' of the Debian package that installed path, or None."""
    cands = [path, os.path.realpath(path)]
    cands += [c.replace("/usr/lib/", "/lib/", 1) for c in list(cands) if c.startswith("/usr/lib/")]
    for c in cands:
        try:
            p = subprocess.run(["dpkg", "-S", c], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if p.returncode == 0 and ":" in p.stdout:
            pkg = p.stdout.split(": ", 1)[0].split(",")[0].strip()
            q = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            if q.returncode == 0:
                return "%s %s" % (pkg, q.stdout.strip())
    return None


def source_version(path):
    """The git commit of the tree a library was built from, when it lies in
    this repository (with -dirty when the tree has changes)."""
    if not os.path.realpath(path).startswith(ROOT + os.sep):
        return None
    try:
        p = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return "git " + p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None


def machine_info(allocs):
    """What results.json records of the machine besides the fault cost: the
    transparent huge page settings and every allocator's version."""
    thp = {}
    for key in ("enabled", "defrag"):
        line = read_first_line("/sys/kernel/mm/transparent_hugepage/%s" % key)
        if line:
            m = re.search(r"\[(\S+)\]", line)
            thp[key] = m.group(1) if m else line
    versions = {}
    glibc = "glibc %s" % platform.libc_ver()[1]
    for name, path in allocs:
        if path is None:
            versions[name] = glibc
        else:
            versions[name] = package_version(path) or source_version(path) or "unknown"
    return {"thp": thp, "allocator_versions": versions, "python": platform.python_version()}

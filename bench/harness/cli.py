"""bench/compare's command line: runs the selected workloads under every
allocator, writes results.json, then draws the report from it (report.py);
--report-only draws the report from a results.json written before."""
import argparse
import json
import os
import platform
import re
import shutil
import sys
import time

from . import report, runner
from .common import HERE, ROOT
from .runner import (DEFAULT_ALLOCATORS, DEFAULT_GROUP_ONLY, KNOWN, REPS, TIMEOUT, VARIANTS,
                     Progress, machine_info,
                     measure_fault_cost, micro_reps, resolve_allocators, rotated, run_micro,
                     run_workload)
from .stats import summarize, summarize_micro
from .workloads import GROUPS, WORKLOADS

DOC = """Runs remalloc's benchmark workloads under several allocators and compares.

Every workload runs as the same binary under each allocator, chosen with
LD_PRELOAD (glibc: nothing preloaded). Repetitions are interleaved: each
round runs every workload once under every allocator, in an order that
rotates from round to round, so slow drift of a noisy machine spreads over
all allocators alike. For each workload and allocator the report gives the
median and the spread (min..max) of the time inside the measured region (the
workload's own RESULT line; wall time where it reports none), the wall time,
peak RSS (ru_maxrss of the child from wait4) and the peak VMA count
(/proc/PID/maps lines, sampled every 10 ms).

Outputs in --out (default bench/results): results.json (every run, raw, and
the machine it ran on: the contract between running and reporting),
results.md (a table per group, each value relative to the best allocator,
and a geometric mean per allocator), and one chart per group; both drawn
from results.json alone, so `--report-only results.json` draws them again.

  bench/compare --short                       # every group: ~13 min of CPU on 2 cores
  bench/compare --tiny --allocators glibc,jemalloc
  bench/compare --full --only 'realloc' mine=/path/to/libmine.so
  bench/compare --report-only bench/results/results.json --out /tmp/report
"""


def find_bin_dir(given):
    cands = [given] if given else [os.environ.get("REMALLOC_BENCH_BIN"),
                                   os.path.join(ROOT, "build", "bench"),
                                   os.path.join(ROOT, "build-compare", "bench"),
                                   os.path.join(ROOT, "build-bench", "bench"),
                                   os.path.join(ROOT, "build-bench")]
    for c in cands:
        if c and os.path.isfile(os.path.join(c, "bench_churn")):
            return os.path.abspath(c)
    sys.exit("compare: no benchmark binaries found (looked in %s); build them first:\n"
             "  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2\n"
             "or give --bin-dir" % ", ".join(c for c in cands if c))


def main():
    ap = argparse.ArgumentParser(
        description=DOC.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Allocators: glibc, jemalloc, mimalloc, tcmalloc, remalloc, glibc-hugetlb (glibc "
               "with GLIBC_TUNABLES=glibc.malloc.hugetlb=1; by default in the hugepages group "
               "only), or NAME=/path/lib.so; those not installed are skipped with a note.")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--tiny", dest="mode", action="store_const", const="tiny",
                      help="seconds; for tests")
    mode.add_argument("--short", dest="mode", action="store_const", const="short",
                      help="every group at small sizes (default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="the sizes the workloads are named for; long")
    ap.add_argument("allocator", nargs="*", help="more allocators: NAME or NAME=/path/lib.so")
    ap.add_argument("--allocators", help="comma-separated list (default: %s)"
                    % ",".join(DEFAULT_ALLOCATORS))
    ap.add_argument("--reps", type=int, help="repetitions (default: tiny 1, short 5, full 3)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="threads for multithreaded workloads (default: nproc)")
    ap.add_argument("--only", help="regular expression(s), comma-separated, matched against "
                    "workload and group names")
    ap.add_argument("--out", default=os.path.join(HERE, "results"),
                    help="output folder (default: bench/results)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME:VAR=VALUE",
                    help="an environment variable for one allocator's runs only (repeatable), "
                    "e.g. to compare settings of one library: rd1s=build/libremalloc.so "
                    "--env rd1s:REMALLOC_PURGE_DELAY=1000")
    ap.add_argument("--bin-dir", help="folder of the bench_* binaries (default: build/bench)")
    ap.add_argument("--remalloc", metavar="PATH",
                    help="the library the name 'remalloc' stands for (default: libremalloc.so "
                    "next to the bench binaries' build, else build/libremalloc.so)")
    ap.add_argument("--micro", action="store_true",
                    help="also run the Google Benchmark microbenchmarks under each allocator")
    ap.add_argument("--no-charts", action="store_true", help="skip the charts")
    ap.add_argument("--chart-format", choices=("svg", "png"), default="svg",
                    help="chart file format (default: svg)")
    ap.add_argument("--list", action="store_true", help="list the workloads and exit")
    ap.add_argument("--report-only", metavar="RESULTS_JSON",
                    help="run nothing: draw results.md and the charts again from a results.json "
                    "(into --out, default: the folder of RESULTS_JSON)")
    ap.add_argument("--quiet", action="store_true", help="no progress line")
    ap.add_argument("--no-fault-cost", action="store_true",
                    help="skip measuring what a page fault costs here (bench_faultcost)")
    ap.add_argument("--skip-status", type=int, metavar="N",
                    help="exit with status N (when nothing failed) if a workload was skipped "
                    "because a program it needs is missing (for ctest's SKIP_RETURN_CODE)")
    args = ap.parse_args()
    args.mode = args.mode or "short"

    if args.report_only:
        return report_only(args, ap)

    if args.list:
        for w in WORKLOADS:
            print("%-22s %-22s %s" % (w.name, w.group, w.doc))
        return 0

    workloads = WORKLOADS
    if args.only:
        pats = [re.compile(p) for p in args.only.split(",") if p]
        workloads = [w for w in WORKLOADS
                     if any(p.search(w.name) or p.search(w.group) for p in pats)]
        if not workloads:
            sys.exit("compare: --only %r matches no workload (see --list)" % args.only)

    bin_dir = find_bin_dir(args.bin_dir)
    specs = (args.allocators.split(",") if args.allocators else
             ([] if args.allocator else DEFAULT_ALLOCATORS)) + args.allocator
    allocs, notes = resolve_allocators(specs, bin_dir, args.remalloc)
    for n in notes:
        sys.stderr.write("compare: note: %s\n" % n)
    if not allocs:
        sys.exit("compare: no allocator to run")

    # Programs the selected workloads need; a workload whose program is
    # missing is skipped with a note.
    progs, missing = {}, []
    kept = []
    for w in workloads:
        lacking = []
        for need in w.needs:
            alts = need if isinstance(need, tuple) else (need,)
            found = next((shutil.which(a) for a in alts if shutil.which(a)), None)
            if found:
                for a in alts:
                    progs[a] = found
            else:
                lacking.append(" or ".join(alts))
        if lacking:
            missing.append(w.name)
            msg = "%s: %s not found, workload skipped (bash cmake/install-deps.sh installs it)" % (
                w.name, ", ".join(lacking))
            notes.append(msg)
            sys.stderr.write("compare: note: %s\n" % msg)
        else:
            kept.append(w)
    workloads = kept
    if not workloads:
        sys.stderr.write("compare: every selected workload lacks a program\n")
        return args.skip_status if args.skip_status is not None else 1

    # The default set's group-only allocators (glibc-hugetlb) run in their
    # groups only, and not at all when none of those was selected.
    group_only = DEFAULT_GROUP_ONLY if not args.allocators and not args.allocator else {}

    def walloc(w):
        return [(a, p) for a, p in allocs if a not in group_only or w.group in group_only[a]]
    allocs = [x for x in allocs if any(x in walloc(w) for w in workloads if not w.reference)
              or x[0] not in group_only]

    out_dir = os.path.abspath(args.out)
    work_dir = os.path.join(out_dir, "work")
    os.makedirs(work_dir, exist_ok=True)
    reps = args.reps or REPS[args.mode]
    alloc_env = {}
    for a, _ in allocs:
        if a in VARIANTS:
            env = dict(VARIANTS[a][1])
            if "GLIBC_TUNABLES" in env and os.environ.get("GLIBC_TUNABLES"):
                env["GLIBC_TUNABLES"] = os.environ["GLIBC_TUNABLES"] + ":" + env["GLIBC_TUNABLES"]
            alloc_env[a] = env
    for spec in args.env:
        name, sep, assign = spec.partition(":")
        var, eq, value = assign.partition("=")
        if not sep or not eq or not var or name not in [a for a, _ in allocs]:
            sys.exit("compare: --env %r: expected NAME:VAR=VALUE with NAME one of the allocators" % spec)
        alloc_env.setdefault(name, {})[var] = value
    ctx = {"alloc_env": alloc_env,
           "scale": args.mode, "threads": args.threads, "bin_dir": bin_dir, "work_dir": work_dir,
           "reps": reps, "timeout": TIMEOUT[args.mode], "prog": progs,
           "glibc_shim": os.path.join(bin_dir, "libbench_glibcshim.so")}
    if any(w.own_malloc for w in workloads) and "glibc" in [a for a, _ in allocs] \
            and not os.path.isfile(ctx["glibc_shim"]):
        sys.exit("compare: %s not built; build the bench targets again" % ctx["glibc_shim"])

    for w in workloads:
        if w.setup:
            w.setup(ctx)

    fault_cost = None if args.no_fault_cost else measure_fault_cost(ctx)
    machine = machine_info(allocs)  # before the runs: the tree may change meanwhile

    def wreps(w):
        return reps if args.reps else w.reps.get(args.mode, reps)

    micro_allocs = [x for x in allocs if x[0] not in group_only]
    total = sum(wreps(w) * (1 if w.reference else len(walloc(w))) for w in workloads)
    total += micro_reps(reps) * len(micro_allocs) if args.micro else 0
    progress = Progress(total, args.quiet)
    runs = []
    for rep in range(reps):
        for i, w in enumerate(workloads):
            if rep >= wreps(w):
                continue
            if w.reference:
                runs.append(run_workload(w, ctx, "(none)", None, rep, progress))
                continue
            for alloc, path in rotated(walloc(w), rep + i):
                runs.append(run_workload(w, ctx, alloc, path, rep, progress))
    micro_runs = run_micro(ctx, micro_allocs, progress) if args.micro else None
    progress.finish()

    # The same input must give the same output under every allocator.
    for w in workloads:
        for key in (["checksum"] if w.name == "sort" else []) + w.same:
            vals = {json.dumps(r["result"].get(key)) for r in runs
                    if r["workload"] == w.name and "error" not in r}
            if len(vals) > 1:
                for r in runs:
                    if r["workload"] == w.name:
                        r["error"] = "%s %s differs between allocators: %s" % (
                            w.name, key, sorted(vals))
                progress.note("compare: FAILED %s: %s differs between allocators" % (w.name, key))

    names = [a for a, _ in allocs]
    failed = [r for r in runs if "error" in r] + [m for m in (micro_runs or []) if "error" in m]
    meta = {
        "mode": args.mode, "reps": reps, "threads": args.threads,
        "host": "%s, %d CPUs" % (platform.node(), os.cpu_count() or 0),
        "kernel": platform.release(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "allocators": {a: p for a, p in allocs}, "bin_dir": bin_dir, "notes": list(notes),
        "groups": GROUPS,
        "workloads": {w.name: w.meta(reps=wreps(w), **({} if w.reference else {
            "allocators": [a for a, _ in walloc(w)]})) for w in workloads},
        "allocator_env": alloc_env,
        "failed_runs": len(failed),
        "fault_cost": fault_cost,
        "skipped_workloads": missing,
        "argv": sys.argv[1:],
    }
    meta.update(machine)
    if failed:
        meta["notes"].append("%d run(s) failed; see results.json" % len(failed))
    # The medians, for readers of results.json; the report computes them
    # again from the runs.
    summary = summarize(runs, meta["workloads"], names)
    micro = summarize_micro(micro_runs)
    doc = {"meta": meta, "summary": summary, "micro": micro, "runs": runs,
           "micro_runs": micro_runs}
    results_json = os.path.join(out_dir, "results.json")
    with open(results_json, "w") as f:
        json.dump(doc, f, indent=1)

    results_md, charts, doc = report.render(results_json, out_dir, args.chart_format,
                                            not args.no_charts)
    report.print_summary(results_md, results_json, charts, doc, out_dir)
    if failed:
        sys.stderr.write("compare: %d run(s) FAILED\n" % len(failed))
        return 1
    if missing and args.skip_status is not None:
        return args.skip_status
    return 0


def report_only(args, ap):
    """--report-only RESULTS_JSON: the report again, nothing run."""
    src = os.path.abspath(args.report_only)
    if not os.path.isfile(src):
        sys.exit("compare: --report-only: %s not found" % src)
    out_given = any(a == "--out" or a.startswith("--out=") for a in sys.argv[1:])
    out_dir = os.path.abspath(args.out) if out_given else os.path.dirname(src)
    results_md, charts, doc = report.render(src, out_dir, args.chart_format, not args.no_charts)
    report.print_summary(results_md, src, charts, doc, out_dir)
    return 1 if doc["meta"].get("failed_runs") else 0

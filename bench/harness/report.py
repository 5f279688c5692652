"""Reporting: results.md and the charts, drawn from results.json alone, so
that `bench/compare --report-only results.json` gives the same report again
without running anything."""
import json
import os
import subprocess
import sys

from .common import HERE
from .stats import geomean, summarize, summarize_micro

# ------------------------------------------------------------------ report

def fmt_time(s):
    if s is None:
        return "-"
    if s >= 1:
        return "%.2f s" % s
    if s >= 1e-3:
        return "%.1f ms" % (s * 1e3)
    return "%.0f µs" % (s * 1e6)


def fmt_mib(kib):
    if kib is None:
        return "-"
    if kib < 1024:
        return "%.0f KiB" % kib
    return "%.0f MiB" % (kib / 1024.0) if kib >= 10240 else "%.1f MiB" % (kib / 1024.0)


def spread(st):
    if not st or st["n"] < 2 or st["median"] <= 0:
        return ""
    return " ±%.0f%%" % (50.0 * (st["max"] - st["min"]) / st["median"])


def fmt_ratio(r):
    if r is None:
        return "-"
    if r >= 100:
        return "×%.0f" % r
    if r >= 10:
        return "×%.1f" % r
    if r >= 0.1:
        return "×%.2f" % r
    return "×%.2g" % r


def fmt_count(n):
    if n is None:
        return "-"
    if n >= 1e6:
        return "%.2fM" % (n / 1e6)
    if n >= 1e4:
        return "%.0fk" % (n / 1e3)
    if n >= 1e3:
        return "%.1fk" % (n / 1e3)
    return "%.0f" % n


def fmt_ns(ns):
    if ns >= 1e6:
        return "%.2f ms" % (ns / 1e6)
    if ns >= 1e3:
        return "%.1f µs" % (ns / 1e3)
    return "%.1f ns" % ns



def metric_rows(group_wl, summary, names, metric):
    """Rows of (label, {alloc: stats}) for one metric kind of a group."""
    rows = []
    for w in group_wl:
        per = summary.get(w.name, {})
        if metric in ("time", "wall", "cpu", "minflt", "vmas"):
            rows.append((w.name, {a: per[a][metric] for a in names
                                  if a in per and per[a].get(metric)}))
        elif metric == "rss":
            rows.append((w.name, {a: per[a]["maxrss_kib"] for a in names if a in per}))
        for key, label, kind, *heading in w.extras:
            if heading:  # a table of its own (extra_table)
                continue
            if (metric == "rss" and kind == "rss_kib") or (metric == key):
                vals = {a: per[a]["result_stats"][key] for a in names
                        if a in per and key in per[a]["result_stats"]}
                rows.append(("%s (%s)" % (w.name, label), vals))
    return rows


def ratio_table(rows, names, fmt, lines, floor=1e-12):
    """A Markdown table: value, ratio to the row's best, spread; geomean row.
    Values below floor count as floor in the ratios."""
    lines.append("| workload | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    ratios = {a: [] for a in names}
    for label, vals in rows:
        meds = {a: st["median"] for a, st in vals.items() if st}
        if not meds:
            continue
        best = min(meds.values())
        cells = []
        for a in names:
            if a not in meds:
                cells.append("-")
                continue
            r = max(meds[a], floor) / max(best, floor)
            ratios[a].append(r)
            cell = "%s %s%s" % (fmt(meds[a]), fmt_ratio(r), spread(vals[a]))
            cells.append("**%s**" % cell if meds[a] == best else cell)
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    gm = {a: geomean(ratios[a]) for a in names}
    lines.append("| *geometric mean ×best* | " + " | ".join(
        "*%s*" % fmt_ratio(gm[a]) if gm[a] else "-" for a in names) + " |")
    lines.append("")
    return gm


def extra_headings(group_wl):
    """The extras of a group that have a table of their own, in order:
    [(heading, kind, label)]; the label names the table in the summary."""
    out = []
    for w in group_wl:
        for key, label, kind, *heading in w.extras:
            if heading and heading[0] not in [h for h, _, _ in out]:
                out.append((heading[0], kind, label))
    return out


def extra_table_rows(group_wl, summary, names, heading):
    rows = []
    for w in group_wl:
        per = summary.get(w.name, {})
        for key, label, kind, *h in w.extras:
            if h and h[0] == heading:
                rows.append((w.name, {a: per[a]["result_stats"][key] for a in names
                                      if a in per and key in per[a]["result_stats"]}))
    return rows


def value_table(rows, names, fmt, lines):
    """A Markdown table of medians and spreads (in the value's own unit),
    no ratios: for figures where neither lower nor higher is simply better."""
    lines.append("| workload | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for label, vals in rows:
        if not any(vals.values()):
            continue
        cells = []
        for a in names:
            st = vals.get(a)
            if not st:
                cells.append("-")
                continue
            cell = fmt(st["median"])
            if st["n"] > 1 and st["max"] > st["min"]:
                cell += " (%s..%s)" % (fmt(st["min"]), fmt(st["max"]))
            cells.append(cell)
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    lines.append("")


def fmt_percent(v):
    return "-" if v is None else "%.0f%%" % v


class Row:
    """One workload of results.json's meta.workloads, as the report sees it."""

    def __init__(self, name, m, known):
        self.name, self.group, self.doc = name, m["group"], m["doc"]
        self.reference = m.get("reference", False)
        extras = m.get("extras")
        if extras is None:  # results.json written before the extras were stored:
            # the rows of that time (tables of their own came with the list)
            extras = [e for e in known.extras if len(e) == 3] if known else []
        self.extras = [tuple(e) for e in extras]
        self.allocators = m.get("allocators")


GROUP_NOTES = {
    "clients": "Time is the measured region (for redis: the redis-benchmark runs; for "
               "`sqlite` and `lua-grow`, which time nothing themselves, the wall time). "
               "For redis, CPU time, faults and peak RSS are the server's alone (the "
               "clients run with nothing preloaded). Debian's redis-server links "
               "jemalloc, so its glibc row preloads `libbench_glibcshim.so`, which "
               "sends malloc & co. to glibc's `__libc_malloc` & co.; the other "
               "allocators interpose on the linked jemalloc's malloc by preloading "
               "(only jemalloc-specific calls such as `mallctl`, `nallocx` still reach "
               "the linked jemalloc). Every client's output is checked; a wrong one "
               "fails the row.",
}


def write_markdown(path, doc, summary, names, micro, charts, notes):
    from .workloads import WORKLOADS
    meta = doc["meta"]
    known = {w.name: w for w in WORKLOADS}
    workloads = [Row(n, m, known.get(n)) for n, m in meta["workloads"].items()]
    L = []
    L.append("# remalloc benchmark report")
    L.append("")
    L.append("Mode `%s`, %d repetition(s) interleaved, %d thread(s), %s, kernel %s, %s."
             % (meta["mode"], meta["reps"], meta["threads"], meta["host"], meta["kernel"],
                meta["date"]))
    L.append("")
    aenv = meta.get("allocator_env") or {}
    L.append("Allocators: " + ", ".join(
        "%s (%s)" % (a, ", ".join([p or "no preload"] + ["%s=%s" % kv for kv in
                                                         sorted(aenv.get(a, {}).items())]))
        for a, p in meta["allocators"].items()) + ".")
    thp = meta.get("thp")
    if thp:
        L.append("")
        L.append("Transparent huge pages: `enabled` %s, `defrag` %s."
                 % (thp.get("enabled", "?"), thp.get("defrag", "?")))
    for n in notes:
        L.append("")
        L.append("Note: " + n)
    L.append("")
    fc = meta.get("fault_cost")
    if fc:
        L.append("Page faults on this machine (`bench_faultcost`, no allocator): first touch of "
                 "%s of fresh anonymous memory, one write per 4 KiB page (%d minor faults), "
                 "took **%s**%s, %s per fault%s. Read the fault counts below with this price: "
                 "on a machine where faults cost less, the rows that fault more lose less."
                 % (fmt_mib(fc["bytes"] / 1024), fc["minflt"], fmt_time(fc["seconds"]),
                    fault_gib_note(fc), fmt_time(fc["ns_per_page"] * 1e-9),
                    " (median of %d)" % fc["reps"] if fc["reps"] > 1 else ""))
        p1, p4 = fc.get("populate_ns_per_page_1", -1), fc.get("populate_ns_per_page_4", -1)
        if p1 > 0 and p4 > 0:
            L.append("")
            L.append("The same pages populated with `MADV_POPULATE_WRITE` and then written (remalloc's "
                     "prefault of fresh slab pages; the kernel still counts them as minor faults): %s a "
                     "page one page a call, %s a page four pages a call; %s a call on pages already "
                     "resident."
                     % (fmt_time(p1 * 1e-9), fmt_time(p4 * 1e-9),
                        fmt_time(fc.get("populate_resident_ns", 0) * 1e-9)))
        L.append("")
    L.append("Each cell: the median, its ratio to the best allocator of the row (×1.00 is "
             "best, in bold), and the spread ±(max−min)/2 as a share of the median. Time is "
             "the time inside the workload's measured region (wall time where a program "
             "reports none); wall time is the whole process; CPU time is user + system time "
             "of the process (getrusage of the child); minor faults are its ru_minflt; RSS "
             "is its peak resident set (ru_maxrss); peak VMAs are the most lines of "
             "/proc/PID/maps seen, sampled every 10 ms. The last row "
             "of each table is the geometric mean of the ratios over the group: lower is "
             "better.")
    L.append("")
    geo = {}
    # results.json of before the list of groups had the group "huge"
    groups = list(meta.get("groups") or
                  ["small & multithreaded", "realloc growth", "huge", "real programs", "clients"])
    groups += [w.group for w in workloads if w.group not in groups]
    all_names = names
    for g in groups:
        gw = [w for w in workloads if w.group == g and not w.reference]
        refs = [w for w in workloads if w.group == g and w.reference]
        if not gw and not refs:
            continue
        # The allocators that ran this group (an allocator may run in one
        # group only, as glibc-hugetlb does by default).
        names = [a for a in all_names
                 if any(w.allocators is None or a in w.allocators for w in gw)]
        L.append("## %s" % g)
        L.append("")
        for w in gw:
            L.append("- `%s`: %s" % (w.name, w.doc))
        L.append("")
        greps = {meta["workloads"][w.name].get("reps", meta["reps"]) for w in gw}
        if greps and greps != {meta["reps"]}:
            L.append("Repetitions in this group: %s." % ", ".join(str(r) for r in sorted(greps)))
            L.append("")
        if g in GROUP_NOTES:
            L.append(GROUP_NOTES[g])
            L.append("")
        if gw:
            L.append("### Time")
            L.append("")
            geo.setdefault(g, {})["time"] = ratio_table(metric_rows(gw, summary, names, "time"),
                                                        names, fmt_time, L)
            if any(per.get("time_is_region") for w in gw
                   for per in summary.get(w.name, {}).values()):
                L.append("### Wall time")
                L.append("")
                L.append("The whole process, start to exit%s." % (
                    "; for redis the server's life, from its start to its exit after SIGTERM"
                    if g == "clients" else ""))
                L.append("")
                geo[g]["wall"] = ratio_table(metric_rows(gw, summary, names, "wall"),
                                             names, fmt_time, L)
            L.append("### CPU time (user + sys)")
            L.append("")
            geo[g]["cpu"] = ratio_table(metric_rows(gw, summary, names, "cpu"),
                                        names, fmt_time, L, floor=1e-3)
            L.append("### Minor page faults")
            L.append("")
            geo[g]["minflt"] = ratio_table(metric_rows(gw, summary, names, "minflt"),
                                           names, fmt_count, L, floor=1)
            if any(e[0] == "realloc_seconds" for w in gw for e in w.extras):
                L.append("### Time inside realloc")
                L.append("")
                L.append("Only the realloc calls, touching and checking the new tail excluded.")
                L.append("")
                geo[g]["realloc"] = ratio_table(
                    metric_rows(gw, summary, names, "realloc_seconds"), names, fmt_time, L)
            for heading, kind, label in extra_headings(gw):
                rows = extra_table_rows(gw, summary, names, heading)
                if not any(vals for _, vals in rows):
                    continue
                L.append("### %s" % heading)
                L.append("")
                if kind == "percent":
                    value_table(rows, names, fmt_percent, L)
                else:
                    geo[g][label] = ratio_table(
                        rows, names, {"time": fmt_time, "rss_kib": fmt_mib}.get(kind, fmt_count), L)
            L.append("### Peak RSS")
            L.append("")
            geo[g]["rss"] = ratio_table(metric_rows(gw, summary, names, "rss"), names, fmt_mib, L)
            vrows = metric_rows(gw, summary, names, "vmas")
            if any(vals for _, vals in vrows):
                L.append("### Peak VMAs")
                L.append("")
                L.append("Lines of /proc/PID/maps of the workload, sampled every 10 ms.")
                L.append("")
                geo[g]["vmas"] = ratio_table(vrows, names, fmt_count, L, floor=1)
        for w in refs:
            per = summary.get(w.name, {}).get("(none)")
            if not per:
                continue
            m = per["result_medians"]
            if m.get("supported", 1) == 0:
                L.append("Reference `%s`: mremap(MREMAP_DONTUNMAP) refused by this kernel." % w.name)
            else:
                L.append("Reference `%s` (no allocator, median of %d): one "
                         "mremap(MAYMOVE|FIXED|DONTUNMAP) of %d MiB took **%s**; memcpy of %d MiB "
                         "into fresh memory took %s."
                         % (w.name, per["time"]["n"], m.get("bytes", 0) / 2**20,
                            fmt_time(m.get("mremap_seconds")), m.get("copy_bytes", 0) / 2**20,
                            fmt_time(m.get("copy_seconds"))))
            L.append("")
        if g in charts:
            L.append("Chart: [%s](%s)" % (charts[g], charts[g]))
            L.append("")
    names = all_names
    if geo:
        L.append("## Summary: geometric mean of ratios to the best, per group")
        L.append("")
        L.append("| group | metric | " + " | ".join(names) + " |")
        L.append("|---|---|" + "---:|" * len(names))
        for g, per in geo.items():
            for metric, gm in per.items():
                L.append("| %s | %s | %s |" % (g, {"time": "time", "rss": "peak RSS",
                                                   "realloc": "time in realloc",
                                                   "wall": "wall time", "cpu": "CPU time",
                                                   "minflt": "minor faults",
                                                   "vmas": "peak VMAs"}.get(metric, metric),
                                              " | ".join(fmt_ratio(gm.get(a)) for a in names)))
        L.append("")
    if micro:
        names = [a for a in names if any(a in per for per in micro.values())]
        L.append("## Microbenchmarks (Google Benchmark, real time per iteration)")
        L.append("")
        L.append("BM_BatchAllocFree iterations are 1000 mallocs and 1000 frees. Cell: time, "
                 "ratio to mimalloc / ratio to glibc (where those ran).")
        L.append("")
        L.append("| benchmark | " + " | ".join(names) + " |")
        L.append("|---|" + "---:|" * len(names))
        for bench, per in micro.items():
            cells = []
            for a in names:
                if a not in per:
                    cells.append("-")
                    continue
                rs = []
                for ref in ("mimalloc", "glibc"):
                    rs.append(fmt_ratio(per[a] / per[ref]) if per.get(ref) else "-")
                cells.append("%s %s" % (fmt_ns(per[a]), " / ".join(rs)))
            L.append("| %s | %s |" % (bench, " | ".join(cells)))
        L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def make_charts(out_dir, results_json, fmt):
    """Runs plot.py with an interpreter that has matplotlib (else plot.py
    falls back to gnuplot). Returns ({group: file}, [notes])."""
    interp = None
    for cand in (sys.executable, "/usr/bin/python3"):
        if cand and os.path.isfile(cand) and subprocess.run(
                [cand, "-c", "import matplotlib"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL).returncode == 0:
            interp = cand
            break
    p = subprocess.run([interp or sys.executable, os.path.join(HERE, "plot.py"), results_json,
                        out_dir, fmt], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        return {}, ["charts failed: " + p.stderr.strip()[-500:]]
    try:
        made = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}, ["charts: plot.py gave no answer"]
    return made.get("charts", {}), made.get("notes", [])


def fault_gib_note(fc):
    """' (1 GiB at this rate: T)' when fewer bytes than 1 GiB were touched."""
    if fc["bytes"] >= 1 << 30:
        return ""
    return " (1 GiB at this rate: %s)" % fmt_time(fc["ns_per_page"] * 1e-9 * (1 << 18))



def render(results_json, out_dir, chart_format="svg", charts=True, log=sys.stderr):
    """Writes results.md (and the charts) into out_dir from results.json
    alone: the summary is computed again from the raw runs. Returns
    (results.md path, {group: chart file}, the document)."""
    with open(results_json) as f:
        doc = json.load(f)
    meta = doc["meta"]
    names = list(meta["allocators"])
    summary = summarize(doc["runs"], meta["workloads"], names)
    micro = summarize_micro(doc.get("micro_runs"))
    os.makedirs(out_dir, exist_ok=True)
    made, notes = {}, list(meta["notes"])
    if charts:
        made, chart_notes = make_charts(out_dir, results_json, chart_format)
        notes.extend(chart_notes)
        for n in chart_notes:
            log.write("compare: note: %s\n" % n)
    results_md = os.path.join(out_dir, "results.md")
    write_markdown(results_md, doc, summary, names, micro, made, notes)
    return results_md, made, doc


def print_summary(results_md, results_json, charts, doc, out_dir):
    """The summary table, the fault cost and where the files are, on stdout."""
    with open(results_md) as f:
        md = f.read()
    at = md.find("## Summary")
    if at >= 0:
        end = md.find("\n## ", at + 1)
        print(md[at:end if end >= 0 else len(md)].rstrip() + "\n")
    fault_cost = doc["meta"].get("fault_cost")
    if fault_cost:
        print("Fault cost: first touch of %s took %s%s (%s per 4 KiB page fault)\n"
              % (fmt_mib(fault_cost["bytes"] / 1024), fmt_time(fault_cost["seconds"]),
                 fault_gib_note(fault_cost), fmt_time(fault_cost["ns_per_page"] * 1e-9)))
    print("compare: results in %s" % results_md)
    print("compare: raw data in %s" % results_json)
    for g, c in charts.items():
        print("compare: chart for %s: %s" % (g, os.path.join(out_dir, c)))

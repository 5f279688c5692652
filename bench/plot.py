#!/usr/bin/env python3
"""Charts for bench/compare: one SVG per workload group, from results.json.

usage: plot.py RESULTS_JSON OUT_DIR [svg|png]

Each chart has grouped bars, one group per workload and one bar per
allocator, of the ratio to the best allocator of that workload (1 = best,
log scale): time, time inside realloc (realloc group), the time tables a
group adds (the hugepages group's first-touch stall), CPU time (user +
sys), minor page faults and peak RSS. The medians are computed from the raw
runs (bench/harness/stats.py), as the report does. SVGs carry no date and
fixed ids, so the same results.json gives the same files. Uses
matplotlib (Agg backend); without it, falls back to gnuplot (time only);
without either, makes no chart and says so. Prints one JSON line:
{"charts": {group: file name}, "notes": [...]}.
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness.stats import summarize  # noqa: E402

SLUG = {"small & multithreaded": "small", "realloc growth": "realloc", "huge": "huge",
        "hugepages": "hugepages", "real programs": "real", "clients": "clients"}


def slugs(doc):
    """(group, file slug) in the report's order."""
    groups = doc["meta"].get("groups") or list(SLUG)
    return [(g, SLUG.get(g) or "".join(c if c.isalnum() else "-" for c in g)) for g in groups]


def median(entry, key):
    st = entry.get(key)
    return st["median"] if st else None


def ratios(doc, group):
    """[(panel title, workloads, {alloc: [ratio or None per workload]})]."""
    summary = doc["summary"]
    wls = [w for w, m in doc["meta"]["workloads"].items()
           if m["group"] == group and not m["reference"] and summary.get(w)]
    names = [a for a in doc["meta"]["allocators"] if any(a in summary[w] for w in wls)]
    panels = []
    getters = [("time (ratio to best)", lambda e: e["time"]["median"]),
               ("CPU time, user + sys (ratio to best)", lambda e: median(e, "cpu")),
               ("minor page faults (ratio to best)", lambda e: median(e, "minflt")),
               ("peak RSS (ratio to best)", lambda e: e["maxrss_kib"]["median"])]
    if group == "realloc growth":
        getters.insert(1, ("time inside realloc (ratio to best)",
                           lambda e: e["result_medians"].get("realloc_seconds")))
    at = 1
    for w in wls:
        for key, label, kind, *heading in doc["meta"]["workloads"][w].get("extras", []):
            title = "%s (ratio to best)" % (heading[0] if heading else "")
            if heading and kind == "time" and title not in [t for t, _ in getters]:
                getters.insert(at, (title, lambda e, k=key: e["result_medians"].get(k)))
                at += 1
    for title, get in getters:
        table = {a: [] for a in names}
        for w in wls:
            vals = {a: get(summary[w][a]) for a in names if a in summary[w]}
            vals = {a: v for a, v in vals.items() if v is not None}
            best = min(vals.values()) if vals else None
            for a in names:
                v = vals.get(a)
                table[a].append(max(v, 1e-12) / max(best, 1e-12) if v is not None else None)
        panels.append((title, wls, table))
    return panels


def with_matplotlib(doc, out_dir, fmt):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    matplotlib.rcParams["svg.hashsalt"] = "remalloc-bench"  # fixed ids
    charts = {}
    for group, slug in slugs(doc):
        panels = ratios(doc, group)
        if not panels or not panels[0][1]:
            continue
        fig, axes = plt.subplots(len(panels), 1, figsize=(max(6, 1.6 * len(panels[0][1]) + 2),
                                                          3.2 * len(panels)), squeeze=False)
        for ax, (title, wls, table) in zip(axes[:, 0], panels):
            n = len(table)
            width = 0.8 / max(n, 1)
            for i, (alloc, vals) in enumerate(table.items()):
                xs = [k + (i - (n - 1) / 2) * width for k in range(len(wls))]
                # Bars rise from 0.8, so that the best (1.0) still shows one.
                hs = [v - 0.8 if v is not None else 0 for v in vals]
                ax.bar(xs, hs, width, label=alloc, bottom=0.8)
            ax.set_yscale("log")
            ax.set_ylim(bottom=0.8)
            hi = max([v for vals in table.values() for v in vals if v is not None] or [1.0])
            subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if hi <= 10 else (1.0, 2.0, 5.0) if hi <= 100 else (1.0, 3.0)
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "%g×" % v))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.axhline(1.0, color="black", linewidth=0.6)
            ax.set_xticks(range(len(wls)))
            ax.set_xticklabels(wls, rotation=20, ha="right", fontsize=8)
            ax.set_title(title, fontsize=10)
            ax.grid(axis="y", which="both", alpha=0.3)
        axes[0, 0].legend(fontsize=8, ncol=min(5, len(panels[0][2])))
        fig.suptitle("%s — %s mode, lower is better" % (group, doc["meta"]["mode"]))
        fig.tight_layout()
        name = "chart-%s.%s" % (slug, fmt)
        fig.savefig(os.path.join(out_dir, name), dpi=110,
                    metadata={"Date": None} if fmt == "svg" else {})
        plt.close(fig)
        charts[group] = name
    return charts


def with_gnuplot(doc, out_dir, fmt):
    charts = {}
    for group, slug in slugs(doc):
        panels = ratios(doc, group)
        if not panels or not panels[0][1]:
            continue
        title, wls, table = panels[0]
        names = list(table)
        dat = os.path.join(out_dir, "chart-%s.dat" % slug)
        with open(dat, "w") as f:
            f.write("workload " + " ".join('"%s"' % a for a in names) + "\n")
            for k, w in enumerate(wls):
                f.write('"%s" ' % w + " ".join(
                    "%g" % table[a][k] if table[a][k] is not None else "NaN" for a in names) + "\n")
        name = "chart-%s.%s" % (slug, fmt)
        script = "\n".join([
            "set terminal %s size 900,420" % ("pngcairo" if fmt == "png" else "svg"),
            "set output '%s'" % os.path.join(out_dir, name),
            "set title '%s: %s, lower is better'" % (group, title),
            "set style data histograms", "set style histogram cluster gap 1",
            "set style fill solid 0.8", "set logscale y", "set key top left",
            "set xtics rotate by -20",
            "plot " + ", ".join("'%s' using %d:xtic(1) title columnheader" % (dat, i + 2)
                                for i in range(len(names))),
        ])
        p = subprocess.run(["gnuplot"], input=script, text=True, stderr=subprocess.PIPE)
        os.unlink(dat)
        if p.returncode == 0:
            charts[group] = name
    return charts


def main():
    if len(sys.argv) not in (3, 4) or sys.argv[3:] not in ([], ["svg"], ["png"]):
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    meta = doc["meta"]
    doc["summary"] = summarize(doc["runs"], meta["workloads"], list(meta["allocators"]))
    out_dir = sys.argv[2]
    fmt = sys.argv[3] if len(sys.argv) == 4 else "svg"
    notes = []
    try:
        charts = with_matplotlib(doc, out_dir, fmt)
    except ImportError:
        if shutil.which("gnuplot"):
            charts = with_gnuplot(doc, out_dir, fmt)
            notes.append("matplotlib not found: charts drawn by gnuplot (time only)")
        else:
            charts = {}
            notes.append("neither matplotlib nor gnuplot found: no charts "
                         "(apt-get install python3-matplotlib)")
    print(json.dumps({"charts": charts, "notes": notes}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The benchmark report (bench/harness/report.py) from a results.json made
here, with known numbers: the medians, the ratios to the best, the spreads,
the geometric means, an extra table, the coverage table, the per-group
allocator columns, and `bench/compare --report-only` giving the same bytes
twice. Runs nothing but the reporter; no timings.

    python3 tests/harness/report_test.py [-v]
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from harness import report, stats  # noqa: E402

SMALL = "small & multithreaded"


def run(workload, group, alloc, rep, time, rss_kib=1024, minflt=100, result=None):
    r = {"region_seconds": time}
    r.update(result or {})
    return {"workload": workload, "group": group, "allocator": alloc, "rep": rep, "rc": 0,
            "wall_seconds": time + 0.5, "maxrss_kib": rss_kib, "user_seconds": time,
            "sys_seconds": 0.25, "cpu_seconds": time + 0.25, "minflt": minflt, "majflt": 0,
            "vma_peak": 20, "result": r}


def synthetic():
    runs = []
    # w1: glibc 1, 2, 3 s (median 2), remalloc 0.5, 1, 4 s (median 1: best).
    for rep, (g, m) in enumerate([(1.0, 0.5), (2.0, 1.0), (3.0, 4.0)]):
        runs.append(run("w1", SMALL, "glibc", rep, g, rss_kib=4096))
        runs.append(run("w1", SMALL, "remalloc", rep, m, rss_kib=2048))
    # w2: glibc 0.1 s, remalloc 0.4 s every time; remalloc's third run failed
    # and must not count.
    for rep in range(3):
        runs.append(run("w2", SMALL, "glibc", rep, 0.1))
        runs.append(run("w2", SMALL, "remalloc", rep, 0.4 if rep < 2 else 0.001))
    runs[-1]["error"] = "exit status 3"
    # hb: the hugepages group, with glibc-hugetlb too; a stall table and a
    # coverage table.
    for rep in range(3):
        for a, t, stall, cov in (("glibc", 2.0, 0.004, 0.0), ("remalloc", 1.0, 0.002, 50.0),
                                 ("glibc-hugetlb", 0.5, 0.008, 90.0 + rep)):
            runs.append(run("hb", "hugepages", a, rep, t,
                            result={"stall_seconds": stall, "thp_percent": cov}))
    meta = {
        "mode": "short", "reps": 3, "threads": 2, "host": "test, 2 CPUs", "kernel": "6.1",
        "date": "2026-12-04 00:00:00 +0000", "notes": ["a note"], "failed_runs": 1,
        "allocators": {"glibc": None, "remalloc": "/x/libremalloc.so", "glibc-hugetlb": None},
        "thp": {"enabled": "madvise", "defrag": "madvise"},
        "groups": [SMALL, "hugepages"],
        "fault_cost": {"bytes": 256 << 20, "minflt": 65536, "seconds": 1.0,
                       "ns_per_page": 1e9 / 65536, "reps": 1},
        "workloads": {
            "w1": {"group": SMALL, "doc": "one", "reference": False, "reps": 3,
                   "extras": [], "allocators": ["glibc", "remalloc"]},
            "w2": {"group": SMALL, "doc": "two", "reference": False, "reps": 3,
                   "extras": [], "allocators": ["glibc", "remalloc"]},
            "hb": {"group": "hugepages", "doc": "huge", "reference": False, "reps": 3,
                   "allocators": ["glibc", "remalloc", "glibc-hugetlb"],
                   "extras": [["stall_seconds", "stall", "time", "First-touch stall"],
                              ["thp_percent", "coverage", "percent", "Huge-page coverage"]]},
        },
    }
    return {"meta": meta, "runs": runs, "micro_runs": None}


def section(md, heading, group=None):
    """The lines of the table under `### heading` (inside `## group`)."""
    if group:
        md = md[md.index("## %s\n" % group):]
    at = md.index("### %s\n" % heading)
    lines = md[at:].split("\n")[2:]
    out = []
    for ln in lines:
        if not ln.startswith("|"):
            if out:
                break
            continue
        out.append(ln)
    return out


def row(table, label):
    for ln in table:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if cells[0] == label:
            return cells[1:]
    raise AssertionError("no row %r in %s" % (label, table))


class ReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="report-test-")
        cls.json = os.path.join(cls.tmp, "results.json")
        with open(cls.json, "w") as f:
            json.dump(synthetic(), f)
        with open(os.devnull, "w") as null:
            cls.md_path, _, _ = report.render(cls.json, cls.tmp, charts=False, log=null)
        with open(cls.md_path) as f:
            cls.md = f.read()

    def test_summary_medians(self):
        doc = synthetic()
        s = stats.summarize(doc["runs"], doc["meta"]["workloads"],
                            list(doc["meta"]["allocators"]))
        self.assertEqual(s["w1"]["glibc"]["time"]["median"], 2.0)
        self.assertEqual(s["w1"]["remalloc"]["time"]["median"], 1.0)
        self.assertEqual(s["w1"]["remalloc"]["time"]["min"], 0.5)
        self.assertEqual(s["w1"]["remalloc"]["time"]["max"], 4.0)
        self.assertEqual(s["w2"]["remalloc"]["time"]["n"], 2)  # the failed run left out
        self.assertEqual(s["w2"]["remalloc"]["time"]["median"], 0.4)
        self.assertNotIn("glibc-hugetlb", s["w1"])
        self.assertEqual(s["hb"]["glibc-hugetlb"]["result_medians"]["thp_percent"], 91.0)

    def test_time_ratios_and_spread(self):
        t = section(self.md, "Time", SMALL)
        self.assertEqual(t[0], "| workload | glibc | remalloc |")  # no glibc-hugetlb here
        self.assertEqual(row(t, "w1"), ["2.00 s ×2.00 ±50%", "**1.00 s ×1.00 ±175%**"])
        self.assertEqual(row(t, "w2"), ["**100.0 ms ×1.00 ±0%**", "400.0 ms ×4.00 ±0%"])
        # geometric means: glibc sqrt(2 * 1), remalloc sqrt(1 * 4)
        self.assertEqual(row(t, "*geometric mean ×best*"), ["*×1.41*", "*×2.00*"])

    def test_rss_and_cpu(self):
        r = section(self.md, "Peak RSS", SMALL)
        self.assertEqual(row(r, "w1"), ["4.0 MiB ×2.00 ±0%", "**2.0 MiB ×1.00 ±0%**"])
        c = section(self.md, "CPU time (user + sys)", SMALL)
        self.assertEqual(row(c, "w1")[0], "2.25 s ×1.80 ±44%")

    def test_hugepages_tables(self):
        t = section(self.md, "Time", "hugepages")
        self.assertEqual(t[0], "| workload | glibc | remalloc | glibc-hugetlb |")
        self.assertEqual(row(t, "hb"), ["2.00 s ×4.00 ±0%", "1.00 s ×2.00 ±0%",
                                  "**500.0 ms ×1.00 ±0%**"])
        s = section(self.md, "First-touch stall", "hugepages")
        self.assertEqual(row(s, "hb"), ["4.0 ms ×2.00 ±0%", "**2.0 ms ×1.00 ±0%**",
                                  "8.0 ms ×4.00 ±0%"])
        c = section(self.md, "Huge-page coverage", "hugepages")
        self.assertEqual(row(c, "hb"), ["0%", "50%", "91% (90%..92%)"])

    def test_header(self):
        self.assertIn("Transparent huge pages: `enabled` madvise, `defrag` madvise.", self.md)
        self.assertIn("Note: a note", self.md)
        self.assertIn("took **1.00 s**", self.md)

    def test_summary_table(self):
        at = self.md.index("## Summary")
        lines = self.md[at:].split("\n")
        self.assertIn("| small & multithreaded | time | ×1.41 | ×2.00 | - |", lines)
        self.assertIn("| hugepages | stall | ×2.00 | ×1.00 | ×4.00 |", lines)

    def test_legacy_results_json(self):
        """A results.json of before the package (no groups, no extras): the
        old group order and only the extras of that time."""
        doc = synthetic()
        meta = doc["meta"]
        del meta["groups"], meta["thp"]
        meta["allocators"] = {"glibc": None, "remalloc": "/x/libremalloc.so"}
        meta["workloads"] = {"hugechurn": {"group": "huge", "doc": "churn", "reference": False,
                                           "reps": 3}}
        doc["runs"] = [run("hugechurn", "huge", a, rep, t, result={"stall_seconds": 0.01})
                       for rep in range(3) for a, t in (("glibc", 1.0), ("remalloc", 2.0))]
        path = os.path.join(self.tmp, "legacy.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        out = os.path.join(self.tmp, "legacy")
        with open(os.devnull, "w") as null:
            md_path, _, _ = report.render(path, out, charts=False, log=null)
        with open(md_path) as f:
            md = f.read()
        self.assertIn("## huge\n", md)
        self.assertNotIn("First-touch stall", md)
        self.assertNotIn("Transparent huge pages", md)
        self.assertEqual(row(section(md, "Time", "huge"), "hugechurn"),
                         ["**1.00 s ×1.00 ±0%**", "2.00 s ×2.00 ±0%"])

    def test_report_only_is_byte_identical(self):
        outs = []
        for n in (1, 2):
            out = os.path.join(self.tmp, "again%d" % n)
            p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "compare"),
                                "--report-only", self.json, "--out", out, "--no-charts"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.assertEqual(p.returncode, 1, p.stderr)  # failed_runs: 1
            with open(os.path.join(out, "results.md"), "rb") as f:
                outs.append(f.read())
        self.assertEqual(outs[0], outs[1])
        with open(self.md_path, "rb") as f:
            self.assertEqual(outs[0], f.read())


if __name__ == "__main__":
    unittest.main()

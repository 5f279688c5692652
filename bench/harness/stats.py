"""Medians and spreads of the raw runs: the summary that results.json carries
and the report is drawn from."""
import math
import statistics


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def summarize(runs, workloads, names):
    """Per workload and allocator: stats of time, wall, CPU, faults, peak RSS,
    peak VMAs and of every number of the RESULT lines, over the runs that
    did not fail. workloads: results.json's meta.workloads (name -> its
    "reference" flag and, where it ran under fewer, its "allocators");
    names: the allocators in order."""
    summary = {}
    for wname, wm in workloads.items():
        anames = ["(none)"] if wm.get("reference") else wm.get("allocators", names)
        summary[wname] = {}
        for a in anames:
            mine = [r for r in runs if r["workload"] == wname and r["allocator"] == a
                    and "error" not in r]
            if not mine:
                continue
            entry = {
                "time": stats([r["result"].get("region_seconds", r["wall_seconds"]) for r in mine]),
                "wall": stats([r["wall_seconds"] for r in mine]),
                "cpu": stats([r.get("cpu_seconds") for r in mine]),
                "minflt": stats([r.get("minflt") for r in mine]),
                "majflt": stats([r.get("majflt") for r in mine]),
                "maxrss_kib": stats([r["maxrss_kib"] for r in mine]),
                "vmas": stats([r.get("vma_peak") for r in mine]),
                "time_is_region": all("region_seconds" in r["result"] for r in mine),
            }
            keys = set()
            for r in mine:
                keys.update(k for k, v in r["result"].items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool))
            entry["result_stats"] = {k: stats([r["result"].get(k) for r in mine])
                                     for k in sorted(keys)}
            entry["result_medians"] = {k: v["median"] for k, v in entry["result_stats"].items()}
            summary[wname][a] = entry
    return summary


def summarize_micro(micro_runs):
    if not micro_runs:
        return None
    table = {}
    for entry in micro_runs:
        for b in entry["benchmarks"]:
            table.setdefault(b["name"], {}).setdefault(entry["allocator"], []).append(b["real_ns"])
    return {name: {a: statistics.median(v) for a, v in per.items()} for name, per in table.items()}


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None

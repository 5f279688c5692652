"""bench/compare's package: workloads (the table), clients (real programs'
drivers), runner (processes and the machine), stats (medians), report
(results.md and charts from results.json alone); cli ties them together."""

"""`make bench`: generate (and cache) registries of 1M, 5M and 15.35M residents and time each step.

Each step runs in a fresh process (`bench.step`); wall time is measured inside it (the engine's
work, without interpreter start-up, which is reported separately) and peak RSS is that process's
own (wait4). Results go to bench/results.json and bench/RESULTS.md. Not a test: nothing here
passes or fails on time.

    python -m bench.run [SIZE ...]      # default: 1000000 5000000 15350000
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
SIZES = [1_000_000, 5_000_000, 15_350_000]
STEPS = [
    ("validate", "validation"),
    ("open", None),
    ("draft:2025Q3", "quarterly draft, fresh ledger (validation included)"),
    ("publish:2025Q3", "publish"),
    ("draft:2025Q4", "next quarter's draft, one quarter in the ledger (validation included)"),
    ("publish:2025Q4", None),
    ("draft:2026Q1", None),
    ("publish:2026Q1", None),
    ("draft:2026Q2", None),
    ("publish:2026Q2", None),
    ("supplement", "nightly supplement, four quarters in the ledger (validation included)"),
]


def registry_for(n: int) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"registry-{n}.parquet"
    if not path.exists():
        from allowance.generator import generate_registry, write_registry

        t = time.perf_counter()
        tmp = path.with_suffix(".tmp.parquet")
        write_registry(generate_registry(n, seed=1, as_of=dt.date(2025, 7, 1)), tmp)
        tmp.rename(path)
        print(f"generated {n:,} rows in {time.perf_counter() - t:.1f} s -> {path}", flush=True)
    return path


def run_step(step: str, reg: Path, work: Path) -> dict[str, object]:
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.step", step, str(reg), str(work)],
                            stdout=subprocess.PIPE, cwd=HERE.parent)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"step {step} failed with status {status}")
    res = json.loads(out.decode().strip().splitlines()[-1])
    res["process_seconds"] = round(wall, 3)
    res["peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)  # Linux: KiB
    res["sys_seconds"] = round(usage.ru_stime, 2)  # kernel time: mostly page faults of fresh memory
    return res


def machine() -> dict[str, object]:
    mem = next((ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")),
               "0")
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "memory_gib": round(int(mem) / 1024 / 1024, 1), "cpu": cpu,
            "python": platform.python_version(), "date": dt.date.today().isoformat()}


def main(sizes: list[int]) -> None:
    results: dict[str, object] = {"machine": machine(), "sizes": {}}
    for n in sizes:
        reg = registry_for(n)
        work = CACHE / f"work-{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        rows = []
        for step, _label in STEPS:
            r = run_step(step, reg, work)
            rows.append(r)
            print(f"{n:>11,} {step:<16} {r['seconds']:>7.2f} s  (process {r['process_seconds']:.2f} s)  "
                  f"peak {r['peak_rss_mib']:>8.0f} MiB  {r.get('lines', '')}", flush=True)
        results["sizes"][str(n)] = rows  # type: ignore[index]
        shutil.rmtree(work, ignore_errors=True)
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "RESULTS.md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: dict[str, object]) -> str:
    m = results["machine"]
    assert isinstance(m, dict)
    lines = [
        f"# Benchmark ({m['date']}, {m['cpus']} cores, {m['memory_gib']} GiB, {m['cpu']}, Python {m['python']})",
        "",
        "Seconds are the step's own work in a fresh process (interpreter start-up and imports excluded,",
        "about 0.5 s more per command); 'kernel CPU s' is the process's system CPU time (page faults",
        "of fresh memory, mostly); peak RSS is that process's. Registries: `allowance fixtures",
        "registry --seed 1 --as-of 2025-07-01`. Regenerate with `make bench`.",
        "",
        "| residents | step | seconds | kernel CPU s | peak RSS (MiB) | lines |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    labels = dict(STEPS)
    for n, rows in results["sizes"].items():  # type: ignore[union-attr]
        by = {r["step"]: r for r in rows}
        for step, label in STEPS:
            if label:
                r = by[step]
                lines.append(f"| {int(n):,} | {label} | {r['seconds']:.2f} | {r.get('sys_seconds', 0):.2f} | "
                             f"{r['peak_rss_mib']:.0f} | {r.get('lines', r.get('rows', ''))} |")
        both = by["draft:2025Q3"]["seconds"] + by["publish:2025Q3"]["seconds"]
        peak = max(by["draft:2025Q3"]["peak_rss_mib"], by["publish:2025Q3"]["peak_rss_mib"])
        lines.append(f"| {int(n):,} | **quarterly draft + publish** | **{both:.2f}** | | {peak:.0f} | |")
        _ = labels
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or SIZES)

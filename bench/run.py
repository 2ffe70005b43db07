"""`make bench`: generate (and cache) registries of 1M, 5M and 15.35M residents and time each step.

Each step runs in a fresh process (`bench.step`); wall time is measured inside it (the engine's
work, without interpreter start-up, which is reported separately) and peak RSS is that process's
own (wait4). Results go to bench/results.json and bench/RESULTS.md. Not a test: nothing here
passes or fails on time.

    python -m bench.run [--repeat R] [SIZE ...]   # default: 3 runs; 1000000 5000000 15350000

The two steps the targets name (a quarter's draft + publish on a fresh ledger, and the nightly
supplement with four quarters held) are run R times each, from a copy of the ledger as it was
before them, because this VM's speed drifts 10-20 % between runs: one run cannot say whether
a target is met every night. The table shows the first run; every run is listed below it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
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
    ("draft:2025Q3", "quarterly draft, fresh ledger (validation and change report included)"),
    ("publish:2025Q3", "publish"),
    ("draft:2025Q4", "next quarter's draft, one quarter in the ledger (validation and change report included)"),
    ("publish:2025Q4", None),
    ("draft:2026Q1", None),
    ("publish:2026Q1", None),
    ("draft:2026Q2", None),
    ("publish:2026Q2", None),
    ("supplement", "nightly supplement, four quarters in the ledger (validation and change report included)"),
]


def generator_fingerprint() -> str:
    """What makes a generated registry, hashed: a cached one is reused only if that made it.

    The generator's source, the tables it takes from the engine, and the numpy and polars that
    draw and write the numbers. Until the thirteenth round the cache was keyed by size alone,
    and registries generated before a fix to the generator (1b1ca66) were measured for twelve
    rounds after it."""
    import numpy as np
    import polars as pl

    from allowance import generator

    made_by = [Path(generator.__file__).read_bytes(),
               repr((generator.CHANNELS, generator.DISTRICTS, generator.CHECK_CHARS, generator.WEIGHTS,
                     np.__version__, pl.__version__)).encode()]
    return hashlib.sha256(b"\0".join(made_by)).hexdigest()[:12]


def registry_for(n: int) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"registry-{n}-{generator_fingerprint()}.parquet"
    if not path.exists():
        for stale in [*CACHE.glob(f"registry-{n}.parquet"), *CACHE.glob(f"registry-{n}-*.parquet")]:
            stale.unlink()  # made by other generator code: never measured again
        t = time.perf_counter()
        tmp = path.with_suffix(".tmp.parquet")
        # In a process of its own: every step's process is forked from this one, and Linux counts
        # the memory a process had when it was forked in its peak RSS (wait4's ru_maxrss survives
        # the exec), so a registry generated here (3.2 GB at 15.35M) made every later step report
        # a 3.2 GB peak.
        subprocess.run([sys.executable, "-c", "import sys, datetime as dt; from allowance.generator import "
                        "generate_registry, write_registry; write_registry(generate_registry(int(sys.argv[1]), "
                        "seed=1, as_of=dt.date(2025, 7, 1)), sys.argv[2])", str(n), str(tmp)],
                       check=True, cwd=HERE.parent)
        tmp.rename(path)
        print(f"generated {n:,} rows in {time.perf_counter() - t:.1f} s -> {path}", flush=True)
    return path


REPEATED = {"draft+publish": ("draft:2025Q3", ["draft:2025Q3", "publish:2025Q3"]),
            "supplement": ("supplement", ["supplement"])}


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


def _measure(by_step: dict[str, dict[str, object]], steps: list[str]) -> dict[str, float]:
    """One run of the named steps together: their seconds summed, the highest peak RSS."""
    return {"seconds": round(sum(float(by_step[s]["seconds"]) for s in steps), 3),  # type: ignore[arg-type]
            "peak_rss_mib": max(float(by_step[s]["peak_rss_mib"]) for s in steps)}  # type: ignore[arg-type]


def machine() -> dict[str, object]:
    mem = next((ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")),
               "0")
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "memory_gib": round(int(mem) / 1024 / 1024, 1), "cpu": cpu,
            "python": platform.python_version(), "date": dt.date.today().isoformat()}


WARM_UP_ROWS = 20_000


def warm_up() -> float:
    """Every step once on a small registry, not measured: the compiled kernels (numba, cached on
    disk beside allowance/_kernels.py) are built the first time a checkout runs them, about 1 s
    per step that uses them, which the first size's figures would otherwise include (a fresh
    clone's first 1M draft took 2.57 s against 1.48 s once compiled). Returns its seconds."""
    t = time.perf_counter()
    reg = registry_for(WARM_UP_ROWS)
    work = CACHE / "work-warm-up"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for step, _label in STEPS:
        run_step(step, reg, work)
    shutil.rmtree(work, ignore_errors=True)
    return time.perf_counter() - t


def main(sizes: list[int], repeat: int = 3) -> None:
    results: dict[str, object] = {"machine": machine(), "generator": generator_fingerprint(), "sizes": {},
                                  "repeats": {}}
    print(f"warm-up (every step on {WARM_UP_ROWS:,} rows, not measured): {warm_up():.1f} s", flush=True)
    for n in sizes:
        reg = registry_for(n)
        work = CACHE / f"work-{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        rows = []
        snapshots: dict[str, Path] = {}
        for step, _label in STEPS:
            for name, (before, _steps) in REPEATED.items():
                if step == before and repeat > 1:  # the ledger as it is before the measured steps
                    snapshots[name] = CACHE / f"before-{name}-{n}"
                    shutil.rmtree(snapshots[name], ignore_errors=True)
                    shutil.copytree(work, snapshots[name])
            r = run_step(step, reg, work)
            rows.append(r)
            print(f"{n:>11,} {step:<16} {r['seconds']:>7.2f} s  (process {r['process_seconds']:.2f} s)  "
                  f"peak {r['peak_rss_mib']:>8.0f} MiB  {r.get('lines', '')}", flush=True)
        results["sizes"][str(n)] = rows  # type: ignore[index]
        by = {r["step"]: r for r in rows}
        reps: dict[str, list[dict[str, float]]] = {}
        for name, (_before, steps) in REPEATED.items():
            reps[name] = [_measure(by, steps)]
            for _ in range(repeat - 1):
                scratch = CACHE / f"again-{n}"
                shutil.rmtree(scratch, ignore_errors=True)
                shutil.copytree(snapshots[name], scratch)
                again = {s: run_step(s, reg, scratch) for s in steps}
                reps[name].append(_measure(again, steps))
                shutil.rmtree(scratch, ignore_errors=True)
            print(f"{n:>11,} {name:<16} " + ", ".join(f"{m['seconds']:.2f} s" for m in reps[name]), flush=True)
            shutil.rmtree(snapshots.get(name, CACHE / "-"), ignore_errors=True)
        results["repeats"][str(n)] = reps  # type: ignore[index]
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
        "registry --seed 1 --as-of 2025-07-01`, by the generator fingerprinted",
        f"`{results.get('generator', '?')}` (`bench.run.generator_fingerprint`). Regenerate with `make bench`.",
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
    repeats = results.get("repeats") or {}
    if repeats:
        lines += ["", "The targets' steps, every run (seconds; the highest peak RSS in MiB):", "",
                  "| residents | steps | runs | median | highest peak RSS (MiB) |", "|---:|---|---|---:|---:|"]
        for n, reps in repeats.items():  # type: ignore[union-attr]
            for name, runs in reps.items():
                secs = sorted(r["seconds"] for r in runs)
                each = ", ".join(f"{r['seconds']:.2f}" for r in runs)
                lines.append(f"| {int(n):,} | {name} | {each} | "
                             f"{secs[len(secs) // 2]:.2f} | {max(r['peak_rss_mib'] for r in runs):.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    args = sys.argv[1:]
    times = 3
    if args[:1] == ["--repeat"]:
        if len(args) < 2 or not args[1].isdigit() or int(args[1]) < 1:
            raise SystemExit("bench: --repeat needs a whole number of runs, 1 or more")
        times, args = int(args[1]), args[2:]
    if not all(a.isdigit() for a in args):
        raise SystemExit("bench: sizes are whole numbers of residents, e.g. python -m bench.run 1000000")
    main([int(a) for a in args] or SIZES, times)

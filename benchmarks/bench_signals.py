"""Benchmark the behaviour signals: 10,000,000 events -> signals per session (issue #21).

Three steps, each in its own Python process (its peak memory is its own):

* ``render``: sessions with random signals rendered into an event log
  (:func:`cxlib.data.event_simulation.render_events`, about 46 events a session);
* ``load``: :func:`cxlib.data.events.load_events` validates and cleans it;
* ``signals``: :func:`cxlib.data.signals.compute_signals` on the cleaned log.

Prints a table (time, peak RSS). Targets (2 cores): signals for 10M events < 30 s and
< 2 GB peak memory. ``--write-results`` also writes the table into benchmarks/RESULTS.md.

Usage: python benchmarks/bench_signals.py [--events 10000000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
WORK = HERE / ".work" / "signals"
TARGETS = {"signals": (30.0, 2048.0)}
EVENTS_PER_SESSION = 45  # about what the session mix below renders (46.5)


def sessions(n: int, seed: int = 1):
    """``n`` sessions of the signal-table interface with random signals."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    touchpoints = np.array(["web_compare", "app_order", "app_selfservice"])
    frame = pd.DataFrame(
        {
            "session_id": pd.Series(np.arange(n)).map("s{:08d}".format),
            "respondent_id": None,
            "touchpoint": touchpoints[rng.integers(0, 3, n)],
            "segment": np.array(["private", "business"])[rng.integers(0, 2, n)],
            "start": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(rng.uniform(0, 60 * 86400, n), unit="s"),
            "dwell_time_s": rng.gamma(4, 26, n),
            "hesitation_s": rng.gamma(2, 0.8, n),
            "stillness_share": rng.uniform(0, 0.5, n),
            "rage_clicks": rng.poisson(0.4, n),
            "dead_clicks": rng.poisson(0.6, n),
            "quick_backs": rng.poisson(0.3, n),
            "page_loops": rng.poisson(0.2, n),
            "form_errors": rng.poisson(0.3, n),
            "completed": rng.random(n) < 0.6,
        }
    )
    frame["time_to_complete_s"] = np.where(frame["completed"], 0.8 * frame["dwell_time_s"], np.nan)
    return frame


PAGES = {
    tp: [f"/{tp}/home", f"/{tp}/list", f"/{tp}/details", f"/{tp}/done"]
    for tp in ("web_compare", "app_order", "app_selfservice")
}


def source(file: Path):
    from cxlib.study import EventsSource

    return EventsSource(
        file=str(file),
        pages={p: tp for tp, ps in PAGES.items() for p in ps},
        completion={tp: ps[-1] for tp, ps in PAGES.items()},
    )


def step(name: str, n_events: int, threads: int) -> dict:
    """Run one step in this process and return what it measured."""
    t0 = time.perf_counter()
    raw, clean = WORK / "raw.parquet", WORK / "clean"
    if name == "render":
        from cxlib.data.event_simulation import render_events

        frame = sessions(max(1, n_events // EVENTS_PER_SESSION))
        t1 = time.perf_counter()
        WORK.mkdir(parents=True, exist_ok=True)
        table = render_events(frame, PAGES, seed=1, path=raw)
        rows, sessions_n = table.num_rows, len(frame)
    elif name == "load":
        from cxlib.data.events import load_events

        t1 = time.perf_counter()
        log = load_events(source(raw), clean, threads=threads)
        rows, sessions_n = log.report.events, log.report.sessions
    else:
        from cxlib.data.signals import compute_signals

        t1 = time.perf_counter()
        out = compute_signals(clean / "events.parquet", source(raw), threads=threads)
        rows, sessions_n = int(out.sessions["n_events"].sum()), len(out.sessions)
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "step": name,
        "import": t1 - t0,
        "work": t2 - t1,
        "peak_mb": peak,
        "events": rows,
        "sessions": sessions_n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.events, args.threads)))
        return
    rows = []
    for name in ("render", "load", "signals"):
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--step",
                name,
                "--events",
                str(args.events),
                "--threads",
                str(args.threads),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    lines = [
        f"{args.events:,} events requested, DuckDB threads {args.threads}",
        "",
        "| step | events | sessions | time (s) | peak RSS (MB) | target |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = TARGETS.get(r["step"])
        verdict = ""
        if target:
            ok = r["work"] < target[0] and r["peak_mb"] < target[1]
            verdict = f"< {target[0]:.0f} s, < {target[1]:.0f} MB: {'met' if ok else 'MISSED'}"
        lines.append(
            f"| {r['step']} | {r['events']:,} | {r['sessions']:,} | {r['work']:.1f} | "
            f"{r['peak_mb']:.0f} | {verdict} |"
        )
    print("\n".join(lines))
    if args.write_results:
        from _results import machine, update_results

        update_results(
            "signals",
            "## Behaviour signals (bench_signals.py)\n\n" + machine() + "\n\n" + "\n".join(lines),
        )


if __name__ == "__main__":
    main()

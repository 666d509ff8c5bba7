"""End-to-end generation speed and memory.

Baseline: real time (the track's own duration). Prints the median over --runs of a 4-minute track generated
from text after one warm-up, with a per-stage breakdown, the real-time factor, determinism, and (with
--long) the peak RSS of a separate process that generates a 1-hour track to a file.

    .venv/bin/python benchmarks/bench_generate.py [--runs 3] [--long 3600]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

PROMPT = "rainy night study beats, 4 minutes"


def stage_timer():
    """A progress callback that accumulates wall time per stage."""
    spent: dict[str, float] = defaultdict(float)
    state = {"stage": None, "t": time.perf_counter()}

    def progress(stage: str, fraction: float) -> None:
        now = time.perf_counter()
        if state["stage"] is not None:
            spent[state["stage"]] += now - state["t"]
        state["stage"], state["t"] = stage, now

    def finish() -> dict[str, float]:
        progress("_end", 1.0)
        return dict(spent)

    return progress, finish


def one_run(seed: int):
    from text2lofi import generate
    progress, finish = stage_timer()
    t0 = time.perf_counter()
    track = generate(PROMPT, seed=seed, progress=progress)
    total = time.perf_counter() - t0
    return total, finish(), track


def long_run(seconds: float) -> None:
    """Child process: generate a long track straight to a FLAC file; print peak RSS."""
    import torch
    torch.set_num_threads(1)
    from text2lofi.pipeline import generate_to_files
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        generate_to_files("calm lofi with vinyl", Path(d) / "long.flac", seed=1, duration_s=seconds)
        wall = time.perf_counter() - t0
    print(f"LONG {seconds:.0f} {wall:.1f} {peak_rss_mb():.0f}")


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM, which starts afresh at exec; getrusage's ru_maxrss
    does not (a child forked from a parent that had generated tracks reported the parent's 1.47 GB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--long", type=float, default=0.0, help="also generate a track this long (s) in a child process")
    ap.add_argument("--child-long", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_long:
        long_run(args.child_long)
        return

    import torch
    torch.set_num_threads(1)   # as the CLI and the app run generation
    one_run(seed=0)                                   # warm-up: loads models, soundfont, embeddings
    totals, stages, tracks = [], defaultdict(list), []
    for i in range(args.runs):
        total, spent, track = one_run(seed=7)
        totals.append(total)
        tracks.append(track.audio)
        for k, v in spent.items():
            stages[k].append(v)
    dur = len(tracks[0]) / 44100
    med = statistics.median(totals)
    print(f"# {PROMPT!r}: {dur:.3f} s of audio, {args.runs} runs after warm-up, 1 torch thread")
    print(f"| stage | median s |\n|---|---|")
    for k, v in stages.items():
        print(f"| {k} | {statistics.median(v):.2f} |")
    print(f"| total | {med:.2f} |")
    print(f"real-time factor (baseline: real time {dur:.0f} s): {dur / med:.1f}x  (target >= 12x)")
    print(f"bit-identical across runs with the same seed: {all(np.array_equal(tracks[0], t) for t in tracks)}")
    if args.long:
        out = subprocess.run([sys.executable, __file__, "--child-long", str(args.long)], capture_output=True,
                             text=True, check=True).stdout
        secs, wall, peak = out.split("LONG")[1].split()
        print(f"{float(secs) / 60:.0f}-minute track to FLAC: {float(wall):.0f} s wall "
              f"({float(secs) / float(wall):.1f}x real time), peak RSS {peak} MB (target <= 1536 MB)")


if __name__ == "__main__":
    main()

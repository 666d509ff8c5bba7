"""The page's path, without the browser: a track made on a worker thread while the caller masters its chunks
for the preview (pipeline.master_stream, 2 s int16 pieces), as app.web._previewed does. Prints the seconds to
the first preview piece and to the finished track, and for stream() (live.py) the seconds to its first 2 s chunk
and the loudness of STREAM_S seconds of it (the master's gain is set on the first chunk and kept: the provisional
gain the issue asks to land within 1 LU of -14 LUFS), for the pipeline as shipped and for the one-core pipeline it
replaced (bench_pipeline.one_core, with stem gains measured on 16 s of sound as they were then), alternated in
one run; medians.

    python benchmarks/bench_preview.py --runs 3 --seconds 240
"""
from __future__ import annotations

import argparse
import queue
import statistics
import threading
import time

import numpy as np

import text2lofi.pipeline as pipeline
from bench_pipeline import one_core
from text2lofi.audio import mix
from text2lofi.audio.loudness import integrated_loudness
from text2lofi.conditions import SAMPLE_RATE
from text2lofi.live import stream
from text2lofi.runtime import use_threads

MEASURE_S = mix.MEASURE_S


def page_like(c) -> tuple[float, float]:
    """(seconds to the first preview piece, seconds to the finished track)."""
    chunks: queue.Queue = queue.Queue()
    t0 = time.perf_counter()
    worker = threading.Thread(target=lambda: (pipeline.generate(c, keep_stems=False,
                                                                taps=pipeline.Taps(on_mix=chunks.put)),
                                              chunks.put(None)))
    worker.start()

    def mixed():
        while (chunk := chunks.get()) is not None:
            yield chunk
    first = None
    for out in pipeline.master_stream(mixed(), None, SAMPLE_RATE):
        for piece in pipeline.iter_chunks(out, 2 * SAMPLE_RATE):
            (np.clip(piece, -1.0, 1.0) * 32767).astype(np.int16)
            first = time.perf_counter() - t0 if first is None else first
    worker.join()
    return first, time.perf_counter() - t0


STREAM_PROMPTS = ("rainy night study beats", "slow melancholic piano by the fireplace, no drums",
                  "sunny sunday morning coffee, jazzy", "late night city drive, tape hiss, 90 bpm")
STREAM_S = 120.0


def first_chunk(prompt: str) -> tuple[float, float]:
    """(seconds to stream()'s first 2 s chunk, LUFS of its first STREAM_S seconds)."""
    t0 = time.perf_counter()
    chunks, first = [], None
    for chunk in stream(prompt, chunk_s=2.0, max_s=STREAM_S):
        first = time.perf_counter() - t0 if first is None else first
        chunks.append(chunk)
    return first, integrated_loudness(np.concatenate(chunks))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=240.0)
    args = p.parse_args()
    use_threads()
    c = pipeline.resolve("rainy night study beats", seed=1, duration_s=args.seconds)
    pipeline.generate(c.replace(duration_s=20.0), keep_stems=False)
    took: dict[str, list[tuple[float, float]]] = {"one core (before)": [], "overlapped (now)": []}
    for _ in range(args.runs):
        for name, slow in (("one core (before)", True), ("overlapped (now)", False)):
            one_core(slow)
            mix.MEASURE_S = 16.0 if slow else MEASURE_S
            took[name].append(page_like(c))
    streams: dict[str, dict[str, list[tuple[float, float]]]] = {k: {p: [] for p in STREAM_PROMPTS} for k in took}
    for _ in range(args.runs):
        for name, slow in (("one core (before)", True), ("overlapped (now)", False)):
            one_core(slow)
            mix.MEASURE_S = 16.0 if slow else MEASURE_S
            for prompt in STREAM_PROMPTS:
                streams[name][prompt].append(first_chunk(prompt))
    one_core(False)
    mix.MEASURE_S = MEASURE_S
    for name, runs in took.items():
        print(f"{name:>18}: first preview piece {statistics.median(r[0] for r in runs):.2f} s, finished track "
              f"{statistics.median(r[1] for r in runs):.2f} s  (runs: "
              + "; ".join(f"{a:.2f} / {b:.2f}" for a, b in runs) + ")")

    print(f"stream(): first 2 s chunk, median of {args.runs} (LUFS of its first {STREAM_S:g} s)")
    for prompt in STREAM_PROMPTS:
        print(f"  {prompt[:42]:42s}" + "".join(
            f"  {name}: {statistics.median(r[0] for r in streams[name][prompt]):5.2f} s "
            f"({statistics.median(r[1] for r in streams[name][prompt]):6.2f} LUFS)" for name in streams))


if __name__ == "__main__":
    main()

"""Text -> mastered 4-minute track: the shipped pipeline (the C token step, composing on a thread of its own
while synthesis, the chain and the loudness meter run on the other core, the master's limiter on a thread beside
its measurement) against the one-core pipeline it replaced (the torch token step, every stage in turn on one
thread, the loudness measured again at the end), alternated in one run; medians. Also the floor: composing alone
(both language models, no audio).

    python benchmarks/bench_pipeline.py --runs 3 --seconds 240
"""
from __future__ import annotations

import argparse
import hashlib
import math
import statistics
import time

import text2lofi.pipeline as pipeline
from rwkv_core.model import TorchStep, _cpu_step
from text2lofi.compose.composer import Composer, load_music_model
from text2lofi.conditions import SAMPLE_RATE
from text2lofi.audio import effects
from text2lofi.runtime import ahead, use_threads


def one_core(enabled: bool) -> None:
    """Switch the pipeline to (or back from) the one-core way it ran before: the torch token step, every stage
    inline on one thread, no loudness meter."""
    for kind in ("piano", "drums"):
        model = load_music_model(kind).model
        model._recurrent = (TorchStep if enabled else _cpu_step)(model)    # what model.recurrent() hands out
    for module in THREADED:
        module.ahead = inline if enabled else ahead
    pipeline.CHUNKED_ABOVE = math.inf if enabled else CHUNKED


def inline(items, *args, **kwargs):
    """runtime.ahead without the thread."""
    yield from items


THREADED = (pipeline, effects)      # the modules that start threads with runtime.ahead
CHUNKED = pipeline.CHUNKED_ABOVE


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=240.0)
    p.add_argument("--prompt", default="rainy night study beats")
    args = p.parse_args()
    use_threads()                                    # as the CLI and the app run
    c = pipeline.resolve(args.prompt, seed=1, duration_s=args.seconds)
    pipeline.generate(c.replace(duration_s=20.0), keep_stems=False)          # models loaded, caches warm
    took: dict[str, list[float]] = {"one core (before)": [], "overlapped (now)": [], "composing alone": []}
    digests: dict[str, set[str]] = {"one core (before)": set(), "overlapped (now)": set()}
    for _ in range(args.runs):
        for name, slow in (("one core (before)", True), ("overlapped (now)", False)):
            one_core(slow)
            t0 = time.perf_counter()
            track = pipeline.generate(c, keep_stems=False)
            took[name].append(time.perf_counter() - t0)
            digests[name].add(hashlib.sha256(track.audio.tobytes()).hexdigest()[:16])
        one_core(False)
        composer = Composer(c)
        t0 = time.perf_counter()
        for _ in composer.bars(composer.grid.bars_for(int(round(args.seconds * SAMPLE_RATE)))):
            pass
        took["composing alone"].append(time.perf_counter() - t0)
    base = statistics.median(took["one core (before)"])
    print(f"{args.seconds:g} s track from text, median of {args.runs} (all runs: "
          + "; ".join(f"{k} {', '.join(f'{t:.2f}' for t in v)}" for k, v in took.items()) + ")")
    for name, times in took.items():
        m = statistics.median(times)
        print(f"{name:>18}: {m:6.2f} s  {args.seconds / m:5.1f}x real time  {base / m:4.2f}x the one-core pipeline")
    same = len(digests["one core (before)"] | digests["overlapped (now)"]) == 1
    print("same bytes in every run, both ways:", same, sorted(digests["overlapped (now)"]))


if __name__ == "__main__":
    main()

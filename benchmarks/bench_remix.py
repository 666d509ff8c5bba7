"""How long the page's mixer takes to mix a track again from its stems, against making the same track again
(what a mix change would cost without stems), measured in the same run; medians.

    python benchmarks/bench_remix.py --seconds 240 --repeats 3
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from text2lofi.pipeline import Taps, generate, remix


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=240.0, help="track length")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--prompt", default="rainy night study beats")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-remix-"))
    made = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        track = generate(args.prompt, seed=1, duration_s=args.seconds, keep_stems=False,
                         taps=Taps(stems_dir=folder / "mixer"))
        made.append(time.perf_counter() - t0)
    wav = track.save(folder / "track.wav")
    mixes = {"as made": {}, "drums off, rain +6": {"drums": -60, "rain": 6}, "dry (lofi off)": {"lofi": -60}}
    print(f"{args.seconds:g} s track, textures {track.conditions.textures}; median of {args.repeats}")
    print(f"baseline, make it again with its stems: {statistics.median(made):.2f} s")
    for name, levels in mixes.items():
        took = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            remix(wav, folder / "mixer", levels)
            took.append(time.perf_counter() - t0)
        m = statistics.median(took)
        print(f"remix {name:>20}: {m:.2f} s  ({statistics.median(made) / m:.1f}x faster than making it again)")


if __name__ == "__main__":
    main()

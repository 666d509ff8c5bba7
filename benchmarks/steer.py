"""How steering a live stream lands: for a series of changes, when it is heard, whether the join clicks or gaps,
whether the loudness holds, and the tempo Essentia hears after it.

    .venv/bin/python benchmarks/steer.py [--every 30] [--chunk 2]

Per change it prints:
  lag_s       seconds from the steer() call (audio handed out so far) to where the change is heard
  bar_s       one bar of the old tempo: the lag should be at most bar_s + the chunk
  jump_ratio  largest sample step within 2 samples of the change / the stream's own 99.9th percentile step
  min_db      quietest 250 ms window within 6 s of the change (a gap would read below -40)
  level_db    loudness of the 8 s after minus the 8 s before (4 s windows, RMS)
  tempo       the tempo Essentia hears in the 20 s after the change (4 s in), and the one asked for
"""
from __future__ import annotations

import argparse

import numpy as np

from text2lofi.conditions import SAMPLE_RATE as SR
from text2lofi.evaluate import judges
from text2lofi.live import stream

STEERS = ["much faster, 120 bpm", "in G major", "drop the rain, add vinyl", "slower, 75 bpm, no drums",
          "bring the drums back, in E minor", "add rain"]


def rms_db(audio: np.ndarray) -> float:
    return float(20 * np.log10(max(np.sqrt(np.mean(audio ** 2)), 1e-9)))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--every", type=float, default=30.0, help="seconds of audio between steers")
    p.add_argument("--chunk", type=float, default=2.0, help="seconds per chunk handed out")
    args = p.parse_args(argv)
    total = args.every * (len(STEERS) + 1)
    s = stream("rainy night study beats, 80 bpm in C major", chunk_s=args.chunk, max_s=total + 6)
    chunks, asked = [], []
    per = int(round(args.every / args.chunk))
    for i, chunk in enumerate(s):
        chunks.append(chunk)
        k = (i + 1) // per - 1
        if (i + 1) % per == 0 and 0 <= k < len(STEERS):
            asked.append((s.handed_out, s.playing, s.steer(STEERS[k])))
    audio = np.concatenate(chunks)
    steps = np.abs(np.diff(audio[:, 0]))
    p999 = np.percentile(steps, 99.9)
    print(f"{'steer':<36} {'lag_s':>6} {'bar_s':>6} {'jump_ratio':>10} {'min_db':>7} {'level_db':>8}  tempo heard/asked")
    win = SR // 4
    for text, (at, before, _), (where, c) in zip(STEERS, asked, s.changes[1:]):
        near = audio[where - 6 * SR:where + 6 * SR]
        min_db = min(rms_db(near[j:j + win]) for j in range(0, len(near) - win, win))
        level = rms_db(audio[where:where + 8 * SR]) - rms_db(audio[where - 8 * SR:where])
        heard = judges.audio_tempo(audio[where + 4 * SR:where + 24 * SR], SR) if len(audio) > where + 24 * SR else None
        jump = steps[where - 2:where + 2].max() / p999
        bar = 4 * 60.0 / before.tempo_bpm
        tempo = "-" if heard is None else f"{heard:.1f}/{c.tempo_bpm:g}"
        print(f"{text:<36} {(where - at) / SR:6.2f} {bar:6.2f} "
              f"{jump:10.2f} {min_db:7.1f} {level:8.2f}  {tempo}")


if __name__ == "__main__":
    main()

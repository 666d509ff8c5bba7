"""Chord-tone share of the piano: for tracks whose prompt writes the chords, the share of piano note-time (seconds
a note sounds, clipped to its bar) whose pitch class is a tone of that bar's chord, per bar and overall. The
target (issue 17) is at least 0.60. `--above 52` leaves out the bass register (the held chord root the composer
adds under each bar is a chord tone by construction). Baseline in the same run: the share a uniform choice over the key's scale and
the chord (what the pitch mask allows) would give.

    .venv/bin/python benchmarks/chord_tones.py --seeds 5
"""
from __future__ import annotations

import argparse

import numpy as np

from text2lofi.compose.composer import Composer
from text2lofi.compose.theory import chord_tones
from text2lofi.instruct import interpret
from text2lofi.runtime import use_threads

PROMPTS = ("lofi over Dm9 G13 Cmaj9 Am9", "chill beats with the chords Fmaj7 Em7 Dm7 Cmaj7",
           "ii-V-I in F, jazzy lofi", "sad lofi i-iv-v in A minor", "vi IV I V in G, rainy night")


def bar_shares(composer: Composer, n_bars: int, above: int = 0) -> list[tuple[float, float]]:
    """(chord-tone share, uniform-baseline share) of piano note-time per bar that has piano."""
    out = []
    for bar in composer.bars(n_bars):
        if not bar.piano or bar.chord is None:
            continue
        pcs = set(chord_tones(bar.chord)[1])
        allowed = composer.c.scale_pcs | pcs
        total = inside = 0.0
        for e in bar.piano:
            if e.pitch < above:
                continue
            t = min(e.end_sample, bar.end_sample) - e.start_sample
            total += t
            inside += t * (e.pitch % 12 in pcs)
        if total > 0:
            out.append((inside / total, len(pcs & allowed) / len(allowed)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--bars", type=int, default=32)
    ap.add_argument("--above", type=int, default=0, help="count only piano notes at or above this MIDI pitch")
    args = ap.parse_args(argv)
    use_threads()
    rows = []
    for prompt in PROMPTS:
        base = interpret(prompt)
        for seed in range(args.seeds):
            shares = bar_shares(Composer(base.replace(seed=seed)), args.bars, args.above)
            rows.append((prompt, seed, np.mean([s for s, _ in shares]), np.mean([b for _, b in shares]),
                         np.mean([s >= 0.6 for s, _ in shares])))
            print(f"{prompt[:40]:40} seed {seed}: chord-tone share {rows[-1][2]:.3f} "
                  f"(uniform {rows[-1][3]:.3f}), bars >= 0.60: {rows[-1][4]:.2f}", flush=True)
    ours, uniform = np.median([r[2] for r in rows]), np.median([r[3] for r in rows])
    print(f"median over {len(rows)} tracks: chord-tone share {ours:.3f}, uniform baseline {uniform:.3f}, "
          f"ratio {ours / uniform:.2f}x; bars >= 0.60: {np.mean([r[4] for r in rows]):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

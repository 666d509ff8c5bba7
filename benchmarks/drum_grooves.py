"""Are the drums beats? Composes two-minute tracks for lo-fi prompts x seeds (notes only, no audio) and measures
each track's drum bars, with one groove drawn per section (the baseline, GROOVE_CANDIDATES=1) and with the best of
N by beat_score, in the same run; Groove MIDI hip-hop beats (validation/test, 4/4) are measured by the same code.

- lacking: share of a track's drum bars with neither a kick nor a hat/ride (rolls, tom runs)
- backbeat: share of groove bars (loop bars that are not the section's last) with snare/clap/rim on beats 2 and 4
- toms: share of drum hits on toms
- varied: share of a loop's repeated groove bars (after its first two, before its fill) that are not a verbatim
  copy of the groove bar they repeat (hats and ghost notes vary in bars 3-4 of every four)

    .venv/bin/python benchmarks/drum_grooves.py --seeds 10 --candidates 4
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from text2lofi.compose.arrangement import plan_sections
from text2lofi.compose.composer import BACKBEAT, KICK, TIMEKEEPERS, TOMS, Composer, hit_near
from text2lofi.compose.tokenizer import GM_TO_KIT, Note
from text2lofi.instruct import interpret
from text2lofi.resources import shared_data_dir
from text2lofi.runtime import use_threads

PROMPTS = ("rainy night study beats", "chill lofi hip hop to relax", "jazzy late night lofi beats",
           "sunny morning coffee lofi, upbeat")


def bar_stats(bars: list[list[Note]], groove: list[bool], repeats: list[tuple[int, int]] = ()) -> dict[str, float]:
    sounding = [b for b in bars if b]
    hits = [n for b in sounding for n in b]
    grooves = [b for b, g in zip(bars, groove) if g and b]
    key = [sorted((round(n.onset, 3), n.pitch, n.velocity) for n in b) for b in bars]
    return {"lacking": float(np.mean([not any(n.pitch in {KICK} | TIMEKEEPERS for n in b) for b in sounding])),
            "backbeat": float(np.mean([hit_near(b, 1.0, BACKBEAT) and hit_near(b, 3.0, BACKBEAT) for b in grooves])),
            "toms": sum(n.pitch in TOMS for n in hits) / max(1, len(hits)),
            "varied": float(np.mean([key[i] != key[src] for i, src in repeats])) if repeats else float("nan")}


def ours(candidates: int, seeds: int, seconds: float) -> tuple[list[dict], float]:
    rows, t0 = [], time.perf_counter()
    for prompt in PROMPTS:
        base = interpret(prompt).replace(duration_s=seconds)
        for seed in range(seeds):
            c = base.replace(seed=seed)
            composer = Composer(c, groove_candidates=candidates)
            n_bars = composer.grid.bars_for(int(round(seconds * composer.grid.sample_rate)))
            bars = list(composer.bars(n_bars))
            # back to beats: onsets relative to each bar (swing shifts off-beats only, never beats 1-4)
            spb = composer.grid.samples_per_beat
            notes = [[Note((e.start_sample - b.start_sample) / spb, 0.1, e.pitch, e.velocity) for e in b.drums]
                     for b in bars]
            groove, repeats, start = [], [], 0
            for s in plan_sections(n_bars, c.piano, c.drums):
                groove += [s.name == "loop" and j < s.n_bars - 1 for j in range(s.n_bars)]
                if s.name == "loop" and s.drums:
                    repeats += [(start + j, start + j % 2) for j in range(2, s.n_bars - 1)]
                start += s.n_bars
            rows.append(bar_stats(notes, groove, repeats))
    return rows, (time.perf_counter() - t0) / len(rows)


def groove_midi(limit: int) -> list[dict]:
    import pretty_midi

    from text2lofi.compose.data import list_gmd

    folder = shared_data_dir() / "groove-midi"
    if not folder.exists():
        return []
    items = [it for it in list_gmd(str(folder)) if it.extra[4] != "train" and it.extra[2] == "beat"
             and it.extra[3] == "4-4" and it.extra[0].startswith("hiphop")][:limit]
    rows = []
    for it in items:
        pm = pretty_midi.PrettyMIDI(it.path)
        beats = pm.get_beats()
        if len(beats) < 8:
            continue
        bars = []
        for k in range(0, len(beats) - 4, 4):
            t0, t1 = beats[k], beats[k + 4]
            beat_s = (t1 - t0) / 4
            bars.append([Note((n.start - t0) / beat_s, 0.1, GM_TO_KIT[n.pitch], n.velocity)
                         for i in pm.instruments for n in i.notes if t0 <= n.start < t1 and n.pitch in GM_TO_KIT])
        rows.append(bar_stats(bars, [True] * len(bars)))
    return rows


def summary(name: str, rows: list[dict]) -> str:
    heavy = sum(r["lacking"] > 0.25 for r in rows)
    return (f"{name:28} tracks {len(rows):3}  with >1/4 bars lacking kick/hat: {heavy:2}  "
            f"backbeat bars: {np.median([r['backbeat'] for r in rows]):.2f} median, "
            f"{np.mean([r['backbeat'] for r in rows]):.2f} mean  toms: {np.mean([r['toms'] for r in rows]):.3f}"
            + (f"  varied repeats: {np.nanmean([r['varied'] for r in rows]):.2f}"
               if not np.isnan([r["varied"] for r in rows]).all() else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--gmd", type=int, default=60, help="Groove MIDI hip-hop beats to measure (0: none)")
    args = ap.parse_args(argv)
    use_threads()
    base, t_base = ours(1, args.seeds, args.seconds)
    best, t_best = ours(args.candidates, args.seeds, args.seconds)
    print(summary("one groove per section", base))
    print(summary(f"best of {args.candidates}", best))
    real = groove_midi(args.gmd) if args.gmd else []
    if real:
        print(summary("Groove MIDI hip-hop beats", real))
    print(f"compose time per {args.seconds:g} s track: {t_base:.2f} s -> {t_best:.2f} s ({t_best / t_base:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

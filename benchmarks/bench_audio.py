"""Audio-side speed: render -> balance -> lo-fi chain -> textures -> master for a 4-minute track.

Prints, per stage, the median of N runs and how many times faster than real time it is, plus the
baseline named in the same run: pretty_midi's own FluidSynth render of the same MIDI (mono, whole file).
Stages after the render stream bar-sized chunks, as the pipeline does.

    .venv/bin/python benchmarks/bench_audio.py [--seconds 240] [--repeats 3] [--textures rain vinyl]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import pretty_midi

from text2lofi.audio.effects import LofiChain, Master
from text2lofi.audio.render import SAMPLE_RATE, balance_gains, find_soundfont, render_midi
from text2lofi.audio.textures import TextureBed


@dataclass
class BenchConfig:
    seconds: float = 240.0
    bpm: float = 80.0
    repeats: int = 3
    lofi_amount: float = 0.6
    textures: list[str] = field(default_factory=lambda: ["rain", "vinyl"])
    seed: int = 0


def lofi_midi(seconds: float, bpm: float, seed: int) -> pretty_midi.PrettyMIDI:
    """A plausible lo-fi part pair: 7th-chord comping with a melody line, and a swung boom-bap kit."""
    rng = np.random.default_rng(seed)
    beat = 60.0 / bpm
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    piano, drums = pretty_midi.Instrument(program=4), pretty_midi.Instrument(program=0, is_drum=True)
    chords = [(57, 60, 64, 67), (50, 57, 60, 65), (55, 59, 62, 65), (48, 55, 59, 64)]
    for bar in range(int(seconds / (4 * beat))):
        t0 = bar * 4 * beat
        for p in chords[bar % 4]:
            piano.notes.append(pretty_midi.Note(int(rng.integers(50, 75)), p, t0, t0 + 3.8 * beat))
        for i in range(int(rng.integers(3, 7))):
            start = t0 + rng.integers(0, 8) * beat / 2
            piano.notes.append(pretty_midi.Note(int(rng.integers(60, 95)), int(rng.choice([69, 72, 74, 76, 79])),
                                                start, start + beat / 2))
        for step in range(8):
            t = t0 + step * beat / 2 + (0.06 * beat if step % 2 else 0.0)        # swung eighths
            drums.notes.append(pretty_midi.Note(int(rng.integers(60, 90)), 42, t, t + 0.05))
            if step in (0, 5):
                drums.notes.append(pretty_midi.Note(110, 36, t, t + 0.1))
            if step in (2, 6):
                drums.notes.append(pretty_midi.Note(100, 38, t, t + 0.1))
    pm.instruments += [piano, drums]
    return pm


def run_once(cfg: BenchConfig, pm) -> dict[str, float]:
    """Seconds per stage: (wall, CPU of this process). CPU time is what the stage costs when the machine
    is not shared; wall time is what a user waits for on this machine right now."""
    n = int(round(cfg.seconds * SAMPLE_RATE))
    bar = int(round(4 * 60.0 / cfg.bpm * SAMPLE_RATE))
    times = {}
    clock = lambda: np.array([time.perf_counter(), time.process_time()])   # noqa: E731
    t = clock()
    stems = render_midi(pm, n, SAMPLE_RATE)
    times["render (FluidSynth, 2 stems)"] = clock() - t
    t = clock()
    gains = balance_gains({k: v[: 30 * SAMPLE_RATE] for k, v in stems.items()}, SAMPLE_RATE)
    mix = sum(stems[k] * np.float32(g) for k, g in gains.items())
    times["balance (BS.1770 on 30 s) + mix"] = clock() - t
    chain = LofiChain(cfg.lofi_amount, SAMPLE_RATE, cfg.seed)
    bed = TextureBed(cfg.textures, SAMPLE_RATE, cfg.seed)
    master = Master(sample_rate=SAMPLE_RATE)
    out = np.empty_like(mix)
    names = ["lofi chain", f"textures ({', '.join(cfg.textures)})", "master (calibrate 30 s + limit)"]
    stage = {name: np.zeros(2) for name in names}
    for a in range(0, n, bar):
        t = clock()
        x = chain.process(mix[a:a + bar])
        t1 = clock()
        x = x + bed.render(len(x))
        t2 = clock()
        if master.gain is None:
            master.calibrate(chain_preview(cfg, mix, bed_seed=cfg.seed))
        out[a:a + bar] = master.process(x)
        t3 = clock()
        stage[names[0]] += t1 - t
        stage[names[1]] += t2 - t1
        stage[names[2]] += t3 - t2
    times.update(stage)
    assert len(out) == n
    return times


def chain_preview(cfg: BenchConfig, mix: np.ndarray, bed_seed: int) -> np.ndarray:
    """The first 30 s through a fresh chain and bed: what the master calibrates on."""
    head = mix[: 30 * SAMPLE_RATE]
    return LofiChain(cfg.lofi_amount, SAMPLE_RATE, cfg.seed).process(head) + \
        TextureBed(cfg.textures, SAMPLE_RATE, bed_seed).render(len(head))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=BenchConfig.seconds)
    parser.add_argument("--repeats", type=int, default=BenchConfig.repeats)
    parser.add_argument("--lofi-amount", type=float, default=BenchConfig.lofi_amount)
    parser.add_argument("--textures", nargs="*", default=["rain", "vinyl"])
    args = parser.parse_args(argv)
    cfg = BenchConfig(args.seconds, repeats=args.repeats, lofi_amount=args.lofi_amount, textures=args.textures)

    pm = lofi_midi(cfg.seconds, cfg.bpm, cfg.seed)
    print(f"{cfg.seconds:.0f} s stereo at {SAMPLE_RATE} Hz, soundfont {find_soundfont().name}, "
          f"medians of {cfg.repeats} runs (after one warm-up)")
    run_once(BenchConfig(10.0, textures=cfg.textures), lofi_midi(10.0, cfg.bpm, 0))     # warm-up: imports, fonts
    runs = [run_once(cfg, pm) for _ in range(cfg.repeats)]
    baseline = []
    for _ in range(cfg.repeats):
        t = np.array([time.perf_counter(), time.process_time()])
        pm.fluidsynth(fs=SAMPLE_RATE, synthesizer=str(find_soundfont()))
        baseline.append(np.array([time.perf_counter(), time.process_time()]) - t)

    print(f"{'stage':40s} {'wall s':>8s} {'x real':>7s} {'CPU s':>8s} {'x real':>7s}")
    total = np.zeros(2)
    for name in runs[0]:
        med = np.array([statistics.median(r[name][i] for r in runs) for i in range(2)])
        total += med
        print(f"{name:40s} {med[0]:8.2f} {cfg.seconds / med[0]:7.1f} {med[1]:8.2f} {cfg.seconds / med[1]:7.1f}")
    print(f"{'total audio path':40s} {total[0]:8.2f} {cfg.seconds / total[0]:7.1f} "
          f"{total[1]:8.2f} {cfg.seconds / total[1]:7.1f}")
    base = np.array([statistics.median(b[i] for b in baseline) for i in range(2)])
    render = np.array([statistics.median(r["render (FluidSynth, 2 stems)"][i] for r in runs) for i in range(2)])
    print(f"{'baseline: pretty_midi.fluidsynth (mono)':40s} {base[0]:8.2f} {cfg.seconds / base[0]:7.1f} "
          f"{base[1]:8.2f} {cfg.seconds / base[1]:7.1f}")
    print(f"render speed-up over the baseline: {base[0] / render[0]:.2f}x wall, {base[1] / render[1]:.2f}x CPU")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

"""Pictures to look at the music with: for a few prompts, the first 48 s of a track as a piano roll (piano, bass,
drums, with bar lines and section names) above a spectrogram of the mastered audio.

    .venv/bin/python benchmarks/look.py [--out docs/eval/look] [--seconds 48] [--seed 7]
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from text2lofi.conditions import SAMPLE_RATE
from text2lofi.pipeline import generate
from text2lofi.runtime import use_threads

PROMPTS = ("rainy night study beats in A minor", "sunny sunday morning coffee, jazzy, in F major",
           "late night city drive, tape hiss, 90 bpm")
COLOURS = {"piano": "tab:blue", "bass": "tab:green", "drums": "tab:red"}


def spectrogram(mono: np.ndarray, sr: int, n_fft: int = 4096, hop: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(dB magnitudes (freqs, frames), frequencies in Hz): Hann-windowed STFT."""
    window = np.hanning(n_fft).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(mono, n_fft)[::hop] * window
    mag = np.abs(np.fft.rfft(frames, axis=1)).T
    return 20 * np.log10(mag / mag.max() + 1e-6), np.fft.rfftfreq(n_fft, 1 / sr)


def picture(prompt: str, seconds: float, seed: int, path: Path) -> str:
    t = generate(prompt, seed=seed, duration_s=seconds)
    c, bar_s = t.conditions, 240.0 / t.conditions.tempo_bpm
    fig = Figure(figsize=(14, 7), dpi=80)
    roll, spec = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for inst in t.midi.instruments:
        for n in inst.notes:
            y = n.pitch if not inst.is_drum else 20 + (n.pitch - 35) * 0.5      # drums in a band below the bass
            roll.plot([n.start, n.end if not inst.is_drum else n.start + 0.05], [y, y], lw=2.5,
                      color=COLOURS.get(inst.name, "k"), solid_capstyle="butt")
    start = 0
    for section in t.metadata["plan"]:
        roll.text(start * bar_s + 0.1, 100, section[0], fontsize=9)
        start += section[1]
    for k in range(int(seconds / bar_s) + 1):
        roll.axvline(k * bar_s, color="0.85", lw=0.8, zorder=0)
        if k < len(t.metadata["chords"]):
            roll.text(k * bar_s + 0.1, 95, t.metadata["chords"][k] or "", fontsize=7, color="0.3")
    roll.set_ylim(15, 104)
    roll.set_ylabel("MIDI pitch (drums below 40)")
    roll.set_title(f"“{prompt}”, seed {seed}: {c.tempo_bpm:g} BPM, {c.key} {c.mode}, swing {c.swing:g}, "
                   f"textures {', '.join(c.textures) or 'none'} — piano blue, bass green, drums red")
    db, freqs = spectrogram(t.audio[:, 0], SAMPLE_RATE)
    keep = freqs <= 8000
    spec.imshow(db[keep], origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0,
                extent=[0, len(t.audio) / SAMPLE_RATE, 0, 8000])
    spec.set_ylabel("Hz")
    spec.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path)
    return f"{path.name}: {c.tempo_bpm:g} BPM {c.key} {c.mode}, chords {' '.join(t.metadata['chords'][:8])}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs/eval/look")
    ap.add_argument("--seconds", type=float, default=48.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    use_threads()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for prompt in PROMPTS:
        slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40]
        print(picture(prompt, args.seconds, args.seed, out / f"{slug}.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The bar grid both parts share, chord symbols, and the section plan of a track.

Everything here is pure and cheap: composer.py fills the plan with generated notes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from text2lofi.compose.theory import chord_tones
from text2lofi.conditions import BEATS_PER_BAR, PC_NAME, SAMPLE_RATE, SCALE_STEPS, Conditions


@dataclass(frozen=True)
class BarGrid:
    """One tempo, one bar grid, in samples. Piano and drums are both placed with this object.

    Bar i starts at round(i * samples_per_bar): positions are computed from the bar index, never
    accumulated, so there is no drift even after 12 hours.
    """
    tempo_bpm: float
    sample_rate: int = SAMPLE_RATE
    beats_per_bar: int = BEATS_PER_BAR
    origin: int = 0               # sample where bar 0 starts (a steered stream starts a new grid at a bar line)

    @property
    def samples_per_beat(self) -> float:
        return 60.0 / self.tempo_bpm * self.sample_rate

    @property
    def samples_per_bar(self) -> float:
        return self.samples_per_beat * self.beats_per_bar

    def bar_start(self, bar: int) -> int:
        return self.origin + int(round(bar * self.samples_per_bar))

    def sample_at(self, bar: int, beat_in_bar: float) -> int:
        """Absolute sample of a beat position inside a bar (beats may exceed the bar for long notes)."""
        return self.origin + int(round((bar * self.beats_per_bar + beat_in_bar) * self.samples_per_beat))

    def bars_for(self, n_samples: int) -> int:
        """Bars needed to cover n_samples (the last one may be cut by the exact-length trim)."""
        return max(1, int(np.ceil(n_samples / self.samples_per_bar)))


# ---- chords ---------------------------------------------------------------------------------
# Default seed progressions (scale degrees in semitones + quality) when the conditions carry none.
_DEFAULT_PROGRESSIONS = {
    "major": [(0, "maj7"), (9, "m7"), (2, "m7"), (7, "7")],      # Imaj7 vi7 ii7 V7
    "minor": [(0, "m7"), (5, "m7"), (8, "maj7"), (7, "7")],       # i7 iv7 bVImaj7 V7: a leading-tone V, so the
                                                                   # minor tonic is heard, not the relative major
}


def progression_for(c: Conditions) -> list[str]:
    """The chord symbols of the seed progression: the conditions' own if readable, else a default in the key."""
    usable = []
    for sym in c.progression:
        try:
            chord_tones(sym)
            usable.append(sym)
        except ValueError:
            c.warnings.append(f"chord {sym!r} ignored: cannot read it")
    if usable:
        return usable
    return [PC_NAME[(c.tonic_pc + deg) % 12] + q for deg, q in _DEFAULT_PROGRESSIONS[c.mode]]


def tonic_chord(c: Conditions) -> str:
    return c.key + ("maj7" if c.mode == "major" else "m7")


# Degrees (0-based) of the new key tried as the pivot, in order: pre-dominant chords first, as a modulation
# pivot -> V7 -> I reads in the textbooks.
_PIVOT_DEGREES = {"major": (1, 3, 5, 2), "minor": (3, 5, 2)}


def pivot_chords(old: Conditions, new: Conditions) -> list[str]:
    """The chords that carry a stream from `old`'s key into `new`'s, one bar each: a triad diatonic to both keys
    (when there is one), then the new key's dominant seventh; the new progression then starts on its tonic.
    Empty when key and mode stay."""
    if (old.tonic_pc, old.mode) == (new.tonic_pc, new.mode):
        return []
    steps = SCALE_STEPS[new.mode]
    chords = []
    for degree in _PIVOT_DEGREES[new.mode]:
        root = (new.tonic_pc + steps[degree]) % 12
        third, fifth = ((steps[(degree + k) % 7] - steps[degree]) % 12 for k in (2, 4))
        quality = {(4, 7): "", (3, 7): "m"}.get((third, fifth))
        if quality is not None and {root, (root + third) % 12, (root + fifth) % 12} <= set(old.scale_pcs):
            chords.append(PC_NAME[root] + quality)
            break
    return chords + [PC_NAME[(new.tonic_pc + 7) % 12] + "7"]


# ---- section plan ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Section:
    name: str        # intro | loop | break | outro
    n_bars: int
    piano: bool
    drums: bool
    phrase_bars: int  # bars of new material; the rest of the section repeats it with a varied last bar


def plan_sections(n_bars: int | None, piano: bool, drums: bool, intro: bool = True,
                  outro: bool = True) -> Iterator[Section]:
    """Intro, loops of 8 bars (a 4-bar phrase played twice, the second time with a new last bar),
    a break every fourth section (drums out, or a sparse piano if there are no drums), outro.

    n_bars=None means endless (a stream): no outro ever comes. intro=False starts on the loop (a steered stream
    goes on with every part playing from the bar line); intro=False, outro=False is a seamless loop's plan.
    """
    if n_bars is not None and n_bars <= 6:
        yield Section("loop", n_bars, piano, drums, phrase_bars=min(n_bars, 4))
        return
    if not intro or (n_bars is not None and n_bars < 16):
        intro_bars = 0
    else:
        intro_bars = 2 if n_bars is not None and n_bars < 32 else 4
    outro_bars = 0 if n_bars is None or not outro else (2 if n_bars < 32 else 4)
    if intro_bars:
        # Drums enter after the intro; a piano-less track opens with the drums alone instead.
        yield Section("intro", intro_bars, True if piano else False, drums and not piano, phrase_bars=intro_bars)
    used, k = intro_bars, 0
    while n_bars is None or used < n_bars - outro_bars:
        left = None if n_bars is None else n_bars - outro_bars - used
        size = 8 if left is None else min(8, left)
        k += 1
        if k % 4 == 0 and (left is None or left >= 4):
            size = 4
            yield Section("break", size, piano, drums and not piano, phrase_bars=size)
        else:
            yield Section("loop", size, piano, drums, phrase_bars=min(4, size))
        used += size
    if outro_bars:
        yield Section("outro", outro_bars, piano, drums and not piano, phrase_bars=outro_bars)


def extension_plan(old_plan: list[Section], new_bars: int, piano: bool, drums: bool) -> list[Section]:
    """The plan of a track made longer, to new_bars: its sections up to its outro exactly as they were, then new
    sections and a new outro after them. A track too short for an outro keeps all its sections; only its final
    bar (the held tonic chord that ended it) is written anew."""
    old_bars = sum(s.n_bars for s in old_plan)
    if new_bars <= old_bars:
        raise ValueError(f"an extension must be longer: {new_bars} bars is not more than {old_bars}")
    kept = list(old_plan[:-1] if old_plan[-1].name == "outro" else old_plan)
    used = sum(s.n_bars for s in kept)
    return kept + list(plan_sections(new_bars - used, piano, drums, intro=False))

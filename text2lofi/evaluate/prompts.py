"""The evaluation's prompt set: prompts that state tempo, key, mode, length and (sometimes) 'no drums' outright, so
adherence can be checked against what was asked."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

@dataclass(frozen=True)
class PromptSpec:
    text: str
    tempo_bpm: float
    key: str
    mode: str
    duration_s: float
    drums: bool


_MOODS = ("chill", "rainy", "sleepy", "warm", "nostalgic", "cozy", "melancholic", "dreamy", "late night", "sunny")
_TEMPLATES = (
    "{mood} lofi beat in {key} {mode} at {bpm} bpm, {dur} seconds{drums}",
    "{dur} seconds of {mood} lo-fi hip hop, {bpm} bpm, key of {key} {mode}{drums}",
    "lofi {mood} study music, {key} {mode}, {bpm} bpm, {dur} seconds long{drums}",
    "a {mood} lo-fi track in {key} {mode}, tempo {bpm} bpm, {dur} seconds{drums}",
)


def prompt_set(n: int, seed: int, durations: Sequence[float] = (15, 20, 30, 45, 60)) -> list[PromptSpec]:
    """n prompts stating tempo, key, mode, length and (sometimes) 'no drums' explicitly, drawn from `seed`.

    Tempi are spread over 55..150 BPM so several MidiCaps bins are exercised; a quarter of the prompts ask for no
    drums."""
    rng = np.random.default_rng(seed)
    names = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    out = []
    for i in range(n):
        bpm = int(rng.integers(55, 151))
        key, mode = names[int(rng.integers(12))], ("major", "minor")[int(rng.integers(2))]
        dur = float(durations[int(rng.integers(len(durations)))])
        drums = bool(rng.random() >= 0.25)
        text = _TEMPLATES[i % len(_TEMPLATES)].format(mood=_MOODS[int(rng.integers(len(_MOODS)))], key=key,
                                                       mode=mode, bpm=bpm, dur=int(dur),
                                                       drums="" if drums else ", no drums")
        out.append(PromptSpec(text, float(bpm), key, mode, dur, drums))
    return out

"""Outside judges: key and tempo estimated from the rendered audio by Essentia, not by our own MIDI analysis.

Essentia is AGPL-3.0 and lives in the optional `eval` extra (and the test tools); only the evaluation imports it,
lazily, and the product never does. Its key profiles disagree on our renders (docs/findings: "temperley" heard no
minor track as minor), so the key is the majority of five profiles; tempo is compared octave-tolerantly because
beat trackers often report double or half time.
"""
from __future__ import annotations

import functools
from collections import Counter

import numpy as np

from text2lofi.conditions import PITCH_CLASS

KEY_PROFILES = ("temperley", "krumhansl", "edma", "bgate", "shaath")
TEMPO_TOLERANCE = 0.04         # relative; after folding x2 / x0.5 (MIREX-style "accuracy 2")
ANALYSIS_RATE = 44100


def available() -> bool:
    try:
        _essentia()
    except ImportError:
        return False
    return True


@functools.cache
def _essentia():
    import essentia
    essentia.log.infoActive = False              # no INFO lines on every import and call
    essentia.log.warningActive = False
    import essentia.standard as es
    return es


def _mono(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    if sample_rate != ANALYSIS_RATE:
        raise ValueError(f"the judges take {ANALYSIS_RATE} Hz audio, got {sample_rate}")
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    return np.ascontiguousarray(mono, dtype=np.float32)


def audio_key(audio: np.ndarray, sample_rate: int) -> tuple[int, str, dict[str, str]]:
    """(tonic pitch class, "major"|"minor", each profile's answer) by majority of KEY_PROFILES; ties go to the
    profile listed first among the tied answers."""
    es = _essentia()
    mono = _mono(audio, sample_rate)
    answers = {}
    for profile in KEY_PROFILES:
        key, scale, _strength = es.KeyExtractor(profileType=profile, sampleRate=sample_rate)(mono)
        answers[profile] = f"{key} {scale}"
    votes = Counter(answers.values())
    top = max(votes.values())
    winner = next(a for a in answers.values() if votes[a] == top)
    tonic, mode = winner.split()
    return PITCH_CLASS[tonic], mode, answers


def audio_tempo(audio: np.ndarray, sample_rate: int) -> float:
    """Beats per minute heard in the audio (RhythmExtractor2013, multifeature)."""
    es = _essentia()
    bpm, *_ = es.RhythmExtractor2013(method="multifeature")(_mono(audio, sample_rate))
    return float(bpm)


def tempo_matches(heard: float, asked: float, tolerance: float = TEMPO_TOLERANCE) -> bool:
    """Within tolerance of the asked tempo, or of its double or half."""
    return any(abs(heard - asked * f) <= tolerance * asked * f for f in (0.5, 1.0, 2.0))

"""Evaluation: symbolic music metrics, prompt adherence, and the `text2lofi eval` runner + report.

Every metric is a pure function of a `pretty_midi.PrettyMIDI` (or of the audio for loudness), so the same code
scores held-out real music, our RWKV models and the baselines. Definitions (and references) are in METRIC_DOCS,
which the report prints verbatim.

Conventions
- "Pitched notes" = notes of every non-drum instrument; drum notes only feed the drum metrics.
- Bars are groups of 4 beats taken from the MIDI's own tempo map (`PrettyMIDI.get_beats()`), whatever its time
  signature says: every system here writes 4/4 and POP909's 2/4 headers would otherwise halve the bars.
- A metric that has nothing to measure (no notes, one bar) is NaN, and aggregation ignores NaNs (the report gives n).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pretty_midi

# ---------------------------------------------------------------------------------------------------------------
# Notes and bars
# ---------------------------------------------------------------------------------------------------------------

# Interval classes (semitones mod 12) counted as consonant: unison/octave, minor/major third, perfect fourth and
# fifth, minor/major sixth. The rest (2nds, tritone, 7ths) are dissonant. The perfect fourth is consonant here
# (as in the original project and in e.g. Huron's interval-class ranking), so a root-position triad is all consonant.
CONSONANT_INTERVALS = frozenset({0, 3, 4, 5, 7, 8, 9})
GRID_S = 0.05          # sampling step for simultaneous intervals, seconds (20 Hz, finer than a 32nd at 160 BPM)
BEATS_PER_BAR = 4
KEY_WINDOW_BARS = 4    # window of the key analysis for key_changes
GROOVE_POSITIONS = 16  # onset grid per bar for groove consistency (16ths)
REPEAT_POSITIONS = 48  # grid per bar when comparing bars for repetition (12 per beat: triplets survive)

# Krumhansl & Kessler (1982) key profiles, index 0 = tonic.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)

# MidiCaps tempo bin edges (BPM). Bin i holds EDGES[i-1] <= bpm < EDGES[i]; bin 0 is below 40, bin 8 from 210 up.
TEMPO_BIN_EDGES = (40, 60, 70, 90, 110, 140, 160, 210)


def pitched_notes(pm: pretty_midi.PrettyMIDI) -> np.ndarray:
    """(n, 4) float array of [start_s, end_s, pitch, velocity] for all non-drum notes, sorted by start."""
    rows = [(n.start, n.end, n.pitch, n.velocity) for inst in pm.instruments if not inst.is_drum for n in inst.notes]
    arr = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return arr[np.argsort(arr[:, 0], kind="stable")]


def drum_notes(pm: pretty_midi.PrettyMIDI) -> np.ndarray:
    """(n, 4) like pitched_notes, for drum instruments only."""
    rows = [(n.start, n.end, n.pitch, n.velocity) for inst in pm.instruments if inst.is_drum for n in inst.notes]
    arr = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return arr[np.argsort(arr[:, 0], kind="stable")]


def bar_starts(pm: pretty_midi.PrettyMIDI) -> np.ndarray:
    """Bar edges (s): start of every 4-beat bar up to the last note's end, plus the end of the last bar.

    len = n_bars + 1. The last bar is whole (its length from the final tempo) even if the music stops inside it.
    """
    beats = pm.get_beats()                 # beat times (s) before the end time
    if pm.get_end_time() <= 0 or len(beats) == 0:
        return np.zeros(1)
    starts = beats[::BEATS_PER_BAR]
    bar_s = BEATS_PER_BAR * 60.0 / pm.get_tempo_changes()[1][-1]
    return np.append(starts, starts[-1] + bar_s)


# ---------------------------------------------------------------------------------------------------------------
# The original project's four metrics
# ---------------------------------------------------------------------------------------------------------------

def rhythm_consistency(pm: pretty_midi.PrettyMIDI) -> float:
    """mu / (mu + sigma) of pitched note durations (s); 1.0 when every note has the same length."""
    notes = pitched_notes(pm)
    if len(notes) == 0:
        return math.nan
    dur = notes[:, 1] - notes[:, 0]
    mu, sigma = float(dur.mean()), float(dur.std())
    return mu / (mu + sigma) if mu + sigma > 0 else math.nan


def interval_counts(pm: pretty_midi.PrettyMIDI, grid_s: float = GRID_S) -> np.ndarray:
    """(12,) counts of interval classes over all pairs of distinct pitches sounding together on a grid_s grid."""
    notes = pitched_notes(pm)
    counts = np.zeros(12, dtype=np.int64)
    if len(notes) < 2:
        return counts
    end = notes[:, 1].max()
    times = np.arange(grid_s / 2, end, grid_s)          # sample mid-step so note boundaries never tie
    # roll[t, p]: pitch p sounding at sample t (set semantics: a doubled pitch counts once)
    roll = np.zeros((len(times), 128), dtype=bool)
    first = np.searchsorted(times, notes[:, 0], side="left")
    last = np.searchsorted(times, notes[:, 1], side="left")
    for a, b, p in zip(first, last, notes[:, 2].astype(int)):
        roll[a:b, p] = True
    active = roll[roll.sum(axis=1) >= 2]
    if len(active) == 0:
        return counts
    # pair[t, i, j] for i < j: both pitches sounding -> accumulate pair counts per pitch pair, then fold to mod 12.
    co = active.T.astype(np.int64) @ active.astype(np.int64)    # (128, 128) co-occurrence counts
    iu, ju = np.triu_indices(128, k=1)
    np.add.at(counts, (ju - iu) % 12, co[iu, ju])
    return counts


def consonance(pm: pretty_midi.PrettyMIDI) -> float:
    """Share of simultaneous pitch pairs whose interval class is in CONSONANT_INTERVALS."""
    c = interval_counts(pm)
    total = c.sum()
    return float(c[sorted(CONSONANT_INTERVALS)].sum() / total) if total else math.nan


def dissonance(pm: pretty_midi.PrettyMIDI) -> float:
    """Share of simultaneous pitch pairs whose interval class is dissonant (= 1 - consonance when defined)."""
    c = consonance(pm)
    return 1.0 - c if not math.isnan(c) else math.nan


def pitch_class_histogram(notes: np.ndarray, t0: float = -math.inf, t1: float = math.inf) -> np.ndarray:
    """(12,) seconds each pitch class sounds within [t0, t1)."""
    hist = np.zeros(12)
    if len(notes) == 0:
        return hist
    overlap = np.clip(np.minimum(notes[:, 1], t1) - np.maximum(notes[:, 0], t0), 0.0, None)
    np.add.at(hist, notes[:, 2].astype(int) % 12, overlap)
    return hist


def estimate_key(hist: np.ndarray) -> tuple[int, str] | None:
    """Krumhansl-Schmuckler: (tonic pitch class, "major"|"minor") whose rotated KK profile correlates best."""
    if hist.sum() <= 0 or np.allclose(hist, hist[0]):
        return None
    best, best_r = None, -math.inf
    for mode, profile in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for tonic in range(12):
            r = np.corrcoef(hist, np.roll(profile, tonic))[0, 1]
            if r > best_r + 1e-12:
                best, best_r = (tonic, mode), r
    return best


def key_of(pm: pretty_midi.PrettyMIDI) -> tuple[int, str] | None:
    """Key of the whole piece (duration-weighted pitch classes of the pitched notes)."""
    return estimate_key(pitch_class_histogram(pitched_notes(pm)))


def window_keys(pm: pretty_midi.PrettyMIDI, window_bars: int = KEY_WINDOW_BARS) -> list[tuple[int, str]]:
    """Keys of consecutive non-overlapping windows of `window_bars` bars; windows without notes are skipped."""
    notes = pitched_notes(pm)
    bars = bar_starts(pm)
    edges = list(bars[::window_bars])
    if edges[-1] < bars[-1]:
        edges.append(bars[-1])
    keys = []
    for t0, t1 in zip(edges[:-1], edges[1:]):
        k = estimate_key(pitch_class_histogram(notes, t0, t1))
        if k is not None:
            keys.append(k)
    return keys


def key_change_count(pm: pretty_midi.PrettyMIDI) -> int:
    """Number of times the analysed key differs between consecutive analysed windows."""
    keys = window_keys(pm)
    return sum(a != b for a, b in zip(keys[:-1], keys[1:]))


def key_changes(pm: pretty_midi.PrettyMIDI) -> float:
    """Key changes between consecutive 4-bar windows, per minute of music."""
    minutes = pm.get_end_time() / 60.0
    if minutes <= 0 or len(pitched_notes(pm)) == 0:
        return math.nan
    return float(key_change_count(pm) / minutes)


# ---------------------------------------------------------------------------------------------------------------
# Further symbolic metrics
# ---------------------------------------------------------------------------------------------------------------

def scale_consistency(pm: pretty_midi.PrettyMIDI) -> float:
    """Largest share of pitched notes (by count) inside one of the 12 major (= natural minor) scales."""
    notes = pitched_notes(pm)
    if len(notes) == 0:
        return math.nan
    pcs = np.bincount(notes[:, 2].astype(int) % 12, minlength=12)
    best = max(sum(pcs[(t + s) % 12] for s in MAJOR_STEPS) for t in range(12))
    return float(best / len(notes))


def pitch_class_entropy(pm: pretty_midi.PrettyMIDI, window_bars: int = KEY_WINDOW_BARS) -> float:
    """Mean Shannon entropy (bits, 0..log2 12 = 3.58) of duration-weighted pitch-class histograms per 4-bar window."""
    notes = pitched_notes(pm)
    bars = bar_starts(pm)
    if len(notes) == 0:
        return math.nan
    entropies = []
    for t0, t1 in zip(bars[:-1:window_bars], list(bars[window_bars::window_bars]) + [bars[-1]]):
        h = pitch_class_histogram(notes, t0, t1)
        if h.sum() > 0:
            p = h[h > 0] / h.sum()
            entropies.append(float(-(p * np.log2(p)).sum()))
    return float(np.mean(entropies)) if entropies else math.nan


def _bar_onset_grid(notes: np.ndarray, bars: np.ndarray, positions: int) -> list[np.ndarray]:
    """Per bar, a bool (positions,) vector of onsets quantised to the nearest grid step."""
    grids = [np.zeros(positions, dtype=bool) for _ in range(len(bars) - 1)]
    if len(notes) == 0:
        return grids
    idx = np.searchsorted(bars, notes[:, 0], side="right") - 1
    for i, t in zip(idx, notes[:, 0]):
        if 0 <= i < len(grids):
            frac = (t - bars[i]) / (bars[i + 1] - bars[i])
            grids[i][min(positions - 1, int(round(frac * positions)))] = True
    return grids


def groove_consistency(pm: pretty_midi.PrettyMIDI, drums: bool = False) -> float:
    """Mean over consecutive bars of 1 - Hamming(onset grid a, onset grid b) / 16 (Wu & Yang 2020).

    Pitched notes by default; `drums=True` scores the drum part instead.
    """
    notes = drum_notes(pm) if drums else pitched_notes(pm)
    bars = bar_starts(pm)
    if len(notes) == 0 or len(bars) < 3:
        return math.nan
    grids = _bar_onset_grid(notes, bars, GROOVE_POSITIONS)
    sims = [1.0 - np.count_nonzero(a != b) / GROOVE_POSITIONS for a, b in zip(grids[:-1], grids[1:])]
    return float(np.mean(sims))


def empty_bar_rate(pm: pretty_midi.PrettyMIDI) -> float:
    """Share of bars in which no pitched note sounds at all (not even one held from before)."""
    notes = pitched_notes(pm)
    bars = bar_starts(pm)
    if len(notes) == 0 or len(bars) < 2:
        return math.nan
    empty = 0
    for t0, t1 in zip(bars[:-1], bars[1:]):
        if not np.any((notes[:, 0] < t1) & (notes[:, 1] > t0)):
            empty += 1
    return empty / (len(bars) - 1)


def repetition_rate(pm: pretty_midi.PrettyMIDI) -> float:
    """Share of non-empty bars whose exact content (onset position on a 48-step grid, pitch) appeared in an
    earlier bar. 0 = never repeats, near 1 = a loop."""
    notes = pitched_notes(pm)
    bars = bar_starts(pm)
    if len(notes) == 0 or len(bars) < 2:
        return math.nan
    idx = np.searchsorted(bars, notes[:, 0], side="right") - 1
    contents: dict[int, set] = {}
    for i, (t, p) in zip(idx, notes[:, [0, 2]]):
        if 0 <= i < len(bars) - 1:
            pos = int(round((t - bars[i]) / (bars[i + 1] - bars[i]) * REPEAT_POSITIONS))
            contents.setdefault(int(i), set()).add((pos, int(p)))
    seen, repeats = set(), 0
    for i in sorted(contents):
        key = frozenset(contents[i])
        repeats += key in seen
        seen.add(key)
    return repeats / len(contents)


# ---------------------------------------------------------------------------------------------------------------
# Prompt adherence
# ---------------------------------------------------------------------------------------------------------------

def tempo_bin(bpm: float) -> int:
    """MidiCaps tempo bin index 0..8 (see TEMPO_BIN_EDGES)."""
    return int(np.searchsorted(TEMPO_BIN_EDGES, bpm, side="right"))


def midi_tempo(pm: pretty_midi.PrettyMIDI) -> float:
    """The tempo (BPM) that holds for the longest time in the MIDI's tempo map."""
    times, bpms = pm.get_tempo_changes()
    end = max(pm.get_end_time(), times[-1] + 1e-9)
    spans = np.diff(np.append(times, end))
    return float(bpms[int(np.argmax(spans))])


def key_match(found: tuple[int, str] | None, tonic_pc: int, mode: str, allow_relative: bool) -> bool:
    """CK (exact tonic and mode) or, with allow_relative, CKD (also the relative major/minor)."""
    if found is None:
        return False
    if found == (tonic_pc % 12, mode):
        return True
    if allow_relative:
        relative = ((tonic_pc + 9) % 12, "minor") if mode == "major" else ((tonic_pc + 3) % 12, "major")
        return found == relative
    return False


def integrated_lufs(audio: np.ndarray, sample_rate: int) -> float:
    """BS.1770 integrated loudness (LUFS) of (n,) or (n, channels) float audio; -inf for silence."""
    import pyloudnorm

    if len(audio) < int(0.4 * sample_rate):       # shorter than one gating block
        return math.nan
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(np.asarray(audio, dtype=np.float64)))


def symbolic_metrics(pm: pretty_midi.PrettyMIDI) -> dict[str, float]:
    """Every MIDI-only metric of one piece, by name."""
    drums = drum_notes(pm)
    return {
        "rhythm_consistency": rhythm_consistency(pm),
        "consonance": consonance(pm),
        "dissonance": dissonance(pm),
        "key_changes": key_changes(pm),
        "scale_consistency": scale_consistency(pm),
        "pitch_class_entropy": pitch_class_entropy(pm),
        "groove_consistency": groove_consistency(pm),
        "drum_groove_consistency": groove_consistency(pm, drums=True) if len(drums) else math.nan,
        "empty_bar_rate": empty_bar_rate(pm),
        "repetition_rate": repetition_rate(pm),
    }

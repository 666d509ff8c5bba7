"""Metrics: symbolic music metrics and prompt adherence, with their definitions (METRIC_DOCS, printed in the report).

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

import math
from typing import TYPE_CHECKING

import numpy as np
import pretty_midi

from text2lofi.audio.loudness import MIN_MEASURE_S, integrated_loudness
from text2lofi.compose.theory import estimate_key, key_match
from text2lofi.conditions import BEATS_PER_BAR, PC_NAME, PITCH_CLASS, SCALE_STEPS, tempo_bin

if TYPE_CHECKING:
    from text2lofi.evaluate.prompts import PromptSpec

# ---------------------------------------------------------------------------------------------------------------
# Notes and bars
# ---------------------------------------------------------------------------------------------------------------

# Interval classes (semitones mod 12) counted as consonant: unison/octave, minor/major third, perfect fourth and
# fifth, minor/major sixth. The rest (2nds, tritone, 7ths) are dissonant. The perfect fourth is consonant here
# (as in the original project and in e.g. Huron's interval-class ranking), so a root-position triad is all consonant.
CONSONANT_INTERVALS = frozenset({0, 3, 4, 5, 7, 8, 9})
GRID_S = 0.05          # sampling step for simultaneous intervals, seconds (20 Hz, finer than a 32nd at 160 BPM)
KEY_WINDOW_BARS = 4    # window of the key analysis for key_changes
GROOVE_POSITIONS = 16  # onset grid per bar for groove consistency (16ths)
REPEAT_POSITIONS = 48  # grid per bar when comparing bars for repetition (12 per beat: triplets survive)



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


def key_name(key: tuple[int, str] | None) -> str | None:
    """(9, "minor") -> "A minor"."""

    return None if key is None else f"{PC_NAME[key[0]]} {key[1]}"


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
    best = max(sum(pcs[(t + s) % 12] for s in SCALE_STEPS["major"]) for t in range(12))
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
    """Share of bars in which no pitched note sounds at all (not even one held from before); 1.0 for a piece
    without a single pitched note (a silent generation is all empty bars, not "undefined")."""
    notes = pitched_notes(pm)
    if len(notes) == 0:
        return 1.0
    bars = bar_starts(pm)
    if len(bars) < 2:
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

def midi_tempo(pm: pretty_midi.PrettyMIDI) -> float:
    """The tempo (BPM) that holds for the longest time in the MIDI's tempo map."""
    times, bpms = pm.get_tempo_changes()
    end = max(pm.get_end_time(), times[-1] + 1e-9)
    spans = np.diff(np.append(times, end))
    return float(bpms[int(np.argmax(spans))])


def integrated_lufs(audio: np.ndarray, sample_rate: int) -> float:
    """BS.1770 integrated loudness (LUFS) of (n,) or (n, channels) float audio; -inf for silence, NaN (undefined,
    left out of the summary) when shorter than one 0.4 s gating block."""
    if len(audio) < int(MIN_MEASURE_S * sample_rate):
        return math.nan
    return integrated_loudness(audio, sample_rate)


# General MIDI drum notes (channel 10) the groove metrics look for.
GM_KICKS = frozenset({35, 36})
GM_BACKBEAT = frozenset({37, 38, 39, 40})                 # side stick, snare, clap, electric snare
GM_TIMEKEEPERS = frozenset({42, 44, 46, 51, 53, 59})      # hats and rides
BASS_PROGRAMS = range(32, 40)                              # GM basses


def drum_bars(pm: pretty_midi.PrettyMIDI) -> tuple[float, float, float]:
    """(backbeat, lacking, bass presence) over the bars where drums play: the share with a snare/clap/rim within
    1/8 beat of beats 2 and 4; the share with neither a kick nor a hat/ride (rolls, tom runs); the share where a
    bass part (GM programs 32-39) also sounds. NaN for a piece without drums."""
    drums = drum_notes(pm)
    edges = bar_starts(pm)
    if len(drums) == 0 or len(edges) < 2:
        return math.nan, math.nan, math.nan
    bass = np.array([(n.start, n.end) for i in pm.instruments if not i.is_drum and i.program in BASS_PROGRAMS
                     for n in i.notes]).reshape(-1, 2)
    backbeat, lacking, with_bass = [], [], []
    for t0, t1 in zip(edges[:-1], edges[1:]):
        hits = drums[(drums[:, 0] >= t0) & (drums[:, 0] < t1)]
        if not len(hits):
            continue
        beat = (t1 - t0) / BEATS_PER_BAR
        pos, pitch = (hits[:, 0] - t0) / beat, hits[:, 2].astype(int)
        on = [np.any((np.abs(pos - b) <= 0.125) & np.isin(pitch, list(GM_BACKBEAT))) for b in (1.0, 3.0)]
        backbeat.append(all(on))
        lacking.append(not np.isin(pitch, list(GM_KICKS | GM_TIMEKEEPERS)).any())
        with_bass.append(bool(len(bass)) and bool(np.any((bass[:, 0] < t1) & (bass[:, 1] > t0))))
    return float(np.mean(backbeat)), float(np.mean(lacking)), float(np.mean(with_bass))


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
        "silent": float(len(pitched_notes(pm)) == 0),
        **dict(zip(("backbeat", "drum_bars_lacking", "bass_presence"), drum_bars(pm))),
    }


def adherence(pm: pretty_midi.PrettyMIDI, audio: np.ndarray | None, sample_rate: int,
              spec: "PromptSpec") -> dict[str, float]:
    """How well one generated track follows the prompt that asked for it (1.0 / 0.0 per criterion)."""
    asked_bin, got_bin = tempo_bin(spec.tempo_bpm), tempo_bin(midi_tempo(pm))
    found = key_of(pm)

    tonic = PITCH_CLASS[spec.key]
    has_drums = len(drum_notes(pm)) > 0
    row = {
        "tempo_bin": float(got_bin == asked_bin),
        "tempo_bin_tolerant": float(abs(got_bin - asked_bin) <= 1),
        "correct_key": float(key_match(found, tonic, spec.mode, allow_relative=False)),
        "correct_key_dup": float(key_match(found, tonic, spec.mode, allow_relative=True)),
        "drums_match": float(has_drums == spec.drums),
    }
    if audio is not None:
        err = len(audio) / sample_rate - spec.duration_s
        row["exact_duration"] = float(len(audio) == int(round(spec.duration_s * sample_rate)))
        row["duration_error_s"] = abs(err)
        row["loudness_lufs"] = integrated_lufs(audio, sample_rate)
    return row


# ---------------------------------------------------------------------------------------------------------------
# Metric documentation (printed in the report)
# ---------------------------------------------------------------------------------------------------------------

METRIC_DOCS = {
    "rhythm_consistency": "mu / (mu + sigma) of the durations (s) of all pitched notes; 1 = every note equally long. "
                          "The original project's definition.",
    "consonance": "Pairs of distinct pitches sounding together, sampled every 50 ms: share whose interval mod 12 is "
                  "in {0, 3, 4, 5, 7, 8, 9} (unison/octave, thirds, fourth, fifth, sixths). As the original project.",
    "dissonance": "Same pairs: share with interval mod 12 in {1, 2, 6, 10, 11} (= 1 - consonance).",
    "key_changes": "Key of each 4-bar window (text2lofi.compose.theory: Pearson correlation of the duration-weighted "
                   "pitch classes with 24 rotated Temperley-Kostka-Payne profiles, the profile that best matches "
                   "POP909's key annotations); changes between consecutive analysed windows per minute of music.",
    "scale_consistency": "Largest share of notes inside one major/natural-minor scale (Mogren 2016, C-RNN-GAN).",
    "pitch_class_entropy": "Shannon entropy (bits, max 3.58) of the duration-weighted pitch-class histogram per "
                           "4-bar window, averaged (Wu & Yang 2020, Jazz Transformer).",
    "groove_consistency": "Mean over consecutive bars of 1 - Hamming distance of 16-step onset grids / 16, pitched "
                          "notes (Wu & Yang 2020).",
    "drum_groove_consistency": "Groove consistency of the drum part (real: Groove MIDI Dataset validation beats).",
    "backbeat": "Share of drum bars with a snare, clap or rim within 1/8 beat of beats 2 and 4 (real: Groove MIDI).",
    "drum_bars_lacking": "Share of drum bars with neither a kick nor a hat/ride: rolls and tom runs (real: Groove "
                         "MIDI).",
    "bass_presence": "Share of drum bars where a bass part (GM programs 32-39) also sounds.",
    "empty_bar_rate": "Share of 4-beat bars in which no pitched note sounds (Dong et al. 2018, MuseGAN 'EB').",
    "silent": "Share of pieces without a single pitched note (their other metrics are undefined, except "
              "empty_bar_rate = 1).",
    "repetition_rate": "Share of non-empty bars whose exact content (onset on a 48-step grid, pitch) already "
                       "appeared in an earlier bar; 0 = never repeats, 1 = one loop.",
    "tempo_bin": "TB: the MIDI's tempo falls in the asked tempo's MidiCaps bin (edges 40/60/70/90/110/140/160/210 "
                 "BPM; Melechovsky et al. 2024, text2midi).",
    "tempo_bin_tolerant": "TBT: as TB but an adjacent bin also counts.",
    "correct_key": "CK: the key (as in key_changes) of the whole piece equals the asked tonic and mode.",
    "correct_key_dup": "CKD: as CK, the relative major/minor also counts.",
    "drums_match": "Drum notes present if and only if the prompt asked for drums.",
    "exact_duration": "Audio is exactly round(asked seconds x 44100) samples long.",
    "duration_error_s": "|audio length - asked length| in seconds.",
    "loudness_lufs": "BS.1770 integrated loudness of the mastered audio (pyloudnorm); the target is -14 LUFS.",
    "interpret_tempo": "Diagnostic: the interpreted Conditions carry the prompt's BPM (+-0.5).",
    "interpret_key": "Diagnostic: the interpreted Conditions carry the prompt's tonic and mode.",
    "audio_key": "Outside judge: Essentia's KeyExtractor on the mastered audio, majority of five profiles (temperley, "
                 "krumhansl, edma, bgate, shaath), equals the asked tonic and mode.",
    "audio_key_dup": "As audio_key, the relative major/minor also counts.",
    "audio_key_major": "audio_key over the prompts that ask for a major key.",
    "audio_key_minor": "audio_key over the prompts that ask for a minor key.",
    "audio_tempo": "Outside judge: Essentia's RhythmExtractor2013 (multifeature) tempo within 4% of the asked BPM, "
                   "or of its double or half.",
    "key_annotation_agreement": "Real music only: our key finder agrees with POP909's key annotation (CK); "
                                "the ceiling for CK on real music.",
}

# What the original project reported for its piano model, and published prompt-adherence anchors (MidiCaps test).
ORIGINAL = {"rhythm_consistency": 0.34, "consonance": 0.87, "dissonance": 0.13, "key_changes": 0.2}
ANCHORS = {
    "text2midi": {"tempo_bin": 0.397, "tempo_bin_tolerant": 0.658, "correct_key": 0.336, "correct_key_dup": 0.356},
    "MuseCoco": {"tempo_bin": 0.217, "tempo_bin_tolerant": 0.546, "correct_key": 0.137, "correct_key_dup": 0.146},
}
SYMBOLIC = ("rhythm_consistency", "consonance", "dissonance", "key_changes", "scale_consistency",
            "pitch_class_entropy", "groove_consistency", "drum_groove_consistency", "empty_bar_rate",
            "repetition_rate", "silent", "backbeat", "drum_bars_lacking", "bass_presence")
ADHERENCE = ("tempo_bin", "tempo_bin_tolerant", "correct_key", "correct_key_dup", "drums_match", "exact_duration",
             "duration_error_s", "loudness_lufs", "interpret_tempo", "interpret_key")
# From the audio, by an outside judge (evaluate.judges, Essentia); present only where Essentia is installed.
JUDGED = ("audio_key", "audio_key_dup", "audio_key_major", "audio_key_minor", "audio_tempo")
# Metrics where a larger value is not simply "better": the report compares these to the real music instead.
CLOSER_TO_REAL = ("rhythm_consistency", "key_changes", "scale_consistency", "pitch_class_entropy",
                  "groove_consistency", "drum_groove_consistency", "repetition_rate", "backbeat",
                  "drum_bars_lacking", "bass_presence")

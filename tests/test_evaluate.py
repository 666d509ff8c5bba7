"""Metrics on tiny hand-made MIDI with answers worked out by hand, plus a small end-to-end eval run."""
import json
import math

import numpy as np
import pretty_midi
import pytest

from text2lofi import evaluate as ev

BPM = 120.0          # one beat = 0.5 s, one 4/4 bar = 2 s
BAR = 2.0


def make_pm(notes, drums=(), bpm=BPM):
    """notes / drums: iterables of (start_s, end_s, pitch)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    piano = pretty_midi.Instrument(program=0)
    piano.notes = [pretty_midi.Note(velocity=80, pitch=p, start=s, end=e) for s, e, p in notes]
    pm.instruments.append(piano)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        kit.notes = [pretty_midi.Note(velocity=90, pitch=p, start=s, end=e) for s, e, p in drums]
        pm.instruments.append(kit)
    return pm


def tonal_bars(tonic, first_bar, n_bars):
    """n_bars of a held major triad plus an eighth-note major scale on `tonic` (MIDI pitch)."""
    notes = []
    for b in range(first_bar, first_bar + n_bars):
        t0 = b * BAR
        notes += [(t0, t0 + BAR, tonic + i) for i in (0, 4, 7)]
        notes += [(t0 + j * 0.25, t0 + (j + 1) * 0.25, tonic + 12 + s) for j, s in enumerate((0, 2, 4, 5, 7, 9, 11, 12))]
    return notes


def test_major_triad_is_fully_consonant():
    pm = make_pm([(0, 2, 60), (0, 2, 64), (0, 2, 67)])
    assert ev.consonance(pm) == 1.0
    assert ev.dissonance(pm) == 0.0


def test_held_minor_second_is_fully_dissonant():
    pm = make_pm([(0, 4, 60), (0, 4, 61)])
    assert ev.dissonance(pm) == 1.0


def test_mixed_chord_counts_pairs():
    # C-E (4, consonant), C-F# (6, dissonant), E-F# (2, dissonant): one consonant pair of three.
    pm = make_pm([(0, 2, 60), (0, 2, 64), (0, 2, 66)])
    assert ev.consonance(pm) == pytest.approx(1 / 3)
    counts = ev.interval_counts(pm)
    assert counts[4] == counts[6] == counts[2] == 40          # 2 s on a 0.05 s grid


def test_consonance_only_counts_overlapping_time():
    # Minor second for 1 s, then a fifth for 3 s: 20 dissonant samples, 60 consonant.
    pm = make_pm([(0, 4, 60), (0, 1, 61), (1, 4, 67)])
    assert ev.consonance(pm) == pytest.approx(0.75)


def test_single_melody_has_no_intervals():
    assert math.isnan(ev.consonance(make_pm([(0, 1, 60), (1, 2, 62)])))


def test_rhythm_consistency():
    equal = make_pm([(i * 0.5, i * 0.5 + 0.5, 60) for i in range(8)])
    assert ev.rhythm_consistency(equal) == pytest.approx(1.0)
    # durations 1 s and 3 s: mu 2, sigma 1 -> 2/3
    mixed = make_pm([(0, 1, 60), (1, 4, 62)])
    assert ev.rhythm_consistency(mixed) == pytest.approx(2 / 3)


def test_key_found_for_each_window_and_one_modulation():
    # 8 bars in C major, then 8 bars in F# major: 4 windows of 4 bars, one change, 32 s of music.
    pm = make_pm(tonal_bars(48, 0, 8) + tonal_bars(54, 8, 8))
    assert ev.window_keys(pm) == [(0, "major"), (0, "major"), (6, "major"), (6, "major")]
    assert ev.key_change_count(pm) == 1
    assert ev.key_changes(pm) == pytest.approx(1 / (32 / 60))
    steady = make_pm(tonal_bars(57, 0, 16))
    assert ev.key_of(steady) == (9, "major")
    assert ev.key_changes(steady) == 0.0


def test_minor_key_detected():
    a_minor = []
    for b in range(4):
        t0 = b * BAR
        a_minor += [(t0, t0 + BAR, p) for p in (57, 60, 64)]                       # A minor triad
        a_minor += [(t0 + j * 0.25, t0 + (j + 1) * 0.25, 69 + s) for j, s in enumerate((0, 2, 3, 5, 7, 8, 11, 12))]
    assert ev.key_of(make_pm(a_minor)) == (9, "minor")


def test_scale_consistency():
    c_scale = make_pm([(i * 0.5, i * 0.5 + 0.5, 60 + s) for i, s in enumerate((0, 2, 4, 5, 7, 9, 11))])
    assert ev.scale_consistency(c_scale) == 1.0
    chromatic = make_pm([(i * 0.5, i * 0.5 + 0.5, 60 + i) for i in range(12)])
    assert ev.scale_consistency(chromatic) == pytest.approx(7 / 12)


def test_pitch_class_entropy():
    one_pitch = make_pm([(0, 8, 60)])
    assert ev.pitch_class_entropy(one_pitch) == 0.0
    # 12 pitch classes, equal time, all inside one 4-bar window (8 s)
    chromatic = make_pm([(i * 0.5, i * 0.5 + 0.5, 60 + i) for i in range(12)])
    assert ev.pitch_class_entropy(chromatic) == pytest.approx(math.log2(12))


def test_groove_consistency():
    same = make_pm([(b * BAR + q * 0.5, b * BAR + q * 0.5 + 0.25, 60) for b in range(4) for q in range(4)])
    assert ev.groove_consistency(same) == 1.0
    # bar A: onsets at 16th positions 0 and 8; bar B: 4 and 12 -> 4 positions differ -> 1 - 4/16
    alt = make_pm([(0, 0.1, 60), (1.0, 1.1, 60), (2.5, 2.6, 60), (3.5, 3.6, 60)])
    assert ev.groove_consistency(alt) == pytest.approx(0.75)
    kit = make_pm([(0, 8, 60)], drums=[(b * BAR + q * 0.5, b * BAR + q * 0.5 + 0.1, 36) for b in range(4) for q in (0, 2)])
    assert ev.groove_consistency(kit, drums=True) == 1.0


def test_empty_bar_rate():
    # notes in bar 0 and bar 3 of 4 -> bars 1 and 2 are empty
    pm = make_pm([(0, 1, 60), (6, 7, 62)])
    assert ev.empty_bar_rate(pm) == pytest.approx(0.5)
    held = make_pm([(0, 7.5, 60)])             # one note held through all four bars
    assert ev.empty_bar_rate(held) == 0.0


def test_repetition_rate():
    a = [(0.0, 0.5, 60), (1.0, 1.5, 64)]
    b = [(0.0, 0.5, 62), (0.5, 1.0, 65)]
    bars = [a, a, b, a]                           # A A B A: bars 2 and 4 repeat an earlier bar
    pm = make_pm([(i * BAR + s, i * BAR + e, p) for i, bar in enumerate(bars) for s, e, p in bar])
    assert ev.repetition_rate(pm) == pytest.approx(0.5)


def test_tempo_bins_match_midicaps_edges():
    assert [ev.tempo_bin(x) for x in (30, 40, 65, 89.9, 90, 120, 150, 200, 215)] == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert ev.midi_tempo(make_pm([(0, 4, 60)], bpm=85.0)) == pytest.approx(85.0)


def test_key_match_ck_and_ckd():
    assert ev.key_match((0, "major"), 0, "major", allow_relative=False)
    assert not ev.key_match((9, "minor"), 0, "major", allow_relative=False)
    assert ev.key_match((9, "minor"), 0, "major", allow_relative=True)      # relative minor of C
    assert ev.key_match((4, "major"), 1, "minor", allow_relative=True)      # relative major of C# minor
    assert not ev.key_match((4, "minor"), 0, "major", allow_relative=True)
    assert not ev.key_match(None, 0, "major", allow_relative=True)


def test_loudness_of_a_known_sine():
    sr = 44100
    t = np.arange(sr * 3) / sr
    sine = 0.5 * np.sin(2 * np.pi * 997 * t)              # -6.02 dBFS peak, mono: -3.01 - 6.02 LUFS
    assert ev.integrated_lufs(sine, sr) == pytest.approx(-9.03, abs=0.1)

"""Chords written in the prompt: read as written, the key following them unless stated, unreadable symbols reported,
the track playing them (piano note-time mostly on the bar's chord tones) and listing them per bar in its metadata."""
from __future__ import annotations

import json

import pytest

from text2lofi import generate, interpret
from text2lofi.compose.theory import chord_tones
from text2lofi.instruct.chords import find_chords, key_of_progression, resolve_roman

SR = 44100


@pytest.mark.parametrize("text, symbols, roman", [
    ("lofi over Dm9 G13 Cmaj9 Am9", ["Dm9", "G13", "Cmaj9", "Am9"], False),
    ("with the chords Fmaj7, Em7, Dm7, Cmaj7.", ["Fmaj7", "Em7", "Dm7", "Cmaj7"], False),
    ("chords Am7 - D7/F# | Gmaj7 Cmaj7#11 please", ["Am7", "D7/F#", "Gmaj7", "Cmaj7#11"], False),
    ("ii-V-I in F", ["ii", "V", "I"], True),
    ("over Bbmaj7", ["Bbmaj7"], False),                   # one symbol counts after "over" / "chords"
    ("rainy night study beats in A minor, 4 minutes", [], False),
    ("I want a Cafe vibe, Beats to study", [], False),    # words that start like chords are words
    ("Go slower in C", [], False),
])
def test_progressions_are_found_as_written(text, symbols, roman):
    run = find_chords(text)
    assert (run.symbols, run.roman) == (symbols, roman)


def test_unreadable_symbols_in_a_progression_are_reported():
    run = find_chords("chords Hm7 F#7 Bm")
    assert run.symbols == ["F#7", "Bm"] and run.unreadable == ["Hm7"]


@pytest.mark.parametrize("numeral, key, mode, chord", [
    ("ii", "F", "major", "Gm"), ("V7", "F", "major", "C7"), ("I", "F", "major", "F"), ("bVII", "C", "major", "Bb"),
    ("iv", "A", "minor", "Dm"), ("VI", "A", "minor", "F"), ("V7", "B", "minor", "F#7"), ("viiø", "C", "major", "Bm7b5"),
])
def test_roman_numerals_are_read_in_the_key_and_spelled_for_it(numeral, key, mode, chord):
    assert resolve_roman(numeral, key, mode) == chord


@pytest.mark.parametrize("chords, key", [
    ("Dm9 G13 Cmaj9 Am9", "C major"), ("Fmaj7 Em7 Dm7 Cmaj7", "C major"), ("Am F C G", "A minor"),
    ("Cm Ab Eb Bb", "C minor"), ("Em7 A7 Dmaj7", "D major"), ("Dm Bb F C", "D minor"),
])
def test_the_key_follows_the_chords(chords, key):
    assert " ".join(key_of_progression(chords.split())) == key


@pytest.mark.parametrize("text, key, mode, progression", [
    ("lofi over Dm9 G13 Cmaj9 Am9", "C", "major", ["Dm9", "G13", "Cmaj9", "Am9"]),
    ("chill beats with the chords Fmaj7 Em7 Dm7 Cmaj7", "C", "major", ["Fmaj7", "Em7", "Dm7", "Cmaj7"]),
    ("ii-V-I in F, jazzy", "F", "major", ["Gm", "C", "F"]),
    ("sad lofi i-iv-v in A minor", "A", "minor", ["Am", "Dm", "Em"]),
    ("lofi in D minor over Fmaj7 Em7", "D", "minor", ["Fmaj7", "Em7"]),     # a stated key wins
])
def test_interpret_uses_the_written_progression(text, key, mode, progression):
    c = interpret(text)
    assert (c.key, c.mode, c.progression) == (key, mode, progression)
    assert not c.warnings


def test_interpret_reports_an_unreadable_chord():
    c = interpret("chords Hm7 F#7 Bm")
    assert c.progression == ["F#7", "Bm"]
    assert any("'Hm7' not understood" in w for w in c.warnings)


def test_the_track_plays_the_written_chords_and_lists_them_per_bar(tmp_path):
    t = generate(interpret("lofi over Dm9 G13 Cmaj9 Am9, 16 seconds"), seed=3)
    chords = t.metadata["chords"]
    bar_s = 4 * 60.0 / t.conditions.tempo_bpm
    assert len(chords) == -(-16.0 // bar_s)                      # one per bar, the cut last bar included
    assert chords[:4] == ["Dm9", "G13", "Cmaj9", "Am9"] and chords[-1] == "Cmaj7"    # ends at home
    path = t.save(tmp_path / "t.wav")
    assert json.loads(path.with_suffix(".wav.json").read_text())["chords"] == chords
    piano = next(i for i in t.midi.instruments if not i.is_drum)
    shares = []
    for k, chord in enumerate(chords[:-1]):
        pcs = set(chord_tones(chord)[1])
        t0, t1 = k * bar_s, (k + 1) * bar_s
        spans = [(min(n.end, t1) - n.start, n.pitch % 12 in pcs) for n in piano.notes if t0 <= n.start < t1]
        total = sum(d for d, _ in spans)
        if total:
            shares.append(sum(d for d, inside in spans if inside) / total)
    assert sum(shares) / len(shares) >= 0.6
    bass = next(i for i in t.midi.instruments if i.name == "bass")
    on_the_one = {round(n.start / bar_s): n.pitch % 12 for n in bass.notes
                  if abs(n.start / bar_s - round(n.start / bar_s)) < 1e-3}
    assert on_the_one and all(pc == chord_tones(chords[k])[0] for k, pc in on_the_one.items())   # the roots


def test_every_seed_progression_opens_on_its_tonic_chord():
    from text2lofi.instruct.data import load_bank
    from text2lofi.compose.theory import is_tonic_chord
    from text2lofi.instruct.interpreter import seed_progression
    bank = load_bank()
    for mode, key in (("major", "Eb"), ("minor", "F#")):
        for mood, options in bank.progressions[mode].items():
            for seed in range(len(options)):
                chords = seed_progression(bank, key, mode, [mood], seed)
                assert is_tonic_chord(chords[0], {"Eb": 3, "F#": 6}[key], mode), (mode, mood, chords)


def test_seed_chords_are_spelled_for_the_key():
    c = interpret("sad lofi in F# minor")
    assert not any(x[1:2] == "b" and x[:1] in "DGA" for x in c.progression)          # C#7, not Db7
    assert c.progression[0].startswith("F#m")

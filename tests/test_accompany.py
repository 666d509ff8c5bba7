"""Bring your own MIDI: the file's notes kept exactly, its tempo, key and chords followed, drums and bass added;
or the piano written on after it. Real models and FluidSynth; the tests write their own small MIDI."""
import subprocess
import sys

import pretty_midi
import pytest

from text2lofi import accompany
from text2lofi.compose.given import read_given
from text2lofi.compose.theory import chord_tones
from text2lofi.conditions import SAMPLE_RATE as SR

import song_midi

write_midi = song_midi.write
BPM, BAR, CHORDS = song_midi.BPM, song_midi.BAR, song_midi.CHORDS


@pytest.fixture(scope="module")
def given_file(tmp_path_factory):
    return write_midi(tmp_path_factory.mktemp("given") / "song.mid")


@pytest.fixture(scope="module")
def accompanied(given_file):
    return accompany(given_file, "rainy night lofi, jazzy", seed=4)


def _notes(instrument):
    return sorted((round(n.start * SR), n.pitch, round(n.end * SR), n.velocity) for n in instrument.notes)


def test_the_file_is_read_for_tempo_key_and_chords(given_file):
    g = read_given(given_file)
    assert (g.tempo_bpm, g.key, g.mode, g.n_bars) == (BPM, "D", "minor", 8)
    assert g.chords == CHORDS * 2
    assert g.remarks == []


def test_the_given_notes_are_kept_exactly_and_drums_and_bass_are_added(accompanied, given_file):
    t = accompanied
    c = t.conditions
    assert (c.tempo_bpm, c.key, c.mode) == (BPM, "D", "minor")
    assert len(t.audio) == round(8 * BAR * SR)                       # the file's length: 8 bars
    parts = {i.name: i for i in t.midi.instruments}
    assert set(parts) == {"piano", "drums", "bass"}
    given = pretty_midi.PrettyMIDI(str(given_file)).instruments[0]
    ours, theirs = _notes(parts["piano"]), _notes(given)
    assert len(ours) == len(theirs)
    # Same pitches, onsets and velocities; times within one sample (notes live on the sample grid).
    for (s1, p1, e1, v1), (s2, p2, e2, v2) in zip(ours, theirs):
        assert p1 == p2 and v1 == v2 and abs(s1 - s2) <= 1 and abs(e1 - e2) <= 1
    assert len(parts["drums"].notes) > 8
    assert t.metadata["chords"] == CHORDS * 2


def test_the_bass_plays_the_roots_of_the_files_chords(accompanied):
    bass = next(i for i in accompanied.midi.instruments if i.name == "bass")
    assert bass.notes
    for n in bass.notes:
        bar = int(n.start / BAR + 1e-6)
        root, tones = chord_tones(CHORDS[bar % 4])
        assert n.pitch % 12 in tones and (n.start - bar * BAR > 1e-3 or n.pitch % 12 == root)


def test_continue_writes_the_piano_on_after_the_file(given_file):
    t = accompany(given_file, "lofi", seed=4, continue_s=12.0)
    assert len(t.audio) == round((8 * BAR + 12.0) * SR)
    piano = next(i for i in t.midi.instruments if i.name == "piano")
    inside = [n for n in piano.notes if n.start < 8 * BAR - 1e-6]
    after = [n for n in piano.notes if n.start >= 8 * BAR - 1e-6]
    given = pretty_midi.PrettyMIDI(str(given_file)).instruments[0]
    assert [(n.pitch, round(n.start * SR)) for n in sorted(inside, key=lambda n: (n.start, n.pitch))] == \
        [(n.pitch, round(n.start * SR)) for n in sorted(given.notes, key=lambda n: (n.start, n.pitch))]
    assert len(after) >= 8                                      # the model wrote on
    assert len(t.metadata["chords"]) >= 8 + 4


def test_what_was_assumed_is_said(tmp_path):
    g = read_given(write_midi(tmp_path / "bare.mid", key=None, tempo=False))     # written at 120, said nowhere
    assert g.tempo_bpm == 120.0 and any("no tempo" in r for r in g.remarks)
    assert any("no key signature" in r and "D minor" in r for r in g.remarks)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("not a midi file"), "cannot be read as MIDI"),
    (lambda p: pretty_midi.PrettyMIDI().write(str(p)), "no pitched notes"),
    (lambda p: write_midi(p, drums_only=True), "no pitched notes"),
])
def test_unusable_files_get_a_clear_error(tmp_path, make, message):
    path = tmp_path / "bad.mid"
    make(path)
    with pytest.raises(ValueError, match=message):
        read_given(path)


def test_cli_accompanies_a_file_and_refuses_a_bad_one(tmp_path, given_file):
    out = tmp_path / "acc.wav"
    r = subprocess.run([sys.executable, "-m", "text2lofi", "generate", "lofi", "--from-midi", str(given_file),
                        "-o", str(out), "--seed", "2", "-q"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    from pedalboard.io import AudioFile
    with AudioFile(str(out)) as f:
        assert f.frames == round(8 * BAR * SR)
    bad = tmp_path / "bad.mid"
    bad.write_text("nope")
    r = subprocess.run([sys.executable, "-m", "text2lofi", "generate", "lofi", "--from-midi", str(bad),
                        "-o", str(tmp_path / "x.wav")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "cannot be read as MIDI" in r.stderr and not (tmp_path / "x.wav").exists()

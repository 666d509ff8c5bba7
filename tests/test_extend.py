"""Extend a track and vary one part: real models and FluidSynth. What is kept must come out note for note."""
import hashlib
import subprocess
import sys

import pytest

from text2lofi.conditions import SAMPLE_RATE as SR, Conditions
from text2lofi.pipeline import accompany, extend, generate, vary

BAR = 3.0                                             # seconds per bar at 80 BPM


def notes(track, part: str, before: float | None = None) -> list[tuple]:
    inst = next((i for i in track.midi.instruments if i.name == part), None)
    return sorted((round(n.start * SR), n.pitch, round(n.end * SR), n.velocity) for n in (inst.notes if inst else [])
                  if before is None or n.start < before - 1e-6)


def on_the_one(track, part: str) -> dict[int, int]:
    """Bar start sample -> pitch of the part's note there."""
    return {n[0]: n[1] for n in notes(track, part) if n[0] % round(BAR * SR) == 0}


@pytest.fixture(scope="module")
def original():
    return generate(Conditions(tempo_bpm=80, key="A", mode="minor", duration_s=20.0, textures=["vinyl"], seed=7))


@pytest.fixture(scope="module")
def extended(original):
    return extend(original, 13.5)


def test_extend_is_exactly_longer_and_keeps_every_note_before_the_outro(original, extended):
    plan = original.metadata["plan"]
    assert plan[-1][0] == "outro"
    outro_at = sum(s[1] for s in plan[:-1]) * BAR
    assert len(extended.audio) == round(33.5 * SR)
    for part in ("piano", "drums", "bass"):
        kept = notes(original, part, outro_at)
        assert kept and notes(extended, part, outro_at) == kept
    assert notes(extended, "piano") != notes(original, "piano")          # new bars after the old outro's place
    assert extended.metadata["plan"][:len(plan) - 1] == plan[:-1]
    assert extended.metadata["plan"][-1][0] == "outro"                    # a new outro at the new end
    assert extended.metadata["chords"][-1] == "Am7"                       # and it ends at home


def test_extend_is_deterministic_and_works_from_the_sidecar(original, extended, tmp_path):
    original.save(tmp_path / "t.wav")
    again = extend(tmp_path / "t.wav.json", 13.5)
    assert hashlib.sha256(again.audio.tobytes()).digest() == hashlib.sha256(extended.audio.tobytes()).digest()


@pytest.mark.parametrize("part", ["piano", "drums", "bass"])
def test_vary_redraws_one_part_and_keeps_the_others_note_for_note(original, part):
    varied = vary(original, part, seed=5)
    assert len(varied.audio) == len(original.audio)
    assert notes(varied, part) != notes(original, part)
    for other in {"piano", "drums", "bass"} - {part}:
        if (part, other) == ("drums", "bass"):     # the bass locks to the kick: new kicks, same roots on the one
            assert on_the_one(varied, "bass") == on_the_one(original, "bass")
            continue
        assert notes(varied, other) == notes(original, other)
    assert notes(vary(original, part, seed=5), part) == notes(varied, part)      # deterministic for a seed


def test_bad_requests_say_what_is_wrong(original, tmp_path):
    with pytest.raises(ValueError, match="part must be one of piano, drums, bass"):
        vary(original, "guitar")
    with pytest.raises(ValueError, match="seconds must be more than 0"):
        extend(original, 0)
    with pytest.raises(ValueError, match="cannot read the track's sidecar"):
        extend(tmp_path / "missing.wav", 5)
    import song_midi
    acc = accompany(song_midi.write(tmp_path / "song.mid", bars=2), "lofi", seed=1)
    with pytest.raises(ValueError, match="accompanies a MIDI file"):
        extend(acc, 5)


def test_cli_extends_and_varies_from_the_sidecar(tmp_path):
    run = [sys.executable, "-m", "text2lofi"]
    first = subprocess.run(run + ["generate", "lofi in A minor, 8 seconds", "-o", str(tmp_path / "a.wav"),
                                  "--seed", "3", "-q"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    longer = subprocess.run(run + ["extend", str(tmp_path / "a.wav.json"), "4", "-o", str(tmp_path / "b.wav"),
                                   "--midi", str(tmp_path / "b.mid")], capture_output=True, text=True, timeout=300)
    assert longer.returncode == 0, longer.stderr
    assert "12.000 s (extended by 4 s)" in longer.stdout and (tmp_path / "b.mid").exists()
    other = subprocess.run(run + ["vary", str(tmp_path / "a.wav"), "drums", "--seed", "9", "-o",
                                  str(tmp_path / "c.wav")], capture_output=True, text=True, timeout=300)
    assert other.returncode == 0 and "drums varied with seed 9" in other.stdout, other.stderr


def test_vary_one_section_keeps_every_other_bar_and_survives_an_extension(original):
    plan = original.metadata["plan"]                          # [loop 5, outro 2]
    varied = vary(original, "piano", seed=8, section=0)
    end_of_0 = plan[0][1] * BAR
    assert notes(varied, "piano", end_of_0) != notes(original, "piano", end_of_0)
    outro = [n for n in notes(original, "piano") if n[0] >= round(end_of_0 * SR)]
    assert [n for n in notes(varied, "piano") if n[0] >= round(end_of_0 * SR)] == outro    # the outro as it was
    for other in ("drums", "bass"):
        assert notes(varied, other) == notes(original, other)
    longer = extend(varied, 6.0)                               # the splice is in the sidecar: it stays
    assert notes(longer, "piano", end_of_0) == notes(varied, "piano", end_of_0)
    with pytest.raises(ValueError, match="section must be from 0 to 1"):
        vary(original, "piano", seed=8, section=5)


def test_remake_gives_the_same_track_sample_for_sample(original):
    from text2lofi.pipeline import remake
    again = remake(original)
    assert hashlib.sha256(again.audio.tobytes()).digest() == hashlib.sha256(original.audio.tobytes()).digest()
    assert set(again.stems) == set(original.stems) == {"piano", "drums", "bass", "textures"}

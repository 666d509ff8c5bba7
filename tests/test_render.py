"""FluidSynth stems: timing, drum kit, chunked streaming, reuse, balance, and what a missing install says."""
import sys

import numpy as np
import pretty_midi
import pytest

from text2lofi.audio.loudness import integrated_loudness as stem_loudness
from text2lofi.audio.render import (PIANO_DRUM_LU, PIANO_PROGRAMS, NoteEvent, PartSynth, SynthPool, balance_gains,
                              find_soundfont, piano_program_for, render_midi)

SR = 44100


def onset(audio, threshold=1e-3):
    """First sample whose level exceeds threshold x the peak."""
    level = np.abs(audio).max(axis=1)
    return int(np.argmax(level > threshold * level.max()))


def centroid_hz(audio):
    spec = np.abs(np.fft.rfft(audio.mean(axis=1))) ** 2   # power-weighted
    freqs = np.fft.rfftfreq(len(audio), 1 / SR)
    return float((spec * freqs).sum() / spec.sum())


def test_note_sounds_at_its_sample():
    with PartSynth("piano") as synth:
        for start in (0, 10_007, 22_050, 30_001):
            synth.reset()
            audio = synth.render([NoteEvent(start, start + SR // 4, 60, 100)], SR)
            assert audio.shape == (SR, 2) and audio.dtype == np.float32
            assert not np.any(audio[:start])                  # silence before the note
            assert 0 <= onset(audio) - start <= 0.003 * SR    # sounding within 3 ms


def test_drums_play_the_drum_kit():
    hat = [NoteEvent(0, SR // 2, 42, 110)]                    # GM closed hi-hat on channel 9
    with PartSynth("drums") as drums, PartSynth("piano") as piano:
        hat_audio = drums.render(hat, SR)
        piano_audio = piano.render(hat, SR)                   # the same key on the piano is a low F#
    assert drums.channel == 9
    assert centroid_hz(hat_audio) > 3000 > 1000 > centroid_hz(piano_audio)


def test_chunked_render_equals_one_shot_and_keeps_pending_note_offs():
    rng = np.random.default_rng(3)
    starts = np.sort(rng.integers(0, 3 * SR, 40))
    notes = [NoteEvent(int(s), int(s + rng.integers(500, SR)), int(rng.integers(48, 84)), int(rng.integers(40, 120)))
             for s in starts]
    n = 4 * SR
    with PartSynth("piano") as synth:
        whole = synth.render(notes, n)
        synth.reset()
        cuts = [0, 777, 20_000, 44_100, 90_001, 130_000, n]
        parts = []
        for a, b in zip(cuts[:-1], cuts[1:]):
            parts.append(synth.render([x for x in notes if a <= x.start_sample < b], b - a))
    assert np.array_equal(np.concatenate(parts), whole)
    assert np.abs(whole[-SR // 2:]).max() < 0.05 * np.abs(whole).max()   # notes were released


def test_reused_synth_renders_like_a_fresh_one():
    notes = [NoteEvent(1000, 20_000, 64, 90), NoteEvent(5000, 30_000, 67, 80)]
    pool = SynthPool()
    with pool.acquire("piano", 0) as synth:
        first = synth.render(notes, 33_333)                   # odd length: FluidSynth block grid left mid-block
    with pool.acquire("piano", 0) as again:
        assert again is synth                                 # pooled, reset on return
        second = again.render(notes, 33_333)
    pool.close()
    assert np.array_equal(first, second)


def test_render_midi_gives_stems_of_exact_length():
    pm = pretty_midi.PrettyMIDI(initial_tempo=90)
    piano = pretty_midi.Instrument(program=4)
    piano.notes += [pretty_midi.Note(80, p, 0.5, 2.0) for p in (57, 60, 64)]
    piano.notes.append(pretty_midi.Note(80, 72, 2.9, 5.0))     # runs past the end: cut
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes += [pretty_midi.Note(100, 36, t, t + 0.1) for t in (0.0, 0.667, 1.333)]
    pm.instruments += [piano, drums]
    stems = render_midi(pm, 3 * SR + 17)
    assert sorted(stems) == ["drums", "piano"]
    assert all(a.shape == (3 * SR + 17, 2) for a in stems.values())
    assert onset(stems["piano"]) == pytest.approx(0.5 * SR, abs=0.003 * SR)
    only_piano = pretty_midi.PrettyMIDI()
    only_piano.instruments.append(piano)
    assert list(render_midi(only_piano, SR)) == ["piano"]


def test_balance_gains_sets_the_documented_piano_drum_ratio():
    rng = np.random.default_rng(0)
    beat = SR // 2                                             # 120 BPM
    chords = [NoteEvent(b * 4 * beat, (b + 1) * 4 * beat, p + 12 * (b % 2), int(rng.integers(50, 90)))
              for b in range(5) for p in (57, 60, 64, 67)]
    kit = [NoteEvent(i * beat, i * beat + 2000, (36, 42, 38, 42)[i % 4], 120) for i in range(20)]
    with PartSynth("piano") as piano, PartSynth("drums") as drums:
        stems = {"piano": piano.render(chords, 10 * SR), "drums": drums.render(kit, 10 * SR)}
    stems["silent"] = np.zeros((10 * SR, 2), np.float32)
    gains = balance_gains(stems, SR)
    assert gains["silent"] == 1.0
    lp = stem_loudness(stems["piano"] * gains["piano"])
    ld = stem_loudness(stems["drums"] * gains["drums"])
    assert lp - ld == pytest.approx(PIANO_DRUM_LU, abs=1.0)
    raw_gap = stem_loudness(stems["piano"]) - stem_loudness(stems["drums"])
    assert abs(raw_gap - PIANO_DRUM_LU) > 1.0                  # the balance actually changed something


def test_piano_sound_follows_mood():
    assert piano_program_for(["mellow", "rainy"]) == PIANO_PROGRAMS["electric"]
    assert piano_program_for(["sad"]) == PIANO_PROGRAMS["acoustic"]
    assert piano_program_for([]) == PIANO_PROGRAMS["acoustic"]


def test_missing_soundfont_names_the_debian_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="fluid-soundfont-gm"):
        find_soundfont([tmp_path / "none.sf2"])
    with pytest.raises(FileNotFoundError, match="fluid-soundfont-gm"):
        PartSynth("piano", soundfont=tmp_path / "none.sf2")
    assert find_soundfont().is_file()


def test_missing_libfluidsynth_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "fluidsynth", None)      # import fails as when the .so is absent
    with pytest.raises(ImportError, match="libfluidsynth3"):
        PartSynth("piano")

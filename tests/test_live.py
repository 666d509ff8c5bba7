"""Listen forever, steered: real models, FluidSynth and the streaming master; Essentia judges the tempo heard."""
import numpy as np
import pytest

from text2lofi.compose.arrangement import pivot_chords
from text2lofi.conditions import SAMPLE_RATE as SR, Conditions
from text2lofi.evaluate import judges
from text2lofi.live import stream
from text2lofi.pipeline import resolve

CHUNK_S = 1.0


def windows_db(audio: np.ndarray, size: int) -> np.ndarray:
    rms = [np.sqrt(np.mean(audio[i:i + size] ** 2)) for i in range(0, len(audio) - size + 1, size)]
    return 20 * np.log10(np.maximum(rms, 1e-9))


@pytest.fixture(scope="module")
def steered():
    """80 BPM in C major with rain; at 40 s: 'much faster, 120 bpm, in G major, drop the rain'."""
    s = stream(Conditions(tempo_bpm=80, key="C", textures=["vinyl", "rain"], seed=3), chunk_s=CHUNK_S, max_s=70)
    chunks, asked_at, answer, before = [], None, None, None
    for i, chunk in enumerate(s):
        chunks.append(chunk)
        if i + 1 == 40:
            asked_at, before = s.handed_out, s.playing
            answer = s.steer("much faster, 120 bpm, in G major, drop the rain")
    return s, np.concatenate(chunks), asked_at, answer, before


def test_a_steer_lands_at_the_next_bar_line_within_a_bar_and_the_buffer(steered):
    s, audio, asked_at, answer, before = steered
    assert (answer.tempo_bpm, answer.key, answer.mode, answer.textures) == (120.0, "G", "major", ["vinyl"])
    assert before.tempo_bpm == 80 and s.playing.tempo_bpm == 120
    assert [c.tempo_bpm for _, c in s.changes] == [80, 120]
    changed_at = s.changes[1][0]
    bar_80 = 3.0 * SR                                       # one 4/4 bar at 80 BPM
    assert changed_at % bar_80 == 0                          # on the old grid's bar line
    assert 0 <= changed_at - asked_at <= bar_80 + CHUNK_S * SR
    assert len(audio) == 70 * SR


def test_the_new_tempo_is_heard(steered):
    _, audio, _, _, _ = steered
    start = steered[0].changes[1][0]
    before = judges.audio_tempo(audio[10 * SR:start], SR)
    after = judges.audio_tempo(audio[start + 4 * SR:start + 24 * SR], SR)
    assert judges.tempo_matches(before, 80) and judges.tempo_matches(after, 120), (before, after)


def test_no_gap_no_click_and_the_loudness_holds_across_the_change(steered):
    s, audio, _, _, _ = steered
    at = s.changes[1][0]
    steps = np.abs(np.diff(audio[:, 0]))
    assert steps[at - 2:at + 2].max() <= np.percentile(steps, 99.9)
    around = windows_db(audio[at - 6 * SR:at + 6 * SR], SR // 4)       # 250 ms windows, 6 s either side
    assert around.min() > -40.0                                        # no silent gap
    level = windows_db(audio[20 * SR:60 * SR], 4 * SR)                 # 4 s windows, 20 s either side
    assert level.max() - level.min() < 4.0, level


def test_a_key_change_goes_through_a_pivot_chord():
    assert pivot_chords(Conditions(key="C"), Conditions(key="G")) == ["Am", "D7"]       # vi = ii, then V7
    assert pivot_chords(Conditions(key="C"), Conditions(key="A", mode="minor")) == ["Dm", "E7"]
    assert pivot_chords(Conditions(key="C"), Conditions(key="Eb")) == ["Bb7"]          # nothing shared
    assert pivot_chords(Conditions(key="C"), Conditions(key="C")) == []


def test_a_texture_change_keeps_the_music_going_note_for_note():
    """Same stream twice; one of them drops the rain at 30 s. The music underneath is the same composer,
    so the two differ only by the texture layer (much quieter than the music)."""
    def run(steer: bool) -> np.ndarray:
        s = stream(resolve("lofi with rain in A minor, 90 bpm", seed=5), chunk_s=CHUNK_S, max_s=52)
        out = []
        for i, chunk in enumerate(s):
            out.append(chunk)
            if steer and i + 1 == 30:
                assert s.steer("drop the rain").textures == ["vinyl"]
        return np.concatenate(out)
    plain, dropped = run(False), run(True)
    assert np.array_equal(plain[:30 * SR], dropped[:30 * SR])
    tail = slice(38 * SR, 46 * SR)                # after the one-bar cross-fade, before the end fade
    music = windows_db(plain[tail], len(plain[tail]))[0]
    difference = windows_db(plain[tail] - dropped[tail], len(plain[tail]))[0]
    assert difference < music - 10.0, (music, difference)    # only the rain left


def test_steer_refuses_empty_text():
    s = stream(Conditions(seed=1), max_s=6)
    with pytest.raises(ValueError, match="text is empty"):
        s.steer("   ")
    s.close()

"""The studio service in-process (no server): the policy the page and the API share — lengths this server makes,
seeds, edits of an earlier generation, the files written, the survey rows, history."""
from __future__ import annotations

import contextlib
import itertools
import sqlite3
import threading

import pretty_midi
import pytest
from pedalboard.io import AudioFile

from text2lofi.app.studio import Studio, StudioError
from text2lofi.app.survey import SurveyStore

import song_midi

SR = 44100


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("studio")
    return Studio(SurveyStore(f"sqlite:///{folder / 'survey.sqlite3'}"), output_dir=folder / "out", max_duration_s=60)


@pytest.fixture(scope="module")
def first(studio):
    return studio.create("rainy night study beats in A minor, 4 minutes", seed=7, duration_s=5)


def _rows(studio, table: str) -> int:
    path = studio.store.engine.url.database
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_create_writes_exact_files_and_records_the_generation(studio, first):
    with AudioFile(str(first.files["wav"])) as f:
        assert (f.frames, f.num_channels, f.samplerate) == (5 * SR, 2, SR)       # the override, not 4 minutes
    assert pretty_midi.PrettyMIDI(str(first.files["midi"])).instruments
    assert first.conditions.seed == 7 and (first.conditions.key, first.conditions.mode) == ("A", "minor")
    stored = studio.store.generation(first.id)
    assert stored["conditions"]["duration_s"] == 5.0 and stored["seed"] == 7
    assert first.info()["generation_id"] == first.id and "A minor" in first.describe()
    assert "piano + drums + bass" in first.describe()


def test_refine_edits_the_earlier_generation_and_keeps_its_seed(studio, first):
    slower = studio.refine(first.id, "slower and drop the rain")
    assert slower.conditions.tempo_bpm < first.conditions.tempo_bpm
    assert "rain" not in slower.conditions.textures
    assert slower.conditions.seed == 7 and slower.conditions.duration_s == 5.0
    assert studio.history()[0]["generation_id"] == slower.id           # newest first
    assert studio.history()[1]["generation_id"] == first.id


@pytest.mark.parametrize("call, message", [
    (lambda s: s.create("lofi", duration_s=1000), "duration_s is 1000 s; this server makes tracks of 5 to 60 s"),
    (lambda s: s.create("lofi, 10 minutes"), "the prompt's length is 600 s"),
    (lambda s: s.create("   "), "prompt is empty"),
    (lambda s: s.create("lofi", seed=-1), "seed must be a whole number"),
    (lambda s: s.create("lofi", seed=1.5), "seed must be a whole number"),
    (lambda s: s.create("lofi", previous="fast"), "previous must be a conditions dict"),
    (lambda s: s.refine("no-such-id", "slower"), "generation_id 'no-such-id' is not an id from this server"),
    (lambda s: s.refine("1b4e28ba-2fa1-41d2-883f-0016d3cca427", "slower"), "generation_id '1b4e28ba.*' is unknown"),
    (lambda s: s.rate("1b4e28ba-2fa1-41d2-883f-0016d3cca427", "r1", 3, 3, 3), "unknown"),
    (lambda s: s.rate("x" * 10**6, "r1", 3, 3, 3), r"'xxxx.*[.]{3} [(]1000002 characters[)] is not an id"),
    (lambda s: s.create("x" * 2001), "prompt is 2001 characters; the limit is 2000"),
])
def test_refused_requests_name_the_field_and_store_nothing(studio, first, call, message):
    before = _rows(studio, "generations"), _rows(studio, "ratings")
    with pytest.raises(StudioError, match=message):
        call(studio)
    assert (_rows(studio, "generations"), _rows(studio, "ratings")) == before


def test_a_fresh_prompt_without_a_seed_gets_a_new_one_each_time(studio):
    seeds = {studio.conditions("chill lofi, 30 seconds").seed for _ in range(3)}
    assert len(seeds) == 3


def test_rating_is_stored_once_per_rater(studio, first):
    studio.rate(first.id, "rater-a", 4, 5, 3, "nice")
    again = studio.rate(first.id, "rater-a", 5, 5, 5, "nicer")
    assert again["updated"] is True and _rows(studio, "ratings") == 1


def test_accompany_keeps_the_uploaded_notes_and_records_the_generation(studio, tmp_path):
    path = song_midi.write(tmp_path / "song.mid", bars=4)
    before = _rows(studio, "generations")
    g = studio.accompany(str(path), "rainy lofi", seed=3)
    with AudioFile(str(g.files["wav"])) as f:
        assert f.frames == round(4 * song_midi.BAR * SR)
    assert g.info()["chords"] == song_midi.CHORDS and "`  1` | Dm | Gm | A | Dm |" in g.chart()
    assert _rows(studio, "generations") == before + 1
    bad = tmp_path / "bad.mid"
    bad.write_text("not midi")
    with pytest.raises(StudioError, match="cannot be read as MIDI"):
        studio.accompany(str(bad), "lofi")
    with pytest.raises(StudioError, match="the MIDI file's length plus continue_s is 70"):
        studio.accompany(str(path), "lofi", continue_s=70 - 4 * song_midi.BAR)
    assert _rows(studio, "generations") == before + 1


def test_extend_vary_and_score_refusals_name_the_field_and_leave_nothing(studio, first, tmp_path):
    before = _rows(studio, "generations"), sorted(studio.output_dir.iterdir())
    with pytest.raises(StudioError, match="generation_id 'nope' is not an id from this server"):
        studio.extend("nope", 5)
    with pytest.raises(StudioError, match="seconds must be a number of seconds above 0"):
        studio.extend(first.id, -3)
    with pytest.raises(StudioError, match="the extended length is 65 s; this server makes tracks of 5 to 60 s"):
        studio.extend(first.id, 60)
    with pytest.raises(StudioError, match="part must be one of piano, drums, bass"):
        studio.vary(first.id, "flute")
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(StudioError, match="is not a file ffmpeg can read as video"):
        studio.score_video(str(bad), "lofi")
    import subprocess
    long_clip = tmp_path / "long.mp4"                           # longer than this server's 60 s
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=61:size=64x48:rate=5",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(long_clip)], check=True, timeout=120)
    with pytest.raises(StudioError, match="lasts 61 s; scoring needs 5 to 60 s"):
        studio.score_video(str(long_clip), "lofi")
    assert (_rows(studio, "generations"), sorted(studio.output_dir.iterdir())) == before
    longer = studio.extend(first.id, 3)
    assert longer.duration_s == 8.0 and longer.conditions.seed == first.conditions.seed


def test_stems_are_made_only_when_asked_and_match_the_track(studio, first):
    from pedalboard.io import AudioFile
    import zipfile
    assert "stems" not in first.files and not (first.files["wav"].parent / "stems.zip").exists()
    path = studio.stems_zip(first.id)
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["bass.wav", "drums.wav", "piano.wav", "textures.wav"]   # rain: textures
        z.extract("piano.wav", path.parent / "x")
    with AudioFile(str(path.parent / "x" / "piano.wav")) as f:
        assert f.frames == 5 * SR                                   # the track's own length, made again exactly
    assert studio.stems_zip(first.id) == path                       # once made, served again
    with pytest.raises(StudioError, match="generation_id 'nope' is not an id from this server"):
        studio.stems_zip("nope")


def test_a_new_take_a_mix_recall_and_forget(studio, first):
    take = studio.again(first.id)                            # the same settings, another seed
    assert take.conditions.seed != first.conditions.seed
    assert (take.conditions.tempo_bpm, take.conditions.key, take.duration_s) == \
        (first.conditions.tempo_bpm, first.conditions.key, first.duration_s)
    assert sorted(p.name for p in take.mixer.glob("*.f16")) == ["bass.f16", "drums.f16", "piano.f16", "rain.f16",
                                                             "vinyl.f16"]
    mixed = studio.remix(take.id, {"piano": 3, "vinyl": -60})
    assert mixed.mixer == take.mixer and mixed.metadata["mix_levels"] == {"piano": 3.0, "vinyl": -60.0}
    again = studio.remix(mixed.id, {})                      # levels are against the track as first made
    with AudioFile(str(take.files["wav"])) as f, AudioFile(str(again.files["wav"])) as g:
        assert abs(f.read(f.frames) - g.read(g.frames)).max() < 2e-3       # float16 stems: not bit for bit
    shown = studio.recall(mixed.id)
    assert (shown.prompt, shown.conditions, shown.duration_s) == (mixed.prompt, mixed.conditions, 5.0)
    assert shown.chart() == take.chart() and shown.files["wav"] == mixed.files["wav"]
    studio.forget(mixed.id)
    assert not mixed.files["wav"].exists() and take.mixer.is_dir()          # the source's stems stay
    with pytest.raises(StudioError, match="no longer on this server"):
        studio.recall(mixed.id)
    assert studio.store.generation(mixed.id) is not None                     # the survey keeps its row


def test_stop_ends_a_listeners_stream_before_its_next_chunk(studio):
    """The page's Stop arrives on another request's thread while the stream's thread is making audio."""
    assert not studio.stop_listening("nobody")
    chunks = studio.listen("rainy night study beats", 1.0, listener="ann")
    chunk, playing = next(chunks)
    assert chunk.shape == (SR, 2) and playing.tempo_bpm > 0
    stopper = threading.Thread(target=studio.stop_listening, args=("ann",))
    stopper.start()
    stopper.join()
    assert list(itertools.islice(chunks, 3)) == []    # nothing more is handed out (islice: fail, not hang)
    assert not studio.stop_listening("ann")      # and the stream is gone: nothing left to steer
    with pytest.raises(StudioError, match="no stream is playing"):
        studio.steer("ann", "slower")


def test_a_stop_while_the_stream_is_being_made_ends_it_before_its_first_chunk(studio, monkeypatch):
    """Start then Stop at once: the Stop lands while the stream is still being set up (the text read, the models
    loaded), and nothing may play after it."""
    import text2lofi.app.studio as module

    making, go, made = threading.Event(), threading.Event(), {}
    real = module.stream

    def held_stream(*args, **kwargs):             # the real stream, held until the Stop has arrived
        making.set()
        go.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "stream", held_stream)
    starting = threading.Thread(target=lambda: made.update(chunks=studio.listen("lofi", 1.0, listener="bo")))
    starting.start()
    assert making.wait(30)
    assert studio.stop_listening("bo")
    go.set()
    starting.join()
    assert list(itertools.islice(made["chunks"], 3)) == []
    assert not studio.stop_listening("bo")


def test_a_stop_that_reaches_the_server_before_its_start_still_stops_it(studio):
    """Start and Stop pressed together can arrive in either order: the Stop waits for the Start a moment."""
    stopped = {}
    stopper = threading.Thread(target=lambda: stopped.update(ok=studio.stop_listening("cy", wait_s=30)))
    stopper.start()
    chunks = studio.listen("lofi", 1.0, listener="cy")
    stopper.join()
    assert stopped["ok"] and list(itertools.islice(chunks, 3)) == []
    assert not studio.stop_listening("cy", wait_s=0.1)     # nothing playing and nothing starting: no wait forever

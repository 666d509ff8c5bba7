"""Score a video (real ffmpeg, real FluidSynth) and make a seamless loop (the wrap judged on the samples)."""
import hashlib
import subprocess
import sys

import numpy as np
import pytest

from text2lofi.audio.video import probe
from text2lofi.conditions import SAMPLE_RATE as SR, Conditions
from text2lofi.pipeline import generate, score_video

TONE_HZ = 1234.0      # the test video's own sound: 10 Hz from the nearest note (D#6), so no note of the music has it


def ffmpeg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], capture_output=True, timeout=120)


def make_clip(path, seconds: float, tone: bool = True):
    """A test-pattern video (H.264), with a TONE_HZ tone as its own sound if `tone`."""
    inputs = ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=160x120:rate=25"]
    if tone:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:duration={seconds}", "-c:a", "aac"]
    r = ffmpeg(*inputs, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path))
    assert r.returncode == 0, r.stderr
    return path


def picture_md5(path) -> str:
    return ffmpeg("-i", str(path), "-map", "0:v", "-c", "copy", "-f", "md5", "-").stdout.decode().strip()


def sound(path) -> np.ndarray:
    raw = ffmpeg("-i", str(path), "-map", "0:a", "-f", "f32le", "-ac", "1", "-ar", str(SR), "-").stdout
    return np.frombuffer(raw, np.float32)


def tone_share(audio: np.ndarray, hz: float = TONE_HZ) -> float:
    """Fraction of the spectrum's energy within 5 Hz of `hz`."""
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / SR)
    return float(spectrum[np.abs(freqs - hz) < 5].sum() / spectrum.sum())


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("video") / "cut.mp4", 6.2)


def test_the_music_lasts_the_cut_the_picture_is_copied_and_the_sound_kept_under(clip, tmp_path):
    out = tmp_path / "scored.mp4"
    track = score_video(clip, "calm lofi with rain", out, seed=3)
    duration = probe(clip).duration_s
    assert len(track.audio) == round(duration * SR)                  # the music is planned to the cut
    assert track.metadata["chords"][-1] == f"{track.conditions.key}" + (
        "maj7" if track.conditions.mode == "major" else "m7")         # and ends on its final chord
    assert picture_md5(out) == picture_md5(clip)                      # copied, not re-encoded
    assert abs(probe(out).duration_s - duration) < 0.05
    heard = sound(out)
    assert abs(len(heard) / SR - duration) < 0.05
    assert tone_share(heard) > 0.2                                    # the video's own sound is still there
    assert track.metadata["video"]["level_db"] == -12.0


def test_replace_audio_drops_the_videos_own_sound(clip, tmp_path):
    out = tmp_path / "replaced.mkv"
    score_video(clip, "calm lofi", out, seed=3, keep_audio=False)
    heard = sound(out)
    assert tone_share(heard) < 0.01 and np.sqrt(np.mean(heard ** 2)) > 0.05


@pytest.mark.parametrize("make, message", [
    (lambda p: p.with_suffix(".mp4").write_text("not a video"), "is not a file ffmpeg can read as video"),
    (lambda p: ffmpeg("-f", "lavfi", "-i", "sine=duration=6", str(p.with_suffix(".mp4"))), "has no video stream"),
    (lambda p: make_clip(p.with_suffix(".mp4"), 2.0), "lasts 2 s; scoring needs 5"),
])
def test_bad_videos_get_a_clear_error_and_leave_nothing_behind(tmp_path, make, message):
    make(tmp_path / "in")
    before = set(tmp_path.iterdir())
    with pytest.raises(ValueError, match=message):
        score_video(tmp_path / "in.mp4", "lofi", tmp_path / "out.mp4", seed=1)
    assert set(tmp_path.iterdir()) == before


def test_cli_scores_a_video(clip, tmp_path):
    out = tmp_path / "cli.mp4"
    r = subprocess.run([sys.executable, "-m", "text2lofi", "score", str(clip), "lofi", "-o", str(out), "--seed",
                        "2", "--level", "-6"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "picture copied, music under the video's sound at -6 dB" in r.stdout and out.exists()


# ---- seamless loops --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=[["vinyl", "rain"], []], ids=["textures", "music-only"])
def loop(request):
    return generate(Conditions(tempo_bpm=84, key="D", mode="minor", duration_s=20.0, textures=request.param,
                               seed=5), loop=True)


def test_a_loop_is_whole_bars_and_leads_back_to_its_first_chord(loop):
    bar = 4 * 60 / 84 * SR
    assert len(loop.audio) == round(7 * bar)
    chords = loop.metadata["chords"]
    assert chords[0] == "Dm7" and chords[-1] == "A7"                 # V7 -> i across the wrap
    assert loop.metadata["loop"] and [s[0] for s in loop.metadata["plan"]] == ["loop"] * len(loop.metadata["plan"])


def test_the_end_flows_into_the_start(loop):
    a = loop.audio
    steps = np.abs(np.diff(a, axis=0))
    wrap = np.abs(a[0] - a[-1])
    assert (wrap <= np.percentile(steps, 99.9, axis=0)).all(), wrap
    q = SR // 4                                                       # 250 ms either side of the wrap
    level = [20 * np.log10(np.sqrt(np.mean(x ** 2))) for x in (a[-q:], a[:q])]
    assert abs(level[0] - level[1]) < 9.0, level
    assert min(level) > -40                                           # no fade to silence at either side


def test_a_loop_repeats_without_a_seam_and_is_deterministic(loop):
    twice = np.concatenate([loop.audio, loop.audio])
    steps = np.abs(np.diff(twice[:, 0]))
    n = len(loop.audio)
    assert steps[n - 3:n + 2].max() <= np.percentile(steps, 99.9)
    again = generate(loop.conditions, loop=True)
    assert hashlib.sha256(again.audio.tobytes()).digest() == hashlib.sha256(loop.audio.tobytes()).digest()

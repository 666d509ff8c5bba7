"""The outside judge (Essentia) hears the key and tempo we asked for in rendered audio, and the evaluation reports
what it heard."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("essentia", reason="Essentia is in the [test] and [eval] extras")

from text2lofi import Conditions, generate  # noqa: E402
from text2lofi.evaluate import judges  # noqa: E402
from text2lofi.evaluate.prompts import PromptSpec  # noqa: E402
from text2lofi.evaluate.systems import judged_adherence  # noqa: E402


def test_tempo_is_compared_octave_tolerantly():
    assert judges.tempo_matches(172.0, 85.0) and judges.tempo_matches(42.9, 85.0) and judges.tempo_matches(86.0, 85.0)
    assert not judges.tempo_matches(95.0, 85.0) and not judges.tempo_matches(128.0, 85.0)


def test_a_pure_a_minor_chord_is_heard_as_a_minor():
    sr, t = 44100, np.arange(20 * 44100) / 44100
    tone = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 261.63, 329.63, 110.0))
    tonic, mode, answers = judges.audio_key(np.stack([tone, tone], 1).astype(np.float32) * 0.1, sr)
    assert (tonic, mode) == (9, "minor") and set(answers) == set(judges.KEY_PROFILES)


def test_a_generated_track_is_heard_in_its_key_and_tempo():
    t = generate(Conditions(tempo_bpm=85, key="Eb", mode="major", duration_s=20.0, seed=3))
    spec = PromptSpec("eb major lofi", 85.0, "Eb", "major", 20.0, True)
    row = judged_adherence(t.audio, t.sample_rate, spec)
    assert row["audio_key_dup"] == 1.0 and row["audio_tempo"] == 1.0
    assert set(row) == {"audio_key", "audio_key_major", "audio_key_dup", "audio_tempo"}

"""Conditions: the contract between stages. Clamps are recorded, round trips are lossless."""
import json

import pytest

from text2lofi import Conditions


def test_defaults_are_valid_lofi():
    c = Conditions()
    assert 70 <= c.tempo_bpm <= 90 and c.drums and c.piano and "vinyl" in c.textures
    assert c.warnings == []


@pytest.mark.parametrize("field,value,expected", [
    ("tempo_bpm", 400, 160.0), ("tempo_bpm", 3, 40.0), ("duration_s", 0, 5.0),
    ("duration_s", 1000 * 3600, 43200.0), ("energy", -1, 0.0), ("lofi_amount", 7, 1.0),
])
def test_out_of_range_values_clamp_with_a_warning(field, value, expected):
    c = Conditions(**{field: value})
    assert getattr(c, field) == expected
    assert any(field in w for w in c.warnings)


def test_bad_names_are_reported_not_silently_dropped():
    c = Conditions(key="H", mode="dorian", textures=["rain", "lasers", "rain"])
    assert (c.key, c.mode, c.textures) == ("C", "major", ["rain"])
    assert len(c.warnings) == 3


def test_key_spellings_normalise():
    assert Conditions(key="eb").key == "Eb" and Conditions(key="f♯").key == "F#"
    assert Conditions(key="Bb").tonic_pc == Conditions(key="A#").tonic_pc == 10


def test_scale_pitch_classes():
    assert Conditions(key="A", mode="minor").scale_pcs == {9, 11, 0, 2, 4, 5, 7}
    assert Conditions(key="D", mode="major").scale_pcs == {2, 4, 6, 7, 9, 11, 1}


def test_dict_round_trip_through_json():
    c = Conditions(tempo_bpm=72, key="F#", mode="minor", textures=["rain", "vinyl"], progression=["F#m7", "Bm7"])
    back = Conditions.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c


def test_from_dict_reports_unknown_keys_and_rejects_non_dicts():
    c = Conditions.from_dict({"tempo_bpm": 90, "colour": "blue"})
    assert c.tempo_bpm == 90 and any("colour" in w for w in c.warnings)
    with pytest.raises(TypeError):
        Conditions.from_dict(["tempo", 90])


def test_neither_part_keeps_piano():
    c = Conditions(piano=False, drums=False)
    assert c.piano and c.warnings


def test_replace_keeps_earlier_warnings_and_adds_its_own():
    c = Conditions(tempo_bpm=400)                      # clamped: one warning
    d = c.replace(duration_s=0)                        # clamped again: a second one, the first kept
    assert d.tempo_bpm == 160.0 and d.duration_s == 5.0 and len(d.warnings) == 2
    assert c.replace(warnings=[]).warnings == [] and len(c.warnings) == 1

"""The shared key finder: every profile finds all 24 keys of a cadence, and CK/CKD matching."""
import numpy as np
import pytest

from text2lofi.compose.theory import PROFILES, estimate_key, key_match

MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 11)   # harmonic minor: its leading tone marks the key


def cadence(tonic: int, mode: str) -> np.ndarray:
    """Pitch-class time of a scale run (1 beat per degree) plus a held tonic triad (4 beats per note)."""
    w = np.zeros(12)
    scale = MAJOR if mode == "major" else MINOR
    for s in scale:
        w[(tonic + s) % 12] += 1.0
    for s in (0, scale[2], 7):
        w[(tonic + s) % 12] += 4.0
    return w


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_finds_all_24_keys(profile):
    for tonic in range(12):
        for mode in ("major", "minor"):
            assert estimate_key(cadence(tonic, mode), profile) == (tonic, mode)


def test_no_key_in_silence_or_a_flat_histogram():
    assert estimate_key(np.zeros(12)) is None
    assert estimate_key(np.ones(12)) is None


def test_key_match_exact_and_relative():
    assert key_match((0, "major"), 12, "major", allow_relative=False)          # tonic taken mod 12
    assert not key_match((9, "minor"), 0, "major", allow_relative=False)
    assert key_match((9, "minor"), 0, "major", allow_relative=True)            # A minor is C major's relative
    assert key_match((4, "major"), 1, "minor", allow_relative=True)            # E major is C# minor's relative
    assert not key_match((7, "major"), 0, "major", allow_relative=True)        # the dominant's key is wrong
    assert not key_match(None, 0, "major", allow_relative=True)

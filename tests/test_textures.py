"""Procedural textures: each sounds like itself (where its energy sits), streams seamlessly, is seeded."""
import numpy as np
import pytest

from text2lofi.audio.loudness import integrated_loudness
from text2lofi.audio.textures import LAYERS, TextureBed
from text2lofi.conditions import TEXTURES

SR = 44100
N = 6 * SR


def band_share(audio, lo, hi):
    power = np.abs(np.fft.rfft(audio.mean(axis=1))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / SR)
    return power[(freqs >= lo) & (freqs < hi)].sum() / power.sum()


def kurtosis(x):
    x = x - x.mean()
    return float((x ** 4).mean() / (x ** 2).mean() ** 2)


@pytest.fixture(scope="module")
def rendered():
    return {name: cls(0, SR).render(N) for name, cls in LAYERS.items()}


@pytest.mark.parametrize("name", TEXTURES)
def test_texture_is_audible_stereo_and_finite(rendered, name):
    audio = rendered[name]
    assert audio.shape == (N, 2) and np.all(np.isfinite(audio))
    assert np.sqrt((audio ** 2).mean()) > 1e-3
    assert not np.allclose(audio[:, 0], audio[:, 1])          # a stereo field, not mono in two channels


# Where each texture's energy sits (share of power in a band), plus impulsiveness for the crackly ones.
SPECTRA = {
    "ocean": (0, 500, 0.8), "thunder": (0, 500, 0.8), "city": (0, 1000, 0.8), "fireplace": (0, 500, 0.6),
    "birds": (2000, 8000, 0.7), "rain": (900, 12000, 0.8), "tape_hiss": (2000, 22050, 0.6),
    "vinyl": (1500, 22050, 0.8), "wind": (100, 1500, 0.8), "cafe": (250, 2500, 0.7),
}


@pytest.mark.parametrize("name", TEXTURES)
def test_texture_energy_sits_where_it_should(rendered, name):
    lo, hi, share = SPECTRA[name]
    assert band_share(rendered[name], lo, hi) > share


def test_crackles_are_impulsive_and_beds_are_not(rendered):
    for name in ("vinyl", "fireplace"):
        audio = rendered[name].mean(axis=1)
        if name == "fireplace":                                # crackle rides above the roar
            audio = np.diff(audio)
        assert kurtosis(audio) > 10, name
    for name in ("tape_hiss", "wind", "ocean"):
        assert kurtosis(rendered[name].mean(axis=1)) < 6, name


def test_ocean_swells_and_thunder_is_rare():
    ocean = LAYERS["ocean"](1, SR).render(30 * SR).mean(axis=1)
    level = np.sqrt((ocean.reshape(-1, SR // 2) ** 2).mean(axis=1))          # per half second
    assert level.max() > 3 * level.min()                                     # waves come and go
    thunder = LAYERS["thunder"](1, SR).render(40 * SR).mean(axis=1)
    level = np.sqrt((thunder.reshape(-1, SR // 2) ** 2).mean(axis=1))
    loud = level > 0.25 * level.max()
    assert 0.02 < loud.mean() < 0.6                                         # rumbles, then quiet


@pytest.mark.parametrize("name", TEXTURES)
def test_texture_streams_seamlessly(name):
    whole = LAYERS[name](3, SR).render(3 * SR)
    stream = LAYERS[name](3, SR)
    sizes = [1, 777, 4410, 30_000, 3 * SR - 35_188]
    parts = [stream.render(k) for k in sizes]
    chunked = np.concatenate(parts)
    assert np.array_equal(chunked, whole)
    steps = np.abs(np.diff(chunked, axis=0)).max(axis=1)
    boundaries = np.cumsum(sizes)[:-1] - 1
    assert steps[boundaries].max() <= np.percentile(steps, 99.9)


def test_textures_are_deterministic_by_seed():
    a = TextureBed(["rain", "birds", "vinyl"], seed=11).render(2 * SR)
    b = TextureBed(["rain", "birds", "vinyl"], seed=11).render(2 * SR)
    c = TextureBed(["rain", "birds", "vinyl"], seed=12).render(2 * SR)
    assert a.dtype == np.float32 and np.array_equal(a, b) and not np.array_equal(a, c)


def test_bed_sits_at_its_level_and_rejects_unknown_textures():
    for textures in (["rain"], ["rain", "vinyl", "cafe"]):
        bed = TextureBed(textures, seed=0, level_db=-32.0).render(8 * SR)
        assert bed.shape == (8 * SR, 2)
        assert integrated_loudness(bed) == pytest.approx(-32.0, abs=3.0)
    with pytest.raises(ValueError, match="unknown textures"):
        TextureBed(["rain", "lasers"])

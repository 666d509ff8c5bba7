"""Lo-fi chain and mastering: exact lengths, streaming == one-shot, tone, loudness and peaks."""
import numpy as np
import pytest
from scipy.signal import butter, resample_poly, sosfilt

from text2lofi.audio.effects import LofiChain, Master, PeakLimiter, integrated_loudness, master_to_lufs

SR = 44100


def music_like(seconds, seed=0):
    """Decaying chord tones plus drum-like noise bursts, low-passed at 9 kHz like the lo-fi chain's output."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out = np.zeros(n)
    for start in np.arange(0, seconds, 2.0):
        env = np.where(t >= start, np.exp(-(t - start) * 1.5), 0.0)
        for f in rng.choice([220.0, 261.6, 329.6, 392.0, 440.0], 3, replace=False):
            out += 0.08 * env * np.sin(2 * np.pi * f * t)
    for start in np.arange(0.5, seconds, 0.5):
        i = int(start * SR)
        burst = rng.standard_normal(3000) * np.exp(-np.arange(3000) / 400.0) * 0.25
        out[i:i + 3000] += burst[: len(out[i:i + 3000])]
    out = sosfilt(butter(4, 9000, fs=SR, output="sos"), out)
    return np.stack([out, 0.9 * out], axis=1).astype(np.float32)


def chunks(x, rng, lo=1000, hi=40000):
    cuts = [0]
    while cuts[-1] < len(x):
        cuts.append(min(len(x), cuts[-1] + int(rng.integers(lo, hi))))
    return [x[a:b] for a, b in zip(cuts[:-1], cuts[1:])]


def hf_share(audio, cutoff=8000.0):
    power = np.abs(np.fft.rfft(audio.mean(axis=1))) ** 2
    return power[np.fft.rfftfreq(len(audio), 1 / SR) > cutoff].sum() / power.sum()


def true_peak_dbfs(audio):
    return 20 * np.log10(np.abs(resample_poly(audio, 4, 1, axis=0)).max())


def test_chain_keeps_length_and_streams_like_one_shot():
    x = music_like(8.0)
    chain = LofiChain(0.7, seed=3)
    whole = chain.process(x)
    parts = [chain.process(c, reset=(i == 0)) for i, c in enumerate(chunks(x, np.random.default_rng(1)))]
    streamed = np.concatenate(parts)
    assert whole.shape == streamed.shape == x.shape and whole.dtype == np.float32
    assert [len(p) for p in parts] == [len(c) for c in chunks(x, np.random.default_rng(1))]
    assert np.abs(streamed - whole).max() < 1e-3 * np.abs(whole).max()


def test_more_lofi_means_less_treble():
    noise = (np.random.default_rng(0).standard_normal((4 * SR, 2)) * 0.05).astype(np.float32)
    shares = [hf_share(LofiChain(a).process(noise)) for a in (0.0, 0.5, 1.0)]
    assert shares[0] > shares[1] > shares[2]
    assert shares[2] < 0.1 * shares[0]


def test_chain_is_deterministic_by_seed():
    x = music_like(3.0)
    a, b, c = (LofiChain(0.6, seed=s).process(x) for s in (5, 5, 6))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)             # the seed moves the wow/flutter


def test_master_to_lufs_hits_loudness_and_peak():
    x = music_like(20.0) * 0.3                   # quiet input: needs gain and then limiting
    y = master_to_lufs(x, SR)
    assert y.shape == x.shape
    assert integrated_loudness(y) == pytest.approx(-14.0, abs=0.5)
    assert 20 * np.log10(np.abs(y).max()) < -1.0
    assert true_peak_dbfs(y) < -1.0
    lag = np.argmax(np.correlate(y[:4000, 0], x[:4000, 0], "full")) - 3999
    assert lag == 0                              # look-ahead compensated: no shift


def test_streaming_master_keeps_length_and_level():
    x = music_like(24.0, seed=2)
    master = Master(sample_rate=SR)
    master.calibrate(x[: 10 * SR])
    parts = [master.process(c) for c in chunks(x, np.random.default_rng(2))]
    y = np.concatenate(parts)
    assert y.shape == x.shape
    assert integrated_loudness(y) == pytest.approx(-14.0, abs=0.7)
    assert 20 * np.log10(np.abs(y).max()) < -1.0


def test_limiter_streams_exactly_and_leaves_quiet_audio_alone():
    x = music_like(6.0) * 2.0
    whole = PeakLimiter(0.5).process(x)
    lim = PeakLimiter(0.5)
    streamed = np.concatenate([lim.process(c) for c in chunks(x, np.random.default_rng(4), lo=1, hi=5000)])
    assert np.array_equal(streamed, whole)
    assert np.abs(whole).max() <= 0.5
    quiet = x * (0.4 / np.abs(x).max())
    lim = PeakLimiter(0.5)
    assert np.array_equal(lim.process(quiet)[lim.latency:], quiet[: -lim.latency])


def test_loudness_fed_in_any_pieces_is_the_whole_track_measurement():
    """The pipeline measures a long track while it is made: any split of the samples gives the very number
    integrated_loudness() gives the whole array (so mastering, and the bytes, do not change)."""
    from text2lofi.audio.loudness import CHUNKED_ABOVE, LoudnessMeter

    rng = np.random.default_rng(3)
    n = CHUNKED_ABOVE + 123_457                         # long enough for the chunked measurement
    audio = (rng.standard_normal((n, 2)) * np.linspace(0.01, 0.3, n)[:, None]).astype(np.float32)
    audio[: 3 * SR] = 0.0                              # a silent start: gated blocks too
    whole = integrated_loudness(audio, SR)
    for sizes in ([n], [1, 4409, 2**20 + 3], [SR * 2 + 7] * 200):
        meter, at, k = LoudnessMeter(n, 2, SR), 0, 0
        while at < n:
            meter.feed(audio[at:at + sizes[k % len(sizes)]])
            at, k = min(at + sizes[k % len(sizes)], n), k + 1
        assert meter.loudness() == whole
    meter = LoudnessMeter(n, 2, SR)
    meter.feed(audio[:1000])
    with pytest.raises(ValueError, match="fed 1000 of"):
        meter.loudness()


def test_a_long_track_is_measured_while_it_is_limited_with_the_same_result():
    """Above CHUNKED_ABOVE the master measures each trial on one thread while the limiter runs on another; the
    audio and the loudness must be exactly what limiting first and measuring after gives."""
    from text2lofi.audio.loudness import CHUNKED_ABOVE
    x = np.tile(music_like(20.0, seed=3), (6, 1)) * 1.5          # 120 s: loud enough for the limiter to work
    assert len(x) > CHUNKED_ABOVE
    master, gain = Master(-14.0, -1.0, SR), np.float32(2.0)
    limited, lufs = master._limited_measured(x, gain)
    expected = master._limited(x, gain)
    assert np.array_equal(limited, expected) and not np.array_equal(limited, x * gain)
    assert lufs == integrated_loudness(expected)

"""Loudness as listeners hear it: ITU-R BS.1770 integrated loudness (pyloudnorm), used to balance stems, set the
master gain and score tracks."""
from __future__ import annotations

import numpy as np

from text2lofi.conditions import SAMPLE_RATE

MIN_MEASURE_S = 0.4      # BS.1770 gating blocks are 400 ms: anything shorter has no loudness


def integrated_loudness(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Integrated loudness of (n_samples,) or (n_samples, channels) audio in LUFS; -inf for silence or < 0.4 s."""
    import pyloudnorm

    if len(audio) < int(MIN_MEASURE_S * sample_rate) or not np.any(audio):
        return float("-inf")
    if audio.ndim == 2 and len(audio) > CHUNKED_ABOVE:
        return _chunked_loudness(audio, sample_rate)
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(np.asarray(audio, np.float64)))


# Above this many samples integrated_loudness() measures in chunks (the whole-array way holds three float64
# copies: a 10-minute stereo track needs 1.3 GB just to be measured).
CHUNKED_ABOVE = 2**22          # ~95 s at 44.1 kHz
CHUNK = 2**20


def _chunked_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """integrated_loudness() of a long track, measured CHUNK samples at a time (LoudnessMeter)."""
    meter = LoudnessMeter(len(audio), audio.shape[1], sample_rate)
    for start in range(0, len(audio), CHUNK):
        meter.feed(audio[start:start + CHUNK])
    return meter.loudness()


class LoudnessMeter:
    """BS.1770-4 gated integrated loudness of a track of n samples fed in order, in pieces of any size: the
    same numbers pyloudnorm's Meter gives (its K-weighting stages, 400 ms blocks with 75 % overlap, its block
    bounds and gates). The filters carry their state across pieces, so each filtered sample, each block's
    energy and so the result equal the whole-array measurement whatever the pieces; memory is a piece and a
    block. The pipeline feeds a track's mix as it is made, so mastering need not read it all again."""

    def __init__(self, n: int, channels: int = 2, sample_rate: int = SAMPLE_RATE):
        import pyloudnorm
        import scipy.signal

        meter = pyloudnorm.Meter(sample_rate)
        self.stages = [(f.b, f.a, f.passband_gain) for f in meter._filters.values()]
        self.n, self.channels, self.sample_rate = n, channels, sample_rate
        self.block, step = meter.block_size, 1.0 - meter.overlap
        n_blocks = int(np.round((n / sample_rate - self.block) / (self.block * step))) + 1
        self.bounds = [(int(self.block * (j * step) * sample_rate), int(self.block * (j * step + 1) * sample_rate))
                       for j in range(n_blocks)]
        self.z = np.zeros((channels, n_blocks))
        self.state = [[scipy.signal.lfiltic(b, a, []) for b, a, _ in self.stages] for _ in range(channels)]
        self.kept = np.zeros((0, channels))       # filtered samples from kept_at on, still needed by a block
        self.kept_at, self.j, self.end, self.sounded = 0, 0, 0, False

    def feed(self, piece: np.ndarray) -> None:
        import scipy.signal

        x = np.asarray(piece, np.float64)
        self.sounded = self.sounded or bool(np.any(x))
        filtered = np.empty_like(x)
        for ch in range(self.channels):
            y = x[:, ch]
            for s, (b, a, gain) in enumerate(self.stages):
                y, self.state[ch][s] = scipy.signal.lfilter(b, a, y, zi=self.state[ch][s])
                y = gain * y
            filtered[:, ch] = y
        self.kept = np.concatenate([self.kept, filtered])
        self.end += len(x)
        n, bounds, n_blocks = self.n, self.bounds, len(self.bounds)
        while self.j < n_blocks and (bounds[self.j][1] <= self.end or self.end == n):
            lo, hi = bounds[self.j][0] - self.kept_at, min(bounds[self.j][1], n) - self.kept_at
            for ch in range(self.channels):
                self.z[ch, self.j] = (1.0 / (self.block * self.sample_rate)) * np.sum(np.square(self.kept[lo:hi, ch]))
            self.j += 1
        if self.j < n_blocks:                       # drop what no later block reaches
            drop = bounds[self.j][0] - self.kept_at
            self.kept, self.kept_at = self.kept[drop:], bounds[self.j][0]

    def loudness(self) -> float:
        """LUFS of all n samples (fed in full); -inf for silence or under MIN_MEASURE_S, as integrated_loudness."""
        if self.end != self.n:
            raise ValueError(f"the meter was fed {self.end} of {self.n} samples")
        if self.n < int(MIN_MEASURE_S * self.sample_rate) or not self.sounded:
            return float("-inf")
        z = self.z
        weights = np.array([1.0, 1.0, 1.0, 1.41, 1.41][:self.channels])[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            blocks = -0.691 + 10.0 * np.log10(np.sum(weights * z, axis=0))
            gated = blocks >= -70.0
            relative = -0.691 + 10.0 * np.log10(np.sum(weights[:, 0] * z[:, gated].mean(axis=1))) - 10.0
            gated = (blocks > relative) & (blocks > -70.0)
            mean = np.nan_to_num(z[:, gated].mean(axis=1))
            return float(-0.691 + 10.0 * np.log10(np.sum(weights[:, 0] * mean)))

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
    """BS.1770-4 gated integrated loudness of (n, channels) audio, the same numbers pyloudnorm's Meter gives
    (its K-weighting stages, 400 ms blocks with 75 % overlap, its block bounds and gates), in CHUNK-sample
    pieces: memory is a few chunks whatever the length. The filters carry their state across chunks, so each
    filtered sample, each block's energy and so the result equal the whole-array measurement."""
    import pyloudnorm
    import scipy.signal

    meter = pyloudnorm.Meter(sample_rate)
    stages = [(f.b, f.a, f.passband_gain) for f in meter._filters.values()]
    n, channels = audio.shape
    block, step = meter.block_size, 1.0 - meter.overlap
    n_blocks = int(np.round((n / sample_rate - block) / (block * step))) + 1
    bounds = [(int(block * (j * step) * sample_rate), int(block * (j * step + 1) * sample_rate))
              for j in range(n_blocks)]
    z = np.zeros((channels, n_blocks))
    state = [[scipy.signal.lfiltic(b, a, []) for b, a, _ in stages] for _ in range(channels)]
    kept = np.zeros((0, channels))            # filtered samples from kept_at on, still needed by a block
    kept_at, j = 0, 0
    for start in range(0, n, CHUNK):
        x = np.asarray(audio[start:start + CHUNK], np.float64)
        filtered = np.empty_like(x)
        for ch in range(channels):
            y = x[:, ch]
            for s, (b, a, gain) in enumerate(stages):
                y, state[ch][s] = scipy.signal.lfilter(b, a, y, zi=state[ch][s])
                y = gain * y
            filtered[:, ch] = y
        kept = np.concatenate([kept, filtered])
        end = start + len(x)
        while j < n_blocks and (bounds[j][1] <= end or end == n):
            lo, hi = bounds[j][0] - kept_at, min(bounds[j][1], n) - kept_at
            for ch in range(channels):
                z[ch, j] = (1.0 / (block * sample_rate)) * np.sum(np.square(kept[lo:hi, ch]))
            j += 1
        if j < n_blocks:                       # drop what no later block reaches
            drop = bounds[j][0] - kept_at
            kept, kept_at = kept[drop:], bounds[j][0]
    weights = np.array([1.0, 1.0, 1.0, 1.41, 1.41][:channels])[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        blocks = -0.691 + 10.0 * np.log10(np.sum(weights * z, axis=0))
        gated = blocks >= -70.0
        relative = -0.691 + 10.0 * np.log10(np.sum(weights[:, 0] * z[:, gated].mean(axis=1))) - 10.0
        gated = (blocks > relative) & (blocks > -70.0)
        mean = np.nan_to_num(z[:, gated].mean(axis=1))
        return float(-0.691 + 10.0 * np.log10(np.sum(weights[:, 0] * mean)))

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
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(np.asarray(audio, np.float64)))

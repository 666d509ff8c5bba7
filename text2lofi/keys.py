"""Key finding (Krumhansl-Schmuckler), shared by data preparation, the music-target benchmark and evaluation."""
from __future__ import annotations

import math

import numpy as np

# Krumhansl-Kessler probe-tone profiles, tonic first (Krumhansl 1990).
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_key(hist: np.ndarray) -> tuple[int, str] | None:
    """12 pitch-class weights (e.g. duration-weighted) -> (tonic pitch class, "major"|"minor") whose rotated
    profile correlates best; None for silence or a flat histogram (no key to find)."""
    if hist.sum() <= 0 or np.allclose(hist, hist[0]):
        return None
    best, best_r = None, -math.inf
    for mode, profile in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for tonic in range(12):
            r = np.corrcoef(hist, np.roll(profile, tonic))[0, 1]
            if r > best_r + 1e-12:
                best, best_r = (tonic, mode), r
    return best

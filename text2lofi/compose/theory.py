"""Music theory the stages share: chord symbols and their tones, and key finding. Pure: numpy only.

Chords: a compact vocabulary of 11 qualities (`CHORD_QUALITIES`) that the piano tokenizer's Chord tokens, the
composer's pitch masks and the arrangement all read; `read_chord` maps lead-sheet and Harte symbols onto it.

Key finding by profile correlation (Krumhansl-Schmuckler method), shared by data preparation, the
music-target benchmark and evaluation.

The method correlates a 12-bin pitch-class histogram with each of the 24 rotated key profiles and takes the best.
Which profile matters more than the method: on POP909 with its annotated keys, the Temperley-Kostka-Payne profile
recovers the key (or its relative) in 0.852 of 3,000 training segments and 0.833 of the 630 validation segments,
Krumhansl-Kessler's probe-tone profile in 0.702 / 0.713 (`python benchmarks/key_finders.py`, which picks the profile
on the training segments and reports validation). So the default is Temperley-Kostka-Payne.
"""
from __future__ import annotations

import math
import re

import numpy as np

from text2lofi.conditions import PC_NAME, PITCH_CLASS

# Compact chord vocabulary: 12 roots x these qualities, plus Chord_N (no chord). Intervals from the root.
CHORD_QUALITIES = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11), "min7": (0, 3, 7, 10),
    "dim": (0, 3, 6), "aug": (0, 4, 8), "sus2": (0, 2, 7), "sus4": (0, 5, 7), "hdim7": (0, 3, 6, 10),
    "dim7": (0, 3, 6, 9),
}

_HARTE = {"maj": "maj", "min": "min", "7": "7", "maj7": "maj7", "min7": "min7", "dim": "dim", "aug": "aug",
          "sus2": "sus2", "sus4": "sus4", "hdim7": "hdim7", "dim7": "dim7", "maj6": "maj", "min6": "min",
          "9": "7", "11": "7", "13": "7", "maj9": "maj7", "maj11": "maj7", "maj13": "maj7", "min9": "min7",
          "min11": "min7", "min13": "min7", "minmaj7": "min", "1": "maj", "5": "maj", "": "maj"}
# Lead-sheet suffixes, longest first so "m7b5" wins over "m7" and "m".
_LEAD = (("m7b5", "hdim7"), ("min7b5", "hdim7"), ("ø7", "hdim7"), ("ø", "hdim7"), ("dim7", "dim7"), ("°7", "dim7"),
         ("o7", "dim7"), ("dim", "dim"), ("°", "dim"), ("aug", "aug"), ("+", "aug"), ("mmaj7", "min"),
         ("mM7", "min"), ("maj13", "maj7"), ("maj9", "maj7"), ("maj7", "maj7"), ("M7", "maj7"), ("Δ", "maj7"),
         ("min7", "min7"), ("min9", "min7"), ("m13", "min7"), ("m11", "min7"), ("m9", "min7"), ("m7", "min7"),
         ("-7", "min7"), ("min", "min"), ("m6", "min"), ("m", "min"), ("-", "min"), ("sus2", "sus2"),
         ("sus4", "sus4"), ("sus", "sus4"), ("13", "7"), ("11", "7"), ("9", "7"), ("7", "7"), ("6", "maj"),
         ("add9", "maj"), ("maj", "maj"), ("5", "maj"), ("", "maj"))


# Lead-sheet suffix that writes each compact quality (read back by read_chord).
SUFFIX = {"maj": "", "min": "m", "7": "7", "maj7": "maj7", "min7": "m7", "dim": "dim", "aug": "aug", "sus2": "sus2",
          "sus4": "sus4", "hdim7": "m7b5", "dim7": "dim7"}


def chord_symbol(root: int, quality: str) -> str:
    """(9, 'min7') -> 'Am7' (flat names for the black keys)."""
    return PC_NAME[root % 12] + SUFFIX[quality]


def read_chord(symbol: str) -> tuple[int, str] | None:
    """'Am7', 'C:maj', 'F#m7b5', 'G:7/3', 'N' -> (root pitch class, quality) or None (no chord / unreadable)."""
    s = str(symbol).strip()
    m = re.match(r"^([A-Ga-g])([#b♯♭]?)(.*)$", s)
    if not m:
        return None
    root_name = m.group(1).upper() + m.group(2).replace("♯", "#").replace("♭", "b")
    # Any letter with any accidental: Cb is B, E# is F (PITCH_CLASS names only the usual spellings).
    root = (PITCH_CLASS[root_name[0]] + {"#": 1, "b": -1}.get(root_name[1:], 0)) % 12
    rest = m.group(3)
    if rest.startswith(":"):  # Harte notation (POP909): quality, optional (extensions), optional /bass
        q = re.split(r"[(/]", rest[1:], maxsplit=1)[0]
        return (root, _HARTE[q]) if q in _HARTE else None
    rest = rest.split("/")[0]
    for suffix, quality in _LEAD:
        if rest.startswith(suffix):
            return root, quality
    return None


def detect_chord(weights: np.ndarray) -> tuple[int, str] | None:
    """Best (root, quality) for a 12-bin pitch-class weight vector (e.g. duration-weighted), None if silent."""
    total = float(weights.sum())
    if total <= 0:
        return None
    best, best_score = None, -np.inf
    for quality, intervals in CHORD_QUALITIES.items():
        for root in range(12):
            inside = sum(weights[(root + i) % 12] for i in intervals)
            # Penalise pitch classes outside the chord and, slightly, bigger chords (prefer the plain triad);
            # a sounding root breaks ties (a lone G is G major, not C major).
            score = inside - 0.6 * (total - inside) - 0.04 * total * len(intervals) + 0.1 * weights[root]
            if score > best_score:
                best, best_score = (root, quality), score
    return best


def is_tonic_chord(symbol: str, tonic_pc: int, mode: str) -> bool:
    """Root on the tonic and a third of the mode: Cmaj7 / C6 in C major, Am9 in A minor."""
    parsed = read_chord(symbol)
    return parsed is not None and parsed[0] == tonic_pc and parsed[1].startswith("min") == (mode == "minor") \
        and parsed[1] not in ("dim", "dim7", "hdim7", "aug", "sus2", "sus4")


def chord_tones(symbol: str) -> tuple[int, tuple[int, ...]]:
    """'Am9' -> (9, sorted pitch classes of its compact chord). Raises ValueError for unreadable symbols."""
    parsed = read_chord(symbol)
    if parsed is None:
        raise ValueError(f"unreadable chord symbol {symbol!r}")
    root, quality = parsed
    return root, tuple(sorted({(root + i) % 12 for i in CHORD_QUALITIES[quality]}))


# Key profiles, tonic first: (major, minor). Published figures.
PROFILES: dict[str, tuple[np.ndarray, np.ndarray]] = {
    # Temperley, "Music and Probability" (2007): pitch-class probabilities in the Kostka-Payne harmony textbook.
    "temperley": (np.array([0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400]),
                  np.array([0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330])),
    # Krumhansl & Kessler (1982) probe-tone ratings; the classic Krumhansl-Schmuckler profile.
    "krumhansl": (np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]),
                  np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])),
    # Aarden (2003): tone frequencies in the Essen folk-song collection.
    "aarden": (np.array([17.7661, 0.145624, 14.9265, 0.160186, 19.8049, 11.3587, 0.291248, 22.062, 0.145624,
                         8.15494, 0.232998, 4.95122]),
               np.array([18.2648, 0.737619, 14.0499, 16.8599, 0.702494, 14.4362, 0.702494, 18.6161, 4.56621,
                         1.93186, 7.37619, 1.75623])),
    # Sapp's simple weights: tonic and fifth 2, other scale degrees 1.
    "simple": (np.array([2, 0, 1, 0, 1, 1, 0, 2, 0, 1, 0, 1], dtype=float),
               np.array([2, 0, 1, 1, 0, 1, 0, 2, 1, 0, 0.5, 0.5])),
}
DEFAULT_PROFILE = "temperley"


def estimate_key(hist: np.ndarray, profile: str = DEFAULT_PROFILE) -> tuple[int, str] | None:
    """12 pitch-class weights (e.g. duration-weighted) -> (tonic pitch class, "major"|"minor") whose rotated
    profile correlates best; None for silence or a flat histogram (no key to find)."""
    if hist.sum() <= 0 or np.allclose(hist, hist[0]):
        return None
    best, best_r = None, -math.inf
    for mode, prof in zip(("major", "minor"), PROFILES[profile]):
        for tonic in range(12):
            r = np.corrcoef(hist, np.roll(prof, tonic))[0, 1]
            if r > best_r + 1e-12:
                best, best_r = (tonic, mode), r
    return best


def key_match(found: tuple[int, str] | None, tonic_pc: int, mode: str, allow_relative: bool) -> bool:
    """Exact tonic and mode (CK) or, with allow_relative, also the relative major/minor (CKD)."""
    if found is None:
        return False
    if found == (tonic_pc % 12, mode):
        return True
    relative = ((tonic_pc + 9) % 12, "minor") if mode == "major" else ((tonic_pc + 3) % 12, "major")
    return allow_relative and found == relative

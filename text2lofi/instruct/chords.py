"""Chord progressions written in a prompt: lead-sheet symbols ("Dm9 G13 Cmaj9 Am9", "Fmaj7 - Em7 | Dm7") and roman
numerals in a key ("ii-V-I in F"), read from the text as written (case matters: "Am" is a chord, "am" a word).

A progression is a run of two or more chord symbols separated by spaces, commas, dashes or bars, or a single symbol
right after "chord(s)"/"over". Symbols in a run that look like chords but cannot be read ("Hm7", "Gx7") are
reported, never silently dropped. The run is blanked out of the text before the other rules read it, so "Am9" is
never also taken for the key "A minor".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from text2lofi.compose.theory import CHORD_QUALITIES, DEFAULT_PROFILE, PROFILES, read_chord
from text2lofi.conditions import PC_NAME, PITCH_CLASS, SCALE_STEPS

# Root, then only chord vocabulary (qualities, extensions, alterations, a parenthesised tension), then a slash bass.
CHORD_RE = re.compile(r"[A-G][#b♯♭]?(?:maj|min|mM|M|m|dim|aug|sus|add|ø|°|\+|-|Δ|[0-9]|#|b|♯|♭)*"
                      r"(?:\([0-9#b♯♭,]+\))?(?:/[A-G][#b♯♭]?)?")
# Looks like a chord someone meant (a capital letter and a digit), but is not one we can read: reported.
MEANT_CHORD_RE = re.compile(r"[A-H][^\s]*[0-9][^\s]*")
ROMAN_RE = re.compile(r"([b#♭♯]?)(VII|VI|IV|V|III|II|I|vii|vi|iv|v|iii|ii|i)(°|ø|\+)?(maj7|M7|7|9|11|13|6)?")
DEGREES = {"I": 0, "II": 1, "III": 2, "IV": 3, "V": 4, "VI": 5, "VII": 6}
SEPARATORS = {"-", "–", "—", "|", "||", ",", "/", "->", "→"}
LEAD_WORDS = {"chord", "chords", "over", "progression"}
TRAILING = ".,;:!?)"


@dataclass
class ChordRun:
    """Chord symbols found in a text, in order, plus what could not be read."""
    symbols: list[str] = field(default_factory=list)      # lead-sheet symbols, roman numerals still unresolved
    roman: bool = False                                    # True: `symbols` are roman numerals, need a key
    unreadable: list[str] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)   # character ranges of the text they came from


def _parts(token: str) -> list[str]:
    """'ii-V-I' -> ['ii', 'V', 'I']; 'Dm7-G7' -> ['Dm7', 'G7']; 'C-7' stays one symbol (C minor 7)."""
    parts = [p for p in re.split(r"[-–—|]", token) if p]
    if len(parts) > 1 and all(CHORD_RE.fullmatch(p) or ROMAN_RE.fullmatch(p) for p in parts):
        return parts
    return [token]


def _kind(symbol: str) -> str | None:
    if CHORD_RE.fullmatch(symbol) and read_chord(symbol) is not None:
        return "chord"
    if ROMAN_RE.fullmatch(symbol):
        return "roman"
    if MEANT_CHORD_RE.fullmatch(symbol):
        return "unreadable"
    return None


def find_chords(text: str) -> ChordRun:
    """The first progression written in `text` (see the module doc)."""
    words = [(m.group(0), m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    i = 0
    while i < len(words):
        run: list[tuple[str, str]] = []      # (symbol, kind)
        start = end = None
        j = i
        while j < len(words):
            raw, s, e = words[j]
            token = raw.rstrip(TRAILING)
            if token in SEPARATORS or not token:
                if run:
                    j += 1
                    continue
                break
            kinds = [(p, _kind(p)) for p in _parts(token)]
            if not all(k for _, k in kinds):
                break
            run += kinds
            start = s if start is None else start
            end = s + len(token)
            j += 1
            if raw != token and raw[len(token):].strip(",") != "":      # a full stop ends the progression
                break
        readable = [k for _, k in run if k != "unreadable"]
        led = i > 0 and words[i - 1][0].lower().rstrip(":") in LEAD_WORDS
        if run and (len(run) >= 2 or led) and readable:
            roman = readable.count("roman") > readable.count("chord")
            wanted = "roman" if roman else "chord"
            return ChordRun([p for p, k in run if k == wanted], roman, [p for p, k in run if k != wanted],
                            [(start, end)])
        i = max(j, i + 1)
    return ChordRun()


def blank(text: str, spans: list[tuple[int, int]]) -> str:
    """The text with the chord runs replaced by spaces (positions kept)."""
    for s, e in spans:
        text = text[:s] + " " * (e - s) + text[e:]
    return text


def resolve_roman(numeral: str, key: str, mode: str) -> str:
    """'ii' in F major -> 'Gm'; 'V7' -> 'C7'; 'bVII' in C -> 'Bb'; degrees count from the key's own scale."""
    m = ROMAN_RE.fullmatch(numeral)
    if m is None:
        raise ValueError(f"not a roman numeral: {numeral!r}")
    acc, degree, shape, ext = m.groups()
    step = SCALE_STEPS[mode][DEGREES[degree.upper()]] + {"b": -1, "♭": -1, "#": 1, "♯": 1}.get(acc, 0)
    root = spell((PITCH_CLASS[key] + step) % 12, key, mode)
    minor = degree.islower()
    if shape == "°":
        quality = "dim7" if ext == "7" else "dim"
    elif shape == "ø":
        quality = "m7b5"
    elif shape == "+":
        quality = "aug"
    elif ext in ("maj7", "M7"):
        quality = "mmaj7" if minor else "maj7"
    elif ext:
        quality = ("m" if minor else "") + ext
    else:
        quality = "m" if minor else ""
    return root + quality


# Keys whose signatures use sharps: their chords are spelled with sharps (F#7 in B minor, not Gb7).
SHARP_KEYS = {"major": {"G", "D", "A", "E", "B", "F#", "C#"}, "minor": {"E", "B", "F#", "C#", "G#", "D#", "A#"}}
SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
TONIC_BONUS = {"first": 0.3, "last": 0.2}     # correlation added when a key's tonic chord opens / closes the run


def spell(pc: int, key: str, mode: str) -> str:
    """The name of pitch class `pc` as the key's signature writes it."""
    return (SHARP_NAMES if key in SHARP_KEYS[mode] else PC_NAME)[pc % 12]


def roman_mode(numerals: list[str]) -> str | None:
    """'i' (lower-case tonic) means minor, 'I' major; None when the tonic numeral is not written."""
    for n in numerals:
        m = ROMAN_RE.fullmatch(n)
        if m and m.group(2).upper() == "I":
            return "minor" if m.group(2) == "i" else "major"
    return None


def key_of_progression(symbols: list[str]) -> tuple[str, str]:
    """The key a progression implies: the key profiles correlated with its chord tones, plus a bonus for the key
    whose tonic chord opens or closes the progression (songs start and cadence at home)."""
    weights = np.zeros(12)
    chords = [read_chord(s) for s in symbols]
    for root, quality in chords:
        for interval in CHORD_QUALITIES[quality]:
            weights[(root + interval) % 12] += 1.0
    best, best_score = None, -np.inf
    for mode, profile in zip(("major", "minor"), PROFILES[DEFAULT_PROFILE]):
        for tonic in range(12):
            score = np.corrcoef(weights, np.roll(profile, tonic))[0, 1] if weights.std() > 0 else 0.0
            for where, (root, quality) in (("first", chords[0]), ("last", chords[-1])):
                if root == tonic and quality.startswith("min") == (mode == "minor"):
                    score += TONIC_BONUS[where]
            if score > best_score + 1e-12:
                best, best_score = (tonic, mode), score
    return PC_NAME[best[0]], best[1]

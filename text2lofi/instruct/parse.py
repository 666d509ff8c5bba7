"""Exact extraction of what a prompt states outright: durations, tempo, key/mode, drums/piano, textures and their
negations, relative edits ("slower", "more energy"), seed.

Everything here is deterministic and rule-based, so an explicit "3:30" or "B flat minor" is never left to a model.
Typos are repaired first by edit distance against the project's vocabulary (`Speller`), e.g. "raniy nihgt".
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from text2lofi.instruct.chords import blank, find_chords

# ---- vocabulary the parser itself relies on -------------------------------------------------------------------
UNITS = {  # word -> seconds
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
}
SMALL_NUMBERS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
        "eighty": 80, "ninety": 90}
VAGUE_NUMBERS = {"couple": 2, "few": 3, "several": 4}
NOTE_LETTERS = "abcdefg"
TONIC_NAMES = {"C", "C#", "Db", "D", "D#", "Eb", "E", "F", "F#", "Gb", "G", "G#", "Ab", "A", "A#", "Bb", "B"}
ENHARMONIC = {"Cb": "B", "Fb": "E", "E#": "F", "B#": "C"}      # spellings Conditions has no name for

# Texture words the parser treats as explicit mentions (canonical names and inflections). Implied textures
# ("campfire", "cars passing") are left to the instruction LM and the lexicon retrieval.
TEXTURE_WORDS = {
    "rain": ("rain",), "rainy": ("rain",), "raining": ("rain",), "rainfall": ("rain",), "raindrops": ("rain",),
    "thunder": ("thunder",), "thunderstorm": ("thunder", "rain"), "thunderstorms": ("thunder", "rain"),
    "storm": ("thunder", "rain"), "stormy": ("thunder", "rain"), "storms": ("thunder", "rain"),
    "wind": ("wind",), "windy": ("wind",), "winds": ("wind",),
    "ocean": ("ocean",), "sea": ("ocean",), "waves": ("ocean",),
    "birds": ("birds",), "bird": ("birds",), "birdsong": ("birds",),
    "cafe": ("cafe",), "fireplace": ("fireplace",),
    "city": ("city",), "vinyl": ("vinyl",), "crackle": ("vinyl",), "crackles": ("vinyl",),
    "hiss": ("tape_hiss",), "cassette": ("tape_hiss",), "tape": ("tape_hiss",),
}
TEXTURE_BIGRAMS = {("coffee", "shop"): ("cafe",), ("tape", "hiss"): ("tape_hiss",)}
FIRE_WORDS = {"fire", "campfire", "fireplace", "bonfire", "log", "wood", "hearth", "embers"}
DRUM_WORDS = {"drums", "drum", "percussion", "drumbeat", "drumbeats", "beat", "hihats", "kick"}
ALL_TEXTURE_WORDS = {"background", "noise", "noises", "ambience", "ambiance", "ambient", "textures", "texture",
                     "effects", "sfx", "atmosphere", "extras", "sounds"}
NEGATORS = {"no", "without", "remove", "drop", "lose", "cut", "kill", "mute", "minus", "ditch", "skip", "nix",
            "exclude", "excluding", "omit", "sans", "less", "removing", "dropping", "stop", "zero", "not", "nothing"}
NEGATOR_BIGRAMS = {("take", "out"), ("get", "rid"), ("turn", "off"), ("leave", "out"), ("no", "more"),
                   ("dont", "want"), ("take", "away"), ("switch", "off"), ("without", "any")}
POST_NEGATORS = {"off", "out", "free", "less"}
FILLERS = {"the", "any", "more", "of", "all", "those", "that", "this", "some", "sound", "sounds", "noise", "noises",
           "effects", "please", "at", "a", "an", "your", "my", "its", "it", "rid", "out", "away", "off", "whatsoever",
           "kind", "background", "ambient", "loud", "heavy", "light", "crackling", "crackles", "too", "fx", "really"}

TEMPO_NOUNS = {"tempo", "bpm", "speed", "pace"}
ENERGY_NOUNS = {"energy", "energetic", "intense", "intensity", "punch", "punchy", "drive", "power", "upbeat",
                "busy", "hype", "groove"}
UP_WORDS = {"more", "higher", "increase", "boost", "raise", "extra", "up", "add", "crank", "bump", "pump", "much"}
DOWN_WORDS = {"less", "lower", "reduce", "decrease", "down", "fewer", "tone", "dial"}
ENERGY_DOWN_COMPARATIVES = {"calmer", "softer", "mellower", "gentler", "quieter", "chiller", "smoother", "lighter",
                            "sleepier", "relaxed"}
ENERGY_UP_COMPARATIVES = {"punchier", "livelier", "harder", "busier", "bouncier", "intenser", "louder", "heavier",
                          "groovier", "stronger"}
SMALL_STEP = {"bit", "slightly", "little", "touch", "tad", "tiny", "notch"}
BIG_STEP = {"much", "way", "lot", "really", "very", "lots", "significantly", "heaps", "super"}

PARSER_WORDS = (set(UNITS) | set(SMALL_NUMBERS) | set(TENS) | set(VAGUE_NUMBERS) | set(TEXTURE_WORDS)
                | DRUM_WORDS | ALL_TEXTURE_WORDS | NEGATORS | POST_NEGATORS | FILLERS | TEMPO_NOUNS | ENERGY_NOUNS
                | UP_WORDS | DOWN_WORDS | ENERGY_UP_COMPARATIVES | ENERGY_DOWN_COMPARATIVES | SMALL_STEP | BIG_STEP
                | {"bpm", "beats", "per", "major", "minor", "key", "sharp", "flat", "half", "quarter", "hundred",
                   "and", "seed", "slower", "faster", "quicker", "slow", "fast", "piano", "only", "just", "solo",
                   "swing", "swung", "shuffle", "straight", "lofi", "drumless", "clean", "crunchy", "seconds",
                   "minutes", "hours", "hour", "long", "make", "speed", "pick", "keys", "bass", "bassline"})


# ---- spelling repair --------------------------------------------------------------------------------------------
def edit_distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein (adjacent transpositions) distance, or limit + 1 once it must exceed `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if prev2 is not None and i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


class Speller:
    """Maps a misspelt word to the nearest domain word; real English words (`known`) are left alone.

    Words of <= 3 letters are never changed (too many near neighbours), 4 letters only by a swap; up to 1 edit
    for 5-7 letters, 2 above.
    """

    def __init__(self, domain: set[str], known: set[str] = frozenset()):
        self.domain = {w for w in domain if w.isalpha()}
        self.known = set(known) | self.domain
        self._by_len: dict[int, list[str]] = {}
        for w in sorted(self.domain):
            self._by_len.setdefault(len(w), []).append(w)
        self.correct = lru_cache(maxsize=8192)(self._correct)

    def _correct(self, word: str) -> str:
        if len(word) <= 3 or word in self.known or not word.isalpha():
            return word
        limit = 1 if len(word) <= 7 else 2
        if len(word) == 4:     # 4 letters: only a swap ("rian"); one substitution is too often another word ("pane")
            swaps = {word[:i] + word[i + 1] + word[i] + word[i + 2:] for i in range(3)}
            hits = sorted(swaps & self.domain)
            return hits[0] if hits else word
        best, best_d = word, limit + 1
        for n in range(len(word) - limit, len(word) + limit + 1):
            for cand in self._by_len.get(n, ()):
                d = edit_distance(word, cand, limit)
                # ties go to the candidate sharing the first letter (typos rarely hit it)
                if d < best_d or (d == best_d and d <= limit and cand[0] == word[0] and best[0] != word[0]):
                    best, best_d = cand, d
        return best if best_d <= limit else word

    def correct_unit(self, word: str) -> str:
        """After a number, prefer a time unit or 'bpm' even when the typo is itself a word ('minuets')."""
        if word in UNITS or word in ("bpm", "beats"):
            return word
        if word == "bmp":
            return "bpm"
        for unit in ("minutes", "seconds", "hours", "minute", "second", "hour", "bpm"):
            if len(word) >= 4 and edit_distance(word, unit, 2 if len(word) > 5 else 1) <= (2 if len(word) > 5 else 1):
                return unit
        return word


# ---- tokens ------------------------------------------------------------------------------------------------------
DECADE_RE = re.compile(r"(?:'|’|\b)(?:19)?([5-9]0)s\b")


@dataclass
class Token:
    text: str        # lower-case, spelling-repaired
    raw: str         # as written (case kept: "Am" is a key, "am" is not)


def tokenize(text: str, speller: Speller | None = None) -> list[Token]:
    """Lower-case word/number/punctuation tokens; digits and letters split ("2m30s" -> 2 m 30 s)."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = DECADE_RE.sub(lambda m: f" decade{m.group(1)} ", text)      # "90s hip hop" is a decade, not 90 seconds
    text = re.sub(r"(?<=\d)(?=[A-Za-z])|(?<=[A-Za-z])(?=\d)", " ", text)
    text = text.replace("-", " ").replace("_", " ").replace("/", " / ")
    out: list[Token] = []
    for m in re.finditer(r"\d+:\d{2}(?::\d{2})?|\d+(?:[.,]\d+)?|[A-Za-z]+|[#♯♭]|[^\sA-Za-z0-9]", text):
        raw = m.group(0)
        low = raw.lower().replace(",", ".") if raw[0].isdigit() else raw.lower()
        if low == "'" or low == "’":
            continue
        out.append(Token(low, raw))
    if speller is not None:
        for i, tok in enumerate(out):
            if tok.text.isalpha():
                if i > 0 and _is_number_token(out[i - 1].text):
                    fixed = speller.correct_unit(tok.text)
                    tok.text = fixed if fixed != tok.text else speller.correct(tok.text)
                else:
                    tok.text = speller.correct(tok.text)
    return out


def _is_number_token(t: str) -> bool:
    return t[:1].isdigit() or t in SMALL_NUMBERS or t in TENS or t in ("hundred", "half")


# ---- numbers -------------------------------------------------------------------------------------------------------

def _add_after_hundred(words: list[str], j: int, value: float) -> tuple[float, int]:
    """After '... hundred' at words[j-1]: add an optional '(and) forty two'. Returns (value, next index)."""
    n = len(words)
    if j + 1 < n and words[j] == "and" and (words[j + 1] in SMALL_NUMBERS or words[j + 1] in TENS):
        j += 1
    rest = _read_words_below_100(words, j)
    if rest:
        value, j = value + rest[0], rest[1]
    return value, j


def read_number(words: list[str], i: int) -> tuple[float, int] | None:
    """Number starting at words[i] -> (value, index after it). Digits, words ("ninety five", "a hundred and ten",
    "two and a half"), "a"/"an" (= 1), "couple"/"few"."""
    n = len(words)
    if i >= n:
        return None
    w = words[i]
    value: float | None = None
    j = i
    if re.fullmatch(r"\d+(?:\.\d+)?", w):
        value, j = float(w), i + 1
    elif w in ("a", "an", "one") and i + 1 < n and words[i + 1] == "hundred":
        value, j = _add_after_hundred(words, i + 2, 100.0)
    elif w in SMALL_NUMBERS or w in TENS:
        value, j = _read_words_below_100(words, i)
        if j < n and words[j] == "hundred":
            value, j = _add_after_hundred(words, j + 1, value * 100)
    elif w in ("a", "an"):
        value, j = 1.0, i + 1
        if j < n and words[j] in VAGUE_NUMBERS:           # "a couple of", "a few"
            value, j = float(VAGUE_NUMBERS[words[j]]), j + 1
            if j < n and words[j] == "of":
                j += 1
    elif w in VAGUE_NUMBERS:
        value, j = float(VAGUE_NUMBERS[w]), i + 1
        if j < n and words[j] == "of":
            j += 1
    elif w == "half":
        value, j = 0.5, i + 1
        if j < n and words[j] in ("a", "an"):
            j += 1
    elif w == "quarter":
        value, j = 0.25, i + 1
        if j < n and words[j] == "of":
            j += 1
        if j < n and words[j] in ("a", "an"):
            j += 1
    if value is None:
        return None
    if j + 2 < n and words[j] == "and" and words[j + 1] in ("a", "one") and words[j + 2] == "half":
        value += 0.5
        j += 3
    return value, j


def _read_words_below_100(words: list[str], i: int) -> tuple[float, int] | None:
    if i >= len(words):
        return None
    w = words[i]
    if w in SMALL_NUMBERS:
        return float(SMALL_NUMBERS[w]), i + 1
    if w in TENS:
        value = float(TENS[w])
        if i + 1 < len(words) and words[i + 1] in SMALL_NUMBERS and 0 < SMALL_NUMBERS[words[i + 1]] < 10:
            return value + SMALL_NUMBERS[words[i + 1]], i + 2
        return value, i + 1
    return None


# ---- the parse -------------------------------------------------------------------------------------------------------
@dataclass
class Parsed:
    """What the text states outright; None means 'not said'."""
    duration_s: float | None = None
    tempo_bpm: float | None = None
    tempo_factor: float | None = None        # relative edit: 0.87 = "slower"
    energy_delta: float | None = None        # relative edit: +0.2 = "more energy"
    key: str | None = None
    mode: str | None = None
    drums: bool | None = None
    piano: bool | None = None
    bass: bool | None = None
    textures_on: list[str] = field(default_factory=list)
    textures_off: list[str] = field(default_factory=list)
    textures_clear: bool = False
    swing: float | None = None
    lofi_delta: float | None = None
    seed: int | None = None
    chords: list[str] = field(default_factory=list)      # a written progression: symbols, or roman numerals
    chords_roman: bool = False                           # True: `chords` are numerals to read in the key
    chords_unreadable: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)       # repaired lower-case words, numbers kept
    spans: list[tuple[int, int]] = field(default_factory=list)   # word ranges consumed by explicit values


def parse(text: str, speller: Speller | None = None) -> Parsed:
    run = find_chords(text)
    toks = tokenize(blank(text, run.spans), speller)      # chord symbols are not words, keys or numbers
    words = [t.text for t in toks]
    p = Parsed(words=words, chords=run.symbols, chords_roman=run.roman, chords_unreadable=run.unreadable)
    _parse_duration(words, p)
    _parse_tempo(words, p)
    _parse_key(toks, p)
    _parse_parts_and_textures(words, p)
    _parse_relative(words, p)
    _parse_misc(words, p)
    return p


def _preceded_by(words: list[str], i: int, *seq: str) -> bool:
    k = len(seq)
    return i - k >= 0 and tuple(words[i - k:i]) == seq


def _parse_duration(words: list[str], p: Parsed) -> None:
    groups: list[tuple[float, int, int]] = []     # (seconds, start, end)
    i, n = 0, len(words)
    while i < n:
        w = words[i]
        clock = re.fullmatch(r"(\d+):(\d{2})(?::(\d{2}))?", w)
        if clock:
            a, b, c = clock.groups()
            secs = int(a) * 3600 + int(b) * 60 + int(c) if c else int(a) * 60 + int(b)
            groups.append((float(secs), i, i + 1))
            i += 1
            continue
        num = read_number(words, i)
        if num is None:
            if w in ("hour", "minute") and i > 0 and words[i - 1] in ("next", "whole", "full", "entire", "solid"):
                num = (1.0, i)                                     # "for the next hour", "a full hour"
            else:
                i += 1
                continue
        value, j = num
        while j < n and words[j] in ("full", "whole", "solid", "straight", "entire", "good"):
            j += 1                                                 # "two full hours"
        # "hour long", "a minute": the number may be followed by a unit directly
        if j < n and words[j] in UNITS and not _preceded_by(words, i, "per") and not (
                words[i] in ("a", "an") and (i > 0 and words[i - 1] in ("beats", "per", "bpm"))):
            unit = UNITS[words[j]]
            if unit == 1 and words[j] == "s" and j + 1 < n and words[j + 1] in ("hip", "vibe", "vibes", "style"):
                i = j + 1
                continue
            secs = value * unit
            end = j + 1
            if end + 2 < n + 1 and end + 2 <= n and words[end:end + 3] == ["and", "a", "half"]:
                secs += 0.5 * unit
                end += 3
            if UNITS[words[j]] == 60 and end < n and re.fullmatch(r"\d+", words[end]) and int(words[end]) < 60 \
                    and not (end + 1 < n and (words[end + 1] in UNITS or words[end + 1] in ("bpm", "beats"))):
                secs += int(words[end])      # "2 min 30"
                end += 1
            if groups and groups[-1][2] >= i - 1 and (groups[-1][2] == i or words[i - 1] in ("and", ",")) \
                    and UNITS.get(words[j], 0) < _last_unit(words, groups[-1]):
                total, start, _ = groups.pop()
                groups.append((total + secs, start, end))
            else:
                groups.append((secs, i, end))
            i = end
            continue
        i = max(j, i + 1)
    if groups:
        secs, start, end = groups[-1]
        p.duration_s = secs
        p.spans.append((start, end))


def _last_unit(words: list[str], group: tuple[float, int, int]) -> int:
    for k in range(group[2] - 1, group[1] - 1, -1):
        if words[k] in UNITS:
            return UNITS[words[k]]
    return 60     # a clock "3:30" is minutes and seconds


def _parse_tempo(words: list[str], p: Parsed) -> None:
    n = len(words)
    i = 0
    while i < n:
        num = read_number(words, i)
        if num is None or words[i] in ("half", "quarter") or words[i] in VAGUE_NUMBERS or (
                words[i] in ("a", "an") and num[0] < 100):
            i += 1
            continue
        value, j = num
        after = words[j:j + 3]
        if after[:1] == ["bpm"]:
            p.tempo_bpm = value
            p.spans.append((i, j + 1))
        elif after[:2] == ["beats", "per"] or after == ["beats", "a", "minute"]:
            p.tempo_bpm = value
            p.spans.append((i, j + 3))
        elif i > 0 and (words[i - 1] in ("tempo", "bpm") or any(
                _preceded_by(words, i, noun, x) for noun in ("tempo", "bpm") for x in ("of", "to", "at", ":", "="))):
            if not (j < n and words[j] in UNITS):
                p.tempo_bpm = value
                p.spans.append((i - 1, j))
        i = j


def _parse_key(toks: list[Token], p: Parsed) -> None:
    words = [t.text for t in toks]
    n = len(words)
    for i, tok in enumerate(toks):
        w = tok.text
        letter, acc, j = None, "", i + 1
        if len(w) == 1 and w in NOTE_LETTERS:
            letter = w.upper()
        elif len(w) == 2 and w[0] in NOTE_LETTERS and w[1] == "b" and (tok.raw[0].isupper() or _key_context(words, i)):
            letter, acc = w[0].upper(), "b"         # "Eb", "bb"
        elif len(w) == 3 and w[0] in NOTE_LETTERS and w[1:] == "bm" and tok.raw[0].isupper():
            p.key, p.mode = ENHARMONIC.get(w[0].upper() + "b", w[0].upper() + "b"), "minor"     # "Ebm"
            p.spans.append((i, i + 1))
            continue
        elif len(w) == 2 and w[0] in NOTE_LETTERS and w[1] == "m" and tok.raw[0].isupper() and tok.raw[1] == "m":
            p.key, p.mode = w[0].upper(), "minor"          # "Am"
            p.spans.append((i, i + 1))
            continue
        if letter is None:
            continue
        if not acc and j < n and words[j] in ("#", "♯", "sharp"):
            acc, j = "#", j + 1
        elif not acc and j < n and words[j] in ("♭", "flat"):
            acc, j = "b", j + 1
        mode = None
        if j < n and words[j] in ("major", "maj"):
            mode, j = "major", j + 1
        elif j < n and words[j] in ("minor", "min"):
            mode, j = "minor", j + 1
        elif j < n and words[j] == "m" and toks[j].raw == "m":
            mode, j = "minor", j + 1
        # a bare letter is a key only with musical context: "in Eb", "key of F#", "C# minor", a capital "A"/"E"
        context = _key_context(words, i)
        if mode is None and not context:
            continue
        if mode is None and letter == "A" and not acc and tok.raw == "a":
            continue          # "in a cafe"
        if mode is not None and letter == "A" and not acc and tok.raw == "a" and j < n and words[j] == "key" \
                and i > 0 and words[i - 1] == "in":
            p.mode = mode        # "in a minor key": mode only
            continue
        key = ENHARMONIC.get(letter + acc, letter + acc)
        if key not in TONIC_NAMES:
            continue
        p.key = key
        if mode:
            p.mode = mode
        p.spans.append((i, j))
    if p.mode is None:
        for i, w in enumerate(words):
            if w in ("major", "minor") and not any(s <= i < e for s, e in p.spans):
                p.mode = w
                p.spans.append((i, i + 1))


def _key_context(words: list[str], i: int) -> bool:
    return (i > 0 and words[i - 1] in ("in", "key", "to")) or _preceded_by(words, i, "key", "of")


def _parse_parts_and_textures(words: list[str], p: Parsed) -> None:
    n = len(words)
    negated = [False] * n
    i = 0
    while i < n:
        w = words[i]
        start = None
        if i + 1 < n and (w, words[i + 1]) in NEGATOR_BIGRAMS:
            start = i + 2
        elif w in NEGATORS and not (w == "less" and i + 1 < n and words[i + 1] in ENERGY_NOUNS | TEMPO_NOUNS):
            start = i + 1
        if start is not None:
            end = _mark_negation_scope(words, start, negated, p)
            if end > start:
                p.spans.append((i, end))
        i += 1
    on: list[str] = []
    off: list[str] = []
    for i, w in enumerate(words):
        targets = None
        if i + 1 < n and (w, words[i + 1]) in TEXTURE_BIGRAMS:
            targets = TEXTURE_BIGRAMS[(w, words[i + 1])]
        elif w in TEXTURE_WORDS:
            if w in ("crackle", "crackles") and i > 0 and words[i - 1] in FIRE_WORDS:
                continue
            if w == "tape" and i + 1 < n and words[i + 1] == "hiss":
                continue            # counted by the bigram
            targets = TEXTURE_WORDS[w]
        post = i + 1 < n and words[i + 1] in POST_NEGATORS and words[i + 1] != "less"
        if targets:
            for t in targets:
                (off if negated[i] or post else on).append(t)
        elif w in DRUM_WORDS or (w == "beats" and negated[i]):        # "no beats": drums off; "lofi beats": music
            if negated[i] or post or (i + 1 < n and words[i + 1] == "less"):
                p.drums = False
            elif w != "beat" or _preceded_by(words, i, "add", "a") or _preceded_by(words, i, "with", "a") \
                    or _preceded_by(words, i, "back", "the"):
                p.drums = True
        elif w == "piano":
            if negated[i] or post:
                p.piano = False
            else:
                p.piano = True if p.piano is None else p.piano
        elif w in ("bass", "bassline") and not (i + 1 < n and words[i + 1] in ("heavy", "boost", "boosted")):
            p.bass = not (negated[i] or post)            # "no bass", "bass off"; "add bass", "with a bassline"
    for i, w in enumerate(words):
        if w == "drumless":
            p.drums = False
        nxt = words[i + 1] if i + 1 < n else ""
        prv = words[i - 1] if i > 0 else ""
        if w in ("piano", "keys") and (nxt == "only" or prv in ("only", "just", "solo") or nxt == "solo"
                                       or words[max(0, i - 2):i] == ["just", "the"]):
            p.drums, p.piano = False, True
        if w in ("drums", "drum", "percussion", "beat", "beats") and (nxt == "only" or prv in ("only", "just")
                                                                     or (w == "drum" and nxt == "solo")):
            p.drums, p.piano = True, False
    p.textures_on = [t for t in dict.fromkeys(on) if t not in off]
    p.textures_off = list(dict.fromkeys(off))


def _mark_negation_scope(words: list[str], i: int, negated: list[bool], p: Parsed) -> int:
    """From just after a negator: fillers, then targets joined by and/or/nor; anything else ends the scope.
    Returns the index after the last negated target (== i when nothing was negated)."""
    n = len(words)
    skipped, last = 0, i
    while i < n:
        w = words[i]
        if w in TEXTURE_WORDS or w in DRUM_WORDS or w in ("piano", "beats", "bass", "bassline") \
                or (i + 1 < n and (w, words[i + 1]) in TEXTURE_BIGRAMS):
            negated[i] = True
            skipped, last = 0, i + 1
        elif w in ALL_TEXTURE_WORDS and w != "sounds" and not (i + 1 < n and words[i + 1] in TEXTURE_WORDS):
            p.textures_clear = True
            skipped, last = 0, i + 1
        elif w in ("hiss", "shop"):
            last = i + 1
        elif w in ("and", "or", "nor", "&", "/") or w in FILLERS:
            skipped += 1
            if skipped > 3:
                break
        else:
            break
        i += 1
    return last


def _parse_relative(words: list[str], p: Parsed) -> None:
    text = " " + " ".join(words) + " "
    step = 1.0
    if any(w in BIG_STEP for w in words) or " a lot " in text:
        step = 1.8
    elif any(w in SMALL_STEP for w in words):
        step = 0.5
    down = any(w in ("slower", "slowed") for w in words) or " slow down " in text or " slow it down " in text \
        or " slow things down " in text or " too fast " in text or " less fast " in text
    up = any(w in ("faster", "quicker", "speedier") for w in words) or " speed up " in text \
        or " speed it up " in text or " pick up the pace " in text or " too slow " in text
    for i, w in enumerate(words):
        if w in TEMPO_NOUNS:
            window = words[max(0, i - 3):i]
            if any(x in DOWN_WORDS or x in ("drop", "bring", "slow", "cut") for x in window) \
                    and not any(x in UP_WORDS for x in window if x not in ("up",)):
                down = True
            elif any(x in UP_WORDS for x in window) and "down" not in window:
                up = True
    if down != up:
        p.tempo_factor = 1.0 - 0.13 * step if down else 1.0 + 0.14 * step
    e_up = any(w in ENERGY_UP_COMPARATIVES for w in words) or " pump it up " in text
    e_down = any(w in ENERGY_DOWN_COMPARATIVES for w in words) or " tone it down " in text \
        or " chill it out " in text or " calm it down " in text
    for i, w in enumerate(words):
        if w in ENERGY_NOUNS:
            window = words[max(0, i - 2):i]
            if any(x in DOWN_WORDS for x in window):
                e_down = True
            elif any(x in UP_WORDS for x in window):
                e_up = True
    if e_up != e_down:
        p.energy_delta = 0.2 * step if e_up else -0.2 * step


def _parse_misc(words: list[str], p: Parsed) -> None:
    n = len(words)
    text = " " + " ".join(words) + " "
    for i, w in enumerate(words):
        if w == "seed":
            k = i + 1
            while k < n and words[k] in (":", "=", "of", "is", "#"):
                k += 1
            if k < n and words[k].isdigit():
                p.seed = int(words[k])
                p.spans.append((i, k + 1))
    if " no swing " in text or " straight " in text or " without swing " in text:
        p.swing = 0.0
    elif any(w in ("swing", "swung", "swingy", "shuffle", "shuffled") for w in words):
        p.swing = 0.55
    if any(w in ("crunchy", "degraded", "gritty", "crunchier", "grittier", "warbly") for w in words) \
            or re.search(r" (more|heavy|heavier|extra|very|super) lofi ", text):
        p.lofi_delta = 0.25
    elif any(w in ("hifi", "crisp", "polished", "pristine", "cleaner") for w in words) \
            or re.search(r" (less|light|subtle|lighter) lofi ", text) or " clean " in text:
        p.lofi_delta = -0.3


EDGE_WORDS = FILLERS | {"for", "in", "of", "to", "on", "me", "i", "want", "give", "make", "it", "is", "be", "like",
                        "something", "can", "you", "could", "need", "play", "put", "now", "ok", "just", "very"} | NEGATORS
NOT_DESCRIPTIVE = {"lofi", "lo", "fi", "beats", "beat", "music", "track", "song", "tunes", "please", "hip", "hop",
                   "instrumental", "playlist", "mix"}


def segments(p: Parsed) -> list[str]:
    """Descriptive phrases left after explicit values and negated mentions are removed, split at punctuation
    and joining words; these are what the sentence embedder compares with the lexicon."""
    consumed = set()
    for s, e in p.spans:
        consumed.update(range(s, e))
    pieces: list[list[str]] = [[]]
    for i, w in enumerate(p.words):
        breaks = i in consumed or w in NOT_DESCRIPTIVE or not w.isalnum() \
            or w in ("and", "with", "but", "plus", "then", "also", "while", "under", "by")
        if breaks:
            if pieces[-1]:
                pieces.append([])
            continue
        pieces[-1].append(w)
    out = []
    for words in pieces:
        while words and words[0] in EDGE_WORDS:
            words = words[1:]
        while words and words[-1] in EDGE_WORDS:
            words = words[:-1]
        if words:
            out.append(" ".join(words))
    return out

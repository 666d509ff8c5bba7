"""The instruction data in prompts/ (lexicon, templates, edit phrasings, seed progressions) and the synthetic
training examples generated from it, reproducibly from a seed, with typos and paraphrases.

An example is (text, is_edit, Target): the Target is what the instruction LM must output for the text — the
attributes the words imply (absolute bins for a fresh prompt, relative moves for an edit of a previous track).
Explicit values (duration, bpm, key) appear in the texts but are the parser's job, so Targets leave them out.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from text2lofi.conditions import TEXTURES
from text2lofi.resources import prompts_dir as prompts_dir_shipped

TEMPO_BINS = tuple(range(50, 135, 5))        # BPM, the LM's absolute tempo vocabulary
ENERGY_BINS = 10                             # energy bin b covers [b/10, (b+1)/10); decoded as its centre


@dataclass(frozen=True)
class Entry:
    """One lexicon entry: how people say it and what it implies (None / empty = implies nothing)."""
    name: str
    kind: str
    phrases: tuple[str, ...]
    tempo: tuple[float, float] | None = None
    energy: tuple[float, float] | None = None
    mode: str | None = None
    textures: tuple[str, ...] = ()
    mood: tuple[str, ...] = ()
    swing: tuple[float, float] | None = None
    lofi: tuple[float, float] | None = None


@dataclass(frozen=True)
class PromptBank:
    entries: tuple[Entry, ...]
    moods: tuple[str, ...]
    templates: dict
    edits: dict
    progressions: dict

    def entry(self, name: str) -> Entry:
        return next(e for e in self.entries if e.name == name)

    def vocabulary(self) -> set[str]:
        """Every word in the prompt sources (for spelling repair)."""
        words: set[str] = set()

        def add(obj) -> None:
            if isinstance(obj, str):
                words.update(w for w in obj.lower().replace("-", " ").replace(",", " ").split() if w.isalpha())
            elif isinstance(obj, dict):
                for k, v in obj.items():
                    if not k.startswith("_"):
                        add(v)
            elif isinstance(obj, (list, tuple)):
                for v in obj:
                    add(v)
        for e in self.entries:
            add(e.phrases)
        add(self.templates)
        add(self.edits)
        add(list(self.moods))
        return words


@lru_cache(maxsize=4)
def load_bank(prompts_dir: str | Path | None = None) -> PromptBank:
    d = Path(prompts_dir) if prompts_dir else prompts_dir_shipped()
    lex = json.loads((d / "lexicon.json").read_text())

    def rng(v):
        return tuple(float(x) for x in v) if v else None
    entries = tuple(Entry(name=e["name"], kind=e["kind"], phrases=tuple(e["phrases"]), tempo=rng(e.get("tempo")),
                          energy=rng(e.get("energy")), mode=e.get("mode"), textures=tuple(e.get("textures", ())),
                          mood=tuple(e.get("mood", ())), swing=rng(e.get("swing")), lofi=rng(e.get("lofi")))
                    for e in lex["entries"])
    for e in entries:
        bad = [t for t in e.textures if t not in TEXTURES] + [m for m in e.mood if m not in lex["moods"]]
        if bad:
            raise ValueError(f"lexicon entry {e.name!r} names unknown textures/moods {bad}")
    return PromptBank(entries=entries, moods=tuple(lex["moods"]),
                      templates=json.loads((d / "templates.json").read_text()),
                      edits=json.loads((d / "edits.json").read_text()),
                      progressions=json.loads((d / "progressions.json").read_text()))


# ---- what a set of lexicon entries implies --------------------------------------------------------------------------
@dataclass
class Implied:
    tempo: float | None = None
    energy: float | None = None
    mode: str | None = None
    textures: list[str] = field(default_factory=list)
    mood: list[str] = field(default_factory=list)
    swing: float | None = None
    lofi: float | None = None


KIND_PRIORITY = {"mood": 0, "activity": 1, "time": 2, "place": 3, "texture": 4}


def implied(entries: list[Entry], moods_order: tuple[str, ...]) -> Implied:
    """The combination rule: numeric attributes average the entries' range centres, the mode comes from the
    highest-priority entry that names one (a mood word beats a time of day), textures and moods are unions."""
    def mean_mid(attr):
        mids = [sum(getattr(e, attr)) / 2 for e in entries if getattr(e, attr)]
        return sum(mids) / len(mids) if mids else None
    out = Implied(tempo=mean_mid("tempo"), energy=mean_mid("energy"), swing=mean_mid("swing"), lofi=mean_mid("lofi"))
    with_mode = sorted((e for e in entries if e.mode), key=lambda e: KIND_PRIORITY[e.kind])
    out.mode = with_mode[0].mode if with_mode else None
    out.textures = [t for t in TEXTURES if any(t in e.textures for e in entries)]
    moods = {m for e in entries for m in e.mood}
    out.mood = [m for m in moods_order if m in moods][:3]
    return out


def tempo_token(bpm: float) -> int:
    """The LM's tempo word nearest to bpm (TEMPO_BINS, 5 BPM apart)."""
    return min(TEMPO_BINS, key=lambda b: abs(b - bpm))


def energy_bin(energy: float) -> int:
    return min(ENERGY_BINS - 1, max(0, int(energy * ENERGY_BINS)))


# ---- LM targets ---------------------------------------------------------------------------------------------------
@dataclass
class Target:
    """The LM's output, slot by slot. tempo/energy: 'keep' | 'down' | 'up' | bin; mode: keep|major|minor;
    drums: keep|on|off; textures: ops in order ('clear', '-t', '+t'); mood: None (= keep) or tags."""
    tempo: str = "keep"
    energy: str = "keep"
    mode: str = "keep"
    drums: str = "keep"
    textures: list[str] = field(default_factory=list)
    mood: list[str] | None = None

    def tokens(self) -> list[str]:
        out = [f"T_{self.tempo}", f"E_{self.energy}", f"M_{self.mode}", f"D_{self.drums}"]
        out += [f"X_{op}" for op in self.textures] + ["X_end"]
        out += ["Mood_keep"] if self.mood is None else [f"Mood_{m}" for m in self.mood] + ["Mood_end"]
        return out


def texture_ops(clear: bool, off: set[str], on: set[str]) -> list[str]:
    ops = ["clear"] if clear else []
    ops += [f"-{t}" for t in TEXTURES if t in off and t not in on]
    ops += [f"+{t}" for t in TEXTURES if t in on]
    return ops


@dataclass
class Example:
    text: str
    is_edit: bool
    target: Target


# ---- text generation ----------------------------------------------------------------------------------------------
KEYBOARD_NEIGHBOURS = {c: n for c, n in zip("qwertyuiopasdfghjklzxcvbnm",
                                            ["wa", "qes", "wrd", "etf", "ryg", "tuh", "yij", "uok", "ipl", "ol",
                                             "qsz", "awdz", "sefx", "drgc", "fthv", "gyjb", "hukn", "jilm", "kop",
                                             "asx", "zsdc", "xdfv", "cfgb", "vghn", "bhjm", "njk"])}


def add_typo(word: str, rng: random.Random) -> str:
    """One human-like slip: swapped neighbours, a dropped, doubled or mistyped letter."""
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.random()
    if kind < 0.35:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind < 0.6:
        return word[:i] + word[i + 1:]
    if kind < 0.8:
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice(KEYBOARD_NEIGHBOURS.get(word[i], word[i])) + word[i + 1:]


def with_typos(text: str, rng: random.Random, rate: float = 0.15) -> str:
    return " ".join(add_typo(w, rng) if rng.random() < rate else w for w in text.split(" "))


NUMBER_WORDS = {30: "thirty", 45: "forty five", 60: "sixty", 65: "sixty five", 70: "seventy", 72: "seventy two",
                75: "seventy five", 80: "eighty", 85: "eighty five", 90: "ninety", 95: "ninety five", 100: "a hundred",
                110: "a hundred and ten", 120: "a hundred and twenty", 2: "two", 3: "three", 4: "four", 5: "five",
                6: "six", 10: "ten", 15: "fifteen", 20: "twenty"}


def duration_phrase(rng: random.Random) -> str:
    m = rng.choice([1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60])
    forms = [f"{m} minutes", f"{m} min", f"{m} mins", f"{m}min", f"{m} minute", f"{m}m"]
    if m in NUMBER_WORDS:
        forms.append(f"{NUMBER_WORDS[m]} minutes")
    forms += [f"{rng.choice([20, 30, 45, 90, 120])} seconds", f"{rng.choice([30, 45, 90])} sec",
              f"{rng.randint(1, 5)}:{rng.choice(['00', '15', '30', '45'])}", f"{rng.randint(1, 4)}m{rng.choice([15, 30, 45])}s",
              rng.choice(["an hour", "half an hour", "two hours", "1 hour", "8 hours", "1.5 minutes",
                          "two and a half minutes", "a minute", "an hour and a half", "3 hrs"])]
    return rng.choice(forms)


def tempo_phrase(rng: random.Random) -> str:
    n = rng.choice(list(range(60, 125, 5)) + [72, 78, 84, 88, 92])
    shown = NUMBER_WORDS[n] if n in NUMBER_WORDS and rng.random() < 0.3 else str(n)
    return rng.choice(load_bank().templates["tempo_frames"]).format(n=shown)


def key_phrase(rng: random.Random) -> str:
    letter = rng.choice("ABCDEFG")
    acc = rng.choice(["", "", "", "#", "b", " sharp", " flat"])
    mode = rng.choice(["", " major", " minor", " minor", "m", " maj", " min"])
    if mode == "m" and acc.startswith(" "):
        mode = " minor"
    if rng.random() < 0.3:
        letter = letter.lower()
    return rng.choice(load_bank().templates["key_frames"]).format(k=f"{letter}{acc}{mode}")


def fresh_example(bank: PromptBank, rng: random.Random) -> Example:
    tpl = bank.templates
    n_concepts = rng.choices([0, 1, 2, 3], weights=[1, 5, 5, 2])[0]
    chosen = rng.sample(bank.entries, n_concepts)
    phrases = [rng.choice(e.phrases) for e in chosen]
    desc = ""
    for k, ph in enumerate(phrases):
        desc += ph if k == 0 else rng.choice(tpl["connectors"]) + ph
    frame = rng.choice(tpl["frames"]) if desc else "{noun}"
    text = frame.format(desc=desc, noun=rng.choice(tpl["nouns"])).strip()
    imp = implied(chosen, bank.moods)
    target = Target(tempo=str(tempo_token(imp.tempo)) if imp.tempo else "keep",
                    energy=str(energy_bin(imp.energy)) if imp.energy is not None else "keep",
                    mode=imp.mode or "keep", mood=imp.mood or None)
    on, off, clear = set(imp.textures), set(), False
    extras = []
    if rng.random() < 0.45:
        extras.append(rng.choice(tpl["duration_frames"]).format(d=duration_phrase(rng)))
    if rng.random() < 0.2:
        extras.append(tempo_phrase(rng))
    if rng.random() < 0.2:
        extras.append(key_phrase(rng))
    r = rng.random()
    if r < 0.12:
        extras.append(rng.choice(tpl["no_drums"]))
        target.drums = "off"
    elif r < 0.17:
        extras.append(rng.choice(tpl["with_drums"]))
        target.drums = "on"
    r = rng.random()
    if r < 0.06:
        extras.append(rng.choice(tpl["no_textures"]))
        clear, on = True, set()
    elif r < 0.16:
        tex_entry = rng.choice([e for e in bank.entries if e.kind == "texture"])
        extras.append(rng.choice(tpl["negate_texture"]).format(t=rng.choice(tex_entry.phrases[:3])))
        off |= set(tex_entry.textures)
        on -= off
    rng.shuffle(extras)
    for x in extras:
        text += rng.choice(tpl["separators"]) + x
    target.textures = texture_ops(clear, off, on)
    return Example(text=text, is_edit=False, target=target)


# Edit ops with two directions: op -> (ways); edits.json holds phrasings under "<op>_<way>".
_TWO_WAY_EDITS = {"tempo": ("down", "up"), "energy": ("down", "up"), "mode": ("minor", "major"),
                  "drums": ("off", "on")}


def edit_example(bank: PromptBank, rng: random.Random) -> Example:
    ed = bank.edits
    target = Target()
    parts: list[str] = []
    on, off, clear = set(), set(), False
    ops = rng.sample(["tempo", "energy", "mode", "drums", "tex_add", "tex_remove", "clear", "duration", "set_tempo",
                      "set_key", "mood"], rng.choices([1, 2, 3], weights=[6, 4, 1])[0])
    tex_entries = [e for e in bank.entries if e.textures]
    for op in ops:
        if op in _TWO_WAY_EDITS:               # "slower" / "more energy" / "make it sad" / "no drums" ...
            way = rng.choice(_TWO_WAY_EDITS[op])
            parts.append(rng.choice(ed[f"{op}_{way}"]))
            setattr(target, op, way)
        elif op in ("tex_add", "tex_remove"):
            pool = tex_entries if op == "tex_add" else [x for x in tex_entries if x.kind == "texture"]
            picked = rng.sample(pool, 2 if rng.random() < 0.25 else 1)      # "add rain and birds"
            phrase = " and ".join(rng.choice(e.phrases) for e in picked)
            parts.append(rng.choice(ed["texture_add" if op == "tex_add" else "texture_remove"]).format(t=phrase))
            for e in picked:
                (on if op == "tex_add" else off).update(e.textures)
        elif op == "clear":
            parts.append(rng.choice(ed["clear_textures"]))
            clear = True
        elif op == "duration":
            parts.append(rng.choice(ed["set_duration"]).format(d=duration_phrase(rng)))
        elif op == "set_tempo":
            parts.append(rng.choice(ed["set_tempo"]).format(n=rng.randrange(60, 125, 5)))
        elif op == "set_key":
            parts.append(rng.choice(ed["set_key"]).format(k=key_phrase(rng).split()[-1]))
        elif op == "mood":
            e = rng.choice([x for x in bank.entries if x.kind == "mood"])
            parts.append(rng.choice(ed["mood_set"]).format(m=rng.choice(e.phrases[:4])))
            if e.mode:
                target.mode = e.mode
            mid = sum(e.energy) / 2
            if mid < 0.4:
                target.energy, target.tempo = "down", "down"
            elif mid > 0.6:
                target.energy, target.tempo = "up", "up"
            target.mood = list(e.mood)
    if clear:
        on = set()
    text = rng.choice(ed["prefixes"]) + parts[0]
    for p in parts[1:]:
        text += rng.choice(ed["joiners"]) + p
    target.textures = texture_ops(clear, off - on, on)
    return Example(text=text.strip(), is_edit=True, target=target)


def generate_examples(n_fresh: int, n_edit: int, seed: int = 0, typo_rate: float = 0.25,
                      bank: PromptBank | None = None) -> list[Example]:
    """Reproducible synthetic examples: same (sizes, seed, prompts/) -> same list."""
    bank = bank or load_bank()
    rng = random.Random(seed)
    out = [fresh_example(bank, rng) for _ in range(n_fresh)] + [edit_example(bank, rng) for _ in range(n_edit)]
    for ex in out:
        if rng.random() < typo_rate:
            ex.text = with_typos(ex.text, rng)
        if rng.random() < 0.1:
            ex.text = ex.text.capitalize() if rng.random() < 0.5 else ex.text.upper()
    rng.shuffle(out)
    return out

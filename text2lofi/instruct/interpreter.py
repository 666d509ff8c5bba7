"""text (+ previous Conditions) -> Conditions.

Three layers, each overriding the one before:
  1. the starting point: `previous` for an edit ("what the text does not mention stays"), lo-fi defaults otherwise;
  2. meaning: lexicon entries retrieved by sentence embedding + the instruction LM's grammar-decoded attributes
     (tempo/energy bins or moves, mode, drums, texture ops, mood tags);
  3. what the text states outright (instruct.parse): duration, bpm, key, "no drums", "no rain", "slower", ... exact.
"""
from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from text2lofi.conditions import PC_NAME, PITCH_CLASS, TEXTURES, Conditions
from text2lofi.compose.theory import is_tonic_chord
from text2lofi.instruct.chords import key_of_progression, resolve_roman, roman_mode, spell
from text2lofi.instruct.data import PromptBank, Target, energy_bin, implied, load_bank, tempo_token, texture_ops
from text2lofi.instruct.lm import InstructLM, Retriever, SentenceEmbedder, checkpoint_dir, lm_input_words
from text2lofi.instruct.parse import PARSER_WORDS, Parsed, Speller, parse, segments

MAX_CHARS = 2000                  # longer prompts are truncated (with a warning)
TEMPO_STEP = (0.87, 1.14)         # "slower" / "faster" without an amount: about -13% / +14%
ENERGY_STEP = 0.2
DEFAULT_TEMPO = 80.0              # lo-fi defaults (tempo 70-90, vinyl on, drums on, ~3 minutes, lofi ~0.6)
DEFAULT_ENERGY = 0.45
# Tonics chosen by seed when a fresh prompt names no key: the keys lo-fi charts sit in most.
FRESH_KEYS = {"major": ("C", "D", "Eb", "F", "G", "Ab", "Bb"), "minor": ("A", "C", "D", "E", "F", "G", "B")}


@dataclass
class Interpreter:
    """Loaded once (module-level singleton via `get_interpreter`): MiniLM, lexicon vectors, speller, LM."""
    bank: PromptBank
    retriever: Retriever | None    # None: no embeddings (the parser-only ablation)
    speller: Speller
    lm: InstructLM | None          # None: retrieval-rule baseline (the ablation without the LM)

    @classmethod
    def load(cls, checkpoint: Path | None = None, use_lm: bool = True) -> "Interpreter":
        checkpoint = checkpoint or checkpoint_dir()
        bank = load_bank()
        embedder = SentenceEmbedder()
        cache = checkpoint / "lexicon_embeddings.npy" if checkpoint.exists() else None
        retriever = Retriever(bank, embedder, cache=cache)
        speller = Speller(bank.vocabulary() | PARSER_WORDS, embedder.known_words())
        lm = InstructLM.load(checkpoint, bank) if use_lm and (checkpoint / "config.json").exists() else None
        return cls(bank, retriever, speller, lm)

    # ---- the three layers ------------------------------------------------------------------------------------
    def interpret(self, text: str, previous: Conditions | dict | None = None) -> Conditions:
        warnings: list[str] = []
        if not isinstance(text, str):
            warnings.append(f"prompt is {type(text).__name__}, not text; read as text")
            text = "" if text is None else str(text)
        if isinstance(previous, dict):
            previous = Conditions.from_dict(previous)
        if len(text) > MAX_CHARS:
            warnings.append(f"prompt of {len(text)} characters truncated to {MAX_CHARS}")
            text = text[:MAX_CHARS]
        if not text.strip():
            warnings.append("empty prompt: " + ("kept the previous conditions" if previous else "using defaults"))
            base = previous.replace(warnings=[]) if previous else self._defaults(seed=0)
            base.warnings.extend(warnings)
            return base
        p = parse(text, self.speller)
        retrieved = self.retriever.retrieve(segments(p)) if self.retriever is not None else []
        is_edit = previous is not None
        target = self.predict(p, retrieved, is_edit)
        c = self._apply(p, retrieved, target, previous)
        if not retrieved and not _states_anything(p):
            shown = text.strip() if len(text.strip()) <= 60 else text.strip()[:57] + "..."
            warnings.append(f"didn't understand {shown!r}; " + ("kept the previous track's settings" if is_edit
                            else "used the defaults for tempo, key and mood"))
        c.warnings[:0] = warnings
        return c

    def predict(self, p: Parsed, retrieved: list[tuple[str, float]], is_edit: bool) -> Target:
        if self.lm is not None:
            return self.lm.predict(lm_input_words(p, retrieved, is_edit))
        return rule_target([self.bank.entry(n) for n, _ in retrieved], self.bank, is_edit)

    def _defaults(self, seed: int) -> Conditions:
        return Conditions(tempo_bpm=DEFAULT_TEMPO, energy=DEFAULT_ENERGY, seed=seed)

    def _apply(self, p: Parsed, retrieved, t: Target, previous: Conditions | None) -> Conditions:
        fresh = previous is None
        seed = p.seed if p.seed is not None else (
            zlib.crc32(" ".join(p.words).encode()) & 0x7FFFFFFF if fresh else previous.seed)
        base = self._defaults(seed) if fresh else previous
        imp = implied([self.bank.entry(n) for n, _ in retrieved], self.bank.moods)

        tempo = base.tempo_bpm
        if t.tempo.isdigit():
            tempo = float(t.tempo)
        elif t.tempo in ("down", "up"):
            tempo = base.tempo_bpm * TEMPO_STEP[t.tempo == "up"]
        if p.tempo_bpm is not None:
            tempo = p.tempo_bpm
        elif p.tempo_factor is not None:
            tempo = base.tempo_bpm * p.tempo_factor

        energy = base.energy
        if t.energy.isdigit():
            energy = (int(t.energy) + 0.5) / 10
        elif t.energy in ("down", "up"):
            energy = base.energy + (ENERGY_STEP if t.energy == "up" else -ENERGY_STEP)
        if p.energy_delta is not None:
            energy = base.energy + p.energy_delta
        energy = min(1.0, max(0.0, energy))       # a relative move saturates at the ends; not a clamp to warn about

        mode = p.mode or (t.mode if t.mode != "keep" else base.mode)
        key = p.key or (base.key if not fresh else FRESH_KEYS[mode][seed % len(FRESH_KEYS[mode])])
        written = list(p.chords)
        if written and not p.chords_roman and p.key is None:
            key, found_mode = key_of_progression(written)        # the key and mode follow the chords unless stated
            mode = p.mode or found_mode
        elif written and p.chords_roman:
            mode = p.mode or roman_mode(written) or (t.mode if t.mode != "keep" else "major")
            if p.key is None and fresh:
                key = "C" if mode == "major" else "A"
            written = [resolve_roman(n, key, mode) for n in written]
        drums = p.drums if p.drums is not None else {"on": True, "off": False}.get(t.drums, base.drums)
        piano = p.piano if p.piano is not None else base.piano
        # Bass follows the drums unless the text names it; an edit keeps it unless the drums change.
        bass = p.bass if p.bass is not None else (None if fresh or drums != base.drums else base.bass)

        textures = list(base.textures)
        for op in t.textures:
            if op == "clear":
                textures = []
            elif op[0] == "-" and op[1:] in textures:
                textures.remove(op[1:])
            elif op[0] == "+" and op[1:] not in textures:
                textures.append(op[1:])
        if p.textures_clear:
            textures = []
        textures = [x for x in textures if x not in p.textures_off]
        textures += [x for x in p.textures_on if x not in textures]
        # Thunder only when the words ask for it (thunder, a storm) or it was already playing: retrieval and the
        # LM hear "rainy night" as a storm. Dropping the rain drops the thunder that came with it unless named.
        if "thunder" not in p.textures_on and ("thunder" not in base.textures or "rain" in p.textures_off):
            textures = [x for x in textures if x != "thunder"]
        textures = [x for x in TEXTURES if x in textures]

        mood = t.mood if t.mood else list(base.mood)
        swing = p.swing if p.swing is not None else (imp.swing if imp.swing is not None and fresh else base.swing)
        lofi = imp.lofi if imp.lofi is not None and fresh else base.lofi_amount
        if p.lofi_delta is not None:
            lofi = min(1.0, max(0.0, (base.lofi_amount if not fresh else 0.6) + p.lofi_delta))

        c = Conditions(tempo_bpm=round(tempo, 1), key=key, mode=mode,
                       duration_s=p.duration_s if p.duration_s is not None else base.duration_s,
                       textures=textures, drums=drums, piano=piano, bass=bass, energy=round(energy, 3), swing=swing,
                       lofi_amount=round(lofi, 3), mood=mood, progression=list(base.progression), seed=seed)
        # Written chords are the progression. Otherwise it follows the validated key/mode; an edit that changes none of
        # key, mode, mood keeps it.
        if written:
            c.progression = written
        elif fresh or c.key != base.key or c.mode != base.mode or c.mood != base.mood or not c.progression:
            c.progression = seed_progression(self.bank, c.key, c.mode, c.mood, seed)
        c.warnings += [f"chord {x!r} not understood; left out of the progression" for x in p.chords_unreadable]
        return c


def rule_target(entries, bank: PromptBank, is_edit: bool) -> Target:
    """The baseline without the LM: the lexicon's combination rule applied to the retrieved entries."""
    imp = implied(entries, bank.moods)
    if not is_edit:
        return Target(tempo=str(tempo_token(imp.tempo)) if imp.tempo else "keep",
                      energy=str(energy_bin(imp.energy)) if imp.energy is not None else "keep",
                      mode=imp.mode or "keep", textures=texture_ops(False, set(), set(imp.textures)),
                      mood=imp.mood or None)
    t = Target(mode=imp.mode or "keep", textures=texture_ops(False, set(), set(imp.textures)), mood=imp.mood or None)
    if imp.energy is not None and imp.energy < 0.4:
        t.tempo = t.energy = "down"
    elif imp.energy is not None and imp.energy > 0.6:
        t.tempo = t.energy = "up"
    return t


def transpose_chord(symbol: str, semitones: int, key: str | None = None, mode: str = "major") -> str:
    """'Am9' up 2 -> 'Bm9'; slash basses move too ('G/B'). With `key`, roots are spelled as its signature writes
    them (C#7 in F# minor, not Db7)."""
    def move(name: str) -> str:
        root = name[:2] if len(name) > 1 and name[1] in "#b" else name[:1]
        pc = (PITCH_CLASS[root] + semitones) % 12
        return (spell(pc, key, mode) if key else PC_NAME[pc]) + name[len(root):]
    head, _, bass = symbol.partition("/")
    return move(head) + ("/" + move(bass) if bass else "")


def seed_progression(bank: PromptBank, key: str, mode: str, mood: list[str], seed: int) -> list[str]:
    """A progression from prompts/progressions.json for the first mood that has one in this mode, moved to key and
    started on its tonic chord: phrases open at home, and the last chord leads back there."""
    table = bank.progressions[mode]
    name = next((m for m in mood if m in table), "chill")
    options = table[name]
    chords = options[seed % len(options)]
    home = 0 if mode == "major" else 9          # written on C major / A minor
    start = next((i for i, c in enumerate(chords) if is_tonic_chord(c, home, mode)), 0)
    return [transpose_chord(c, PITCH_CLASS[key] - home, key, mode) for c in chords[start:] + chords[:start]]


_LOCK = threading.Lock()
_INTERPRETER: Interpreter | None = None


def get_interpreter() -> Interpreter:
    """The shared Interpreter, built on first use (load ~2 s) and reused by every call."""
    global _INTERPRETER
    with _LOCK:
        if _INTERPRETER is None:
            _INTERPRETER = Interpreter.load()
        return _INTERPRETER


# Words that ask for this tool's default music: a prompt of only these is understood, not "not understood".
GENERIC_WORDS = frozenset({"lofi", "lo", "fi", "beat", "beats", "music", "track", "song", "hip", "hop", "hiphop",
                           "instrumental", "some", "a", "the", "please", "play", "make", "me", "give"})


def _states_anything(p: Parsed) -> bool:
    """Whether the parse found any explicit value, or the words are the tool's own genre words."""
    explicit = (p.duration_s, p.tempo_bpm, p.tempo_factor, p.energy_delta, p.key, p.mode, p.drums, p.piano, p.bass,
                p.swing, p.lofi_delta, p.seed)
    return (any(v is not None for v in explicit) or bool(p.textures_on or p.textures_off or p.textures_clear
                                                           or p.chords)
            or (bool(p.words) and all(w in GENERIC_WORDS for w in p.words)))


def interpret(text: str, previous: Conditions | dict | None = None) -> Conditions:
    """Text -> Conditions. With `previous`, the text edits it: what the text does not mention stays."""
    return get_interpreter().interpret(text, previous)

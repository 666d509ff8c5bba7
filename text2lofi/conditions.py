"""The contract between the stages, and the one home of every constant more than one stage uses.

`Conditions` is the typed description of a track that flows from text to audio: every stage (instruct -> compose
-> audio) reads these fields and nothing else. Out-of-range values are clamped and the clamp is recorded in
`warnings`, never done silently. `NoteEvent` is what compose hands to audio.

Importing this module costs nothing beyond the standard library.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

TEMPO_RANGE = (40.0, 160.0)          # BPM
DURATION_RANGE = (5.0, 43200.0)      # seconds: 5 s .. 12 h
TONICS = ("C", "C#", "Db", "D", "D#", "Eb", "E", "F", "F#", "Gb", "G", "G#", "Ab", "A", "A#", "Bb", "B")
MODES = ("major", "minor")
TEXTURES = ("vinyl", "tape_hiss", "rain", "thunder", "wind", "ocean", "birds", "cafe", "fireplace", "city")

# Swing of off-beat 16ths, 0..1: MPC swing 50 + 16.7 * swing percent (compose.composer._swing). 0.35 is 56%,
# inside the 54-62% MPC-style range lo-fi producers use (the range issue 12 gives); "swing" words and the jazzy
# mood ask for 0.4-0.6 (57-60%), "straight" for 0.
DEFAULT_SWING = 0.35
SAMPLE_RATE = 44100                  # Hz: every stage's audio, float32 (n_samples, 2)
BEATS_PER_BAR = 4                    # lo-fi is 4/4; the tokenizers and the bar grid assume it
BASS_PROGRAM = 33                    # General MIDI "Electric Bass (finger)": the bass part's MIDI program and sound
# Scale degrees in semitones from the tonic (minor is natural minor).
SCALE_STEPS = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# MidiCaps tempo bins (BPM edges): bin i covers [edge[i-1], edge[i]), 0 = below 40, 8 = 210 and above. The models'
# TempoBin tokens and the evaluation's TB metric both use them.
TEMPO_BIN_EDGES = (40, 60, 70, 90, 110, 140, 160, 210)

# Pitch class of each spelling; enharmonic spellings share a class.
PITCH_CLASS = {"C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6,
               "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11}
# Spelling used when a pitch class is turned back into a name (flats for the black keys, as lo-fi charts do).
PC_NAME = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")


def tempo_bin(bpm: float) -> int:
    """MidiCaps tempo bin, 0..8 (see TEMPO_BIN_EDGES)."""
    return bisect.bisect_right(TEMPO_BIN_EDGES, float(bpm))


class NoteEvent(NamedTuple):
    """One note in absolute samples from the track start; end is exclusive (note-off sample)."""
    start_sample: int
    end_sample: int
    pitch: int
    velocity: int


@dataclass
class Conditions:
    tempo_bpm: float = 80.0
    key: str = "C"
    mode: str = "major"
    duration_s: float = 180.0
    textures: list[str] = field(default_factory=lambda: ["vinyl"])
    drums: bool = True
    piano: bool = True
    bass: bool | None = None          # None: follow drums (a bass line under every beat, none under solo piano)
    energy: float = 0.5
    swing: float = DEFAULT_SWING
    lofi_amount: float = 0.6
    mood: list[str] = field(default_factory=lambda: ["chill"])
    progression: list[str] = field(default_factory=list)
    seed: int = 0
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    # ---- validation -------------------------------------------------------------------------
    def _clamp(self, name: str, lo: float, hi: float, default: float) -> None:
        raw = getattr(self, name)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            self.warnings.append(f"{name}={raw!r} is not a number; using {default}")
            setattr(self, name, float(default))
            return
        if math.isnan(value):
            self.warnings.append(f"{name} is NaN; using {default}")
            value = float(default)
        clamped = min(max(value, lo), hi)
        if clamped != value:
            self.warnings.append(f"{name}={value:g} is outside {lo:g}..{hi:g}; clamped to {clamped:g}")
        setattr(self, name, clamped)

    def validate(self) -> "Conditions":
        """Clamp every field into its documented range, recording a warning for each change."""
        self._clamp("tempo_bpm", *TEMPO_RANGE, default=80.0)
        self._clamp("duration_s", *DURATION_RANGE, default=180.0)
        for name in ("energy", "swing", "lofi_amount"):
            self._clamp(name, 0.0, 1.0, default=0.5)
        key = str(self.key).strip()
        key = key[:1].upper() + key[1:].lower().replace("♯", "#").replace("♭", "b")
        if key not in PITCH_CLASS:
            self.warnings.append(f"key={self.key!r} is not a tonic name; using C")
            key = "C"
        self.key = key
        mode = str(self.mode).strip().lower()
        if mode not in MODES:
            self.warnings.append(f"mode={self.mode!r} is not major/minor; using major")
            mode = "major"
        self.mode = mode
        textures = []
        for t in self.textures or []:
            t = str(t).strip().lower().replace(" ", "_").replace("-", "_")
            if t not in TEXTURES:
                self.warnings.append(f"unknown texture {t!r} dropped")
            elif t not in textures:
                textures.append(t)
        self.textures = textures
        self.drums, self.piano = bool(self.drums), bool(self.piano)
        self.bass = self.drums if self.bass is None else bool(self.bass)
        if not (self.drums or self.piano):
            self.warnings.append("neither piano nor drums asked for; keeping piano")
            self.piano = True
        self.mood = [str(m) for m in (self.mood or [])]
        self.progression = [str(c) for c in (self.progression or [])]
        try:
            self.seed = int(self.seed) & 0x7FFFFFFF
        except (TypeError, ValueError):
            self.warnings.append(f"seed={self.seed!r} is not an integer; using 0")
            self.seed = 0
        return self

    # ---- derived values ---------------------------------------------------------------------
    @property
    def tonic_pc(self) -> int:
        """Pitch class of the tonic, 0 = C."""
        return PITCH_CLASS[self.key]

    @property
    def scale_pcs(self) -> frozenset[int]:
        """Pitch classes of the key's scale (natural minor for minor)."""
        return frozenset((self.tonic_pc + s) % 12 for s in SCALE_STEPS[self.mode])

    # ---- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Conditions":
        """Build from a dict (e.g. JSON from the API); unknown keys are reported, not fatal."""
        if not isinstance(data, dict):
            raise TypeError(f"Conditions.from_dict needs a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        unknown = sorted(set(data) - names)
        obj = cls(**known)
        if unknown:
            obj.warnings.append(f"ignored unknown keys: {', '.join(unknown)}")
        return obj

    def replace(self, **changes: Any) -> "Conditions":
        """A validated copy with some fields changed. Earlier warnings are kept (pass warnings=[] to start
        fresh); clamping the new values appends its own."""
        data = self.to_dict()
        data.update(changes)
        data["warnings"] = list(changes.get("warnings", self.warnings))
        return Conditions(**data)

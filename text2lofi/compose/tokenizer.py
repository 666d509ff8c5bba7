"""Music <-> tokens for the piano and drum RWKV-6 models.

MidiTok REMI does the note encoding (Bar / Position / Pitch / Velocity [/ Duration]); on top of its vocabulary we
append our own tokens: a condition prefix (Key, Mode, TempoBin, Style) and, for piano, one Chord token right after
every Bar token. Ids [0, len(miditok vocab)) are MidiTok's own, ours follow.

Time is in beats (quarter notes) on a 4/4 bar grid; no MIDI tempo is used for placement, so the composer can put
decoded bars on its own tempo map. Piano uses 12 positions per beat (triplets survive), drums 24 per beat so human
micro-timing (swing, laid-back snares) survives a round trip.

Drum kit: General MIDI drum notes are folded into a reduced kit (`DRUM_KIT`, `GM_TO_KIT`) before encoding and
decoded back to an `is_drum=True` part (`to_midi`).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import miditok
import numpy as np
import pretty_midi
import symusic
import torch

from text2lofi.compose.theory import CHORD_QUALITIES, detect_chord, read_chord
from text2lofi.conditions import PC_NAME, PITCH_CLASS, TEMPO_BIN_EDGES, tempo_bin

if TYPE_CHECKING:
    from text2lofi.compose.data import Piece

N_TEMPO_TOKENS = 8         # TempoBin_0..7: MidiCaps bins (conditions.TEMPO_BIN_EDGES), the last from 160 BPM up
# A representative BPM for each bin (what a sampled bin means when turned back into a tempo).
TEMPO_BIN_CENTRES = (35.0, 50.0, 65.0, 80.0, 100.0, 125.0, 150.0, 175.0)

# Styles shared by both models: the piano sources, then the Groove MIDI Dataset's top-level style names.
STYLES = ("pop", "folk", "classical", "lofi", "other",
          "rock", "funk", "jazz", "latin", "hiphop", "soul", "afrocuban", "punk", "neworleans", "country",
          "reggae", "gospel", "afrobeat", "dance", "blues", "highlife", "middleeastern")

# Reduced drum kit: name -> the GM note it is written as.
DRUM_KIT = {"kick": 36, "rim": 37, "snare": 38, "clap": 39, "closed_hat": 42, "low_tom": 43, "open_hat": 46,
            "mid_tom": 47, "crash": 49, "high_tom": 50, "ride": 51}
# GM (and Groove MIDI's Roland TD-11 extras) -> kit note; anything else (cowbell, shakers, ...) is dropped.
GM_TO_KIT = {35: 36, 36: 36, 37: 37, 38: 38, 40: 38, 39: 39,
             42: 42, 44: 42, 22: 42, 46: 46, 26: 46,
             41: 43, 43: 43, 58: 43, 45: 47, 47: 47, 48: 50, 50: 50,
             49: 49, 52: 49, 55: 49, 57: 49, 51: 51, 53: 51, 59: 51}

DRUM_NOTE_BEATS = 0.125  # decoded drum hits get this length (drum tokens carry no duration)


@dataclass(frozen=True)
class Note:
    onset: float      # beats from the start of its bar, 0 <= onset < 4
    duration: float   # beats
    pitch: int        # MIDI pitch (drums: kit note)
    velocity: int     # 1..127


def tempo_token_bin(bpm: float) -> int:
    """The TempoBin token's index: MidiCaps bins 0..7, bin 7 also takes 210 BPM and above (the vocabulary was
    built with 8 TempoBin tokens; Conditions never go above 160 BPM)."""
    return min(tempo_bin(bpm), N_TEMPO_TOKENS - 1)


def _to_score(midi: Any) -> symusic.Score:
    if isinstance(midi, symusic.Score):
        return midi
    if isinstance(midi, pretty_midi.PrettyMIDI):
        buf = io.BytesIO()
        midi.write(buf)
        return symusic.Score.from_midi(buf.getvalue())
    return symusic.Score(str(midi))


class MusicTokenizer:
    """Piano or drum tokenizer. Build with `.piano()` / `.drums()`, persist with `.save(dir)` / `.load(dir)`."""

    def __init__(self, kind: str, remi: miditok.REMI):
        if kind not in ("piano", "drums"):
            raise ValueError(f"kind must be 'piano' or 'drums', not {kind!r}")
        self.kind, self.remi = kind, remi
        self.positions_per_bar = 4 * max(remi.config.beat_res.values())
        self._base = dict(remi.vocab)                       # MidiTok token string -> id
        extras = [f"Key_{n}" for n in PC_NAME] + ["Mode_major", "Mode_minor"]
        extras += [f"TempoBin_{i}" for i in range(N_TEMPO_TOKENS)] + [f"Style_{s}" for s in STYLES]
        if kind == "piano":
            extras += ["Chord_N"] + [f"Chord_{PC_NAME[r]}:{q}" for r in range(12) for q in CHORD_QUALITIES]
        self.vocab = dict(self._base)
        for name in extras:
            self.vocab[name] = len(self.vocab)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.vocab_size = len(self.vocab)
        self.pad_id, self.bos_id, self.eos_id = self.vocab["PAD_None"], self.vocab["BOS_None"], self.vocab["EOS_None"]
        self.bar_id = self.vocab["Bar_None"]
        self._types = [self._type_of(self.id_to_token[i]) for i in range(self.vocab_size)]
        self._values = [self.id_to_token[i].split("_", 1)[1] for i in range(self.vocab_size)]
        self._grammar = self._build_grammar()

    # ---- construction and persistence -------------------------------------------------------
    @classmethod
    def piano(cls) -> "MusicTokenizer":
        cfg = miditok.TokenizerConfig(
            pitch_range=(21, 109), beat_res={(0, 4): 12, (4, 12): 4}, num_velocities=16,
            special_tokens=["PAD", "BOS", "EOS"], use_time_signatures=False, use_programs=False)
        return cls("piano", miditok.REMI(cfg))

    @classmethod
    def drums(cls) -> "MusicTokenizer":
        # Drums carry no Duration tokens (use_note_duration_programs=[]): a hit's length is not heard.
        lo, hi = min(DRUM_KIT.values()), max(DRUM_KIT.values())
        cfg = miditok.TokenizerConfig(
            pitch_range=(lo, hi + 1), beat_res={(0, 4): 24}, num_velocities=16,
            special_tokens=["PAD", "BOS", "EOS"], use_time_signatures=False, use_programs=False,
            use_note_duration_programs=[], use_pitchdrum_tokens=False)
        return cls("drums", miditok.REMI(cfg))

    def save(self, directory: str | Path) -> None:
        """Writes DIR/miditok.json (MidiTok's own config) and DIR/tokenizer.json (our layout)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.remi.save(d / "miditok.json")
        (d / "tokenizer.json").write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> "MusicTokenizer":
        d = Path(directory)
        info = json.loads((d / "tokenizer.json").read_text())
        tok = cls(info["kind"], miditok.REMI(params=d / "miditok.json"))
        if tok.vocab != info["vocab"]:
            raise ValueError(f"{d}: saved vocabulary differs from the one this code builds")
        return tok

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (kept in the data's meta.json and next to the checkpoints)."""
        return {"kind": self.kind, "vocab_size": self.vocab_size, "positions_per_bar": self.positions_per_bar,
                "tempo_bins": list(TEMPO_BIN_EDGES[:N_TEMPO_TOKENS - 1]), "drum_kit": DRUM_KIT if self.kind == "drums" else None,
                "miditok": self.remi.config.to_dict(serialize=True), "vocab": self.vocab}

    # ---- token queries ----------------------------------------------------------------------
    @staticmethod
    def _type_of(token: str) -> str:
        head = token.split("_", 1)[0]
        return "Special" if head in ("PAD", "BOS", "EOS") else head

    def token_type(self, token_id: int) -> str:
        return self._types[int(token_id)]

    def ids_of_type(self, token_type: str) -> list[int]:
        return [i for i, t in enumerate(self._types) if t == token_type]

    def pitch_of(self, token_id: int) -> int | None:
        return int(self._values[token_id]) if self._types[token_id] == "Pitch" else None

    def position_of(self, token_id: int) -> int | None:
        return int(self._values[token_id]) if self._types[token_id] == "Position" else None

    def chord_of(self, token_id: int) -> tuple[int, str] | None:
        """Chord token -> (root pc, quality); None for Chord_N and non-chord tokens."""
        if self._types[token_id] != "Chord" or self._values[token_id] == "N":
            return None
        root, quality = self._values[token_id].split(":")
        return PITCH_CLASS[root], quality

    def chord_token(self, symbol: str) -> int | None:
        if self.kind != "piano":
            return None
        if str(symbol).strip() in ("N", "N.C.", "NC", ""):
            return self.vocab["Chord_N"]
        parsed = read_chord(symbol)
        return None if parsed is None else self.vocab[f"Chord_{PC_NAME[parsed[0]]}:{parsed[1]}"]

    def _chord_id(self, parsed: tuple[int, str] | None) -> int:
        return self.vocab["Chord_N" if parsed is None else f"Chord_{PC_NAME[parsed[0] % 12]}:{parsed[1]}"]

    def condition_prefix(self, key_pc: int = 0, mode: str = "major", tempo_bpm: float = 80.0,
                         style: str = "other") -> list[int]:
        """[BOS, Key, Mode, TempoBin, Style] (piano) or [BOS, TempoBin, Style] (drums)."""
        style = style if style in STYLES else "other"
        tail = [self.vocab[f"TempoBin_{tempo_token_bin(tempo_bpm)}"], self.vocab[f"Style_{style}"]]
        if self.kind == "drums":
            return [self.bos_id] + tail
        return [self.bos_id, self.vocab[f"Key_{PC_NAME[int(key_pc) % 12]}"], self.vocab[f"Mode_{mode}"]] + tail

    # ---- grammar ------------------------------------------------------------------------------
    def _build_grammar(self) -> torch.Tensor:
        """(V, V) bool: row = previous token, True where a token may be SAMPLED next (REMI order)."""
        V, ids = self.vocab_size, self.ids_of_type
        g = torch.zeros(V, V, dtype=torch.bool)
        pos, vel, dur, chord = ids("Position"), ids("Velocity"), ids("Duration"), ids("Chord")
        pitch = ids("Pitch")
        if self.kind == "drums":  # only the kit's notes, not the unused ones inside MidiTok's pitch range
            kit = set(DRUM_KIT.values())
            pitch = [i for i in pitch if self.pitch_of(i) in kit]
        note_end = dur if self.kind == "piano" else vel
        after_bar = chord if self.kind == "piano" else pos + [self.bar_id]
        g[self.bar_id, after_bar] = True
        for i in chord:
            g[i, pos + [self.bar_id]] = True
        for i in pos:
            g[i, pitch] = True
        for i in pitch:
            g[i, vel] = True
        if self.kind == "piano":
            for i in vel:
                g[i, dur] = True
        for i in note_end:
            g[i, pitch + pos + [self.bar_id]] = True
        # After the condition prefix (or BOS alone) the music starts with a Bar.
        for t in ("Key", "Mode", "TempoBin", "Style", "Special"):
            for i in ids(t):
                g[i, self.bar_id] = True
        return g

    def allowed_next(self, prev_id: int) -> torch.Tensor:
        """(V,) bool mask of tokens that may be sampled after `prev_id`."""
        return self._grammar[int(prev_id)].clone()

    def grammar_table(self) -> torch.Tensor:
        """(V, V) bool, row prev -> allowed next; index it with a (B,) tensor of previous tokens for batch masks."""
        return self._grammar

    # ---- encoding -------------------------------------------------------------------------------
    def _note_track(self, score: symusic.Score, transpose: int) -> symusic.Score:
        """The piece as one pitched track (piano: every non-drum track merged; drums: kit-mapped drum hits)."""
        out = symusic.Score(score.ticks_per_quarter)
        track = symusic.Track(program=0, is_drum=False)
        for tr in score.tracks:
            if self.kind == "piano" and not tr.is_drum:
                for n in tr.notes:
                    p = n.pitch + transpose
                    if 21 <= p <= 108 and n.duration > 0:
                        track.notes.append(symusic.Note(n.time, n.duration, p, n.velocity))
            elif self.kind == "drums" and tr.is_drum:
                for n in tr.notes:
                    if n.pitch in GM_TO_KIT:
                        track.notes.append(symusic.Note(n.time, max(n.duration, 1), GM_TO_KIT[n.pitch],
                                                        n.velocity))
        track.notes.sort(key=lambda n: (n.time, n.pitch))
        out.tracks.append(track)
        return out

    def encode_bars(self, midi: Any, chords: Iterable[tuple[float, float, str]] = (),
                    transpose: int = 0) -> list[list[int]]:
        """Notes -> one token list per 4/4 bar, each starting with Bar (+ Chord for piano).

        `chords`: (start_beat, end_beat, symbol); a bar gets the chord overlapping it most, else one detected
        from its notes. Leading and trailing empty bars are dropped.
        """
        score = _to_score(midi)
        tpq = score.ticks_per_quarter
        one = self._note_track(score, transpose)
        if not one.tracks[0].notes:
            return []
        seq = self.remi.encode(one)
        ids = (seq[0] if isinstance(seq, list) else seq).ids
        bars: list[list[int]] = []
        for t in ids:
            if t == self.bar_id:
                bars.append([t])
            elif bars:
                bars[-1].append(t)
        first_bar = 0  # index of bars[0] on the piece's grid, so chord annotations line up
        while bars and len(bars[0]) == 1:
            bars.pop(0)
            first_bar += 1
        while bars and len(bars[-1]) == 1:
            bars.pop()
        if self.kind == "piano":
            bars = self._add_chords(bars, first_bar, one, tpq, list(chords), transpose)
        return bars

    def _add_chords(self, bars, first_bar, score, tpq, chords, transpose):
        # Duration-weighted pitch classes per bar, for bars without an annotation.
        n_bars = first_bar + len(bars)
        weights = np.zeros((n_bars + 1, 12))
        for n in score.tracks[0].notes:
            b = int(n.time // (4 * tpq))
            if b < len(weights):
                weights[b, n.pitch % 12] += n.duration / tpq
        out = []
        for j, bar in enumerate(bars):
            b = first_bar + j
            lo, hi = 4.0 * b, 4.0 * b + 4.0
            best, best_overlap = None, 0.0
            for start, end, symbol in chords:
                overlap = min(end, hi) - max(start, lo)
                if overlap > best_overlap:
                    best, best_overlap = symbol, overlap
            if best is not None:
                parsed = read_chord(best)
                parsed = None if parsed is None else ((parsed[0] + transpose) % 12, parsed[1])
            else:
                parsed = detect_chord(weights[b])
            out.append([bar[0], self._chord_id(parsed)] + bar[1:])
        return out

    def encode_segments(self, piece: "Piece", max_len: int = 512, transpose: int = 0,
                        tempo_bpm: float | None = None) -> list[list[int]]:
        """Piece -> segments, each = condition prefix + whole bars, at most `max_len` tokens.

        `transpose` shifts pitches, key and chords by semitones; `tempo_bpm` overrides the piece's tempo for
        the TempoBin token (augmentation jitter). A bar too long to fit a segment on its own is dropped.
        """
        bars = self.encode_bars(piece.midi, piece.chords or (), transpose)
        key_pc = (piece.key_pc if piece.key_pc is not None else 0) + transpose
        prefix = self.condition_prefix(key_pc, piece.mode or "major", tempo_bpm or piece.bpm or 100.0,
                                       piece.style or "other")
        segments, current = [], list(prefix)
        for bar in bars:
            if len(prefix) + len(bar) > max_len:
                continue
            if len(current) + len(bar) > max_len:
                segments.append(current)
                current = list(prefix)
            current.extend(bar)
        if len(current) > len(prefix):
            if len(current) < max_len:
                current.append(self.eos_id)
            segments.append(current)
        return segments

    # ---- decoding -------------------------------------------------------------------------------
    def decode_bars(self, tokens: Iterable[int]) -> list[list[Note]]:
        """Tokens -> notes per bar (onsets in beats within the bar). Skips condition/chord/special tokens and
        drops incomplete notes; notes before the first Bar go into an implicit first bar."""
        per_beat = self.positions_per_bar / 4
        bars: list[list[Note]] = []
        pos = pitch = vel = None
        for t in tokens:
            t = int(t)
            if not 0 <= t < self.vocab_size:
                pitch = vel = None
                continue
            kind = self._types[t]
            if kind == "Bar":
                bars.append([])
                pos = pitch = vel = None
            elif kind == "Position":
                pos, pitch, vel = int(self._values[t]), None, None
            elif kind == "Pitch":
                pitch, vel = (int(self._values[t]) if pos is not None else None), None
            elif kind == "Velocity" and pitch is not None:
                vel = int(self._values[t])
                if self.kind == "drums":
                    self._emit(bars, Note(pos / per_beat, DRUM_NOTE_BEATS, pitch, vel))
                    pitch = vel = None
            elif kind == "Duration" and pitch is not None and vel is not None:
                a, b, res = (int(x) for x in self._values[t].split("."))
                self._emit(bars, Note(pos / per_beat, a + b / res, pitch, vel))
                pitch = vel = None
        return bars

    @staticmethod
    def _emit(bars: list[list[Note]], note: Note) -> None:
        if not bars:
            bars.append([])
        bars[-1].append(note)

    def to_midi(self, bars: list[list[Note]], tempo_bpm: float = 80.0, program: int = 0) -> pretty_midi.PrettyMIDI:
        """Decoded bars -> a one-instrument PrettyMIDI at a constant tempo (drums: is_drum=True)."""
        pm = pretty_midi.PrettyMIDI(initial_tempo=float(tempo_bpm))
        inst = pretty_midi.Instrument(program=program, is_drum=self.kind == "drums",
                                      name="drums" if self.kind == "drums" else "piano")
        spb = 60.0 / float(tempo_bpm)
        for b, notes in enumerate(bars):
            for n in notes:
                start = (4 * b + n.onset) * spb
                inst.notes.append(pretty_midi.Note(n.velocity, n.pitch, start, start + n.duration * spb))
        pm.instruments.append(inst)
        return pm

"""A MIDI file someone brings: its notes, kept exactly, and the tempo, key and chords the accompaniment follows.

    music = read_given("melody.mid")         # -> GivenMusic, or ValueError naming the file and what is wrong
    music.tempo_bpm, music.key, music.mode   # from the file's tempo and key signature, or estimated (noted)
    music.chords                             # one chord symbol per 4/4 bar, found from the notes of that bar
    music.events(sample_rate)                # NoteEvents at exactly the file's onsets, per bar

Every pitched (non-drum) track is the given part. Bars are counted from the file's time 0 at its first tempo;
a file that changes tempo is followed at its first tempo, and that is said in `notes`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pretty_midi

from text2lofi.compose.theory import chord_symbol, detect_chord, estimate_key
from text2lofi.conditions import BEATS_PER_BAR, PC_NAME, TEMPO_RANGE, NoteEvent

MAX_GIVEN_S = 3600.0          # an hour of given music is plenty; longer files are refused, not truncated


@dataclass
class GivenMusic:
    path: Path
    notes: list[pretty_midi.Note]          # every pitched note of the file, seconds, sorted by onset
    tempo_bpm: float
    key: str
    mode: str
    chords: list[str]                      # per bar
    remarks: list[str] = field(default_factory=list)   # what was estimated or assumed, for the user

    @property
    def bar_s(self) -> float:
        return 60.0 / self.tempo_bpm * BEATS_PER_BAR

    @property
    def n_bars(self) -> int:
        return len(self.chords)

    @property
    def end_s(self) -> float:
        return max(n.end for n in self.notes)

    def midi(self) -> pretty_midi.PrettyMIDI:
        """The given notes alone, as one piano track at the file's first tempo (what the piano model reads)."""
        pm = pretty_midi.PrettyMIDI(initial_tempo=self.tempo_bpm)
        inst = pretty_midi.Instrument(program=0, name="given")
        inst.notes = [pretty_midi.Note(n.velocity, n.pitch, n.start, n.end) for n in self.notes]
        pm.instruments.append(inst)
        return pm

    def events(self, sample_rate: int) -> list[list[NoteEvent]]:
        """The file's notes per bar (by onset) in absolute samples: onsets and pitches exactly as written."""
        bars: list[list[NoteEvent]] = [[] for _ in range(self.n_bars)]
        for n in self.notes:
            start = int(round(n.start * sample_rate))
            end = max(start + 1, int(round(n.end * sample_rate)))
            bars[min(int(n.start // self.bar_s), self.n_bars - 1)].append(NoteEvent(start, end, n.pitch, n.velocity))
        return bars


def _has_tempo(path: Path) -> bool:
    import mido
    return any(msg.type == "set_tempo" for track in mido.MidiFile(str(path)).tracks for msg in track)


def read_given(path: str | Path) -> GivenMusic:
    """Read a MIDI file to accompany or continue. Raises ValueError naming the file for anything unusable."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"midi file {path} does not exist")
    try:
        pm = pretty_midi.PrettyMIDI(str(path))
        has_tempo = _has_tempo(path)
    except Exception as exc:             # mido / pretty_midi raise many types for a file that is not MIDI
        raise ValueError(f"midi file {path.name} cannot be read as MIDI ({type(exc).__name__}: {exc})") from None
    notes = sorted((n for inst in pm.instruments if not inst.is_drum for n in inst.notes),
                   key=lambda n: (n.start, n.pitch))
    if not notes:
        raise ValueError(f"midi file {path.name} has no pitched notes to accompany (drum tracks are not used)")
    if max(n.end for n in notes) > MAX_GIVEN_S:
        raise ValueError(f"midi file {path.name} lasts {max(n.end for n in notes):.0f} s; the limit is "
                         f"{MAX_GIVEN_S:.0f} s")
    remarks = []
    times, tempi = pm.get_tempo_changes()
    tempo = round(float(tempi[0]), 2)        # MIDI stores microseconds per beat: 666667 us reads as 89.99996 BPM
    if not has_tempo:
        remarks.append(f"{path.name} has no tempo; read at MIDI's default {tempo:g} BPM")
    elif len(set(np.round(tempi, 3))) > 1:
        remarks.append(f"{path.name} changes tempo {len(tempi) - 1} times; the accompaniment follows its first "
                       f"tempo, {tempo:g} BPM")
    if not TEMPO_RANGE[0] <= tempo <= TEMPO_RANGE[1]:
        raise ValueError(f"midi file {path.name} is at {tempo:g} BPM; accompaniment needs "
                         f"{TEMPO_RANGE[0]:g} to {TEMPO_RANGE[1]:g} BPM")

    bar_s = 60.0 / tempo * BEATS_PER_BAR
    n_bars = max(1, int(np.ceil(max(n.end for n in notes) / bar_s - 1e-6)))
    weights = np.zeros((n_bars, 12))         # duration-weighted pitch classes per bar (a note spans its bars)
    for n in notes:
        first, last = int(n.start // bar_s), min(int(max(n.end - 1e-6, n.start) // bar_s), n_bars - 1)
        for b in range(first, last + 1):
            weights[b, n.pitch % 12] += min(n.end, (b + 1) * bar_s) - max(n.start, b * bar_s)

    if pm.key_signature_changes:
        number = pm.key_signature_changes[0].key_number            # 0..11 major, 12..23 minor
        key_pc, mode = number % 12, ("major", "minor")[number // 12]
    else:
        key_pc, mode = estimate_key(weights.sum(axis=0)) or (0, "major")
        remarks.append(f"{path.name} has no key signature; its notes say {PC_NAME[key_pc]} {mode}")

    chords, previous = [], None
    for w in weights:                         # a bar with no notes keeps the chord before it
        found = detect_chord(w)
        previous = chord_symbol(*found) if found else previous
        chords.append(previous)
    first = next(c for c in chords if c)
    chords = [c or first for c in chords]
    return GivenMusic(path, notes, tempo, PC_NAME[key_pc], mode, chords, remarks)

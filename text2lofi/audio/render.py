"""Synthesis and stem balance: note events -> FluidSynth stems -> loudness-balanced gains.

Audio convention everywhere: float32 numpy (n_samples, 2), 44.1 kHz. Times are absolute samples from the
track start, so a stream can be rendered chunk by chunk (bar by bar) with the synthesizer's state carried
forward, and a chunked render equals a one-shot render of the same notes bit for bit.
"""
from __future__ import annotations

import contextlib
import ctypes
import heapq
import sys
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from text2lofi.audio.loudness import integrated_loudness
from text2lofi.conditions import SAMPLE_RATE, NoteEvent

DEBIAN_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")   # Debian package fluid-soundfont-gm
PART_KINDS = ("piano", "drums", "bass")
DRUM_CHANNEL = 9          # General MIDI percussion channel
DRUM_BANK = 128           # SoundFont bank holding the GM drum kits
SYNTH_GAIN = 0.4          # FluidSynth master gain; float output never clips, balance_gains sets the level

# Piano sounds by name (General MIDI programs, bank 0).
PIANO_PROGRAMS = {"acoustic": 0, "bright": 1, "electric": 4, "fm": 5}
# Mood tags that pick a non-default piano; the first tag that matches wins, the default is acoustic.
# Rhodes (electric) is the classic sound of mellow/jazzy lo-fi; the FM piano fits retro/synth moods.
_MOOD_PIANO = {
    **dict.fromkeys(("mellow", "jazzy", "jazz", "smooth", "warm", "dreamy", "soulful", "nostalgic",
                     "late night", "night", "sleepy", "cozy", "relaxed"), "electric"),
    **dict.fromkeys(("retro", "80s", "vaporwave", "synth", "city pop"), "fm"),
    **dict.fromkeys(("happy", "upbeat", "bright", "sunny", "playful"), "bright"),
}

# Stem balance. The piano carries the harmony and melody a listener follows; lo-fi drums sit behind it,
# and their transients read louder than their BS.1770 (energy) loudness says. Drums 3 LU under the piano
# keeps both clearly audible -- the original's listeners complained one part drowned the other.
PIANO_DRUM_LU = 3.0
# The bass sits as far under the piano as the drums: BS.1770 weights lows down, so at equal LUFS a bass reads as
# louder than the piano; 3 LU under keeps the low end present without booming.
PIANO_BASS_LU = 3.0
STEM_PIANO_LUFS = -20.0   # where the piano stem lands after balancing: headroom for effects before mastering
MAX_STEM_GAIN_DB = 40.0   # never boost a near-silent stem by more than this
SILENCE_LUFS = -70.0      # BS.1770 absolute gate: anything quieter counts as silent


# ---- locating FluidSynth and a soundfont -----------------------------------------------------------
def load_fluidsynth():
    """Import pyfluidsynth, turning a missing system library into an error that says what to install."""
    try:
        # pyfluidsynth prints where it found the library to stdout when $CI is set; stdout is the CLI's answer
        # (the files it wrote), so that line goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            import fluidsynth
    except (ImportError, OSError) as exc:
        raise ImportError(
            "FluidSynth's system library was not found: install Debian's libfluidsynth3 "
            "(apt-get install libfluidsynth3) and the pyfluidsynth package") from exc
    return fluidsynth


def _bundled_soundfont() -> Path | None:
    try:
        import pretty_midi
    except ImportError:
        return None
    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def find_soundfont(candidates: Sequence[Path | str] | None = None) -> Path:
    """The General MIDI soundfont to use: Debian's FluidR3_GM if installed, else pretty_midi's TimGM6mb."""
    if candidates is None:
        candidates = [p for p in (DEBIAN_SOUNDFONT, _bundled_soundfont()) if p is not None]
    for path in map(Path, candidates):
        if path.is_file():
            return path
    raise FileNotFoundError(
        "No General MIDI soundfont found (looked for " + ", ".join(map(str, candidates)) + "): "
        "install Debian's fluid-soundfont-gm (apt-get install fluid-soundfont-gm) or pretty_midi")


def piano_program_for(mood: Sequence[str]) -> int:
    """General MIDI program of the piano sound for these mood tags (Rhodes for mellow/jazzy moods)."""
    for tag in mood:
        name = _MOOD_PIANO.get(str(tag).strip().lower())
        if name:
            return PIANO_PROGRAMS[name]
    return PIANO_PROGRAMS["acoustic"]


# ---- one synthesizer per part ------------------------------------------------------------------------
class PartSynth:
    """One FluidSynth synthesizer playing one part (piano or bass on channel 0, or the GM drum kit on channel 9).

    `render(notes, n)` renders the next n samples of the part's stream. Notes are in absolute samples; a note
    may start in this call and end in a later one (its note-off stays pending), or start in a later call.
    Events are applied exactly at their sample: the output buffer is written in pieces split at event times.
    FluidSynth starts voices on its 64-sample block grid, so onsets land within 1.5 ms of the asked sample.
    """

    def __init__(self, kind: str = "piano", program: int = 0, sample_rate: int = SAMPLE_RATE,
                 soundfont: Path | str | None = None):
        if kind not in PART_KINDS:
            raise ValueError(f"kind must be one of {', '.join(PART_KINDS)}, got {kind!r}")
        self._fluidsynth = load_fluidsynth()
        path = find_soundfont() if soundfont is None else find_soundfont([soundfont])
        self.kind, self.program, self.sample_rate, self.soundfont = kind, int(program), int(sample_rate), path
        self.channel = DRUM_CHANNEL if kind == "drums" else 0
        write = self._fluidsynth._fl.fluid_synth_write_float
        write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                          ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        write.restype = ctypes.c_int
        self._write = write
        self._synth = None
        self._start()

    def _start(self) -> None:
        """A fresh FluidSynth instance at stream position 0."""
        # No built-in reverb/chorus: the lo-fi chain adds its own, and dry stems balance predictably.
        # Dynamic sample loading reads only the presets in use (~60 MB RSS instead of the whole 148 MB font).
        self._synth = self._fluidsynth.Synth(gain=SYNTH_GAIN, samplerate=float(self.sample_rate), **{
            "synth.reverb.active": 0, "synth.chorus.active": 0, "synth.dynamic-sample-loading": 1,
            "synth.cpu-cores": 1})
        self._sfid = self._synth.sfload(str(self.soundfont))
        if self._sfid < 0:
            self.close()
            raise RuntimeError(f"FluidSynth could not load the soundfont {self.soundfont}")
        self._select_program()
        self.position = 0                       # samples rendered so far
        self._pending: list[tuple] = []         # heap of (sample, 0=off/1=on, seq, pitch, velocity)
        self._seq = 0
        self._sounding: Counter[int] = Counter()  # pitch -> notes currently held (overlaps re-strike)

    def _select_program(self) -> None:
        bank = DRUM_BANK if self.kind == "drums" else 0
        if self._synth.program_select(self.channel, self._sfid, bank, self.program) != 0:
            raise ValueError(f"soundfont {self.soundfont} has no preset bank {bank} program {self.program}")

    def _write_into(self, out: np.ndarray, start: int, stop: int) -> None:
        """Synthesize out[start:stop] (a C-contiguous (n, 2) float32 buffer), interleaved L/R."""
        if stop > start:
            ptr = out.ctypes.data + start * 8       # 2 channels x 4 bytes per frame
            self._write(self._synth.synth, stop - start, ptr, 0, 2, ptr, 1, 2)

    def render(self, notes: Sequence[NoteEvent], n_samples: int) -> np.ndarray:
        """Render the next n_samples of this part -> (n_samples, 2) float32."""
        n_samples = int(n_samples)
        for note in notes:
            start, end, pitch, velocity = (int(v) for v in note)
            if start < self.position:
                raise ValueError(f"note {note} starts before the stream position {self.position}")
            if not 0 <= pitch <= 127:
                raise ValueError(f"note {note}: pitch must be 0..127")
            velocity = min(max(velocity, 1), 127)
            end = max(end, start + 1)           # a zero-length note still gets its note-off after the on
            heapq.heappush(self._pending, (start, 1, self._seq, pitch, velocity))
            heapq.heappush(self._pending, (end, 0, self._seq, pitch, 0))
            self._seq += 1
        out = np.zeros((n_samples, 2), np.float32)
        stop = self.position + n_samples
        cursor = self.position
        while self._pending and self._pending[0][0] < stop:
            when, is_on, _, pitch, velocity = heapq.heappop(self._pending)
            self._write_into(out, cursor - self.position, when - self.position)
            cursor = when
            if is_on:
                self._sounding[pitch] += 1
                self._synth.noteon(self.channel, pitch, velocity)
            else:
                self._sounding[pitch] -= 1
                if self._sounding[pitch] == 0:  # release only when the last overlapping note ends
                    self._synth.noteoff(self.channel, pitch)
        self._write_into(out, cursor - self.position, n_samples)
        self.position = stop
        return out

    def start_at(self, position: int) -> None:
        """A fresh synth's clock begins at `position` (notes are in absolute samples; a steered stream's new
        parts start mid-stream)."""
        if self._pending or self.position:
            raise RuntimeError("start_at() is for a synth that has rendered nothing yet")
        self.position = int(position)

    def reset(self) -> None:
        """Silence everything and start a new stream at sample 0, exactly as a freshly created synth.

        FluidSynth keeps per-voice state that a system reset does not clear (a reused voice renders a
        note's first block slightly differently), so the instance is rebuilt: ~0.1-0.3 s, once per track.
        """
        self.close()
        self._start()

    def close(self) -> None:
        if self._synth is not None:
            self._synth.delete()
            self._synth = None

    def __enter__(self) -> "PartSynth":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SynthPool:
    """Synthesizers behind a lock so concurrent renders never share one; each is reset when returned."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, soundfont: Path | str | None = None):
        self.sample_rate = sample_rate
        self.soundfont = find_soundfont() if soundfont is None else find_soundfont([soundfont])
        self._idle: dict[tuple[str, int], list[PartSynth]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def acquire(self, kind: str = "piano", program: int = 0) -> Iterator[PartSynth]:
        with self._lock:
            idle = self._idle.get((kind, program))
            synth = idle.pop() if idle else None
        if synth is None:    # create outside the lock: loading a soundfont takes ~0.1 s
            synth = PartSynth(kind, program, self.sample_rate, self.soundfont)
        try:
            yield synth
        finally:
            synth.reset()
            with self._lock:
                self._idle.setdefault((kind, program), []).append(synth)

    def close(self) -> None:
        with self._lock:
            for synths in self._idle.values():
                for synth in synths:
                    synth.close()
            self._idle.clear()


# ---- whole-MIDI render and stem balance ----------------------------------------------------------------
def render_midi(pm, n_samples: int, sample_rate: int = SAMPLE_RATE,
                pool: SynthPool | None = None) -> dict[str, np.ndarray]:
    """Render a pretty_midi.PrettyMIDI to stems {"piano": (n, 2), "drums": (n, 2)}, one key per part present.

    Drum instruments go to "drums", every other instrument to "piano" (each with its own program).
    Audio is exactly n_samples long: notes past the end are cut, silence pads a short MIDI.
    """
    stems: dict[str, np.ndarray] = {}
    for inst in pm.instruments:
        kind = "drums" if inst.is_drum else ("bass" if 32 <= inst.program <= 39 else "piano")   # GM 32-39: basses
        notes = [NoteEvent(round(n.start * sample_rate), round(n.end * sample_rate), n.pitch, n.velocity)
                 for n in inst.notes if round(n.start * sample_rate) < n_samples]
        if pool is not None:
            with pool.acquire(kind, inst.program) as synth:
                audio = synth.render(notes, n_samples)
        else:
            with PartSynth(kind, inst.program, sample_rate) as synth:
                audio = synth.render(notes, n_samples)
        if kind in stems:
            stems[kind] += audio
        else:
            stems[kind] = audio
    return stems


def balance_gains(stems: dict[str, np.ndarray], sample_rate: int = SAMPLE_RATE,
                  piano_drum_lu: float = PIANO_DRUM_LU,
                  piano_lufs: float = STEM_PIANO_LUFS) -> dict[str, float]:
    """Linear gain per stem so the piano sits at `piano_lufs` and the drums `piano_drum_lu` LU under it.

    Measured with BS.1770 loudness; a silent stem gets gain 1.0. The bass goes PIANO_BASS_LU under the piano;
    other stems are levelled like the piano. Measure on the first ~20-30 s of a stream, then keep the gains constant.
    """
    gains = {}
    for name, audio in stems.items():
        loudness = integrated_loudness(audio, sample_rate)
        if not np.isfinite(loudness) or loudness < SILENCE_LUFS:
            gains[name] = 1.0
            continue
        target = piano_lufs - {"drums": piano_drum_lu, "bass": PIANO_BASS_LU}.get(name, 0.0)
        gain_db = min(target - loudness, MAX_STEM_GAIN_DB)
        gains[name] = float(10.0 ** (gain_db / 20.0))
    return gains

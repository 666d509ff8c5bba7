"""generate(): Conditions -> composed bars -> FluidSynth stems -> balance -> lo-fi chain + textures
-> master. Everything runs bar by bar, so any length streams with flat memory. Also here: accompany() a MIDI
file, extend() / vary() / remake() a track from its sidecar, render_midi(), score_video(), and loops.

Short tracks (<= IN_MEMORY_MAX_S) are mastered in two passes (integrated loudness of the whole track); longer
ones (and the endless streams of text2lofi.live) use a streaming master whose gain is fixed from the first seconds
(audio.mix.MEASURE_S fixes each stem's gain the same way).
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import secrets
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import pretty_midi

from text2lofi.audio import files
from text2lofi.audio.files import NoSpace
from text2lofi.audio.effects import LofiChain, Master, master_to_lufs
from text2lofi.audio.loudness import CHUNKED_ABOVE, LoudnessMeter
from text2lofi.audio.render import piano_program_for
from text2lofi.compose.arrangement import BarGrid, Section, extension_plan
from text2lofi.compose.given import read_given
from text2lofi.conditions import DURATION_RANGE, SAMPLE_RATE, TEXTURES, Conditions
from text2lofi.runtime import ahead

if TYPE_CHECKING:        # imported where used: torch, scipy.signal and miditok load with the first track, not
    from text2lofi.audio.mix import Mixer                # with `import text2lofi.pipeline` (the app's start)
    from text2lofi.compose.composer import ComposedBar, Composer

IN_MEMORY_MAX_S = 20 * 60     # up to 20 min the whole track is held (~210 MB) and mastered in two passes
MIDI_MAX_S = 2 * 3600         # longer tracks keep no MIDI in memory (12 h would be ~10^6 note objects)
FADE_OUT_S = 4.0              # the ending fades over the last seconds (the final bar is a held tonic chord)
FADE_IN_S = 0.01              # no click at t = 0
LOOP_TAIL_S = 2.0             # a loop's ringing end and texture cross-fade, wrapped onto its start
STAGES = ("interpreting", "composing", "rendering", "mastering")
RAW_PREFIX, RAW_SUFFIX = "text2lofi-", ".f32"   # a long track's samples: <tmp>/text2lofi-<pid>-*.f32

Progress = Callable[[str, float], None]
STEM_SUFFIX = ".f16"          # a mixer stem: raw float16 (n_samples, 2), the track's length (Taps.stems_dir)
CHUNKS_FILE = "chunks.json"   # beside the mixer stems: the lengths of the chunks the track was mixed in


@dataclass
class Taps:
    """What the app and the CLI take off a track while it is made (all optional, none changes the track):
    on_mix gets each pre-master mix chunk ((n, 2) float32, in order; the callback's to keep or change, the track
    has its own copy) as soon as it is mixed, for a preview that plays while the rest is made; stems_dir gets
    every balanced stem before the lo-fi chain and each texture on its own, as <name>.f16 files, for remix();
    on_master gets the mastered track in order as it becomes final (read-only): a long track's (over
    IN_MEMORY_MAX_S) chunk by chunk as it is made, a shorter one's whole once mastered (generate_to_files encodes
    the output file from it, beside the making of a long track)."""
    on_mix: Callable[[np.ndarray], None] | None = None
    stems_dir: Path | None = None
    on_master: Callable[[np.ndarray], None] | None = None


class _StemFiles:
    """Balanced stems appended chunk by chunk to raw float16 files (half the size of float32; the mixer's
    levels and the master's gain dwarf its 2^-11 relative rounding): flat memory for any length. The chunks'
    lengths go to CHUNKS_FILE: remix() runs the chain over the same chunks, so it meets the track as made."""

    def __init__(self, folder: Path | None):
        self.folder, self.files, self.sizes = folder, {}, []
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def write(self, stems: dict[str, np.ndarray], n: int) -> None:
        if self.folder is None:
            return
        self.sizes.append(int(n))
        for name, audio in stems.items():
            if name not in self.files:
                self.files[name] = open(self.folder / f"{name}{STEM_SUFFIX}", "wb")
            self.files[name].write(np.ascontiguousarray(audio[:n], np.float16).tobytes())

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        if self.folder is not None and self.sizes:
            files.write_json(self.folder / CHUNKS_FILE, {"chunks": self.sizes})


def _no_progress(stage: str, fraction: float) -> None:
    pass


@dataclass
class Track:
    audio: np.ndarray                          # (n_samples, 2) float32; a read-only memmap for long tracks
    sample_rate: int
    midi: pretty_midi.PrettyMIDI | None        # None for tracks too long to keep every note in memory
    conditions: Conditions
    stems: dict[str, np.ndarray] = field(default_factory=dict)   # balanced, before effects; short tracks only
    metadata: dict = field(default_factory=dict)
    raw_path: Path | None = field(default=None, repr=False)   # long tracks: the float32 file behind `audio`
    written: list[Path] = field(default_factory=list, repr=False)   # every file save() / save_stems() wrote

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate

    def save(self, path: str | os.PathLike) -> Path:
        """WAV / MP3 / FLAC by extension, or .mid/.midi for the MIDI. Atomic; metadata in a .json beside it."""
        path = files.check_output_path(path)
        if path.suffix.lower() in files.MIDI_EXTENSIONS:
            if self.midi is None:
                raise ValueError("this track is too long to keep its MIDI in memory; use the CLI's --midi")
            files.write_midi(self.midi, path)
        else:
            files.write_audio(path, self.iter_audio(), self.sample_rate, tags=self.metadata)
        return self._saved(path)

    def _saved(self, path: Path) -> Path:
        """Record a file of this track written at `path`, and its metadata in a .json beside it."""
        sidecar = files.write_json(path.with_suffix(path.suffix + ".json"), self.metadata)
        self.written += [path, sidecar]
        return path

    def iter_audio(self, size: int = files.WRITE_FRAMES) -> Iterator[np.ndarray]:
        """(size, 2) chunks. Long tracks are read from their file with plain reads, so saving a 12-hour track
        does not pull the whole memory map into RSS."""
        if self.raw_path is None:
            yield from iter_chunks(self.audio, size)
            return
        with open(self.raw_path, "rb") as f:
            while True:
                block = np.fromfile(f, dtype=np.float32, count=size * 2)
                if not len(block):
                    return
                yield block.reshape(-1, 2)

    def save_stems(self, folder: str | os.PathLike) -> list[Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for name, audio in self.stems.items():
            p = folder / f"{name}.wav"
            files.write_audio(p, iter_chunks(audio), self.sample_rate, tags=self.metadata)
            out.append(p)
        self.written += out
        return out


def iter_chunks(audio: np.ndarray, size: int = files.WRITE_FRAMES) -> Iterator[np.ndarray]:
    for i in range(0, len(audio), size):
        yield np.ascontiguousarray(audio[i:i + size], dtype=np.float32)


def _bar_chunks(composer: Composer, mixer: Mixer, n_samples: int | None, progress: Progress,
                keep_bars: list[ComposedBar] | None) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(pre-master mix, balanced stems) per chunk, exactly n_samples in total (or forever if None).

    Three threads: composing, synthesis (FluidSynth lets go of the GIL, and so does the C token step), and this
    one, which mixes, runs the chain and the textures. Bars are held back only while a stem that has started to
    sound is still being measured.
    """
    n_bars = None if n_samples is None else composer.grid.bars_for(n_samples)
    try:
        # Closed in reverse order: synthesis stops (and lets go of the synthesizers) before composing does.
        with contextlib.closing(ahead(composer.bars(n_bars), COMPOSE_AHEAD, "text2lofi-compose")) as bars, \
                contextlib.closing(ahead(_synthesized(bars, mixer, n_samples), SYNTH_AHEAD,
                                         "text2lofi-synth")) as rendered:
            yield from _mix_bars(rendered, mixer, n_samples, progress, keep_bars)
    finally:
        mixer.close()


COMPOSE_AHEAD = 8             # bars the composing thread may run ahead of synthesis (bounds memory and waste)
SYNTH_AHEAD = 2               # bars synthesized ahead of the mix (a bar of three stems: about 3 MB at 80 bpm)


def _synthesized(bars: Iterator[ComposedBar], mixer: Mixer, n_samples: int | None
                 ) -> Iterator[tuple[ComposedBar, int, dict[str, np.ndarray]]]:
    """(bar, its end sample, its stems) for each bar up to n_samples: the synthesizers are used here only."""
    for bar in bars:
        end = bar.end_sample if n_samples is None else min(bar.end_sample, n_samples)
        if end <= bar.start_sample:
            return
        yield bar, end, mixer.stems({"piano": bar.piano, "drums": bar.drums, "bass": bar.bass},
                                    end - bar.start_sample)
        if n_samples is not None and end >= n_samples:
            return


def _mix_bars(rendered, mixer, n_samples, progress, keep_bars):
    pending: list[tuple[dict[str, np.ndarray], int]] = []     # bars held back until their gains are known
    position = 0                      # samples of music composed so far
    while True:
        # Stages are reported where their work starts: sampling the next bar, then synth + chain + textures.
        if n_samples:
            progress("composing", position / n_samples)
        item = next(rendered, None)
        if item is None:
            break
        bar, end, stems = item
        if keep_bars is not None:
            keep_bars.append(bar)
        n = end - bar.start_sample
        position = end
        if n_samples:
            progress("rendering", position / n_samples)
        last = n_samples is not None and end >= n_samples
        mixer.observe(stems, last)
        pending.append((stems, n))
        if not (mixer.ready() or last):
            continue
        total = sum(p[1] for p in pending)
        joined = pending[0][0] if len(pending) == 1 else \
            {k: np.concatenate([p[0][k] for p in pending]) for k in stems}
        pending = []
        yield mixer.mix(joined, total, final=last)
        if last:
            break


def _fade(audio: np.ndarray, start: int, total: int, sr: int) -> None:
    """In-place fade-in at 0 and fade-out over the last FADE_OUT_S of a track `total` samples long.
    `audio` holds samples [start, start + len(audio)) of the track."""
    n_in = int(FADE_IN_S * sr)
    if start < n_in:
        k = min(n_in - start, len(audio))
        audio[:k] *= np.linspace(start / n_in, (start + k) / n_in, k, endpoint=False, dtype=np.float32)[:, None]
    n_out = min(int(FADE_OUT_S * sr), total // 4)
    fade_start = total - n_out
    lo = max(fade_start, start)
    hi = start + len(audio)
    if hi > lo and n_out > 0:
        t = (np.arange(lo, hi, dtype=np.float64) - fade_start) / n_out
        audio[lo - start:hi - start] *= np.cos(t * np.pi / 2).astype(np.float32)[:, None] ** 2


def resolve(prompt: str | Conditions, seed: int | None = None, previous: Conditions | dict | None = None,
            progress: Progress | None = None, **overrides) -> Conditions:
    """The Conditions a request means: text is interpreted (as an edit of `previous` if given), Conditions are
    copied; then `seed` and every override that is not None replace fields (clamps recorded as warnings)."""
    progress = progress or _no_progress
    if isinstance(prompt, Conditions):
        c = prompt.replace()
    elif isinstance(prompt, str):
        progress("interpreting", 0.0)
        from text2lofi.instruct import interpret
        if isinstance(previous, dict):
            previous = Conditions.from_dict(previous)
        c = interpret(prompt, previous=previous)
    else:
        raise TypeError(f"generate() takes text or Conditions, not {type(prompt).__name__}")
    changes = {k: v for k, v in dict(overrides, seed=seed).items() if v is not None}
    if changes:
        unknown = set(changes) - set(Conditions.__dataclass_fields__) - {"warnings"}
        if unknown:
            raise TypeError(f"unknown condition override(s): {', '.join(sorted(unknown))}")
        c = c.replace(**changes)
    progress("interpreting", 1.0)
    return c


def _metadata(c: Conditions, composer: Composer, prompt, timings: dict) -> dict:
    from text2lofi import __version__
    return {"text2lofi": __version__, "prompt": prompt if isinstance(prompt, str) else None,
            "seed": c.seed, "conditions": c.to_dict(), "models": composer.versions,
            "chords": list(composer.chords),          # one per bar, for a chord chart
            "plan": [list(dataclasses.astuple(s)) for s in composer.sections],   # what extend() and vary() keep
            "part_seeds": composer.seeds,             # a varied part's own seed
            "sample_rate": composer.grid.sample_rate, "timings_s": timings}


def generate(prompt: str | Conditions, seed: int | None = None, progress: Progress | None = None,
             sample_rate: int = SAMPLE_RATE, loop: bool = False, keep_stems: bool = True,
             taps: Taps | None = None, **overrides) -> Track:
    """Text or Conditions -> Track with exactly round(duration_s * sample_rate) samples.

    loop=True: a seamless loop of whole bars (the length rounded to the nearest whole bar, said in the
    warnings): its end flows into its start, see _make_loop. keep_stems=False: Track.stems stays empty (a
    10-minute track's four stems are 850 MB; the app builds stems only when asked, with remake()). taps: what
    the app takes off the track while it is made (a preview, the mixer's stems)."""
    from text2lofi.compose.composer import Composer
    progress = progress or _no_progress
    t0 = time.perf_counter()
    c = resolve(prompt, seed, progress=progress, **overrides)
    if loop:
        c = _whole_bars(c, sample_rate)
    timings = {"interpret": time.perf_counter() - t0}
    return _make_track(c, Composer(c, sample_rate=sample_rate, loop=loop), prompt, progress, timings, keep_stems,
                       taps)


def _whole_bars(c: Conditions, sample_rate: int) -> Conditions:
    """A loop's length: the nearest whole number of bars, at least DURATION_RANGE's minimum."""
    grid = BarGrid(c.tempo_bpm, sample_rate)
    bar_s = grid.samples_per_bar / sample_rate
    bars = max(int(np.ceil(DURATION_RANGE[0] / bar_s)), int(round(c.duration_s / bar_s)))
    duration = grid.bar_start(bars) / sample_rate
    if abs(duration - c.duration_s) > 0.5 / sample_rate:
        c = c.replace(duration_s=duration, warnings=c.warnings + [
            f"a loop is whole bars: duration_s {c.duration_s:g} s -> {duration:.3f} s ({bars} bars of {bar_s:.3f} s)"])
    return c


def accompany(midi: str | os.PathLike, prompt: str | Conditions = "lofi", seed: int | None = None,
              continue_s: float = 0.0, progress: Progress | None = None, sample_rate: int = SAMPLE_RATE,
              taps: Taps | None = None, **overrides) -> Track:
    """A MIDI file's notes kept exactly (pitches, onsets, lengths) as the piano, with drums, bass and textures
    added; tempo, key and chords come from the file (and are said in the warnings when estimated). The prompt
    sets the feel (energy, textures, lo-fi amount...). continue_s > 0: the piano model, having read the file,
    writes on for that many seconds and the track ends on its own cadence."""
    from text2lofi.compose.composer import Composer
    progress = progress or _no_progress
    if not 0.0 <= float(continue_s) <= IN_MEMORY_MAX_S:
        raise ValueError(f"continue_s must be from 0 to {IN_MEMORY_MAX_S:g} s, got {continue_s:g}")
    t0 = time.perf_counter()
    given = read_given(midi)
    c = resolve(prompt, seed, progress=progress, **overrides)
    notes = list(given.remarks)
    if (c.tempo_bpm, c.key, c.mode) != (given.tempo_bpm, given.key, given.mode):
        notes.append(f"tempo {given.tempo_bpm:g} BPM and key {given.key} {given.mode} come from {given.path.name}")
    c = c.replace(tempo_bpm=given.tempo_bpm, key=given.key, mode=given.mode, piano=True,
                  duration_s=given.n_bars * given.bar_s + float(continue_s), progression=given.chords[-4:],
                  warnings=c.warnings + notes)
    timings = {"interpret": time.perf_counter() - t0}
    track = _make_track(c, Composer(c, sample_rate=sample_rate, given=given), prompt, progress, timings,
                        taps=taps)
    track.metadata["given_midi"] = given.path.name
    return track


PARTS = ("piano", "drums", "bass")


def track_metadata(track: Track | str | os.PathLike) -> dict:
    """A track's metadata: from the Track, or from the .json sidecar that save() wrote (pass either path)."""
    if isinstance(track, Track):
        return track.metadata
    path = Path(track)
    sidecar = path if path.suffix == ".json" else path.with_name(path.name + ".json")
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the track's sidecar {sidecar} ({exc}); pass the .json that "
                         f"generate wrote beside the audio") from None
    if not isinstance(meta, dict) or "conditions" not in meta or "plan" not in meta:
        raise ValueError(f"{sidecar} is not a text2lofi track sidecar (no conditions or plan)")
    return meta


class _Spliced:
    """A composer whose bars are `base`'s except in one section, where one part comes from `other` (the same
    track with that part's seed changed). Everything else is `base`'s."""

    def __init__(self, base: Composer, other: Composer, part: str, section: int):
        self.base, self.other, self.part, self.section = base, other, part, section

    def __getattr__(self, name):
        return getattr(self.base, name)

    def bars(self, n_bars: int | None) -> Iterator[ComposedBar]:
        first = sum(s.n_bars for s in self.base.plan[:self.section])
        span = range(first, first + self.base.plan[self.section].n_bars)
        taken = ("drums", "bass") if self.part == "drums" else (self.part,)   # the bass follows the kick
        for mine, theirs in zip(self.base.bars(n_bars), self.other.bars(n_bars)):
            if mine.index in span:
                mine = dataclasses.replace(mine, **{p: getattr(theirs, p) for p in taken})
            yield mine


def _remake(track, progress: Progress | None, note: str, plan_of=None, seeds: dict | None = None,
            section: int | None = None, taps: Taps | None = None, **changes) -> Track:
    """Compose a track again from its metadata: same conditions (with `changes`), seeds, plan
    (`plan_of(old_plan, conditions)` to change it) and section splices, so every part that is not redrawn comes
    out note for note. `seeds` redraws parts: everywhere, or with `section` only in that section (a splice)."""
    meta = track_metadata(track)
    if meta.get("given_midi"):
        raise ValueError("this track accompanies a MIDI file; extend or vary the file's track with accompany()")
    c = Conditions.from_dict(meta["conditions"]).replace(warnings=[], **changes)
    sr = int(meta.get("sample_rate", SAMPLE_RATE))
    plan = [Section(*s) for s in meta["plan"]]
    if plan_of is not None:
        plan = plan_of(plan, c)
    part_seeds = dict(meta.get("part_seeds") or {})
    splices = [tuple(x) for x in meta.get("splices", [])]          # (part, seed, section)
    if section is None:
        part_seeds |= seeds or {}
    elif not 0 <= section < len(plan):
        raise ValueError(f"section must be from 0 to {len(plan) - 1} (this track's sections: "
                         f"{', '.join(s.name for s in plan)}), got {section}")
    else:
        splices += [(part, seed, section) for part, seed in (seeds or {}).items()]

    def compose(extra: dict) -> Composer:
        from text2lofi.compose.composer import Composer
        return Composer(c, sample_rate=sr, plan=plan, seeds=part_seeds | extra, loop=bool(meta.get("loop")))
    composer = compose({})
    for part, seed, where in splices:
        composer = _Spliced(composer, compose({part: seed}), part, where)
    if meta.get("models") and meta["models"] != composer.versions:
        c.warnings.append(f"the models changed since this track was made ({meta['models']} -> "
                          f"{composer.versions}); its notes will differ")
    track = _make_track(c, composer, meta.get("prompt"), progress or _no_progress, {}, taps=taps)
    track.metadata |= {"made_from": note, "splices": [list(x) for x in splices]}
    return track


def remake(track: Track | str | os.PathLike, progress: Progress | None = None) -> Track:
    """The same track again from its sidecar, sample for sample (what builds stems only when someone asks)."""
    return _remake(track, progress, "made again")


def extend(track: Track | str | os.PathLike, seconds: float, progress: Progress | None = None,
           taps: Taps | None = None) -> Track:
    """The track exactly `seconds` longer: every note before its outro kept (same seed, same model state), then
    new bars from where the models were, and a new outro at the new end. Deterministic."""
    seconds = float(seconds)
    if not 0.0 < seconds <= IN_MEMORY_MAX_S:
        raise ValueError(f"seconds must be more than 0 and at most {IN_MEMORY_MAX_S:g}, got {seconds:g}")
    meta = track_metadata(track)
    if meta.get("loop"):
        raise ValueError("a loop has no ending to extend; generate a longer loop instead")
    old_s = float(meta["conditions"]["duration_s"])

    def longer(plan, c):
        grid = BarGrid(c.tempo_bpm, int(meta.get("sample_rate", SAMPLE_RATE)))
        return extension_plan(plan, grid.bars_for(int(round(c.duration_s * grid.sample_rate))), c.piano, c.drums)
    return _remake(track, progress, f"extended by {seconds:g} s", plan_of=longer, taps=taps,
                   duration_s=old_s + seconds)


def vary(track: Track | str | os.PathLike, part: str, seed: int | None = None, section: int | None = None,
         progress: Progress | None = None, taps: Taps | None = None) -> Track:
    """The same track with one part ("piano", "drums" or "bass") drawn again from `seed` (new if None); the other
    parts come out note for note, except that the bass, locked to the kick, follows new drums (same roots on
    the one). Deterministic for a seed. section: redraw the part in that section only (an index into the
    track's metadata["plan"]); every other bar stays as it was."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    seed = secrets.randbelow(2**31) if seed is None else int(seed)
    where = "" if section is None else f" in section {section}"
    return _remake(track, progress, f"{part} varied{where} with seed {seed}", seeds={part: seed}, section=section,
                   taps=taps)


MIX_DB_RANGE = (-60.0, 12.0)   # a mixer level in dB against the track as made; the bottom means silent
LOFI_LAYER = "lofi"            # the mixer's level of the lo-fi chain's effect (0 dB: as made, bottom: dry)


def mixer_layers(stems_dir: str | os.PathLike) -> list[str]:
    """The layers a track's mixer stems hold (parts, then textures, in a fixed order), then LOFI_LAYER."""
    have = {p.name[:-len(STEM_SUFFIX)] for p in Path(stems_dir).glob(f"*{STEM_SUFFIX}")}
    known = [name for name in (*PARTS, *TEXTURES, "textures") if name in have]
    return known + [LOFI_LAYER] if known else []


def mix_gains(levels: dict, layers: list[str]) -> dict[str, float]:
    """levels (layer -> dB, missing: 0) -> linear gain per layer; ValueError names a bad layer or level."""
    if not isinstance(levels, dict):
        raise ValueError(f"levels must be a dict of layer -> dB, got {type(levels).__name__}")
    unknown = [k for k in levels if k not in layers]
    if unknown:
        raise ValueError(f"levels: {', '.join(map(repr, unknown))} is not a layer of this track "
                         f"(it has {', '.join(layers)})")
    lo, hi = MIX_DB_RANGE
    gains = {}
    for name in layers:
        db = levels.get(name, 0.0)
        if isinstance(db, bool) or not isinstance(db, (int, float)) or not lo <= db <= hi:
            raise ValueError(f"levels[{name!r}] must be a number of dB from {lo:g} to {hi:g} ({lo:g}: silent), "
                             f"got {db!r}")
        gains[name] = 0.0 if db <= lo else 10.0 ** (db / 20.0)
    return gains


def remix(track: Track | str | os.PathLike, stems_dir: str | os.PathLike, levels: dict,
          midi: str | os.PathLike | None = None, progress: Progress | None = None) -> Track:
    """The track mixed again from its mixer stems (Taps.stems_dir) at new levels (layer -> dB against the
    track as made), nothing composed or synthesized again: the parts summed at their levels, the lo-fi chain
    run on that sum (LOFI_LAYER scales its effect: wet = dry + gain * (chain - dry)), each texture added at its
    level, then the same fade and master. Same length; `midi` (the track's .mid) is carried over."""
    from text2lofi.audio.mix import ChainStage
    progress = progress or _no_progress
    t0 = time.perf_counter()
    meta = track_metadata(track)
    layers = mixer_layers(stems_dir)
    if not layers:
        raise ValueError("this track has no mixer stems (tracks made before the mixer, or on the command line)")
    gains = mix_gains(levels, layers)
    c = Conditions.from_dict(meta["conditions"]).replace(warnings=[])
    sr = int(meta.get("sample_rate", SAMPLE_RATE))
    stems = {name: np.memmap(Path(stems_dir) / f"{name}{STEM_SUFFIX}", np.float16, "r").reshape(-1, 2)
             for name in layers if name != LOFI_LAYER}
    n = len(next(iter(stems.values())))
    progress("mastering", 0.0)
    dry = np.zeros((n, 2), np.float32)
    for name in PARTS:
        if name in stems and gains[name]:
            dry += stems[name].astype(np.float32) * np.float32(gains[name])
    stage, out, at = ChainStage(LofiChain(c.lofi_amount, sample_rate=sr, seed=c.seed)), np.empty_like(dry), 0
    sizes = json.loads((Path(stems_dir) / CHUNKS_FILE).read_text())["chunks"]
    for i, size in enumerate(sizes):            # the chunks the track was mixed in (see ChainStage)
        out[at:at + size] = stage.process(dry[at:at + size], final=i == len(sizes) - 1)
        at += size
    if gains[LOFI_LAYER] != 1.0:               # dry + g * (wet - dry), in place
        out -= dry
        out *= np.float32(gains[LOFI_LAYER])
        out += dry
    del dry
    for name, audio in stems.items():
        if name not in PARTS and gains[name]:
            out += audio.astype(np.float32) * np.float32(gains[name])
    if not meta.get("loop"):
        _fade(out, 0, n, sr)
    audio = master_to_lufs(out, sr).astype(np.float32, copy=False)
    progress("mastering", 1.0)
    shown = {k: float(levels[k]) for k in layers if k in levels}
    metadata = meta | {"mix_levels": shown, "made_from": "remixed at " + (
        ", ".join(f"{k} {v:+g} dB" for k, v in shown.items()) or "the levels as made"),
        "timings_s": {"remix": time.perf_counter() - t0}}
    pm = pretty_midi.PrettyMIDI(str(midi)) if midi is not None and Path(midi).is_file() else None
    return Track(audio, sr, pm, c, {}, metadata)


def render_midi(pm: pretty_midi.PrettyMIDI, c: Conditions, sample_rate: int = SAMPLE_RATE) -> Track:
    """A MIDI's pitched notes played as the piano through the same synthesizer, lo-fi chain, textures and master
    as any track, c.duration_s long, nothing added (no drums, no bass): how the blind comparison renders the
    baselines and real excerpts so that only the music differs. The notes must cover c.duration_s."""
    from text2lofi.compose.composer import Composer
    with tempfile.TemporaryDirectory(prefix="text2lofi-midi-") as tmp:
        path = Path(tmp) / "notes.mid"
        pm.write(str(path))
        given = read_given(path)
    if given.n_bars * given.bar_s < c.duration_s:
        raise ValueError(f"the MIDI lasts {given.n_bars * given.bar_s:.1f} s, less than {c.duration_s:g} s")
    c = c.replace(tempo_bpm=given.tempo_bpm, drums=False, bass=False, piano=True, progression=given.chords[:4])
    return _make_track(c, Composer(c, sample_rate=sample_rate, given=given), None, _no_progress, {})


def _make_track(c: Conditions, composer: Composer, prompt, progress: Progress, timings: dict,
                keep_stems: bool = True, taps: Taps | None = None) -> Track:
    from text2lofi.audio.mix import Mixer
    taps = taps or Taps()
    if c.duration_s > IN_MEMORY_MAX_S and not composer.loop:     # mastered as it is made, on_master chunk by chunk
        sample_rate = composer.grid.sample_rate
        return _generate_long(c, composer, Mixer(c, sample_rate), int(round(c.duration_s * sample_rate)), prompt,
                              progress, timings, taps.on_master)
    if composer.loop:
        track = _make_loop(c, composer, prompt, progress, timings, taps)
    else:
        track = _make_held(c, composer, prompt, progress, timings, keep_stems, taps)
    if taps.on_master is not None:
        taps.on_master(track.audio)
    return track


def _make_held(c: Conditions, composer: Composer, prompt, progress: Progress, timings: dict, keep_stems: bool,
               taps: Taps) -> Track:
    """A track held in memory whole, mastered in two passes once it is all made."""
    from text2lofi.audio.mix import Mixer
    from text2lofi.compose.composer import bars_to_midi
    sample_rate = composer.grid.sample_rate
    n_samples = int(round(c.duration_s * sample_rate))
    mixer, stem_files = Mixer(c, sample_rate, split_textures=taps.stems_dir is not None), _StemFiles(taps.stems_dir)

    bars: list[ComposedBar] = []
    t1 = time.perf_counter()
    # Chunks are written into arrays of the final length (no list of chunks and no concatenated copy: a
    # 10-minute mix is 212 MB).
    audio, stems, at = np.zeros((n_samples, 2), np.float32), {}, 0
    # A long track's loudness is measured as it is made (on this thread, while the composing thread works), the
    # same number integrated_loudness() would give the whole faded mix; a short one's by the master as before.
    meter = LoudnessMeter(n_samples, 2, sample_rate) if n_samples > CHUNKED_ABOVE else None
    # Closed here, not when collected: an interrupt (Ctrl-C) in this loop must stop the composing thread now.
    chunks = _bar_chunks(composer, mixer, n_samples, progress, bars)
    try:
        for mix, balanced in chunks:
            n = min(len(mix), n_samples - at)
            audio[at:at + n] = mix[:n]
            _fade(audio[at:at + n], at, n_samples, sample_rate)
            if meter is not None:
                meter.feed(audio[at:at + n])
            if taps.on_mix is not None:
                taps.on_mix(mix[:n])
            stem_files.write(balanced, n)
            for k, v in balanced.items() if keep_stems else ():
                stems.setdefault(k, np.zeros((n_samples, 2), np.float32))[at:at + n] = v[:n]
            at += n
    finally:
        chunks.close()
        stem_files.close()
    timings["compose_render_mix"] = time.perf_counter() - t1
    progress("mastering", 0.0)
    t2 = time.perf_counter()
    loudness = None if meter is None else meter.loudness()
    audio = master_to_lufs(audio, sample_rate, loudness=loudness).astype(np.float32, copy=False)
    timings["master"] = time.perf_counter() - t2
    progress("mastering", 1.0)
    midi = bars_to_midi(bars, c, piano_program_for(c.mood), sample_rate, n_samples)
    return Track(audio, sample_rate, midi, c, stems, _metadata(c, composer, prompt, timings))


def _make_loop(c: Conditions, composer: Composer, prompt, progress: Progress, timings: dict, taps: Taps) -> Track:
    """A seamless loop, made as if it had already been playing: the notes still ringing at its end (synth releases,
    the chain's tails) are rendered past the end and added onto its start, and the texture bed's continuation past
    the end cross-fades (equal power) into its start over LOOP_TAIL_S. No fade in or out; the last bar's chord
    leads back to the first (Composer(loop=True)). Mastered in one pass like any short track."""
    from text2lofi.audio.mix import Mixer
    from text2lofi.audio.textures import TextureBed
    from text2lofi.compose.composer import bars_to_midi
    sr = composer.grid.sample_rate
    n_bars = composer.grid.bars_for(int(round(c.duration_s * sr)))
    n, tail = composer.grid.bar_start(n_bars), int(LOOP_TAIL_S * sr)
    t1 = time.perf_counter()
    mixer = Mixer(c.replace(textures=[]), sr)        # music alone; the bed is wrapped on its own below
    bars: list[ComposedBar] = []
    parts: dict[str, list[np.ndarray]] = {k: [] for k in mixer.synths}
    try:
        for bar in composer.bars(n_bars):
            progress("composing", bar.start_sample / n)
            bars.append(bar)
            for k, v in mixer.stems({"piano": bar.piano, "drums": bar.drums, "bass": bar.bass},
                                    bar.end_sample - bar.start_sample).items():
                parts[k].append(v)
        progress("rendering", 1.0)
        for k, v in mixer.stems({}, tail).items():               # what still sounds after the last bar
            parts[k].append(v)
        joined = {k: np.concatenate(v) for k, v in parts.items()}
        mixer.observe(joined, last=True)
        mix, balanced = mixer.mix(joined, n + tail, final=True)
    finally:
        mixer.close()
    music = _wrap(mix, n, tail)
    fade = np.linspace(0.0, np.pi / 2, tail, endpoint=False, dtype=np.float32)[:, None]

    def wrapped_bed(bed: np.ndarray) -> np.ndarray:
        looped = bed[:n].copy()
        looped[:tail] = bed[:tail] * np.sin(fade) + bed[n:] * np.cos(fade)
        return looped
    layers = TextureBed(c.textures, sample_rate=sr, seed=c.seed).render_layers(n + tail) if c.textures else {}
    if layers:
        looped = wrapped_bed(sum(layers.values()))
        music += looped
    timings["compose_render_mix"] = time.perf_counter() - t1
    progress("mastering", 0.0)
    audio = master_to_lufs(music, sr).astype(np.float32, copy=False)
    progress("mastering", 1.0)
    midi = bars_to_midi(bars, c, piano_program_for(c.mood), sr, n)
    stems = {k: _wrap(v, n, tail) for k, v in balanced.items()}
    if taps.on_mix is not None:
        taps.on_mix(music)
    stem_files = _StemFiles(taps.stems_dir)
    stem_files.write(stems | {k: wrapped_bed(v) for k, v in layers.items()}, n)
    stem_files.close()
    if c.textures:
        stems["textures"] = looped
    meta = _metadata(c, composer, prompt, timings) | {"loop": True}
    return Track(audio, sr, midi, c, stems, meta)


def _wrap(audio: np.ndarray, n: int, tail: int) -> np.ndarray:
    """The first n samples with the `tail` samples after them added onto their start."""
    out = audio[:n].copy()
    out[:tail] += audio[n:n + tail]
    return out


def _generate_long(c, composer, mixer, n_samples, prompt, progress, timings,
                   on_master: Callable[[np.ndarray], None] | None = None) -> Track:
    """Long tracks: stream mastered float32 chunks to a temporary raw file (and to on_master) and memory-map it
    (flat RSS)."""
    from text2lofi.compose.composer import bars_to_midi
    t1 = time.perf_counter()
    bars: list[ComposedBar] | None = [] if c.duration_s <= MIDI_MAX_S else None
    # The writer's pid is in the name so a later start can tell a file left by a killed process (app.guard).
    fd, raw = tempfile.mkstemp(prefix=f"{RAW_PREFIX}{os.getpid()}-", suffix=RAW_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f, contextlib.closing(_stream_master(c, composer, mixer, n_samples, progress,
                                                                          bars)) as chunks:
            for chunk in chunks:
                f.write(chunk.tobytes())
                if on_master is not None:
                    on_master(chunk)
        audio = np.memmap(raw, dtype=np.float32, mode="r", shape=(n_samples, 2))
    except BaseException as exc:
        os.unlink(raw)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise NoSpace(Path(raw).parent) from exc
        raise
    timings["compose_render_mix_master"] = time.perf_counter() - t1
    midi = None if bars is None else bars_to_midi(bars, c, piano_program_for(c.mood), mixer.sr, n_samples)
    track = Track(audio, mixer.sr, midi, c, {}, _metadata(c, composer, prompt, timings), raw_path=Path(raw))
    weakref.finalize(track, os.unlink, raw)     # the temporary file lives exactly as long as the Track
    return track


def _stream_master(c: Conditions, composer: Composer, mixer: Mixer, n_samples: int | None,
                   progress: Progress, keep_bars: list[ComposedBar] | None = None) -> Iterator[np.ndarray]:
    """Mastered chunks of a composed track; exactly n_samples in total, or endless when n_samples is None."""
    with contextlib.closing(_bar_chunks(composer, mixer, n_samples, progress, keep_bars)) as chunks:
        yield from master_stream((mix for mix, _ in chunks), n_samples, mixer.sr)


def master_stream(mixes: Iterator[np.ndarray], n_samples: int | None, sample_rate: int) -> Iterator[np.ndarray]:
    """Pre-master chunks -> mastered chunks through one streaming master (-14 LUFS, -1 dBTP): a click-free
    start, and with n_samples exactly that many samples ending in the FADE_OUT_S fade; endless when None."""
    master = Master(target_lufs=-14.0, peak_dbfs=-1.0, sample_rate=sample_rate)
    skip = master.latency          # the limiter looks ahead: its first `latency` output samples are padding
    total = n_samples if n_samples is not None else 1 << 62
    done = 0
    try:
        for mix in mixes:
            mix = mix[:total - done]
            _fade(mix, done, total, sample_rate)
            done += len(mix)
            out = master.process(mix)
            cut = min(skip, len(out))
            out, skip = out[cut:], skip - cut
            if len(out):
                yield out
            if done >= total:
                break
        if n_samples is not None:      # flush the look-ahead so the total is exactly n_samples
            yield master.process(np.zeros((master.latency, 2), np.float32))[skip:]
    finally:
        close = getattr(mixes, "close", None)
        if close is not None:
            close()


UNDER_DIALOGUE_DB = -12.0     # the music's level under a video's own sound unless told otherwise


def score_video(video: str | os.PathLike, prompt: str | Conditions, out: str | os.PathLike,
                seed: int | None = None, level_db: float | None = None, keep_audio: bool = True,
                progress: Progress | None = None, max_duration_s: float = DURATION_RANGE[1], **overrides) -> Track:
    """Music for a video, exactly as long as its cut, planned to that length (it ends on its final chord at the
    cut), written to `out` with the picture copied. A video with its own sound keeps it, the music mixed under at
    level_db (default UNDER_DIALOGUE_DB); keep_audio=False replaces it. max_duration_s: the longest video taken
    (a server's limit). Returns the music's Track."""
    from text2lofi.audio import video as av

    out = files.check_output_path(out, av.VIDEO_EXTENSIONS)
    info = av.probe(video)
    longest = min(max_duration_s, DURATION_RANGE[1])
    if not DURATION_RANGE[0] <= info.duration_s <= longest:
        raise ValueError(f"video {info.path.name} lasts {info.duration_s:g} s; scoring needs "
                         f"{DURATION_RANGE[0]:g} to {longest:g} s")
    track = generate(prompt, seed=seed, progress=progress, **dict(overrides, duration_s=info.duration_s))
    if level_db is None:
        level_db = UNDER_DIALOGUE_DB if keep_audio and info.has_audio else 0.0
    with tempfile.TemporaryDirectory(prefix="text2lofi-score-") as tmp:
        music = Path(tmp) / "music.wav"
        files.write_audio(music, track.iter_audio(), track.sample_rate)
        av.mux(info, music, out, level_db=level_db, keep_audio=keep_audio)
    track.metadata["video"] = {"source": info.path.name, "duration_s": info.duration_s, "level_db": level_db,
                               "kept_audio": keep_audio and info.has_audio, "output": str(out)}
    return track


def generate_to_files(prompt: str | Conditions, out: str | os.PathLike, midi: str | os.PathLike | None = None,
                      stems: str | os.PathLike | None = None, seed: int | None = None,
                      progress: Progress | None = None, from_midi: str | os.PathLike | None = None,
                      continue_s: float = 0.0, **overrides) -> Track:
    """What the CLI runs: paths are checked before any work, files are written atomically. With from_midi the
    track accompanies that file (see accompany)."""
    out = files.check_output_path(out)
    midi = files.check_output_path(midi) if midi else None
    if midi is not None and midi.suffix.lower() not in files.MIDI_EXTENSIONS:
        raise ValueError(f"--midi needs a .mid or .midi path, got {midi.name}")
    if continue_s and from_midi is None:
        raise ValueError("--continue needs --from-midi: it continues the piano of a MIDI file")
    # The audio file is encoded as the mastered track comes: a long track's beside its making.
    writer = files.BackgroundWriter(out, overrides.get("sample_rate", SAMPLE_RATE)) \
        if from_midi is None and out.suffix.lower() in files.AUDIO_EXTENSIONS else None
    try:
        if from_midi is not None:
            track = accompany(from_midi, prompt, seed=seed, continue_s=continue_s, progress=progress, **overrides)
        else:
            track = generate(prompt, seed=seed, progress=progress,
                             taps=Taps(on_master=None if writer is None else writer.put), **overrides)
        if track.metadata.get("loop") and out.suffix.lower() == ".mp3":
            track.conditions.warnings.append("MP3 adds silence at both ends, so the loop will not be seamless "
                                             "there; use WAV or FLAC")
        if writer is None:
            track.save(out)
        else:
            track._saved(writer.finish(track.metadata))
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if midi is not None:
        track.save(midi)
    if stems is not None:
        track.save_stems(stems)
    return track

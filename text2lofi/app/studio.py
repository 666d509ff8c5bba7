"""The studio: everything the page and the API do, as one typed service with no web framework in it.

It owns the policy the shells must not: which lengths this server makes, how seeds are chosen, how a text edit
and explicit overrides combine, which files a generation writes, and what is recorded for the survey. The Gradio
page and API (`app.web`) call these methods and only translate `StudioError` into the page's error; tests drive
the same methods in-process.

    studio = Studio(SurveyStore("sqlite:///survey.db"), output_dir=Path("out"))
    g = studio.create("rainy night study beats", duration_s=30, seed=7)      # -> Generation (files on disk)
    g2 = studio.refine(g.id, "slower, drop the rain")                        # same seed, edited conditions
    studio.rate(g2.id, rater_id="web-1", clarity=4, quality=5, match=4)
"""
from __future__ import annotations

import collections
import errno
import math
import re
import secrets
import shutil
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from text2lofi.app.compare import CompareConfig, ComparePool, ShownPair
from text2lofi.app.survey import SurveyStore
from text2lofi.conditions import DURATION_RANGE, Conditions
from text2lofi.live import LiveStream, stream
from text2lofi.compose.given import read_given
from text2lofi.audio.files import NoSpace, atomic_path
from text2lofi.pipeline import (PARTS, Progress, Taps, Track, accompany, extend, generate, remake, remix, resolve,
                                score_video, track_metadata, vary)

SEED_RANGE = (0, 2**31 - 1)       # Conditions keep 31-bit seeds
MAX_PROMPT_CHARS = 2000           # longest text a request may carry (a paragraph; the interpreter reads ~100 words)
# Generation and pair ids are uuid4 text (survey.record_generation); anything else is refused before a lookup.
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SAVING = "saving"                 # the stage after the pipeline's STAGES: the files a generation writes
HISTORY_SIZE = 50                 # generations `history()` remembers, newest first
MIXER_DIR = "mixer"               # a generation's mixer stems (pipeline.Taps.stems_dir), in its folder
OnMix = Callable[[np.ndarray], None]   # gets each pre-master chunk as it is mixed (pipeline.Taps.on_mix)


class StudioError(ValueError):
    """A request the studio refuses; the message names the field and says what is allowed."""


def shown(value, limit: int = 60) -> str:
    """A value quoted in a message, cut to `limit` characters (a 1 MB id is never echoed back)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def check_prompt(prompt, field: str = "prompt", example: str = "rainy night study beats, 2 minutes") -> str:
    """Text of 1..MAX_PROMPT_CHARS characters; StudioError names the field."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise StudioError(f"{field} is empty: type what you want to hear, e.g. '{example}'.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise StudioError(f"{field} is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}.")
    return prompt


def check_id(value, field: str = "generation_id") -> str:
    """An id this server hands out (uuid4 text); StudioError names the field without echoing a huge value."""
    if value is None or value == "":
        raise StudioError(f"{field} is empty: there is no track yet; generate one first")
    if not isinstance(value, str) or not _ID.fullmatch(value.strip()):
        raise StudioError(f"{field} {shown(value)} is not an id from this server (they look like "
                          f"'1b4e28ba-2fa1-41d2-883f-0016d3cca427')")
    return value.strip()


def new_seed() -> int:
    return secrets.randbelow(SEED_RANGE[1] + 1)


def describe(c: Conditions, length: bool = True) -> str:
    """One line a listener can read: what was actually generated (length=False for an endless stream)."""
    parts = [f"{c.tempo_bpm:.0f} BPM", f"{c.key} {c.mode}"] + ([f"{c.duration_s:g} s"] if length else [])
    playing = [name for name, on in (("piano", c.piano), ("drums", c.drums), ("bass", c.bass)) if on]
    parts.append(" + ".join(playing) if len(playing) > 1 else f"{playing[0]} only")
    if c.textures:
        parts.append("textures: " + ", ".join(c.textures))
    parts.append(f"lo-fi {c.lofi_amount:.2f}")
    parts.append(f"seed {c.seed}")
    return " · ".join(parts)


def chord_chart(chords: list[str | None], per_line: int = 8) -> str:
    """Markdown chord chart, one cell per bar, `per_line` bars a row, each row starting with its bar number;
    a bar that keeps the chord before it shows '%' (the lead-sheet repeat sign)."""
    if not chords:
        return ""
    cells = ["%" if i and c == chords[i - 1] else (c or "N.C.") for i, c in enumerate(chords)]
    rows = []
    for start in range(0, len(cells), per_line):
        rows.append(f"`{start + 1:>3}` | " + " | ".join(cells[start:start + per_line]) + " |")
    return "\n\n".join(rows)


def piano_roll(midi, duration_s: float, path: Path) -> Path:
    """PNG picture of a PrettyMIDI over the track's 0..duration_s: piano (blue) and bass (green) notes as bars
    (pitch over seconds), drum hits as dots below."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=90)
    ax_piano, ax_drums = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for inst in midi.instruments:
        if inst.is_drum:
            ax_drums.scatter([n.start for n in inst.notes], [n.pitch for n in inst.notes], s=6, c="#c05040")
        else:                   # piano and bass share the pitch axis, told apart by colour
            ax_piano.barh([n.pitch for n in inst.notes], [n.end - n.start for n in inst.notes],
                          left=[n.start for n in inst.notes], height=0.8, label=inst.name,
                          color="#208040" if inst.name == "bass" else "#4060a0")
    ax_piano.set_ylabel("pitch")
    if len([i for i in midi.instruments if not i.is_drum]) > 1:
        ax_piano.legend(loc="upper left", fontsize=8)      # the page overlays its buttons on the upper right
    ax_drums.set_ylabel("drum")
    ax_drums.set_xlabel("seconds")
    ax_drums.set_xlim(0, duration_s)        # notes ringing past the end are cut off in the audio too
    fig.tight_layout()
    fig.savefig(path)
    return path


@dataclass(frozen=True)
class Generation:
    """One made track: its survey id, the text that asked for it, what it is and the files written for it (a
    fresh one, or one recalled from disk by its id)."""
    id: str
    prompt: str
    conditions: Conditions
    duration_s: float
    metadata: dict = field(repr=False)
    files: dict[str, Path]

    def describe(self) -> str:
        return describe(self.conditions)

    def info(self) -> dict:
        """What the API returns beside the files."""
        info = {"generation_id": self.id, "conditions": self.conditions.to_dict(), "duration_s": self.duration_s,
                "models": self.metadata.get("models", {}), "chords": self.metadata.get("chords", []),
                "plan": self.metadata.get("plan", [])}
        if "mix_levels" in self.metadata:
            info["mix_levels"] = self.metadata["mix_levels"]
        return info

    def chart(self) -> str:
        return chord_chart(self.metadata.get("chords", []))

    @property
    def mixer(self) -> Path | None:
        """The folder of its mixer stems (a remix's are its source's), if it has them."""
        return Path(self.files[MIXER_DIR]) if self.files.get(MIXER_DIR) else None


class Studio:
    """Create, refine, rate and list tracks over one survey store and one output folder. Thread-safe: the app
    runs several requests at once."""

    def __init__(self, store: SurveyStore, output_dir: Path | None = None, max_duration_s: float = 600.0,
                 compare: CompareConfig | None = None):
        if not DURATION_RANGE[0] <= max_duration_s <= DURATION_RANGE[1]:
            raise ValueError(f"max_duration_s must be within {DURATION_RANGE[0]:g}..{DURATION_RANGE[1]:g} s")
        self.store, self.max_duration_s = store, float(max_duration_s)
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="text2lofi-app-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._history: collections.deque[tuple[str, str, str]] = collections.deque(maxlen=HISTORY_SIZE)
        self._streams: dict[str, LiveStream] = {}      # listener -> the endless stream it is hearing
        self._stops: dict[str, threading.Event] = {}   # listener -> its latest stream's Stop, from when it is asked for
        self._lock = threading.Lock()
        self._starting = threading.Condition(self._lock)  # notified when a listener's stream starts being made
        # Blind paired comparisons: clips pre-rendered into the output folder (serve starts compare.start_filling()).
        self.compare = ComparePool(store, self.output_dir / "compare-pool", compare or CompareConfig())

    # ---- policy ---------------------------------------------------------------------------------------------
    def check_duration(self, duration_s: float, what: str = "duration_s") -> None:
        lo, hi = DURATION_RANGE[0], self.max_duration_s
        if not lo <= duration_s <= hi:
            raise StudioError(f"{what} is {duration_s:g} s; this server makes tracks of {lo:g} to {hi:g} s.")

    @staticmethod
    def check_seed(seed) -> int | None:
        if seed is None:
            return None
        if isinstance(seed, bool) or not isinstance(seed, (int, float)) or not math.isfinite(seed) \
                or seed != int(seed) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
            raise StudioError(f"seed must be a whole number from {SEED_RANGE[0]} to {SEED_RANGE[1]}, got {seed!r}")
        return int(seed)

    def conditions(self, prompt: str, previous: Conditions | dict | None = None, seed: int | None = None,
                   progress: Progress | None = None, **overrides) -> Conditions:
        """The text read as an edit of `previous` (if any), then the overrides that are not None. A fresh prompt
        with no seed gets a new random one; an edit keeps the previous seed unless one is given."""
        check_prompt(prompt)
        if previous is not None and not isinstance(previous, (Conditions, dict)):
            raise StudioError("previous must be a conditions dict (as returned by /interpret) or None")
        seed = self.check_seed(seed)
        if overrides.get("duration_s") is not None:
            self.check_duration(float(overrides["duration_s"]))
        if seed is None and previous is None:
            seed = new_seed()
        try:
            c = resolve(prompt, seed=seed, previous=previous, progress=progress, **overrides)
        except TypeError as exc:                  # e.g. a field of `previous` of the wrong type
            raise StudioError(f"previous is not a valid conditions dict: {exc}") from exc
        self.check_duration(c.duration_s, "the prompt's length")
        return c

    # ---- making tracks --------------------------------------------------------------------------------------
    def create(self, prompt: str, previous: Conditions | dict | None = None, seed: int | None = None,
               extras: bool = False, progress: Progress | None = None, loop: bool = False,
               on_mix: OnMix | None = None, **overrides) -> Generation:
        """Text (+ optional previous conditions and overrides) -> a recorded Generation with its files:
        track.wav and track.mid, plus track.mp3 and piano_roll.png with `extras` (stems: stems_zip), and its
        mixer stems (remix). loop: a seamless loop of whole bars. on_mix: see OnMix (a preview)."""
        c = self.conditions(prompt, previous, seed, progress, **overrides)
        return self._generated(prompt, c, extras, progress, loop, on_mix)

    def _generated(self, prompt: str, c: Conditions, extras: bool, progress: Progress | None, loop: bool,
                   on_mix: OnMix | None) -> Generation:
        # No stems in memory: stems_zip() makes them again only when someone asks (AppConfig memory target); the
        # mixer's are written to disk as they are made.
        return self._made(prompt, extras, lambda taps: generate(c, progress=progress, loop=bool(loop),
                                                                keep_stems=False, taps=taps), progress, on_mix)

    def again(self, generation_id: str, seed: int | None = None, extras: bool = False,
              progress: Progress | None = None, on_mix: OnMix | None = None) -> Generation:
        """An earlier generation's settings made again with another seed (a new one if None): a new take."""
        earlier = self._earlier(generation_id)
        seed = new_seed() if self.check_seed(seed) is None else int(seed)
        c = Conditions.from_dict(earlier["conditions"]).replace(seed=seed, warnings=[])
        loop = bool(track_metadata(earlier["files"]["wav"]).get("loop"))
        return self._generated(earlier["prompt"], c, extras, progress, loop, on_mix)

    def remix(self, generation_id: str, levels: dict, extras: bool = False,
              progress: Progress | None = None) -> Generation:
        """An earlier generation mixed again at new levels (layer -> dB against it as made: piano, drums, bass,
        each texture, "lofi"), from its mixer stems: nothing composed again. A remix of a remix starts from the
        same stems, so levels are always against the track as first made."""
        earlier = self._earlier(generation_id)
        stems = earlier["files"].get(MIXER_DIR)
        if not stems or not Path(stems).is_dir():
            raise StudioError(f"generation_id {generation_id!r} has no mixer stems (made before the mixer, or "
                              "from a video); make it again to mix it")
        files = earlier["files"]
        return self._made(earlier["prompt"], extras, lambda taps: remix(files["wav"], stems, levels,
                                                                        files.get("midi"), progress),
                          progress, mixer=Path(stems))

    def recall(self, generation_id: str) -> Generation:
        """An earlier generation as it was made, from the store and its files (to show it again)."""
        earlier = self._earlier(generation_id)
        files = {k: Path(v) for k, v in earlier["files"].items()}
        c = Conditions.from_dict(earlier["conditions"])      # its duration_s is the track's, to the sample
        return Generation(earlier["id"], earlier["prompt"], c, c.duration_s, track_metadata(files["wav"]), files)

    def forget(self, generation_id: str) -> None:
        """Delete a generation's files (its folder in the output folder); what the survey stored stays."""
        earlier = self.store.generation(check_id(generation_id))
        if earlier is None:
            raise StudioError(f"generation_id {generation_id!r} is unknown on this server")
        folder = Path(earlier["files"].get("wav", "")).parent.resolve()
        if folder != self.output_dir.resolve() and folder.is_relative_to(self.output_dir.resolve()):
            shutil.rmtree(folder, ignore_errors=True)

    def _earlier(self, generation_id: str) -> dict:
        earlier = self.store.generation(check_id(generation_id))
        if earlier is None:
            raise StudioError(f"generation_id {generation_id!r} is unknown on this server")
        if not Path(earlier["files"].get("wav", "") + ".json").is_file():
            raise StudioError(f"generation_id {generation_id!r}: its files are no longer on this server")
        return earlier

    def extend(self, generation_id: str, seconds, extras: bool = False,
               progress: Progress | None = None) -> Generation:
        """An earlier generation made `seconds` longer: every note before its outro kept, a new ending."""
        earlier = self._earlier(generation_id)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise StudioError(f"seconds must be a number of seconds above 0, got {seconds!r}")
        self.check_duration(earlier["conditions"]["duration_s"] + seconds, "the extended length")
        return self._made(earlier["prompt"], extras, lambda taps: extend(earlier["files"]["wav"], seconds, progress,
                                                                         taps), progress)

    def vary(self, generation_id: str, part: str, seed: int | None = None, extras: bool = False,
             progress: Progress | None = None, section: int | None = None) -> Generation:
        """An earlier generation with one part ("piano", "drums", "bass") drawn again (in one section if given);
        the others kept."""
        earlier = self._earlier(generation_id)
        if part not in PARTS:
            raise StudioError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
        seed = new_seed() if self.check_seed(seed) is None else int(seed)
        if section is not None and (isinstance(section, bool) or not isinstance(section, (int, float))
                                    or section != int(section)):
            raise StudioError(f"section must be a whole number, got {section!r}")
        return self._made(earlier["prompt"], extras, lambda taps: vary(earlier["files"]["wav"], part, seed,
                                                                       None if section is None else int(section),
                                                                       progress, taps), progress)

    def score_video(self, video_path: str | Path, prompt: str, seed: int | None = None,
                    level_db: float | None = None, keep_audio: bool = True,
                    progress: Progress | None = None) -> tuple[Path, Generation]:
        """An uploaded video with music exactly as long as it, under its own sound or replacing it."""
        if not video_path:
            raise StudioError("video is missing: choose a video file to score")
        check_prompt(prompt, example="calm lofi with rain")
        seed = new_seed() if self.check_seed(seed) is None else int(seed)
        if level_db is not None and not (isinstance(level_db, (int, float)) and -60 <= level_db <= 12):
            raise StudioError(f"level_db must be a number from -60 to 12, got {level_db!r}")
        folder = Path(tempfile.mkdtemp(prefix="video-", dir=self.output_dir))
        out = folder / ("scored" + (Path(video_path).suffix.lower() or ".mp4"))
        try:
            g = self._made(prompt, False, lambda taps: score_video(video_path, prompt, out, seed, level_db,
                                                                   keep_audio, progress,
                                                                   max_duration_s=self.max_duration_s))
        except StudioError:                       # nothing of this request stays on disk
            shutil.rmtree(folder, ignore_errors=True)
            raise
        g.files["video"] = out
        return out, g

    def refine(self, generation_id: str, text: str, extras: bool = False,
               progress: Progress | None = None) -> Generation:
        """An edit ("slower, drop the rain") of an earlier generation: its conditions and seed, changed by text."""
        check_prompt(text, "text", "slower, drop the rain")
        earlier = self.store.generation(check_id(generation_id))
        if earlier is None:
            raise StudioError(f"generation_id {generation_id!r} is unknown on this server")
        return self.create(text, previous=earlier["conditions"], extras=extras, progress=progress)

    def accompany(self, midi_path: str | Path, prompt: str = "", seed: int | None = None, continue_s=0.0,
                  extras: bool = False, progress: Progress | None = None) -> Generation:
        """An uploaded MIDI file accompanied (its notes kept exactly; drums, bass, textures added), the piano
        written on for continue_s seconds after it if asked; the prompt sets the feel."""
        if not midi_path:
            raise StudioError("midi is missing: choose a .mid file to accompany")
        if isinstance(continue_s, bool) or not isinstance(continue_s, (int, float)) or not 0 <= continue_s:
            raise StudioError(f"continue_s must be a number of seconds from 0, got {continue_s!r}")
        seed = self.check_seed(seed)
        prompt = check_prompt(prompt).strip() if isinstance(prompt, str) and prompt.strip() else "lofi"
        try:
            given = read_given(midi_path)
            self.check_duration(given.n_bars * given.bar_s + continue_s, "the MIDI file's length plus continue_s")
        except ValueError as exc:                 # the reader's own message names the file and the problem
            raise StudioError(str(exc)) from exc
        return self._made(prompt, extras, lambda taps: accompany(midi_path, prompt, seed=new_seed() if seed is None
                                                                 else seed, continue_s=float(continue_s),
                                                                 progress=progress, taps=taps), progress)

    def _made(self, prompt: str, extras: bool, make: Callable[[Taps], Track], progress: Progress | None = None,
              on_mix: OnMix | None = None, mixer: Path | None = None) -> Generation:
        """Run `make(taps)` -> Track in the generation's fresh folder (its mixer stems go there, unless `mixer`
        names the ones it was mixed from), turning the pipeline's concise ValueError into a StudioError; record
        it (the files' writing reported as the stage SAVING). A failure, a full disk included, leaves nothing
        behind (the folder goes, nothing is recorded) and a full disk says which folder is full."""
        try:
            folder = Path(tempfile.mkdtemp(prefix="gen-", dir=self.output_dir))
        except OSError as exc:
            raise StudioError(str(NoSpace(self.output_dir))) from exc
        try:
            track = make(Taps(on_mix=on_mix, stems_dir=None if mixer else folder / MIXER_DIR))
            if progress is not None:
                progress(SAVING, 0.0)
            mixer = mixer or (folder / MIXER_DIR if any((folder / MIXER_DIR).glob("*")) else None)
            return self._record(folder, prompt, track, extras, mixer)
        except BaseException as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:       # NoSpace included
                raise StudioError(str(NoSpace(self.output_dir))) from exc
            if isinstance(exc, ValueError) and not isinstance(exc, StudioError):
                raise StudioError(str(exc)) from exc
            raise

    def _record(self, folder: Path, prompt: str, track: Track, extras: bool, mixer: Path | None) -> Generation:
        """Write the track's files and record the generation for the survey."""
        files = {"wav": track.save(folder / "track.wav")}
        if track.midi is not None:
            files["midi"] = track.save(folder / "track.mid")
        if extras:
            files["mp3"] = track.save(folder / "track.mp3")
            if track.midi is not None:
                files["piano_roll"] = piano_roll(track.midi, track.duration_s, folder / "piano_roll.png")
        if mixer is not None:
            files[MIXER_DIR] = mixer
        gid = self.store.record_generation(prompt, track.conditions.to_dict(), seed=track.conditions.seed,
                                           model_versions=track.metadata.get("models", {}), files=files)
        with self._lock:
            self._history.appendleft((gid, prompt, describe(track.conditions)))
        return Generation(gid, prompt, track.conditions, track.duration_s, track.metadata, files)

    def history(self) -> list[dict]:
        """The generations this studio made, newest first: id, prompt and the one-line description."""
        with self._lock:
            return [{"generation_id": g, "prompt": p, "description": d} for g, p, d in self._history]

    def listen(self, prompt: str, chunk_s: float, listener: str = "") -> Iterator[tuple[np.ndarray, Conditions]]:
        """An endless stream for the prompt: (chunk, conditions playing) with (n, 2) float32 chunks of chunk_s
        seconds. `listener` names it for steer() and stop_listening(); a listener's new stream replaces its old
        one. No length check: a stream is endless whatever length the text mentions."""
        check_prompt(prompt, example="rainy night study beats")
        stop = threading.Event()
        with self._lock:
            self._stops[listener] = stop      # a Stop from here on ends this stream, even one still being made
            self._starting.notify_all()
        try:
            live = stream(resolve(prompt, seed=new_seed()), chunk_s=chunk_s)
        except BaseException:
            self._forget(listener, None, stop)
            raise
        with self._lock:
            self._streams[listener] = live
        return self._playing(live, listener, stop)

    def _playing(self, live: LiveStream, listener: str, stop: threading.Event
                 ) -> Iterator[tuple[np.ndarray, Conditions]]:
        """The stream's chunks until `stop` is set: checked before each chunk is made and before it is handed out
        (one made while stopping is dropped)."""
        try:
            while not stop.is_set():
                chunk = next(live, None)
                if chunk is None or stop.is_set():
                    return
                yield chunk, live.playing
        finally:
            live.close()
            self._forget(listener, live, stop)

    def _forget(self, listener: str, live: LiveStream | None, stop: threading.Event) -> None:
        with self._lock:
            if self._streams.get(listener) is live:
                del self._streams[listener]
            if self._stops.get(listener) is stop:
                del self._stops[listener]

    def stop_listening(self, listener: str, wait_s: float = 0.0) -> bool:
        """End `listener`'s stream before its next chunk (or, while it is still being made, before its first).
        With none, wait up to wait_s seconds for one to start (a Start pressed just before this Stop may not have
        reached us yet); False when none did."""
        with self._starting:
            self._starting.wait_for(lambda: listener in self._stops, timeout=wait_s)
            stop = self._stops.get(listener)
        if stop is not None:
            stop.set()
        return stop is not None

    def steer(self, listener: str, text: str) -> Conditions:
        """Change `listener`'s running stream from its next bar line ("slower", "add rain", "in D minor")."""
        with self._lock:
            live = self._streams.get(listener)
        if live is None:
            raise StudioError("no stream is playing for you: press Start in Listen forever first")
        check_prompt(text, "text", "slower")
        return live.steer(text)

    # ---- the survey -----------------------------------------------------------------------------------------
    def stems_zip(self, generation_id: str, progress: Progress | None = None) -> Path:
        """The generation's stems (piano, drums, bass, textures as WAV) in a zip, made only when asked: the track
        is made again from its sidecar, sample for sample, rather than kept (a 4-minute track's stems are ~80 MB)."""
        earlier = self._earlier(generation_id)
        wav = Path(earlier["files"]["wav"])
        out = wav.parent / "stems.zip"
        if not out.is_file():
            try:
                track = remake(wav, progress)
            except ValueError as exc:            # e.g. an accompanied track: its MIDI file is not kept
                raise StudioError(str(exc)) from exc
            with tempfile.TemporaryDirectory(dir=wav.parent) as tmp:
                with atomic_path(out) as part, zipfile.ZipFile(part, "w") as z:
                    for p in track.save_stems(tmp):
                        z.write(p, p.name)
        return out

    def survey_pair(self, rater_id: str, prompt: str | None = None) -> ShownPair:
        """A blind pair for this rater (of `prompt`, one of the study's prompts, or of any)."""
        if prompt is not None and prompt not in self.compare.config.prompts:
            raise StudioError(f"prompt must be one of the study's prompts ({'; '.join(self.compare.config.prompts)})"
                              f" or empty, got {str(prompt)[:80]!r}")
        try:
            return self.compare.draw(rater_id, prompt)
        except LookupError as exc:
            raise StudioError(str(exc)) from exc

    def survey_vote(self, pair_id: str, rater_id: str, quality: str, match: str, comment: str = "") -> dict:
        check_id(pair_id, "pair_id")
        try:
            return self.compare.vote(pair_id, rater_id, quality, match, comment)
        except ValueError as exc:
            raise StudioError(str(exc)) from exc

    def rate(self, generation_id: str, rater_id: str, clarity, quality, match, comment: str = "") -> dict:
        generation_id = check_id(generation_id)
        try:
            return self.store.rate(generation_id, rater_id, clarity, quality, match, comment or "")
        except ValueError as exc:
            raise StudioError(str(exc)) from exc

    def export_csv(self, password: str) -> Path:
        """The survey's ratings as CSV in a fresh file (admin only)."""
        return self._export(self.store.export_csv, password, "text2lofi-survey.csv")

    def export_pairs_csv(self, password: str) -> Path:
        """The blind comparisons (both systems, which played as A, the votes) as CSV (admin only)."""
        return self._export(self.store.export_pairs_csv, password, "text2lofi-comparisons.csv")

    def _export(self, make_text, password: str, name: str) -> Path:
        try:
            text = make_text(password)
        except PermissionError as exc:
            raise StudioError(str(exc)) from exc
        path = Path(tempfile.mkdtemp(prefix="export-", dir=self.output_dir)) / name
        path.write_text(text, encoding="utf-8")
        return path

    def comments(self, password: str) -> list[dict]:
        try:
            return self.store.comments(password)
        except PermissionError as exc:
            raise StudioError(str(exc)) from exc

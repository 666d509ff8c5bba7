"""Writing tracks to disk: WAV/FLAC/MP3 in chunks (flat memory), MIDI, JSON; every write is atomic.

A temporary file in the destination folder is renamed over the target only when complete, so a failed or
interrupted run (Ctrl-C included) never leaves a half-written file behind.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import queue
import shutil
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pretty_midi

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3")
MIDI_EXTENSIONS = (".mid", ".midi")
TMP_MARK = ".tmp-"          # a file being written is named .<stem>.tmp-<pid><suffix> until it is complete
WRITE_FRAMES = 1 << 18      # frames handed to an encoder at a time: clipped 16-bit-ready copies stay ~2 MB


def check_output_path(path: str | os.PathLike, extensions: tuple[str, ...] = AUDIO_EXTENSIONS + MIDI_EXTENSIONS
                      ) -> Path:
    """Fail fast, before any generation work: known extension, existing writable folder."""
    path = Path(path).expanduser()
    ext = path.suffix.lower()
    if ext not in extensions:
        raise ValueError(f"unknown output extension {ext or '(none)'!r} for {path.name}: "
                         f"use one of {', '.join(extensions)}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"output folder is not writable: {folder}")
    if path.is_dir():
        raise IsADirectoryError(f"output path is a folder: {path}")
    return path


class NoSpace(OSError):
    """A write that failed because the disk is full, named by folder (what a user can act on)."""

    def __init__(self, folder: Path):
        super().__init__(errno.ENOSPC, f"no space left on {folder}")
        self.folder = folder

    def __str__(self) -> str:
        return self.strerror


def _disk_full(folder: Path) -> bool:
    with contextlib.suppress(OSError):
        return shutil.disk_usage(folder).free < 1024**2
    return False


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same extension, so encoders pick the format); rename on success.
    A full disk raises NoSpace naming the folder, whatever the writer said (pedalboard only says "Unable to
    write data to audio file")."""
    tmp = path.with_name(f".{path.stem}{TMP_MARK}{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except NoSpace:
        raise
    except (OSError, RuntimeError) as exc:
        if getattr(exc, "errno", None) == errno.ENOSPC or _disk_full(path.parent):
            raise NoSpace(path.parent) from exc
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_audio(path: str | os.PathLike, chunks: Iterable[np.ndarray], sample_rate: int,
                tags: dict | Callable[[], dict | None] | None = None) -> Path:
    """Stream (n, 2) float32 chunks into WAV (16-bit), FLAC (16-bit) or MP3 (VBR V2). `tags` may be a function,
    asked once the last chunk is written (BackgroundWriter: the track's metadata is complete only then)."""
    from pedalboard.io import AudioFile

    path = check_output_path(path)
    ext = path.suffix.lower()
    if ext not in AUDIO_EXTENSIONS:
        raise ValueError(f"{path.name} is not an audio file name ({', '.join(AUDIO_EXTENSIONS)})")
    kwargs = {"quality": "V2"} if ext == ".mp3" else {"bit_depth": 16}
    with atomic_path(path) as tmp:
        with AudioFile(str(tmp), "w", samplerate=sample_rate, num_channels=2, **kwargs) as f:
            for chunk in chunks:           # a whole track may come as one chunk (BackgroundWriter): sliced here
                for a in range(0, len(chunk), WRITE_FRAMES):
                    f.write(np.ascontiguousarray(np.clip(chunk[a:a + WRITE_FRAMES], -1.0, 1.0).T, dtype=np.float32))
        tags = tags() if callable(tags) else tags
        if tags:
            _tag(tmp, tags)
    return path


class BackgroundWriter:
    """write_audio on a thread of its own, fed chunk by chunk while the track is still being made: the encoders
    let go of the GIL, so a long track's FLAC is encoded beside its making instead of after it. Atomic as
    write_audio: nothing is at `path` until finish(); abort() (or an error) leaves nothing behind."""

    DEPTH = 4          # chunks waiting for the encoder at most (a few seconds of audio each)

    def __init__(self, path: str | os.PathLike, sample_rate: int):
        self.path = check_output_path(path, AUDIO_EXTENSIONS)     # a bad name fails here, before any work
        self._box: queue.Queue = queue.Queue(maxsize=self.DEPTH)
        self._tags: dict | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(sample_rate,), name="text2lofi-encode", daemon=True)
        self._thread.start()

    def _run(self, sample_rate: int) -> None:
        try:
            write_audio(self.path, self._chunks(), sample_rate, tags=lambda: self._tags)
        except BaseException as exc:                  # handed to the caller by put() or finish()
            self._error = exc

    def _chunks(self) -> Iterator[np.ndarray]:
        while True:
            item = self._box.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _send(self, item) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._box.put(item, timeout=0.1)
                return
            except queue.Full:
                if not self._thread.is_alive():                  # it stopped without a word: never wait forever
                    raise self._error or RuntimeError(f"the writer of {self.path.name} stopped")

    def put(self, chunk: np.ndarray) -> None:
        """Queue (n, 2) float32 for the file; the writer reads it later, so the caller must not change it."""
        self._send(chunk)

    def finish(self, tags: dict | None = None) -> Path:
        """Write the rest, tag the file with `tags` and move it into place; raises what went wrong there."""
        self._tags = tags
        self._send(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.path

    def abort(self) -> None:
        """Stop and leave nothing behind (the temporary file is removed)."""
        if self._thread.is_alive():
            with contextlib.suppress(BaseException):
                self._send(_Aborted())
        self._thread.join()


class _Aborted(Exception):
    pass


def _tag(path: Path, meta: dict) -> None:
    """Conditions, seed and model versions into the file's own tags where the format has them."""
    comment = json.dumps({k: meta.get(k) for k in ("seed", "models", "conditions", "prompt")}, default=str)
    title = (meta.get("prompt") or "text2lofi track")[:200]
    ext = path.suffix.lower()
    if ext == ".flac":
        from mutagen.flac import FLAC
        f = FLAC(path)
        f["TITLE"], f["COMMENT"], f["ENCODER"] = title, comment, "text2lofi"
        f.save()
    elif ext == ".mp3":
        from mutagen.id3 import COMM, ID3, TIT2, TSSE, ID3NoHeaderError
        try:
            f = ID3(path)
        except ID3NoHeaderError:
            f = ID3()
        f.add(TIT2(encoding=3, text=title))
        f.add(COMM(encoding=3, lang="eng", desc="text2lofi", text=comment))
        f.add(TSSE(encoding=3, text="text2lofi"))
        f.save(path)
    # WAV: the metadata lives in the .json sidecar (RIFF INFO has no room for structured data).


def write_midi(pm: pretty_midi.PrettyMIDI, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        pm.write(str(tmp))
    return path


def write_json(path: str | os.PathLike, data: dict) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str))
    return path

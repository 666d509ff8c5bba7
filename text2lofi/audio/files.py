"""Writing tracks to disk: WAV/FLAC/MP3 in chunks (flat memory), MIDI, JSON; every write is atomic.

A temporary file in the destination folder is renamed over the target only when complete, so a failed or
interrupted run (Ctrl-C included) never leaves a half-written file behind.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pretty_midi

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3")
MIDI_EXTENSIONS = (".mid", ".midi")
TMP_MARK = ".tmp-"          # a file being written is named .<stem>.tmp-<pid><suffix> until it is complete


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
                tags: dict | None = None) -> Path:
    """Stream (n, 2) float32 chunks into WAV (16-bit), FLAC (16-bit) or MP3 (VBR V2)."""
    from pedalboard.io import AudioFile

    path = check_output_path(path)
    ext = path.suffix.lower()
    if ext not in AUDIO_EXTENSIONS:
        raise ValueError(f"{path.name} is not an audio file name ({', '.join(AUDIO_EXTENSIONS)})")
    kwargs = {"quality": "V2"} if ext == ".mp3" else {"bit_depth": 16}
    with atomic_path(path) as tmp:
        with AudioFile(str(tmp), "w", samplerate=sample_rate, num_channels=2, **kwargs) as f:
            for chunk in chunks:
                f.write(np.ascontiguousarray(np.clip(chunk, -1.0, 1.0).T, dtype=np.float32))
        if tags:
            _tag(tmp, tags)
    return path


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

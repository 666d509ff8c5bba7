"""Music onto a video with ffmpeg: read the video's length, then put a track under it with the picture copied
as it is (never re-encoded). The system's ffmpeg/ffprobe do the work (scripts/setup.sh installs them).

    info = probe("cut.mp4")                  # -> VideoInfo(duration_s, has_audio, ...) or ValueError naming the file
    mux(info, "music.wav", "scored.mp4", level_db=-12.0, keep_audio=True)
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from text2lofi.audio.files import atomic_path

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".m4v")
# The audio codec each container gets (the picture is copied whatever it is).
AUDIO_CODEC = {".webm": ["-c:a", "libopus", "-b:a", "160k"]}
DEFAULT_AUDIO_CODEC = ["-c:a", "aac", "-b:a", "192k"]


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    duration_s: float
    has_audio: bool
    video_codec: str


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed (scripts/setup.sh installs ffmpeg, which brings it)")
    return found


def probe(path: str | os.PathLike) -> VideoInfo:
    """The video's duration and streams. ValueError naming the file if it is missing, not a video ffmpeg can
    read, has no picture, or no duration."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"video {path} does not exist")
    r = subprocess.run([_tool("ffprobe"), "-v", "error", "-show_entries",
                        "format=duration:stream=codec_type,codec_name,duration", "-of", "json", str(path)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise ValueError(f"video {path.name} is not a file ffmpeg can read as video "
                         f"({r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'ffprobe failed'})")
    info = json.loads(r.stdout or "{}")
    streams = info.get("streams", [])
    video = [s for s in streams if s.get("codec_type") == "video"]
    if not video:
        raise ValueError(f"video {path.name} has no video stream")
    try:
        duration = float(info.get("format", {}).get("duration") or video[0].get("duration"))
    except (TypeError, ValueError):
        raise ValueError(f"video {path.name} has no duration (a still image or a live stream?)") from None
    if not duration > 0:
        raise ValueError(f"video {path.name} has no duration")
    return VideoInfo(path, duration, any(s.get("codec_type") == "audio" for s in streams),
                     video[0].get("codec_name", "?"))


def mux(info: VideoInfo, music: str | os.PathLike, out: str | os.PathLike, level_db: float = 0.0,
        keep_audio: bool = True) -> Path:
    """The probed video's picture copied, with `music` (a WAV as long as the video) as its sound at level_db;
    with keep_audio and a video that has sound, the music is mixed under that sound instead. Written atomically:
    on any failure nothing is left at `out`."""
    out = Path(out)
    if out.suffix.lower() not in VIDEO_EXTENSIONS:
        raise ValueError(f"output must end in one of {', '.join(VIDEO_EXTENSIONS)}, got {out.name}")
    cmd = [_tool("ffmpeg"), "-v", "error", "-nostdin", "-y", "-i", str(info.path), "-i", str(music)]
    if keep_audio and info.has_audio:
        cmd += ["-filter_complex", f"[1:a]volume={level_db}dB[m];[0:a][m]amix=inputs=2:duration=first:"
                                   f"normalize=0[a]", "-map", "0:v", "-map", "[a]"]
    else:
        cmd += ["-filter_complex", f"[1:a]volume={level_db}dB[a]", "-map", "0:v", "-map", "[a]"]
    cmd += ["-c:v", "copy", *AUDIO_CODEC.get(out.suffix.lower(), DEFAULT_AUDIO_CODEC), "-t", f"{info.duration_s}"]
    with atomic_path(out) as tmp:
        r = subprocess.run(cmd + [str(tmp)], capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            message = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "ffmpeg failed"
            if "No space left" in r.stderr:
                message = f"no space left on {out.parent}"
            raise ValueError(f"could not write {out.name}: {message}")
    return out

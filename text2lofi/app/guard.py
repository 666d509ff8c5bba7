"""What the server keeps in front of the studio: per-client limits, signed identities and bounded disk.

No web framework here: `app.web` asks these objects before it queues work, and the tests drive them directly.

    limits = Limits(starts_per_minute=30)
    starts = RateWindow(limits.starts_per_minute, 60.0)
    wait = starts.take("203.0.113.7")         # 0.0: go; else seconds until this client may start another
    ids = Identity(Path("out"))               # the secret lives in out/identity.key, so tokens outlive a restart
    token = ids.issue()                       # 'web-<uuid>.<signature>': kept by the browser
    ids.rater(token)                          # 'web-<uuid>', or None for a token this server did not sign
    sweep(Path("out"), Retention())           # old generations and stray temporary files removed
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import os
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from text2lofi.audio.files import TMP_MARK
from text2lofi.pipeline import RAW_PREFIX, RAW_SUFFIX


@dataclass(frozen=True)
class Limits:
    """Per-client limits (a client is its IP address; ratings and votes count per rater)."""
    starts_per_minute: int = 30       # generations (any kind) one client may start per minute
    streams_per_client: int = 2       # endless streams one client may hold at once
    ratings_per_minute: int = 600     # rating and vote writes per rater per minute (a person manages a few)
    admin_free_tries: int = 5         # wrong admin passwords before the client has to wait
    admin_backoff_s: float = 30.0     # the first wait; it doubles with every further wrong password
    admin_backoff_max_s: float = 3600.0


@dataclass(frozen=True)
class Retention:
    """How long outputs stay: a generation older than max_age_s goes, and the oldest go while the folder holds
    more than max_bytes (never one younger than min_age_s: it may be playing or still being written)."""
    max_age_s: float = 24 * 3600.0
    max_bytes: int = 2 * 1024**3
    min_age_s: float = 600.0
    export_age_s: float = 300.0       # an admin's CSV export is removed this soon after it was made
    every_s: float = 600.0            # how often the running server sweeps


class RateWindow:
    """At most `limit` events per `per_s` seconds per key, over a sliding window. Thread-safe."""

    def __init__(self, limit: int, per_s: float):
        self.limit, self.per_s = int(limit), float(per_s)
        self._seen: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Count one event for `key` if it is allowed: 0.0. Otherwise nothing is counted and the result is the
        seconds until the oldest event in the window leaves it."""
        now = time.monotonic() if now is None else now
        with self._lock:
            seen = self._seen[key]
            while seen and seen[0] <= now - self.per_s:
                seen.popleft()
            if len(seen) >= self.limit:
                return max(seen[0] + self.per_s - now, 0.001)
            seen.append(now)
            if len(self._seen) > 10_000:          # forget idle keys so a crowd of addresses stays bounded
                for k in [k for k, q in self._seen.items() if not q]:
                    del self._seen[k]
            return 0.0


class Backoff:
    """Wrong admin passwords: after `free` failures a client waits `first_s`, doubling with each further failure
    (up to max_s); a right password clears it. Thread-safe."""

    def __init__(self, free: int, first_s: float, max_s: float):
        self.free, self.first_s, self.max_s = int(free), float(first_s), float(max_s)
        self._failures: dict[str, tuple[int, float]] = {}       # key -> (failures, monotonic time of the last)
        self._lock = threading.Lock()

    def wait(self, key: str, now: float | None = None) -> float:
        """Seconds this client must still wait before its next try (0.0: it may try now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            n, last = self._failures.get(key, (0, 0.0))
        if n < self.free:
            return 0.0
        return max(last + min(self.first_s * 2 ** (n - self.free), self.max_s) - now, 0.0)

    def failed(self, key: str, now: float | None = None) -> None:
        with self._lock:
            n, _ = self._failures.get(key, (0, 0.0))
            self._failures[key] = (n + 1, time.monotonic() if now is None else now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


class Identity:
    """Rater ids the server issues and signs (HMAC-SHA256 with a secret kept in `folder`/identity.key, mode 0600).
    A browser keeps its token; a token the server did not sign is never taken as anyone's id."""

    KEY_FILE = "identity.key"

    def __init__(self, folder: Path):
        path = Path(folder) / self.KEY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            self._secret = path.read_bytes()
        else:
            self._secret = secrets.token_bytes(32)
            with os.fdopen(fd, "wb") as f:
                f.write(self._secret)
        if len(self._secret) < 32:          # a truncated key (killed while writing): start over
            self._secret = secrets.token_bytes(32)
            path.write_bytes(self._secret)

    def _sign(self, rater: str) -> str:
        return hmac.new(self._secret, rater.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, kind: str = "web") -> str:
        rater = f"{kind}-{uuid.uuid4()}"
        return f"{rater}.{self._sign(rater)}"

    def rater(self, token) -> str | None:
        """The rater id a token carries if this server signed it, else None."""
        if not isinstance(token, str) or len(token) > 120 or token.count(".") != 1:
            return None
        rater, signature = token.split(".")
        return rater if hmac.compare_digest(signature, self._sign(rater)) else None

    def for_session(self, session_hash: str | None) -> str:
        """An API client's rater id: derived from its session by the server, never taken from what it sends."""
        return "api-" + self._sign(f"session:{session_hash}")


# ---- bounded disk ---------------------------------------------------------------------------------------------
KEEP = {Identity.KEY_FILE, "compare-pool"}      # never swept: the signing key, the blind-comparison clips
GRADIO_CACHE = "gradio"                         # Gradio's copies of served files (GRADIO_TEMP_DIR points here)
EXPORT_PREFIX = "export-"                       # the folder an admin's CSV export is written in
OLD_RUN_PREFIX = "text2lofi-app-"               # earlier versions made a fresh temporary folder per start


def _size_and_mtime(path: Path) -> tuple[int, float]:
    if path.is_file():
        st = path.stat()
        return st.st_size, st.st_mtime
    size, mtime = 0, path.stat().st_mtime
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            size, mtime = size + st.st_size, max(mtime, st.st_mtime)
    return size, mtime


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:             # someone else's live process
        return True
    return True


def stray_temporaries(folder: Path) -> list[Path]:
    """Files whose writer is gone (killed with -9, or the machine lost power): half-written outputs
    (`.<stem>.tmp-<pid><suffix>`, see audio.files.atomic_path) in `folder`, and long tracks' raw samples
    (`text2lofi-<pid>-*.f32`, see pipeline) in the system's temp folder."""
    found = [(p, p.name.split(TMP_MARK, 1)[1].split(".")[0]) for p in Path(folder).rglob(f".*{TMP_MARK}*")]
    found += [(p, p.name[len(RAW_PREFIX):].split("-")[0])
              for p in Path(tempfile.gettempdir()).glob(f"{RAW_PREFIX}*{RAW_SUFFIX}")]
    return [p for p, pid in found if pid.isdigit() and not _running(int(pid))]


def sweep(folder: Path, retention: Retention, now: float | None = None, start: bool = False) -> dict:
    """Apply the retention policy to `folder` (each generation folder, and each file Gradio cached, is one unit);
    at start also remove stray temporary files and the folders earlier runs left in the system's temp folder.
    Returns {"removed": n, "bytes": freed, "kept_bytes": what stays}."""
    folder, now = Path(folder), time.time() if now is None else now
    removed = freed = 0
    if start:
        for p in stray_temporaries(folder):
            freed += p.stat().st_size
            _remove(p)
            removed += 1
            if p.parent != folder and not any(p.parent.iterdir()):
                p.parent.rmdir()          # a generation's folder that held only the half-written file
        for p in Path(tempfile.gettempdir()).glob(OLD_RUN_PREFIX + "*"):
            if p.is_dir() and p.resolve() != folder.resolve() and now - p.stat().st_mtime > retention.min_age_s:
                freed += _size_and_mtime(p)[0]
                _remove(p)
                removed += 1
    cache = folder / GRADIO_CACHE
    units = [p for p in folder.iterdir() if p.name not in KEEP and p != cache] if folder.is_dir() else []
    units += [p for p in cache.iterdir()] if cache.is_dir() else []
    aged = []
    for p in units:
        try:
            size, mtime = _size_and_mtime(p)
        except FileNotFoundError:                 # removed by someone else meanwhile
            continue
        age = now - mtime
        csv_export = p.name.startswith(EXPORT_PREFIX) or (p.parent == cache and any(
            f.suffix == ".csv" for f in p.rglob("*")))
        if age > retention.max_age_s or (csv_export and age > retention.export_age_s):
            _remove(p)
            removed, freed = removed + 1, freed + size
        else:
            aged.append((mtime, size, p))
    total = sum(size for _, size, _ in aged)
    for mtime, size, p in sorted(aged):                                       # oldest first
        if total <= retention.max_bytes:
            break
        if now - mtime < retention.min_age_s:
            continue
        _remove(p)
        removed, freed, total = removed + 1, freed + size, total - size
    return {"removed": removed, "bytes": freed, "kept_bytes": total}


class Sweeper:
    """Runs `sweep` at start and then every retention.every_s seconds on a daemon thread."""

    def __init__(self, folder: Path, retention: Retention):
        self.folder, self.retention = Path(folder), retention
        self.last = sweep(self.folder, retention, start=True)
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="text2lofi-sweeper", daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(self.retention.every_s):
            try:
                self.last = sweep(self.folder, self.retention)
            except OSError:           # a folder vanishing under the walk: the next sweep sees the rest
                continue

    def stop(self) -> None:
        self._stop.set()

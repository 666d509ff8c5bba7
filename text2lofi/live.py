"""Listen forever, steered while it plays: endless mastered audio whose conditions change at the next bar line.

    s = stream("rainy night study beats")
    for chunk in s:                 # (n, 2) float32 at 44.1 kHz, about one bar each (or chunk_s seconds)
        play(chunk)
        ...
        s.steer("slower, drop the rain")   # from any thread; returns the new Conditions
        s.playing                          # the conditions of the audio last handed out

How a change lands (one *segment* of the stream per set of conditions):
- At the next bar line after steer(). A change of tempo, key, mode, parts, energy, swing, mood or chords starts a
  new Composer there on a new bar grid (the tempo steps at the bar line); a key change first plays the pivot chords
  of `compose.arrangement.pivot_chords` (a chord of both keys, then the new dominant). Parts play from that
  downbeat on (no intro). A change of textures or lo-fi amount keeps the composer, so the music goes on note for
  note; a change of textures alone keeps the mixer too and only cross-fades the texture beds.
- The old mixer is not cut: its held notes, effect tails and textures fade out over one bar while the new
  mixer's textures fade in over the same bar (a cross-fade), so there is no gap and no click.
- Stem gains carry over from segment to segment and one streaming master runs from start to end (its gain fixed
  on the first seconds), so the loudness is held; a part that enters later is levelled on its first bar.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np

from text2lofi.compose.arrangement import pivot_chords
from text2lofi.conditions import SAMPLE_RATE, Conditions
from text2lofi.pipeline import master_stream, resolve

if TYPE_CHECKING:        # imported where used, as in pipeline: the app imports this module at its start
    from text2lofi.audio.mix import Mixer
    from text2lofi.compose.composer import ComposedBar, Composer

# Fields that only the mixer reads: changing them keeps the composer (and the notes) going.
MIX_ONLY = frozenset({"textures", "lofi_amount"})
# Fields that do not change what is heard in a stream (it has no length; warnings are notes).
IGNORED = frozenset({"duration_s", "warnings"})


@dataclass
class _Segment:
    c: Conditions
    composer: Composer
    mixer: Mixer
    bars: Iterator[ComposedBar]


class LiveStream:
    """An iterator of mastered (n, 2) float32 chunks that can be steered while it plays. See the module doc."""

    def __init__(self, conditions: Conditions | str, chunk_s: float | None = None, max_s: float | None = None,
                 sample_rate: int = SAMPLE_RATE):
        c = resolve(conditions)
        self.sr = sample_rate
        self._chunk = None if chunk_s is None else max(1, int(round(chunk_s * sample_rate)))
        self._max = None if max_s is None else int(round(max_s * sample_rate))
        self._lock = threading.Lock()
        self._wanted = c                    # the latest conditions asked for; steer() edits these
        self._due: Conditions | None = None  # asked for, waiting for the next bar line
        self.changes: list[tuple[int, Conditions]] = [(0, c)]   # (sample where it is heard, conditions)
        self.handed_out = 0                 # samples handed to the listener so far
        self._chunks = self._reblocked()

    # ---- the listener's side ------------------------------------------------------------------------
    def __iter__(self) -> "LiveStream":
        return self

    def __next__(self) -> np.ndarray:
        chunk = next(self._chunks)
        self.handed_out += len(chunk)
        return chunk

    def close(self) -> None:
        """Stop making audio and give the synthesizers back (also done when the stream is garbage collected)."""
        self._chunks.close()

    @property
    def playing(self) -> Conditions:
        """The conditions of the audio last handed out."""
        with self._lock:
            heard = [c for start, c in self.changes if start < max(1, self.handed_out)]
        return heard[-1]

    def steer(self, text: str | Conditions) -> Conditions:
        """Change the stream from the next bar line: text is an edit of the conditions last asked for ("slower",
        "drop the rain", "in D minor"), Conditions replace them. Returns the conditions that will play."""
        if isinstance(text, str) and not text.strip():
            raise ValueError("text is empty: say what to change, e.g. 'slower' or 'add rain'")
        with self._lock:
            base = self._wanted
        new = resolve(text, previous=base) if isinstance(text, str) else resolve(text)
        new = new.replace(duration_s=base.duration_s)
        with self._lock:
            self._wanted = self._due = new
        return new

    # ---- making the audio ---------------------------------------------------------------------------
    def _segment(self, c: Conditions, origin: int, before: _Segment | None) -> _Segment:
        """The composer and mixer for conditions c from sample `origin`; `before` is the segment it follows."""
        from text2lofi.audio.mix import Mixer
        from text2lofi.compose.composer import Composer
        if before is None:
            composer = Composer(c, sample_rate=self.sr)
            return _Segment(c, composer, Mixer(c, self.sr), composer.bars(None))
        changed = {k for k in c.__dataclass_fields__ if getattr(c, k) != getattr(before.c, k)} - IGNORED
        if changed <= {"textures"}:           # the same music, chain and synthesizers: only the beds cross-fade
            before.mixer.change_textures(c.textures, int(round(before.composer.grid.samples_per_bar)))
            return _Segment(c, before.composer, before.mixer, before.bars)
        mixer = Mixer(c, self.sr, gains=before.mixer.gains, measure_s=0.0, origin=origin)
        if changed <= MIX_ONLY:
            return _Segment(c, before.composer, mixer, before.bars)
        # A new seed per change: the same seed would replay the opening of the stream in the new setting.
        composer = Composer(c.replace(seed=c.seed + len(self.changes)), sample_rate=self.sr, origin=origin,
                            intro=False, lead_in=pivot_chords(before.c, c))
        return _Segment(c, composer, mixer, composer.bars(None))

    def _music(self) -> Iterator[np.ndarray]:
        """Pre-master mix, bar by bar (the first bars held until the opening stems are levelled)."""
        seg = self._segment(self._wanted, 0, None)
        fading: list[list] = []             # [mixer, samples left, fade length] of segments being let go
        pending: list[tuple[dict[str, np.ndarray], int]] = []
        try:
            while True:
                with self._lock:
                    due, self._due = (self._due, None) if not pending else (None, self._due)
                if due is not None:
                    origin = seg.composer.grid.bar_start(len(seg.composer.chords))
                    old, seg = seg, self._segment(due, origin, seg)
                    if old.mixer is not seg.mixer:
                        n_fade = int(round(old.composer.grid.samples_per_bar))
                        fading.append([old.mixer, n_fade, n_fade])
                        seg.mixer.fade_in_textures(n_fade)
                    with self._lock:
                        self.changes.append((origin, seg.c))
                bar = next(seg.bars)
                n = bar.end_sample - bar.start_sample
                stems = seg.mixer.stems({"piano": bar.piano, "drums": bar.drums, "bass": bar.bass}, n)
                seg.mixer.observe(stems, last=False)
                pending.append((stems, n))
                if not seg.mixer.ready():
                    continue
                total = sum(p[1] for p in pending)
                joined = {k: np.concatenate([p[0][k] for p in pending]) for k in stems}
                pending = []
                mix, _ = seg.mixer.mix(joined, total)
                for f in fading:
                    mix += self._tail(f, total)
                    if f[1] == 0:
                        f[0].close()
                fading = [f for f in fading if f[1] > 0]
                yield mix
        finally:
            seg.mixer.close()
            for f in fading:
                f[0].close()

    @staticmethod
    def _tail(f: list, n: int) -> np.ndarray:
        """n samples of a let-go mixer (its notes ringing out, its chain and textures) under a falling cosine."""
        mixer, left, length = f
        out, _ = mixer.mix(mixer.stems({}, n), n)
        k = np.arange(length - left, length - left + n, dtype=np.float64) / length
        out *= (np.cos(np.clip(k, 0.0, 1.0) * np.pi / 2) ** 2).astype(np.float32)[:, None]
        f[1] = max(0, left - n)
        return out

    def _reblocked(self) -> Iterator[np.ndarray]:
        """Mastered chunks (about a bar each, or chunk_s seconds); closing this closes the music under it, so the
        synthesizers go back to the pool at once."""
        with contextlib.closing(master_stream(self._music(), self._max, self.sr)) as chunks:
            if self._chunk is None:
                yield from chunks
                return
            buf, held = [], 0
            for ch in chunks:
                buf.append(ch)
                held += len(ch)
                while held >= self._chunk:
                    joined = np.concatenate(buf)
                    yield joined[:self._chunk]
                    buf, held = [joined[self._chunk:]], held - self._chunk
            if held:
                yield np.concatenate(buf)


def stream(conditions: Conditions | str, chunk_s: float | None = None, max_s: float | None = None,
           sample_rate: int = SAMPLE_RATE) -> LiveStream:
    """Endless mastered audio for 'listen forever' that `steer(text)` changes at the next bar line: iterate it for
    (n, 2) float32 chunks of about one bar each (or chunk_s seconds). Stops after max_s seconds if given, with
    the track's FADE_OUT_S fade."""
    return LiveStream(conditions, chunk_s, max_s, sample_rate)


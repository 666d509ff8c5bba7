"""Stems -> one balanced, lo-fi mix, chunk by chunk: the synthesizers, the gain of each stem, the effects chain and
the texture bed of one track. The pipeline feeds it bars; everything here carries its state across chunks."""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numpy as np

from text2lofi.audio.effects import LofiChain
from text2lofi.audio.render import PartSynth, SynthPool, balance_gains, piano_program_for
from text2lofi.audio.textures import TextureBed
from text2lofi.conditions import BASS_PROGRAM, Conditions, NoteEvent

# Seconds of SOUNDING audio per stem measured for its gain (then fixed). Bars wait for it, so it bounds the first
# sound of a stream or a preview: at 16 s the first chunk waited for about 28 s of music when the drums entered after
# a piano intro (stream() first sound 1.8-3.1 s); at 8 s, 0.6-1.8 s. Gains measured on 8 s were within 0.8 dB
# of those on 16 s for six prompts (benchmarks/RESULTS.md, "Speed (issue 15)").
MEASURE_S = 8.0

_POOLS: dict[int, SynthPool] = {}
_POOLS_LOCK = threading.Lock()


def synth_pool(sample_rate: int) -> SynthPool:
    """One pool per sample rate for the process: concurrent generations each take their own synthesizers."""
    with _POOLS_LOCK:
        if sample_rate not in _POOLS:
            _POOLS[sample_rate] = SynthPool(sample_rate)
        return _POOLS[sample_rate]


@dataclass
class _FadingBed:
    """A texture bed under an equal-power gain ramp from `start` to `end` over `length` samples (`done` so far)."""
    bed: TextureBed
    start: float = 1.0
    end: float = 1.0
    length: int = 1
    done: int = 1

    def ramp(self, start: float, end: float, n: int) -> None:
        self.start, self.end, self.length, self.done = start, end, max(1, n), 0

    def gain_now(self) -> float:
        t = min(self.done / self.length, 1.0)
        return float(np.sqrt(self.start ** 2 + (self.end ** 2 - self.start ** 2) * t))

    @property
    def gone(self) -> bool:
        """Faded out completely: the mixer drops it."""
        return self.end <= 0 and self.done >= self.length

    def steady(self) -> bool:
        """At full level from now on (no ramp left)."""
        return self.done >= self.length and self.end == 1.0

    def render(self, n: int) -> np.ndarray:
        steady, audio, done = self.steady(), self.bed.render(n), self.done
        self.done += n
        if steady:
            return audio
        t = np.clip((done + np.arange(n)) / self.length, 0.0, 1.0)
        return audio * np.sqrt(self.start ** 2 + (self.end ** 2 - self.start ** 2) * t).astype(np.float32)[:, None]


class ChainStage:
    """The lo-fi chain run chunk by chunk as a track's mix needs it: each call gives exactly as many samples as it
    gets; the chain's delay (wow/flutter) is trimmed from the first chunks and, while being trimmed, the output is
    padded at its start (never shifting the bar grid); `final` flushes the delay line. A remix replays the same
    chunk lengths through it (pipeline.remix), so it meets the track as made sample for sample."""

    def __init__(self, chain: LofiChain):
        self.chain, self.latency, self._skip = chain, chain.latency, chain.latency

    def process(self, music: np.ndarray, final: bool = False) -> np.ndarray:
        n = len(music)
        if final:
            music = np.concatenate([music, np.zeros((self.latency, 2), np.float32)])
        out = self.chain.process(music, reset=False)
        if self._skip:
            cut = min(self._skip, len(out))
            out, self._skip = out[cut:], self._skip - cut
        out = out[:n]
        if len(out) < n:      # only while the delay is being trimmed: pad, never shift the grid
            out = np.concatenate([np.zeros((n - len(out), 2), np.float32), out])
        return out


class Mixer:
    """Bars -> stem chunks -> balanced mix -> lo-fi chain + textures. Holds pooled synthesizers until close().

    Each stem's gain is measured once, on its first MEASURE_S seconds from the bar where it starts to sound
    (drums that enter after a piano intro are measured where they play), then kept constant: no pumping."""

    def __init__(self, c: Conditions, sample_rate: int, gains: dict[str, float] | None = None,
                 measure_s: float | None = None, origin: int = 0, split_textures: bool = False):
        """gains: stems whose level is already known (a steered stream keeps its balance); measure_s: sounding
        seconds measured for the others (0: from the first chunk where a stem sounds, so nothing is held back);
        origin: the absolute sample the first chunk starts at (notes are placed in absolute samples);
        split_textures: mix() gives each texture as its own stem, by name, instead of one "textures" stem (the
        page's mixer sets each texture's level; a track's textures never fade, so the split is exact)."""
        self.c, self.sr, self.split_textures = c, sample_rate, split_textures
        self.measure_s = MEASURE_S if measure_s is None else measure_s
        self._held = contextlib.ExitStack()
        pool = synth_pool(sample_rate)
        self.synths: dict[str, PartSynth] = {}
        if c.piano:
            self.synths["piano"] = self._held.enter_context(pool.acquire("piano", piano_program_for(c.mood)))
        if c.drums:
            self.synths["drums"] = self._held.enter_context(pool.acquire("drums", 0))
        if c.bass:
            self.synths["bass"] = self._held.enter_context(pool.acquire("bass", BASS_PROGRAM))
        for synth in self.synths.values():
            synth.start_at(origin)
        self.chain = ChainStage(LofiChain(c.lofi_amount, sample_rate=sample_rate, seed=c.seed))
        # Texture beds sounding: one at full level, or old and new ones cross-fading after change_textures().
        self._beds = [_FadingBed(TextureBed(c.textures, sample_rate=sample_rate, seed=c.seed))] if c.textures else []
        self.gains = {k: v for k, v in (gains or {}).items() if k in self.synths}
        self._measuring: dict[str, list[np.ndarray]] = {}      # stem -> sounding audio not yet measured

    def stems(self, parts: dict[str, list[NoteEvent]], n: int) -> dict[str, np.ndarray]:
        """n samples of each sounding part (notes in absolute samples; a part not given plays nothing new)."""
        return {name: synth.render(parts.get(name, ()), n) for name, synth in self.synths.items()}

    def observe(self, stems: dict[str, np.ndarray], last: bool) -> None:
        """Feed rendered stems to the gain measurement; fixes a stem's gain once enough of it has sounded."""
        for name, audio in stems.items():
            if name in self.gains:
                continue
            buf = self._measuring.setdefault(name, [])
            if buf or np.abs(audio).max() > 1e-4:
                buf.append(audio)
            if buf and (sum(map(len, buf)) >= self.measure_s * self.sr or last):
                self.gains[name] = balance_gains({name: np.concatenate(buf)}, self.sr)[name]
                del self._measuring[name]

    def ready(self) -> bool:
        """True when every stem that has sounded so far has its gain (silent ones need none yet)."""
        return not self._measuring

    def mix(self, stems: dict[str, np.ndarray], n: int, final: bool = False
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """n samples of mixed music after the chain, plus textures, and the stems as balanced (with "textures").
        `final` flushes the chain's delay line so the last chunk is complete; the chain's delay is trimmed from
        the first chunks."""
        balanced = {k: v * np.float32(self.gains.get(k, 1.0)) for k, v in stems.items()}   # 1.0: silent so far
        music = np.zeros((n, 2), np.float32)
        for v in balanced.values():
            music[:n] += v
        out = self.chain.process(music, final)
        if self.split_textures and len(self._beds) == 1 and self._beds[0].steady():
            layers = self._beds[0].bed.render_layers(n)
            balanced |= layers
            out = out + sum(layers.values())
        elif self._beds:           # the texture bed is a stem too (after the chain: the chain never touches it)
            balanced["textures"] = sum(b.render(n) for b in self._beds)
            out = out + balanced["textures"]
        self._beds = [b for b in self._beds if not b.gone]
        return out.astype(np.float32, copy=False), balanced

    def fade_in_textures(self, n: int) -> None:
        """The texture beds rise from silence over the next n samples (a steered stream's new mixer)."""
        for b in self._beds:
            b.ramp(0.0, 1.0, n)

    def change_textures(self, textures: list[str], n: int) -> None:
        """Cross-fade over the next n samples from the textures sounding now to `textures` (music untouched)."""
        for b in self._beds:
            b.ramp(b.gain_now(), 0.0, n)
        if textures:
            self._beds.append(_FadingBed(TextureBed(textures, sample_rate=self.sr, seed=self.c.seed)))
            self._beds[-1].ramp(0.0, 1.0, n)

    def close(self) -> None:
        """Give the synthesizers back to the pool (reset there)."""
        self._held.close()

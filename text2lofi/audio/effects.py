"""The lo-fi effects chain and mastering, both streaming: audio in chunks, state carried across calls.

Audio convention: float32 numpy (n_samples, 2), 44.1 kHz. Every `process(chunk)` returns exactly as many
samples as it was given, so a track keeps its exact length however it is chunked. Stages with a delay
(wow/flutter's delay line, the limiter's look-ahead) shift the audio by a few milliseconds instead of
changing its length; `latency` says by how many samples.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from text2lofi.audio.loudness import CHUNKED_ABOVE, LoudnessMeter, integrated_loudness
from text2lofi.conditions import SAMPLE_RATE
from text2lofi.runtime import ahead

SLICE = 1 << 17          # frames processed at a time inside a call, so memory stays flat for huge chunks
CONTROL_STEP = 64        # samples between evaluations of slow modulations (wow/flutter delay)
TP_HALF = 4              # half-length of the true-peak interpolator, samples
TRUE_PEAK_MARGIN_DB = 0.3    # ceiling below the asked peak: room for what the 4x true-peak estimate misses


def _db_to_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


# ---- wow & flutter ---------------------------------------------------------------------------------------
class WowFlutter:
    """Tape-speed wobble: a delay line whose length is modulated slowly (wow) and fast (flutter).

    Pitch deviation = -d(delay)/dt, so a sine of amplitude A samples at f Hz bends pitch by 2*pi*f*A/sr.
    Rates and phases come from the seed; the modulation is a function of the absolute sample index, so
    chunking does not change it. Latency: the mean delay, a couple of milliseconds.
    """

    def __init__(self, wow_cents: float, flutter_cents: float, sample_rate: int = SAMPLE_RATE, seed: int = 0):
        rng = np.random.default_rng([seed, 0x77F])
        self.sample_rate = sample_rate
        # Two incommensurate slow sines make the wow irregular; flutter is one faster sine.
        self._rates = np.array([rng.uniform(0.35, 0.7), rng.uniform(0.9, 1.6), rng.uniform(5.0, 9.0)])  # Hz
        self._phases = rng.uniform(0, 2 * np.pi, 3)
        shares = np.array([0.7 * wow_cents, 0.3 * wow_cents, flutter_cents])
        ratio = 2.0 ** (shares / 1200.0) - 1.0                                  # pitch deviation per component
        self._amps = ratio * sample_rate / (2 * np.pi * self._rates)            # delay amplitudes, samples
        self.latency = int(math.ceil(self._amps.sum())) + 2                     # mean delay, samples
        self._history = self.latency + int(math.ceil(self._amps.sum())) + 2    # input frames kept between calls
        self.reset()

    def reset(self) -> None:
        self._past = np.zeros((2, self._history), np.float32)   # the input just before the current chunk
        self._pos = 0

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """(2, n) -> (2, n), channels first like pedalboard."""
        n = chunk.shape[1]
        buf = np.concatenate([self._past, chunk], axis=1)
        # The delay moves at under 10 Hz: evaluate it on a 64-sample grid and interpolate linearly.
        first, last = self._pos // CONTROL_STEP, (self._pos + n) // CONTROL_STEP + 1
        knots = np.arange(first, last + 1) * CONTROL_STEP                       # absolute sample index
        t = knots / self.sample_rate
        delay_knots = self.latency + (self._amps[:, None] * np.sin(
            2 * np.pi * self._rates[:, None] * t + self._phases[:, None])).sum(0)
        local = np.arange(n, dtype=np.float64)
        delay = np.interp(local, knots - self._pos, delay_knots)
        read = local + (self._history - delay)                                 # fractional index into buf
        i = read.astype(np.int64)                                              # read > 0: floor
        frac = (read - i).astype(np.float32)
        before = np.take(buf, i, axis=1)          # np.take: much faster than fancy indexing here
        out = before + (np.take(buf, i + 1, axis=1) - before) * frac
        self._past = buf[:, buf.shape[1] - self._history:].copy()
        self._pos += n
        return out


class SampleHold:
    """Sample-rate reduction that keeps the rate: each input sample taken at `rate_hz` is held until the next.

    The aliasing and stair-steps are the sound of old samplers. Hold points are exact integer functions of the
    absolute sample index, so chunking does not change the output. (pedalboard's Resample does the same with
    ZeroOrderHold quality, but with reset=False it returns chunks of varying length for non-integer ratios.)
    """

    def __init__(self, rate_hz: int, sample_rate: int = SAMPLE_RATE):
        self.rate_hz, self.sample_rate = int(rate_hz), int(sample_rate)
        self._keep = -(-self.sample_rate // self.rate_hz) + 1     # input frames a hold can reach back
        self.reset()

    def reset(self) -> None:
        self._past = np.zeros((2, self._keep), np.float32)
        self._pos = 0

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """(2, n) -> (2, n), channels first like pedalboard."""
        n = chunk.shape[1]
        absolute = self._pos + np.arange(n, dtype=np.int64)
        tick = absolute * self.rate_hz // self.sample_rate                 # hold period each sample is in
        held = -((-tick * self.sample_rate) // self.rate_hz)               # first input sample of that period
        buf = np.concatenate([self._past, chunk], axis=1)
        out = np.take(buf, held - self._pos + self._keep, axis=1)
        self._past = buf[:, buf.shape[1] - self._keep:].copy()
        self._pos += n
        return out


# ---- the lo-fi chain -------------------------------------------------------------------------------------
@dataclass
class LofiParams:
    """Every knob of the chain, derived from one lofi_amount in 0..1 by `from_amount`."""
    highpass_hz: float
    drive_db: float
    comp_threshold_db: float
    comp_ratio: float
    wow_cents: float
    flutter_cents: float
    reduced_rate_hz: float       # sample-and-hold rate of the sample-rate reduction
    bit_depth: float
    lowpass_hz: float
    reverb_room: float
    reverb_wet: float
    limiter_threshold_db: float

    @classmethod
    def from_amount(cls, amount: float) -> "LofiParams":
        a = min(max(float(amount), 0.0), 1.0)
        return cls(
            highpass_hz=30.0 + 90.0 * a,                 # thin the low end a little more as it gets grittier
            drive_db=2.0 + 8.0 * a,                      # tanh saturation
            comp_threshold_db=-22.0 - 4.0 * a,
            comp_ratio=1.8 + 1.7 * a,                    # gentle: under 4:1 at most
            wow_cents=3.0 + 15.0 * a,
            flutter_cents=0.5 + 2.5 * a,
            reduced_rate_hz=SAMPLE_RATE if a < 0.05 else round(36000.0 - 24000.0 * a),   # 12 kHz at the top
            bit_depth=16.0 - 6.0 * a,                    # 10 bits at the top
            lowpass_hz=16000.0 * (3500.0 / 16000.0) ** a,  # 16 kHz -> 3.5 kHz, geometric
            reverb_room=0.3 + 0.35 * a,
            reverb_wet=0.10 + 0.14 * a,
            limiter_threshold_db=-2.0,
        )


def build_plugins(params: LofiParams, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> list:
    """The chain as data: pedalboard plugins (and our WowFlutter) in processing order."""
    import pedalboard as pb

    plugins = [
        pb.HighpassFilter(cutoff_frequency_hz=params.highpass_hz),
        pb.Distortion(drive_db=params.drive_db),
        pb.Compressor(threshold_db=params.comp_threshold_db, ratio=params.comp_ratio,
                      attack_ms=15.0, release_ms=150.0),
        WowFlutter(params.wow_cents, params.flutter_cents, sample_rate, seed),
    ]
    if params.reduced_rate_hz < sample_rate:
        # Band-limit first so the hold aliases gently, then the main low-pass smooths the steps.
        plugins += [pb.LowpassFilter(cutoff_frequency_hz=min(params.lowpass_hz, 0.45 * params.reduced_rate_hz)),
                    SampleHold(int(params.reduced_rate_hz), sample_rate)]
    plugins += [
        pb.Bitcrush(bit_depth=params.bit_depth),
        pb.LowpassFilter(cutoff_frequency_hz=params.lowpass_hz),
        pb.Reverb(room_size=params.reverb_room, damping=0.6, wet_level=params.reverb_wet, dry_level=0.9,
                  width=0.9),
        pb.Limiter(threshold_db=params.limiter_threshold_db, release_ms=120.0),
    ]
    return plugins


class LofiChain:
    """The lo-fi chain for one lofi_amount: HPF, saturation, compression, wow/flutter, sample-rate and
    bit reduction, LPF, reverb, limiter. `process` streams; `reset=True` starts a new stream."""

    def __init__(self, lofi_amount: float, sample_rate: int = SAMPLE_RATE, seed: int = 0):
        import pedalboard as pb

        self.sample_rate = sample_rate
        self.params = LofiParams.from_amount(lofi_amount)
        self.plugins = build_plugins(self.params, sample_rate, seed)
        # Consecutive pedalboard plugins run as one Pedalboard; our own stages run between them.
        self._stages: list = []
        for plugin in self.plugins:
            if isinstance(plugin, (WowFlutter, SampleHold)):
                self._stages.append(plugin)
            elif self._stages and isinstance(self._stages[-1], pb.Pedalboard):
                self._stages[-1].append(plugin)
            else:
                self._stages.append(pb.Pedalboard([plugin]))
        self.latency = sum(s.latency for s in self._stages if isinstance(s, WowFlutter))   # samples

    def reset(self) -> None:
        for stage in self._stages:
            stage.reset()

    def process(self, chunk: np.ndarray, reset: bool = False) -> np.ndarray:
        """(n, 2) float32 -> (n, 2) float32, continuing the stream unless reset."""
        if reset:
            self.reset()
        chunk = np.asarray(chunk, np.float32)
        out = np.empty_like(chunk)
        for a in range(0, len(chunk), SLICE):
            x = np.ascontiguousarray(chunk[a:a + SLICE].T)       # every stage works on (channels, samples)
            for stage in self._stages:
                if isinstance(stage, (WowFlutter, SampleHold)):
                    x = stage.process(x)
                else:
                    x = stage(x, self.sample_rate, reset=False)
            out[a:a + SLICE] = x.T
        return out


# ---- mastering ---------------------------------------------------------------------------------------------
class PeakLimiter:
    """Look-ahead brick-wall limiter with a (close to) true-peak detector, streaming, fixed latency.

    Gains live on a grid of `block`-sample knots, linearly interpolated between them. A knot's gain is at
    most the required gain of both blocks it touches, so no sample, nor the quarter-sample points between
    samples (8-tap windowed-sinc interpolation, i.e. a 4x oversampled true-peak estimate), exceeds the
    ceiling; reductions recover exponentially with `release_s`. The
    recurrence D_k = max(d_k, a * D_{k-1}) on the reduction D = 1 - G is a running max in the log domain,
    so it is vectorised. Output is the input delayed by `latency` = 3 blocks (2.2 ms at 44.1 kHz).
    """

    def __init__(self, ceiling: float, sample_rate: int = SAMPLE_RATE, release_s: float = 0.1, block: int = 32):
        self.ceiling, self.block = float(ceiling), int(block)
        self.latency = 3 * self.block
        # Windowed-sinc taps for the points 1/4, 1/2, 3/4 between sample n and n+1, from n-3..n+4.
        offsets = np.arange(-TP_HALF + 1, TP_HALF + 1)[None, :] - np.array([0.25, 0.5, 0.75])[:, None]
        taps = np.sinc(offsets) * (0.5 + 0.5 * np.cos(np.pi * offsets / TP_HALF))
        self._tp_taps = (taps / taps.sum(axis=1, keepdims=True)).astype(np.float32)   # (3 phases, 8 taps)
        self._log_decay = -self.block / (release_s * sample_rate)    # log(a) per block
        self.reset()

    def reset(self) -> None:
        # Delayed input from TP_HALF samples before the next unprocessed block (zeros before the stream
        # starts, then the look-ahead's zeros): those samples feed the inter-sample interpolator.
        self._pending = np.zeros((TP_HALF + self.latency, 2), np.float32)
        self._r_prev, self._log_d_prev = 1.0, -np.inf    # required gain / log reduction at the last knot
        self._ready = np.zeros((0, 2), np.float32)       # limited output not yet handed out

    def _run_blocks(self) -> None:
        B, H, x = self.block, TP_HALF, self._pending
        n_blocks = (len(x) - 2 * H) // B - 1  # blocks to emit: their own and the next block's peaks are known
        if n_blocks <= 0:
            return
        m = (n_blocks + 1) * B                # samples whose peak is measured
        level = np.abs(x[H:H + m]).max(axis=1)                               # linked stereo
        for phase in self._tp_taps:        # value between n and n+1 = sum_u phase[u] * x[n - H + 1 + u]
            for ch in range(2):
                between = np.convolve(x[1:m + 2 * H, ch], phase[::-1], mode="valid")
                np.maximum(level, np.abs(between), out=level)
        peak = level.reshape(n_blocks + 1, B).max(axis=1)
        with np.errstate(divide="ignore"):
            r = np.minimum(1.0, self.ceiling / peak)                         # required gain per block
            q = np.minimum(np.concatenate([[self._r_prev], r[:-1]]), r)      # knot k touches blocks k-1, k
            log_d = np.log1p(-q)                                             # log of required reduction
        k = np.arange(len(q))
        log_reduction = np.maximum(self._log_d_prev + (k + 1) * self._log_decay,
                                   np.maximum.accumulate(log_d - k * self._log_decay) + k * self._log_decay)
        knots = 1.0 - np.exp(log_reduction)
        ramp = np.arange(B) / B
        gains = (knots[:-1, None] + (knots[1:] - knots[:-1])[:, None] * ramp).reshape(-1, 1)
        limited = (x[H:H + n_blocks * B] * gains).astype(np.float32)
        self._ready = np.concatenate([self._ready, limited])
        # The last knot is recomputed next time from the state at the one before it.
        self._r_prev, self._log_d_prev = float(r[n_blocks - 1]), float(log_reduction[n_blocks - 1])
        self._pending = x[n_blocks * B:]

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """(n, 2) -> (n, 2): the input delayed by `latency`, limited."""
        n = len(chunk)
        out, done = np.empty((n, 2), np.float32), 0        # filled in place: no list of parts to join
        for a in range(0, n, SLICE):
            self._pending = np.concatenate([self._pending, np.asarray(chunk[a:a + SLICE], np.float32)])
            self._run_blocks()
            take = min(len(self._ready), n - done)
            out[done:done + take] = self._ready[:take]
            done += take
            self._ready = self._ready[take:]
        assert done == n, "look-ahead longer than the latency"   # guaranteed by latency = 3 blocks
        return out


class Master:
    """Streaming master: one constant gain to `target_lufs`, then the look-ahead limiter at `peak_dbfs`.

    The gain comes from `calibrate(audio)` (all of the audio given), or, if that was not called, from the
    first `analysis_s` seconds of the first chunk. Calibration runs the limiter on the excerpt and corrects
    for the loudness it takes away. Output is delayed by `latency` samples (the limiter's look-ahead).
    """

    def __init__(self, target_lufs: float = -14.0, peak_dbfs: float = -1.0, sample_rate: int = SAMPLE_RATE,
                 analysis_s: float = 30.0):
        self.target_lufs, self.peak_dbfs, self.sample_rate = target_lufs, peak_dbfs, sample_rate
        self.analysis_s = analysis_s
        self.ceiling = _db_to_gain(peak_dbfs - TRUE_PEAK_MARGIN_DB)
        self.limiter = PeakLimiter(self.ceiling, sample_rate)
        self.latency = self.limiter.latency
        self.gain: float | None = None

    def calibrate(self, audio: np.ndarray, tolerance_lu: float = 0.1, max_trials: int = 4) -> float:
        """Set and return the linear gain that brings `audio`, once limited, to the target loudness."""
        self.gain, _ = self._fit_gain(audio, tolerance_lu, max_trials)
        return self.gain

    def _fit_gain(self, audio: np.ndarray, tolerance_lu: float, max_trials: int,
                  loudness: float | None = None) -> tuple[float, np.ndarray]:
        """Search the gain (secant steps in dB) whose limited output measures target_lufs. `loudness`: the
        audio's integrated loudness when already measured (loudness.LoudnessMeter while it was made).

        Returns the gain and the limited audio at that gain (aligned, same length as `audio`).
        """
        loudness = integrated_loudness(audio, self.sample_rate) if loudness is None else loudness
        if not np.isfinite(loudness):
            return 1.0, np.asarray(audio, np.float32).copy()
        gain_db, previous = self.target_lufs - loudness, None
        for _ in range(max_trials):
            trial = None                                    # the last trial's output goes before the next is made
            trial, lufs = self._limited_measured(audio, np.float32(_db_to_gain(gain_db)))
            error = self.target_lufs - lufs
            if abs(error) <= tolerance_lu:
                break
            # Secant on loudness(gain): limiting makes loudness grow slower than gain (slope 0.2..1).
            slope = 1.0
            if previous is not None and gain_db != previous[0]:
                slope = min(max((lufs - previous[1]) / (gain_db - previous[0]), 0.2), 1.0)
            previous = (gain_db, lufs)
            gain_db += min(max(error / slope, -12.0), 12.0)
        return _db_to_gain(gain_db), trial

    def _limited_measured(self, audio: np.ndarray, gain: np.float32) -> tuple[np.ndarray, float]:
        """_limited(audio, gain) and its integrated loudness. A long track is measured as it is limited, the
        limiter on a thread of its own (both release the GIL for most of their work): the same number,
        measured in pieces (loudness.LoudnessMeter), about 1.5x sooner than one after the other."""
        n = len(audio)
        if n <= CHUNKED_ABOVE:
            trial = self._limited(audio, gain)
            return trial, integrated_loudness(trial, self.sample_rate)
        out, meter = np.empty((n, 2), np.float32), LoudnessMeter(n, 2, self.sample_rate)
        with contextlib.closing(ahead(self._limit_into(audio, gain, out), 4, "text2lofi-limiter")) as done:
            for a, b in done:
                meter.feed(out[a:b])
        return out, meter.loudness()

    def _limited(self, audio: np.ndarray, gain: np.float32) -> np.ndarray:
        """audio * gain through a fresh limiter, aligned (its look-ahead flushed with zeros and cut off)."""
        out = np.empty((len(audio), 2), np.float32)
        for _ in self._limit_into(audio, gain, out):
            pass
        return out

    def _limit_into(self, audio: np.ndarray, gain: np.float32, out: np.ndarray) -> Iterator[tuple[int, int]]:
        """Write _limited(audio, gain) into out (len(audio), 2), yielding each range [a, b) once it is written.
        The track is scaled SLICE by SLICE, the same slices one call on the whole scaled array would cut (same
        output), so no scaled copy of it is ever held (212 MB for 10 minutes)."""
        limiter, n = PeakLimiter(self.ceiling, self.sample_rate), len(audio)
        skip, at = self.latency, 0
        for a in range(0, n + self.latency, SLICE):
            piece = audio[a:a + SLICE] * gain
            if a + SLICE > n:                         # the slice that reaches past the end carries the zeros
                piece = np.concatenate([piece, np.zeros((min(a + SLICE, n + self.latency) - max(a, n), 2),
                                                        np.float32)])
            done = limiter.process(piece)
            cut = min(skip, len(done))
            done, skip = done[cut:], skip - cut
            out[at:at + len(done)] = done
            if len(done):
                yield at, at + len(done)
            at += len(done)

    def reset(self) -> None:
        """Start a new stream (the gain is measured again)."""
        self.limiter.reset()
        self.gain = None

    def process(self, chunk: np.ndarray) -> np.ndarray:
        if self.gain is None:
            self.calibrate(chunk[: int(self.analysis_s * self.sample_rate)])
        return self.limiter.process(np.asarray(chunk, np.float32) * np.float32(self.gain))


def master_to_lufs(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, target_lufs: float = -14.0,
                   peak_dbfs: float = -1.0, loudness: float | None = None) -> np.ndarray:
    """One-shot mastering of a whole track: integrated target_lufs (+-0.5), peaks below peak_dbfs. `loudness`:
    the track's integrated loudness if already measured (the same number integrated_loudness would give).

    Same length and alignment as the input (the limiter's look-ahead is compensated here).
    """
    master = Master(target_lufs, peak_dbfs, sample_rate)
    _, mastered = master._fit_gain(np.asarray(audio, np.float32), tolerance_lu=0.2, max_trials=4,
                                   loudness=loudness)
    return mastered

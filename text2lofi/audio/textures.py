"""Procedural ambience under the music: vinyl, tape hiss, rain, thunder, wind, ocean, birds, cafe, fireplace, city.

Everything is synthesized from seeded noise with numpy/scipy (no samples). Each texture is a stream:
`render(n)` continues where the last call stopped -- filter states ride along in lfilter's `zi`, slow
modulations and event schedules are functions of absolute time drawn in order -- so chunking changes
nothing and any length works with flat memory. Audio: float32 (n_samples, 2), 44.1 kHz.
"""
from __future__ import annotations

import numpy as np
from scipy import signal

from text2lofi.conditions import SAMPLE_RATE, TEXTURES


# ---- streaming building blocks ------------------------------------------------------------------------
class _Filter:
    """An IIR filter (b, a) over `channels` columns whose state carries across calls."""

    def __init__(self, b, a, channels: int = 2):
        self.b, self.a = np.asarray(b, np.float64), np.asarray(a, np.float64)
        self.zi = np.zeros((max(len(self.a), len(self.b)) - 1, channels))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y, self.zi = signal.lfilter(self.b, self.a, x, axis=0, zi=self.zi)
        return y


def _butter(order, freq, btype, sr):
    return signal.butter(order, freq, btype=btype, fs=sr)


def _resonator(freq, q, sr):
    """Two-pole band-pass ringing at freq: an impulse through it is a short 'plink'."""
    return signal.iirpeak(freq, q, fs=sr)


def _leaky_integrator(sr, corner_hz=20.0):
    """Brown (1/f^2) noise from white, leaking below corner_hz so it never drifts."""
    pole = np.exp(-2 * np.pi * corner_hz / sr)
    return [1.0 - pole], [1.0, -pole]


# Filtering dominates the cost, so filters are merged into one lfilter where the sound allows:
def _series(*filters) -> _Filter:
    b, a = [1.0], [1.0]
    for fb, fa in filters:
        b, a = np.convolve(b, fb), np.convolve(a, fa)
    return _Filter(b, a)


def _parallel(*weighted) -> _Filter:
    """Sum of (weight, (b, a)) filters as one transfer function."""
    a = [1.0]
    for _, (_, fa) in weighted:
        a = np.convolve(a, fa)
    b = np.zeros(len(a))
    for i, (w, (fb, _)) in enumerate(weighted):
        term = np.asarray(fb, np.float64) * w
        for j, (_, (_, fa)) in enumerate(weighted):
            if j != i:
                term = np.convolve(term, fa)
        b[:len(term)] += term
    return _Filter(b, a)


class _Slow:
    """A smooth random control signal: knots every `hop_s` seconds, uniform in [lo, hi], cosine-joined."""

    def __init__(self, rng: np.random.Generator, hop_s: float, lo: float, hi: float, sr: int):
        self.rng, self.hop, self.lo, self.hi = rng, max(1, int(hop_s * sr)), lo, hi
        self.shape = (0.5 - 0.5 * np.cos(np.pi * np.arange(self.hop) / self.hop)).astype(np.float32)
        self.knots = rng.uniform(lo, hi, 2).astype(np.float32)   # knots[i] sits at sample (first + i) * hop
        self.first, self.pos = 0, 0

    def render(self, n: int) -> np.ndarray:
        k0, k1 = self.pos // self.hop, (self.pos + n - 1) // self.hop        # knot intervals touched
        need = k1 + 2 - self.first - len(self.knots)
        if need > 0:
            self.knots = np.concatenate([self.knots, self.rng.uniform(self.lo, self.hi, need).astype(np.float32)])
        a = self.knots[k0 - self.first:k1 + 1 - self.first, None]
        b = self.knots[k0 + 1 - self.first:k1 + 2 - self.first, None]
        curve = (a + (b - a) * self.shape).reshape(-1)                      # samples k0*hop .. (k1+1)*hop
        offset = self.pos - k0 * self.hop
        out = curve[offset:offset + n]
        self.pos += n
        drop = self.pos // self.hop - self.first          # knots behind the stream are no longer needed
        self.knots, self.first = self.knots[drop:], self.first + drop
        return out


class _Events:
    """Sound events at random times (exponential gaps): `make(rng) -> (length, 2)` audio per event.

    Parts of events that run past a chunk wait in `tail` and are mixed into the next chunks.
    """

    def __init__(self, rng, make, mean_gap_s, sr, first_s=(0.0, 1.0), min_gap_s=0.0):
        self.rng, self.make, self.sr = rng, make, sr
        self.mean_gap, self.min_gap = mean_gap_s * sr, int(min_gap_s * sr)
        self.next = int(rng.uniform(*first_s) * sr)
        self.tail = np.zeros((0, 2))
        self.pos = 0

    def render(self, n: int) -> np.ndarray:
        out = np.zeros((n, 2))
        k = min(len(self.tail), n)
        out[:k] += self.tail[:k]
        self.tail = self.tail[k:]
        while self.next < self.pos + n:
            event = self.make(self.rng)
            at = self.next - self.pos
            inside = min(len(event), n - at)
            out[at:at + inside] += event[:inside]
            rest = event[inside:]
            if len(rest):
                if len(self.tail) < len(rest):
                    self.tail = np.concatenate([self.tail, np.zeros((len(rest) - len(self.tail), 2))])
                self.tail[:len(rest)] += rest
            self.next += max(self.min_gap, int(self.rng.exponential(self.mean_gap)))
        self.pos += n
        return out


def _impulses(rng, n, rate_hz, sr, channels=2, sharpness=3.0):
    """Sparse random clicks: each sample fires with p = rate/sr; amplitude in [-1, 1], heavy-tailed."""
    p = rate_hz / sr
    u = rng.random((n, channels))
    hit = u < p
    amp = np.zeros((n, channels))
    a = 2.0 * u[hit] / p - 1.0                                  # reuse u: uniform in [-1, 1) given a hit
    amp[hit] = np.sign(a) * np.abs(a) ** sharpness
    return amp


def _pan(mono: np.ndarray, position: float) -> np.ndarray:
    """Equal-power pan, position in [-1, 1]."""
    angle = (position + 1.0) * np.pi / 4
    return np.stack([mono * np.cos(angle), mono * np.sin(angle)], axis=1)


# ---- the textures ---------------------------------------------------------------------------------------
class _Texture:
    def __init__(self, seed: int, sr: int):
        self.sr = sr
        ss = np.random.SeedSequence([seed, TEXTURES.index(self.name)])
        self.rngs = [np.random.default_rng(s) for s in ss.spawn(4)]   # independent streams per component

    def noise(self, n, channels=2, which=0):
        """Unit-variance white noise (uniform: as white as Gaussian once filtered, and ~10x cheaper)."""
        return self.rngs[which].random((n, channels), dtype=np.float32) * np.float32(2 * 3 ** 0.5) - np.float32(3 ** 0.5)


class Vinyl(_Texture):
    name = "vinyl"      # crackle (heavy-tailed clicks) + fine dust ticks + faint surface hiss, high-passed

    def __init__(self, seed, sr):
        super().__init__(seed, sr)
        self.surface = _series(_butter(2, 1500, "highpass", sr))

    def render(self, n):
        clicks = _impulses(self.rngs[1], n, 6.0, self.sr, sharpness=4.0) * 2.0
        dust = _impulses(self.rngs[2], n, 120.0, self.sr) * 0.25
        return self.surface(clicks + dust + self.noise(n) * 0.012)


class TapeHiss(_Texture):
    name = "tape_hiss"  # broadband hiss tilted to the treble, breathing slightly with the tape

    def __init__(self, seed, sr):
        super().__init__(seed, sr)
        self.tilt = _series(_butter(1, 2500, "highpass", sr))
        self.level = _Slow(self.rngs[1], 1.7, 0.85, 1.0, sr)

    def render(self, n):
        white = self.noise(n)
        return (self.tilt(white) * 0.8 + white * 0.2) * self.level.render(n)[:, None]


class Rain(_Texture):
    name = "rain"       # a dense bed of droplet noise + many small plinks + fewer heavy drops

    def __init__(self, seed, sr):
        super().__init__(seed, sr)
        self.bed = _series(_butter(2, (900, 7000), "bandpass", sr))
        # Every drop rings a few modes; the big ones (louder impulses) carry the low mode.
        self.drops = _parallel(*[(w, _resonator(f, q, sr)) for f, q, w in
                                 ((1300, 4, 0.5), (2600, 6, 0.35), (4300, 6, 0.25), (6100, 6, 0.15))])
        self.intensity = _Slow(self.rngs[3], 4.0, 0.7, 1.0, sr)

    def render(self, n):
        drops = _impulses(self.rngs[1], n, 2400.0, self.sr, sharpness=2.0)
        drops += _impulses(self.rngs[2], n, 35.0, self.sr, sharpness=1.5) * 1.5
        return (self.bed(self.noise(n)) * 0.5 + self.drops(drops)) * self.intensity.render(n)[:, None]


class Thunder(_Texture):
    name = "thunder"    # rare rolling low rumbles over a faint distant one

    def __init__(self, seed, sr):
        super().__init__(seed, sr)
        self.events = _Events(self.rngs[1], self._rumble, 25.0, sr, first_s=(0.5, 3.0), min_gap_s=8.0)
        self.distant = _series(_leaky_integrator(sr, 15.0), _butter(2, 90, "lowpass", sr))

    def _rumble(self, rng):
        length = int(rng.uniform(4.0, 9.0) * self.sr)
        t = np.arange(length) / self.sr
        brown = signal.lfilter([1.0], [1.0, -0.9995], rng.standard_normal((length, 2)), axis=0)
        body = signal.sosfilt(signal.butter(4, rng.uniform(110, 240), fs=self.sr, output="sos"), brown, axis=0)
        attack = rng.uniform(0.05, 0.4)
        rolls = 0.55 + 0.45 * np.cos(2 * np.pi * rng.uniform(0.4, 1.2) * t + rng.uniform(0, 2 * np.pi))
        env = np.minimum(t / attack, 1.0) * np.exp(-t / rng.uniform(1.2, 3.0)) * rolls
        return body * env[:, None] * (rng.uniform(0.5, 1.0) / (np.std(body) + 1e-9))

    def render(self, n):
        far = self.distant(self.noise(n)) * 2.0
        return self.events.render(n) * 0.5 + far


class Wind(_Texture):
    name = "wind"       # noise through two band-passes crossfaded slowly, in gusts, with a faint whistle

    def __init__(self, seed, sr):
        super().__init__(seed, sr)
        self.low, self.high = _series(_butter(2, (150, 500), "bandpass", sr)), _series(_butter(2, (500, 1400), "bandpass", sr))
        self.whistle = _series(_resonator(self.rngs[3].uniform(600, 900), 18, sr))
        self.mix, self.gust = _Slow(self.rngs[1], 2.3, 0.0, 1.0, sr), _Slow(self.rngs[2], 1.9, 0.25, 1.0, sr)

    def render(self, n):
        white = self.noise(n)
        w, g = self.mix.render(n)[:, None], self.gust.render(n)[:, None]
        body = self.low(white) * (1.0 - w) + self.high(white) * w
        return (body + self.whistle(white) * 0.6 * g) * g


class Ocean(_Texture):
    name = "ocean"      # slow swelling waves of low, brown noise, with a little wash on each crest

    def __init__(self, seed, sr):
        super().__init__(seed, sr)
        self.body = _series(_leaky_integrator(sr, 30.0), _butter(2, 380, "lowpass", sr))
        self.foam = _series(_butter(2, (900, 3500), "bandpass", sr))
        self.wave_rng = self.rngs[1]
        self.wave_start = 0
        self.wave_len, self.wave_peak = self._new_wave()
        self.pos = 0

    def _new_wave(self):
        return int(self.wave_rng.uniform(6.0, 11.0) * self.sr), self.wave_rng.uniform(0.6, 1.0)

    def _swell(self, n):
        env = np.empty(n)
        done = 0
        while done < n:
            at = self.pos + done - self.wave_start
            take = min(n - done, self.wave_len - at)
            u = (at + np.arange(take)) / self.wave_len
            env[done:done + take] = 0.2 + self.wave_peak * np.sin(np.pi * u) ** 2
            done += take
            if at + take == self.wave_len:
                self.wave_start += self.wave_len
                self.wave_len, self.wave_peak = self._new_wave()
        self.pos += n
        return env[:, None]

    def render(self, n):
        env = self._swell(n)
        white = self.noise(n)
        return self.body(white) * 4.0 * env + self.foam(white) * 0.03 * env ** 4


class Birds(_Texture):
    name = "birds"      # chirped phrases (sweeps with trills) at random times, panned around

    def __init__(self, seed, sr):
        super().__init__(seed, sr)
        self.events = _Events(self.rngs[1], self._phrase, 2.2, sr, first_s=(0.1, 0.8))

    def _phrase(self, rng):
        base, sweep = rng.uniform(2600, 5200), rng.uniform(-1800, 1800)
        note_s, gap_s = rng.uniform(0.05, 0.16), rng.uniform(0.03, 0.11)
        trill_hz, trill_depth = rng.uniform(15, 45), rng.uniform(0, 350)
        notes = []
        for _ in range(int(rng.integers(2, 7))):
            length = int(note_s * rng.uniform(0.8, 1.2) * self.sr)
            u = np.arange(length) / length
            freq = base * rng.uniform(0.95, 1.05) + sweep * u + trill_depth * np.sin(2 * np.pi * trill_hz * u * note_s)
            tone = np.sin(2 * np.pi * np.cumsum(freq) / self.sr) * np.sin(np.pi * u) ** 2
            notes += [tone, np.zeros(int(gap_s * self.sr))]
        return _pan(np.concatenate(notes) * rng.uniform(0.3, 1.0), rng.uniform(-0.8, 0.8))

    def render(self, n):
        return self.events.render(n)


class Cafe(_Texture):
    name = "cafe"       # babble: formant-filtered noise voices with syllable envelopes, room tone, cup clinks

    VOICES = 4

    def __init__(self, seed, sr):
        super().__init__(seed, sr)
        rng = self.rngs[3]
        self.voices = [(_Filter(*_butter(2, (f, 2.2 * f), "bandpass", sr), channels=1),
                        _Slow(rng.spawn(1)[0], rng.uniform(0.11, 0.19), 0.0, 1.0, sr), rng.uniform(-0.7, 0.7))
                       for f in rng.uniform(280, 700, self.VOICES)]
        self.clinks = _Events(self.rngs[1], self._clink, 3.5, sr, first_s=(0.3, 2.0))

    def _clink(self, rng):
        length = int(rng.uniform(0.15, 0.4) * self.sr)
        t = np.arange(length) / self.sr
        f0 = rng.uniform(2200, 4200)
        ring = sum(np.sin(2 * np.pi * f0 * r * t) / r for r in (1.0, 2.76, 5.40))
        return _pan(ring * np.exp(-t * rng.uniform(12, 30)) * rng.uniform(0.05, 0.2), rng.uniform(-0.9, 0.9))

    def render(self, n):
        noise = self.noise(n, channels=self.VOICES)
        out = np.zeros((n, 2))
        for i, (band, syllables, pan) in enumerate(self.voices):
            voice = band(noise[:, i:i + 1])[:, 0] * syllables.render(n) ** 2
            out = out + _pan(voice, pan)
        return out + self.clinks.render(n)


class Fireplace(_Texture):
    name = "fireplace"  # crackle and pops over a flickering low roar

    def __init__(self, seed, sr):
        super().__init__(seed, sr)
        self.roar = _series(_leaky_integrator(sr, 25.0), _butter(2, 280, "lowpass", sr))
        self.flicker = _Slow(self.rngs[3], 0.35, 0.55, 1.0, sr)
        self.snaps = _parallel((1.2, _resonator(3200, 2, sr)), (1.5, _resonator(900, 3, sr)))

    def render(self, n):
        roar = self.roar(self.noise(n)) * 2.5 * self.flicker.render(n)[:, None]
        # Many small bright crackles and a few big pops (low mode): both ring through the same filter.
        snaps = _impulses(self.rngs[1], n, 30.0, self.sr, sharpness=3.0)
        snaps += _impulses(self.rngs[2], n, 1.5, self.sr, sharpness=1.0) * 2.0
        return roar + self.snaps(snaps)


class City(_Texture):
    name = "city"       # a low traffic bed, cars swelling past left-to-right, and distant horns

    def __init__(self, seed, sr):
        super().__init__(seed, sr)
        self.bed = _series(_leaky_integrator(sr, 60.0), _butter(2, 650, "lowpass", sr))
        self.cars = _Events(self.rngs[1], self._car, 2.8, sr, first_s=(0.0, 1.0))
        self.horns = _Events(self.rngs[2], self._horn, 14.0, sr, first_s=(1.0, 6.0), min_gap_s=3.0)

    def _car(self, rng):
        length = int(rng.uniform(3.0, 8.0) * self.sr)
        u = np.arange(length) / length
        hum = signal.sosfilt(signal.butter(2, rng.uniform(300, 900), fs=self.sr, output="sos"),
                             signal.lfilter([1.0], [1.0, -0.995], rng.standard_normal(length)))
        direction = rng.choice([-1.0, 1.0])
        angle = (direction * (2 * u - 1) + 1) * np.pi / 4                      # pan sweeps across
        mono = hum * np.sin(np.pi * u) ** 2 * rng.uniform(0.3, 1.0) / (np.std(hum) + 1e-9)
        return np.stack([mono * np.cos(angle), mono * np.sin(angle)], axis=1) * 0.3

    def _horn(self, rng):
        f0, length = rng.uniform(330, 460), int(rng.uniform(0.3, 0.8) * self.sr)
        t = np.arange(length) / self.sr
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k + np.sin(2 * np.pi * f0 * 1.26 * k * t) / k for k in range(1, 6))
        env = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)
        far = signal.sosfilt(signal.butter(2, 1800, fs=self.sr, output="sos"), tone * env)
        honks = [far, np.zeros(int(0.12 * self.sr)), far * 0.8] if rng.random() < 0.4 else [far]
        return _pan(np.concatenate(honks) * rng.uniform(0.04, 0.1), rng.uniform(-0.8, 0.8))

    def render(self, n):
        return self.bed(self.noise(n)) * 1.5 + self.cars.render(n) + self.horns.render(n)


LAYERS = {cls.name: cls for cls in (Vinyl, TapeHiss, Rain, Thunder, Wind, Ocean, Birds, Cafe, Fireplace, City)}

# Raw loudness (LUFS, first 20 s, seed 0) of each texture at unit gain, measured with pyloudnorm by
# `python -m text2lofi.audio.textures --calibrate`; the bed scales each to its place in the mix from these.
CALIBRATION_LUFS = {"vinyl": -30.1, "tape_hiss": 4.8, "rain": -6.4, "thunder": -30.7, "wind": -16.7,
                    "ocean": -20.8, "birds": -9.0, "cafe": -16.3, "fireplace": -25.8, "city": -18.5}
# How far each texture sits from the bed level: constant beds quieter, occasional events a bit louder.
PRESENCE_LU = {"vinyl": -2.0, "tape_hiss": -6.0, "rain": 0.0, "thunder": 2.0, "wind": -1.0, "ocean": 0.0,
               "birds": -3.0, "cafe": -2.0, "fireplace": -1.0, "city": -2.0}


class TextureBed:
    """The textures asked for, summed at `level_db` LUFS (roughly, whatever their number), as one stream."""

    def __init__(self, textures, sample_rate: int = SAMPLE_RATE, seed: int = 0, level_db: float = -32.0):
        unknown = [t for t in textures if t not in LAYERS]
        if unknown:
            raise ValueError(f"unknown textures {unknown}; known: {', '.join(TEXTURES)}")
        self.names = list(dict.fromkeys(textures))
        self.sample_rate = sample_rate
        self.layers = [LAYERS[name](seed, sample_rate) for name in self.names]
        share = 10.0 * np.log10(max(1, len(self.names)))           # k layers sum to about the bed level
        self.gains = [10.0 ** ((level_db - share + PRESENCE_LU[name] - CALIBRATION_LUFS[name]) / 20.0)
                      for name in self.names]

    def render(self, n_samples: int) -> np.ndarray:
        out = np.zeros((n_samples, 2), np.float32)
        for audio in self.render_layers(n_samples).values():
            out += audio
        return out

    def render_layers(self, n_samples: int) -> dict[str, np.ndarray]:
        """The next n_samples of each texture at its level in the bed, by name (render() is their sum): the
        mixer's per-texture stems."""
        return {name: (layer.render(n_samples) * gain).astype(np.float32)
                for name, layer, gain in zip(self.names, self.layers, self.gains)}


def _calibrate(seconds: float = 20.0) -> dict[str, float]:
    import pyloudnorm

    meter = pyloudnorm.Meter(SAMPLE_RATE)
    return {name: round(float(meter.integrated_loudness(cls(0, SAMPLE_RATE).render(int(seconds * SAMPLE_RATE)))), 1)
            for name, cls in LAYERS.items()}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Measure each texture's raw loudness (CALIBRATION_LUFS).")
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if args.calibrate:
        print(_calibrate(args.seconds))

"""Conditions -> piano and drum notes on ONE bar grid, bar by bar, for any length.

Both models are primed with their condition tokens, then sampled in recurrent mode through the project's one
sampler (rwkv_core.sampling.TokenStream). Logit masks keep the token grammar valid, keep piano pitches in the
key's scale or the current chord, and keep positions inside a bar moving forward. The arrangement (intro, loops
with variation, breaks, outro) comes from text2lofi.compose.arrangement.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pretty_midi
import torch

from rwkv_core import load
from rwkv_core.sampling import ContextWindow, SamplingConfig, TokenStream
from text2lofi.compose.arrangement import BarGrid, Section, plan_sections, progression_for, tonic_chord
from text2lofi.compose.given import GivenMusic
from text2lofi.compose.theory import chord_tones, read_chord
from text2lofi.compose.tokenizer import DRUM_KIT, MusicTokenizer, Note
from text2lofi.conditions import BASS_PROGRAM, SAMPLE_RATE, Conditions, NoteEvent
from text2lofi.resources import checkpoints_dir

PIANO_RANGE = (36, 96)          # MIDI pitches the piano may sample: C2..C7, nothing shrill or muddy
BASS_LOWEST = 28                # E1, the open low string: each bar's bass root sits in E1..D#2
KICK = DRUM_KIT["kick"]
BACKBEAT = {DRUM_KIT["snare"], DRUM_KIT["clap"], DRUM_KIT["rim"]}
TIMEKEEPERS = {DRUM_KIT["closed_hat"], DRUM_KIT["open_hat"], DRUM_KIT["ride"]}
TOMS = {DRUM_KIT["low_tom"], DRUM_KIT["mid_tom"], DRUM_KIT["high_tom"]}
# Grooves drawn per loop section; the one with the best beat_score plays (docs/compose.md has the measurements).
GROOVE_CANDIDATES = 4
# A guard against a bar that never ends, not a density control: the piano's natural bar is about 28 notes x 3
# tokens, and a cut bar goes silent for its rest (docs/compose.md has the measurements behind 160).
MAX_TOKENS_PER_BAR = {"piano": 160, "drums": 96}
GIVEN_CONTEXT_BARS = 32         # bars of a given MIDI file the piano model reads before it writes on
BASS_STYLES = ("kick", "fifths", "octaves")     # bass patterns a varied bass picks from, one per section


@dataclass
class MusicModel:
    kind: str                  # "piano" | "drums"
    model: torch.nn.Module
    tokenizer: MusicTokenizer
    version: str               # "<kind>@<first 12 hex of the weights' sha256>"


@functools.lru_cache(maxsize=4)
def load_music_model(kind: str, checkpoint_dir: str | None = None) -> MusicModel:
    """Load checkpoints/<kind>/ (exactly one .pth + sidecar + tokenizer config). Cached per process."""
    folder = Path(checkpoint_dir) if checkpoint_dir else checkpoints_dir() / kind
    weights = sorted(folder.glob("*.pth"))
    if len(weights) != 1:
        raise FileNotFoundError(f"expected exactly one .pth in {folder}, found {len(weights)}")
    model = load(str(weights[0]))
    model.eval()
    digest = hashlib.sha256(weights[0].read_bytes()).hexdigest()[:12]
    return MusicModel(kind, model, MusicTokenizer.load(folder), f"{kind}@{digest}")


@dataclass
class ComposedBar:
    index: int                         # bar number from the track start
    section: str                       # intro | loop | break | outro
    chord: str | None
    start_sample: int                  # where the bar starts on the shared grid
    end_sample: int
    piano: list[NoteEvent] = field(default_factory=list)   # absolute samples
    drums: list[NoteEvent] = field(default_factory=list)
    bass: list[NoteEvent] = field(default_factory=list)


class TokenMasks:
    """Per-tokenizer boolean tables, built once: grammar, pitch and position lookups. Shapes (V,) or (V, V)."""

    def __init__(self, tok: MusicTokenizer):
        v = tok.vocab_size
        self.grammar = tok.grammar_table()                                            # (V, V)
        self.pitch = torch.tensor([-1 if tok.pitch_of(i) is None else tok.pitch_of(i) for i in range(v)])
        self.position = torch.tensor([-1 if tok.position_of(i) is None else tok.position_of(i) for i in range(v)])
        self.is_pitch = self.pitch >= 0
        self.is_position = self.position >= 0
        self.anything = torch.ones(v, dtype=torch.bool)

    def pitch_mask(self, allowed_pcs: frozenset[int] | None, lo: int, hi: int) -> torch.Tensor:
        """True where a token is allowed as far as pitch goes (non-pitch tokens always pass)."""
        ok = (self.pitch >= lo) & (self.pitch <= hi)
        if allowed_pcs is not None:
            pcs = torch.zeros(12, dtype=torch.bool)
            pcs[list(allowed_pcs)] = True
            ok &= pcs[self.pitch.clamp(min=0) % 12]
        return ~self.is_pitch | ok


class PartWriter:
    """Samples one part, bar by bar, from its model. Holds the recurrent state between bars. Usually one stream;
    `candidates(k)` makes a writer of k streams that sample k different continuations side by side."""

    def __init__(self, mm: MusicModel, prefix: list[int], sampling: SamplingConfig, generator: torch.Generator):
        self.mm, self.tok = mm, mm.tokenizer
        self.masks = token_masks(mm.tokenizer)
        self.stream = TokenStream(mm.model, torch.tensor([prefix], dtype=torch.long), sampling, generator=generator,
                                  window=ContextWindow.for_model(mm.model, mm.tokenizer.bar_id))
        self.last = [prefix[-1]]      # per stream: the last token taken in
        self.bar_open = [False]       # per stream: the model itself already emitted the Bar that opens the next bar
        self.max_tokens = MAX_TOKENS_PER_BAR[mm.kind]

    def _with_stream(self, stream: TokenStream, last: list[int], bar_open: list[bool]) -> "PartWriter":
        twin = object.__new__(PartWriter)
        twin.__dict__.update(self.__dict__)
        twin.stream, twin.last, twin.bar_open = stream, last, bar_open
        return twin

    def candidates(self, k: int) -> "PartWriter":
        """k copies of this (single-stream) writer as one batch, sharing the random generator."""
        return self._with_stream(self.stream.repeat(k), self.last * k, self.bar_open * k)

    def select(self, b: int) -> "PartWriter":
        """Candidate b alone, to go on from."""
        return self._with_stream(self.stream.select(b), [self.last[b]], [self.bar_open[b]])

    def _open_bars(self, chord: str | None) -> None:
        """Feed each stream the tokens that open a bar: Bar (unless the model already chose it) and the chord."""
        tok = self.tok
        chord_id = tok.chord_token(chord) if chord else None
        openings = [([] if is_open else [tok.bar_id]) + ([] if chord_id is None else [chord_id])
                    for is_open in self.bar_open]
        if all(o == openings[0] for o in openings):
            if openings[0]:
                self.stream.feed(torch.tensor([openings[0]] * len(openings), dtype=torch.long))
        else:                         # streams differ in whether Bar is still due: feed it to those that need it
            self.stream.feed(torch.full((len(openings),), tok.bar_id), active=torch.tensor(
                [not is_open for is_open in self.bar_open]))
            if chord_id is not None:
                self.stream.feed(torch.full((len(openings),), chord_id))
        self.last = [o[-1] if o else last for o, last in zip(openings, self.last)]
        self.bar_open = [False] * len(openings)

    def next_bars(self, chord: str | None = None, pitch_mask: torch.Tensor | None = None) -> list[list[Note]]:
        """One bar per stream: notes in beats from the bar start."""
        tok, m = self.tok, self.masks
        self._open_bars(chord)
        n = len(self.last)
        bodies: list[list[int]] = [[] for _ in range(n)]
        position, started, done = [-1] * n, [False] * n, [False] * n
        for _ in range(self.max_tokens):
            rows = []
            for b in range(n):
                mask = m.grammar[self.last[b]].clone()
                if pitch_mask is not None:
                    mask &= pitch_mask
                mask &= ~m.is_position | (m.position > position[b])
                if not started[b]:
                    mask[tok.bar_id] = False      # no empty bars: the arrangement decides where silence goes
                if not done[b] and not bool(mask.any()):
                    done[b] = True
                rows.append(mask if not done[b] else m.anything)      # a finished stream's draw is discarded
            if all(done):
                break
            active = None if not any(done) else torch.tensor([not d for d in done])
            sampled = self.stream.next(mask=torch.stack(rows), active=active).tolist()
            for b, t in enumerate(sampled):
                if done[b]:
                    continue
                self.last[b] = t
                if t == tok.bar_id:
                    self.bar_open[b], done[b] = True, True
                    continue
                bodies[b].append(t)
                if m.is_position[t]:
                    position[b] = int(m.position[t])
                started[b] = started[b] or bool(m.is_pitch[t])
            if all(done):
                break
        out = []
        for body in bodies:
            bars = tok.decode_bars([tok.bar_id] + body)
            out.append(bars[0] if bars else [])
        return out

    def next_bar(self, chord: str | None = None, pitch_mask: torch.Tensor | None = None) -> list[Note]:
        return self.next_bars(chord, pitch_mask)[0]


_MASKS: dict[int, tuple[MusicTokenizer, TokenMasks]] = {}


def token_masks(tok: MusicTokenizer) -> TokenMasks:
    """Masks per tokenizer object (built once; V x V grammar table is ~0.3 MB for V ~ 500)."""
    hit = _MASKS.get(id(tok))
    if hit is None or hit[0] is not tok:
        hit = _MASKS[id(tok)] = (tok, TokenMasks(tok))
    return hit[1]


def part_seed(seed: int, part: str) -> int:
    """The seed of one part's generator, derived from the track's seed (stable across runs and machines)."""
    return zlib.crc32(f"{part}:{int(seed)}".encode())


def hit_near(bar: list[Note], beat: float, pitches: set[int]) -> bool:
    """A hit of one of `pitches` within a 32nd note (1/8 beat) of `beat`."""
    return any(abs(n.onset - beat) <= 0.125 and n.pitch in pitches for n in bar)


def beat_score(bar: list[Note]) -> float:
    """How much a drum bar is a beat (not a roll or a tom fill): a kick on the one, snare/clap/rim on beats 2 and
    4, a hat or ride keeping time, few toms, not a wall of hits. Each criterion counts 1."""
    toms = sum(n.pitch in TOMS for n in bar)
    return (hit_near(bar, 0.0, {KICK}) + hit_near(bar, 1.0, BACKBEAT) + hit_near(bar, 3.0, BACKBEAT)
            + (sum(n.pitch in TIMEKEEPERS for n in bar) >= 4) + (toms <= 0.2 * len(bar)) + (len(bar) <= 32))


def drum_style(c: Conditions) -> str:
    """GMD style the drum model is primed with: lo-fi is hip-hop unless the mood says otherwise."""
    moods = {m.lower() for m in c.mood}
    if moods & {"jazzy", "jazz", "smooth"}:
        return "jazz"
    if c.energy >= 0.75 or moods & {"funky", "groovy"}:
        return "funk"
    return "hiphop"


def _swing(onset_beats: float, swing: float) -> float:
    """Delay off-beat 16ths by up to a triplet 16th (swing 1.0 = 1/12 beat late). In MPC terms the second 16th
    of each 8th sits at 50 + 16.7 * swing percent of it: 0 is straight (50%), 1 a full triplet (66.7%);
    conditions.DEFAULT_SWING and the lexicon keep lo-fi inside the 54-62% producers use."""
    frac = onset_beats % 0.5
    if abs(frac - 0.25) < 1.0 / 48:
        return onset_beats + swing / 12.0
    return onset_beats


class Composer:
    """Bars of piano + drums for Conditions, on one BarGrid. `bars(n)` for a fixed length, `bars(None)` forever."""

    def __init__(self, c: Conditions, piano: MusicModel | None = None, drums: MusicModel | None = None,
                 sample_rate: int = SAMPLE_RATE, sampling: SamplingConfig | None = None,
                 groove_candidates: int = GROOVE_CANDIDATES, origin: int = 0, intro: bool = True,
                 lead_in: list[str] | tuple[str, ...] = (), given: GivenMusic | None = None,
                 plan: list[Section] | None = None, seeds: dict[str, int] | None = None, loop: bool = False):
        """origin: the sample where bar 0 starts; intro=False starts on the loop; lead_in: chords played one bar
        each before the progression (a steered stream's pivot chord). All three serve a stream that changes.
        given: a MIDI file's notes that are the piano part of its bars (kept exactly) and its chords per bar;
        the piano model, primed with the file, writes on after it. plan: the sections to fill instead of
        plan_sections() (an extension keeps the original's). seeds: a part's own seed instead of the one derived
        from c.seed (vary one part, keep the others note for note); a "bass" seed picks bass patterns by section.
        loop: a seamless loop: no intro, outro or final chord; the last bar plays the progression's last chord,
        the one that leads back into the first."""
        self.c = c
        self.groove_candidates = max(1, int(groove_candidates))
        self.grid = BarGrid(c.tempo_bpm, sample_rate, origin=origin)
        self.intro, self.lead_in = intro, list(lead_in)
        self.plan, self.loop = plan, loop
        self.sections: list[Section] = []      # the sections composed so far (a track's metadata keeps them)
        self.seeds = dict(seeds or {})          # the parts' own seeds, where given
        seeds = {part: part_seed(c.seed, part) for part in ("piano", "drums")} | self.seeds
        # One generator per part: redrawing one part (vary) or one part's bar (an extension's new outro) leaves
        # the other parts' draws, and so their notes, exactly as they were.
        generators = {part: torch.Generator().manual_seed(seeds[part]) for part in ("piano", "drums")}
        self.bass_rng = np.random.default_rng(seeds["bass"]) if "bass" in seeds else None
        self._drum_seed = seeds["drums"]
        self._bass_style = "kick"
        sampling = sampling or SamplingConfig(temperature=0.95, top_k=0, top_p=0.95)
        self.piano = self.drums = None
        self.given = given.events(sample_rate) if given else []       # per bar: the file's notes
        self.bar_chords = list(given.chords) if given else []         # per bar, where the file sets them
        if c.piano:
            piano = piano or load_music_model("piano")
            prefix = piano.tokenizer.condition_prefix(key_pc=c.tonic_pc, mode=c.mode, tempo_bpm=c.tempo_bpm,
                                                      style="pop")
            if given:                # the model goes on from the file's last bars (its recurrent state holds them)
                bars = piano.tokenizer.encode_bars(given.midi(), [(4.0 * i, 4.0 * i + 4, ch)
                                                                  for i, ch in enumerate(given.chords)])
                prefix += [t for bar in bars[-GIVEN_CONTEXT_BARS:] for t in bar]
            self.piano = PartWriter(piano, prefix, sampling, generators["piano"])
        if c.drums:
            drums = drums or load_music_model("drums")
            prefix = drums.tokenizer.condition_prefix(tempo_bpm=c.tempo_bpm, style=drum_style(c))
            self.drums = PartWriter(drums, prefix, sampling, generators["drums"])
        self.progression = progression_for(c)
        self.chords: list[str | None] = []     # the chord of every bar composed so far, by bar index
        self._chord_pcs = {s: chord_tones(s)[1]
                           for s in self.progression + self.lead_in + self.bar_chords + [tonic_chord(c)]}

    @property
    def versions(self) -> dict[str, str]:
        return {w.mm.kind: w.mm.version for w in (self.piano, self.drums) if w is not None}

    # ---- one part, one section ------------------------------------------------------------
    def _piano_bar(self, chord: str, bass_plays: bool) -> list[Note]:
        allowed = self.c.scale_pcs | frozenset(self._chord_pcs[chord])
        mask = self.piano.masks.pitch_mask(allowed, *PIANO_RANGE)
        notes = self.piano.next_bar(chord, mask)
        return notes if bass_plays else self._with_bass_root(notes, chord)

    def _bass_bar(self, chord: str, drums: list[Note], held: bool) -> list[Note]:
        """Rules, not a model: the bar's root (a slash chord's bass note) on the downbeat and on every kick, the fifth
        where a kick falls on beat 3, each note held until the next. Locked to the kick, so the low end and the
        beat move together; without drums (breaks), root on beats 1 and 3. `held`: one root for the whole bar."""
        head, _, slash = chord.partition("/")
        chord_root, pcs = chord_tones(head)
        slash_bass = read_chord(slash) if slash else None
        root = slash_bass[0] if slash_bass else chord_root
        low = BASS_LOWEST + (root - BASS_LOWEST) % 12
        fifth = low + 7 if (chord_root + 7) % 12 in pcs and not slash else low
        velocity = int(70 + 30 * self.c.energy)
        if held:
            return [Note(0.0, 4.0, low, velocity)]
        # Kicks on the 16th grid; one that rounds to beat 4 belongs to the next bar's downbeat, not this chord.
        kicks = sorted({round(n.onset * 4) / 4 for n in drums if n.pitch == KICK} - {4.0}) if drums else [0.0, 2.0]
        onsets = sorted({0.0, *kicks})
        notes = []
        for k, t in enumerate(onsets):
            end = onsets[k + 1] if k + 1 < len(onsets) else 4.0
            if self._bass_style == "fifths":            # root and fifth by turns
                pitch = fifth if k % 2 else low
            elif self._bass_style == "octaves":         # the root, jumping an octave on the notes between
                pitch = low + 12 if k % 2 else low
            else:                                       # "kick": the root, the fifth on beat 3
                pitch = fifth if k > 0 and abs(t - 2.0) < 0.01 else low
            notes.append(Note(t, max(0.25, 0.9 * (end - t)), pitch, velocity if t % 1 == 0 else velocity - 12))
        return notes

    @staticmethod
    def _with_bass_root(notes: list[Note], chord: str) -> list[Note]:
        """Lo-fi comping: the chord's root held low under the bar, unless the model already played it there. It gives
        the track its low end and anchors the harmony the model was primed with; its measured trade (key found vs
        consonance) is in docs/compose.md."""
        root = chord_tones(chord)[0]
        if any(n.pitch < 52 and n.pitch % 12 == root and n.onset < 0.5 for n in notes):
            return notes
        return notes + [Note(0.0, 3.9, 36 + root if root >= 4 else 48 + root, 58)]

    def _final_chord(self) -> list[Note]:
        """A held tonic chord: root in the bass, chord tones above middle C. The cadence the track ends on."""
        root, pcs = chord_tones(tonic_chord(self.c))
        voicing = [36 + root] + sorted(60 + (pc - root) % 12 + root % 12 for pc in pcs)
        return [Note(0.0, 4.0, p, 62 if i else 70) for i, p in enumerate(voicing)]

    def _section_notes(self, s: Section, first_bar: int, last_of_track: bool, chords: list[str] | None = None
                       ) -> list[tuple[str | None, list[Note], list[Note], list[Note]]]:
        """Chords and notes (in beats) of a section whose first bar is `first_bar` of the track."""
        chords = chords or [self.bar_chords[first_bar + j] if first_bar + j < len(self.bar_chords)
                            else self.progression[j % len(self.progression)] for j in range(s.n_bars)]
        bass_plays = self.c.bass and s.name != "intro"          # the bass enters with the beat
        piano: list[list[Note]] = []
        for j in range(s.n_bars):
            if not (s.piano and self.piano) or first_bar + j < len(self.given):
                piano.append([])                                # silent, or the given notes (placed in bars())
            elif last_of_track and j == s.n_bars - 1:
                chords[j] = tonic_chord(self.c)
                piano.append(self._final_chord())
            elif j < s.phrase_bars or j == s.n_bars - 1 or first_bar + j % s.phrase_bars < len(self.given):
                piano.append(self._piano_bar(chords[j], bass_plays))    # new material, incl. the varied last bar
            else:
                piano.append(piano[j % s.phrase_bars])          # the loop repeats its phrase
        drums: list[list[Note]] = []
        groove = min(2, s.phrase_bars)
        grooves = self._groove(groove) if s.drums and self.drums else []
        for j in range(s.n_bars):
            if not (s.drums and self.drums):
                drums.append([])
            elif j < groove:
                drums.append(grooves[j])
            elif j == s.n_bars - 1:
                drums.append(self._shape_drums(self.drums.next_bar()))   # a fill at the end
            elif j % 4 >= 2:                                    # bars 3-4 of every four: hats and ghosts vary
                drums.append(self._varied(drums[j % groove], first_bar + j))
            else:
                drums.append(drums[j % groove])
        if self.bass_rng is not None:                            # a varied bass: a pattern per section
            self._bass_style = str(self.bass_rng.choice(BASS_STYLES))
        bass = [self._bass_bar(chords[j], drums[j], held=last_of_track and j == s.n_bars - 1) if bass_plays else []
                for j in range(s.n_bars)]
        return list(zip(chords, piano, drums, bass))

    def _groove(self, n_bars: int) -> list[list[Note]]:
        """The section's groove: `groove_candidates` drawn side by side from the drum model, the best by summed
        beat_score (the lowest-numbered wins a tie); the model goes on from the chosen one."""
        writer = self.drums.candidates(self.groove_candidates)
        drawn = [[self._shape_drums(bar) for bar in writer.next_bars()] for _ in range(n_bars)]   # [bar][candidate]
        scores = [sum(beat_score(drawn[j][k]) for j in range(n_bars)) for k in range(self.groove_candidates)]
        best = scores.index(max(scores))
        self.drums = writer.select(best)
        return [drawn[j][best] for j in range(n_bars)]

    def _varied(self, bar: list[Note], index: int) -> list[Note]:
        """A repeat of a groove bar with its hats and ghost notes changed, kick and backbeat kept: an open hat on
        the last off-beat, a 16th hat added or an off-beat hat dropped, hat velocities nudged, and (energy >= 0.4) a
        ghost snare before the backbeat. Drawn from the drum part's seed and the bar's index in the track, so it
        repeats exactly for a seed and changes with vary('drums')."""
        rng = np.random.default_rng([self._drum_seed, index])
        hats = [n for n in bar if n.pitch in TIMEKEEPERS]
        out = [n for n in bar if n.pitch not in TIMEKEEPERS]
        for n in hats:
            if n.pitch == DRUM_KIT["closed_hat"] and abs(n.onset - 3.5) < 0.07 and rng.random() < 0.5:
                n = Note(n.onset, 0.45, DRUM_KIT["open_hat"], n.velocity)
            elif abs(n.onset % 1 - 0.5) < 0.07 and rng.random() < 0.15:
                continue                                         # a dropped off-beat hat
            out.append(Note(n.onset, n.duration, n.pitch, int(np.clip(n.velocity + rng.integers(-10, 11), 20, 127))))
        if hats and rng.random() < 0.5:                          # a 16th pick-up hat where none was
            at = float(rng.choice([0.75, 1.75, 2.75, 3.75]))
            if not hit_near(bar, at, TIMEKEEPERS):
                out.append(Note(at, 0.1, DRUM_KIT["closed_hat"], int(min(hats, key=lambda n: n.velocity).velocity)))
        if self.c.energy >= 0.4 and rng.random() < 0.6:
            at = float(rng.choice([0.75, 2.75, 3.25]))
            if not hit_near(bar, at, BACKBEAT):
                out.append(Note(at, 0.1, DRUM_KIT["snare"], int(rng.integers(24, 36))))
        return sorted(out, key=lambda n: (n.onset, n.pitch))

    def _shape_drums(self, notes: list[Note]) -> list[Note]:
        """Energy sets intensity: velocities scale, and quiet ghost notes go at low energy."""
        gain = 0.65 + 0.6 * self.c.energy
        out = []
        for n in notes:
            if self.c.energy < 0.4 and n.velocity < 45:
                continue
            out.append(Note(n.onset, n.duration, n.pitch, int(np.clip(n.velocity * gain, 1, 127))))
        return out

    def _events(self, bar: int, notes: list[Note]) -> list[NoteEvent]:
        g, out = self.grid, []
        for n in notes:
            onset = _swing(n.onset, self.c.swing)
            start = g.sample_at(bar, onset)
            end = max(start + 1, g.sample_at(bar, onset + max(n.duration, 1 / 24)))
            out.append(NoteEvent(start, end, int(n.pitch), int(n.velocity)))
        return out

    # ---- the whole track ------------------------------------------------------------------
    def bars(self, n_bars: int | None) -> Iterator[ComposedBar]:
        index = 0
        piano, drums = self.piano is not None, self.drums is not None
        lead = [Section("pivot", len(self.lead_in), piano, drums, len(self.lead_in))] if self.lead_in else []
        rest = None if n_bars is None else n_bars - len(self.lead_in)
        plan = self.plan if self.plan is not None else \
            plan_sections(rest, piano, drums, intro=self.intro and not self.loop, outro=not self.loop)
        for s in itertools.chain(lead, plan):
            self.sections.append(s)
            last = n_bars is not None and index + s.n_bars >= n_bars
            chords = self.lead_in if s.name == "pivot" else None
            if last and self.loop:           # the loop's last bar leads back to its first: the progression's end
                chords = [self.progression[j % len(self.progression)] for j in range(s.n_bars - 1)]
                chords.append(self.progression[-1])
            for chord, p, d, b in self._section_notes(s, index, last and not self.loop, chords):
                self.chords.append(chord)
                piano_events = self.given[index] if index < len(self.given) else self._events(index, p)
                yield ComposedBar(index, s.name, chord, self.grid.bar_start(index), self.grid.bar_start(index + 1),
                                  piano_events, self._events(index, d), self._events(index, b))
                index += 1


def bars_to_midi(bars: list[ComposedBar], c: Conditions, piano_program: int = 0,
                 sample_rate: int = SAMPLE_RATE, n_samples: int | None = None,
                 bass_program: int = BASS_PROGRAM) -> pretty_midi.PrettyMIDI:
    """Every part on one tempo map: a single tempo event, note times from the shared grid.
    With n_samples, notes are cut where the audio ends (the last bar is trimmed to the exact length)."""
    end = n_samples if n_samples is not None else (bars[-1].end_sample if bars else 0)
    pm = pretty_midi.PrettyMIDI(initial_tempo=c.tempo_bpm)
    piano = pretty_midi.Instrument(program=piano_program, name="piano")
    drums = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
    bass = pretty_midi.Instrument(program=bass_program, name="bass")
    for b in bars:
        for inst, events in ((piano, b.piano), (drums, b.drums), (bass, b.bass)):
            inst.notes.extend(pretty_midi.Note(velocity=e.velocity, pitch=e.pitch, start=e.start_sample / sample_rate,
                                               end=min(e.end_sample, end) / sample_rate)
                              for e in events if e.start_sample < end)
    pm.instruments = [i for i, on in ((piano, c.piano), (drums, c.drums), (bass, c.bass)) if on]
    return pm


def compose_midi(c: Conditions, n_bars: int | None = None) -> pretty_midi.PrettyMIDI:
    """Convenience for evaluation: the MIDI of a whole track (bars to cover c.duration_s unless n_bars given)."""
    composer = Composer(c)
    n_samples = int(round(c.duration_s * composer.grid.sample_rate))
    if n_bars:
        return bars_to_midi(list(composer.bars(n_bars)), c)
    return bars_to_midi(list(composer.bars(composer.grid.bars_for(n_samples))), c, n_samples=n_samples)

"""Blind paired listening tests: a pool of pre-rendered clips, balanced pairs, votes, and results with intervals.

    pool = ComparePool(store, folder, CompareConfig(systems=("rwkv", "markov"), prompts=("rainy night",)))
    pool.fill()                                        # renders what is missing (the app runs it in a thread)
    p = pool.draw("web-1")                             # -> ShownPair(pair_id, prompt, path_a, path_b)
    pool.vote(p.pair_id, "web-1", quality="A", match="same", comment="")
    pool.results()                                     # win rates, Bradley-Terry ranking, consistency, ...

Every system's clip goes through the same renderer, lo-fi chain, textures and mastering at the prompt's tempo and
key, so only the music differs: "rwkv" is the current models (piano, drums, bass), "markov" and "convlstm" the
baselines (piano only, as they were built), "real" a POP909 excerpt (piano; only where the data set is present).
Clip files are named by a random id and carry no tags, so nothing a client receives names its system.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from text2lofi.evaluate.paired import (Vote, bradley_terry_intervals, consistency, mean_interval, pair_table,
                                       votes_needed)

if TYPE_CHECKING:                # the app's options import CompareConfig; the store and MIDI load when used
    import pretty_midi

    from text2lofi.app.survey import SurveyStore

SYSTEMS = ("rwkv", "markov", "convlstm", "real")
STUDY_PROMPTS = ("rainy night study beats", "sunny sunday morning coffee, jazzy", "slow melancholic piano",
                 "late night city drive", "ocean waves and soft keys to fall asleep")
MIN_LISTEN_S = 10.0           # a vote is taken only this long after its pair was shown (both clips heard)
REPEAT_SHARE = 0.1            # share of pairs that repeat one the rater voted on (A and B swapped): consistency
REPEAT_AFTER = 3              # ... once the rater has voted on this many
CONSENT = ("**Blind listening test.** You will hear two short clips made for the same text, labelled only A and B. "
           "Say which sounds better and which fits the text better, or that they are the same. Your answers are "
           "stored anonymously under a random id this server gives you, only to compare music systems; no name, "
           "address or recording of you is kept. By voting you agree to this.")


@dataclass(frozen=True)
class CompareConfig:
    systems: tuple[str, ...] = ("rwkv", "markov", "convlstm", "real")
    prompts: tuple[str, ...] = STUDY_PROMPTS
    clip_s: float = 15.0
    seeds: int = 2                 # clips per (system, prompt): pairs do not always play the same two
    data: str | None = None        # POP909 folder for "real" (default: the shared data folder)
    min_listen_s: float = MIN_LISTEN_S


@dataclass(frozen=True)
class ShownPair:
    pair_id: str
    prompt: str
    path_a: Path
    path_b: Path


@dataclass
class ComparePool:
    store: SurveyStore
    folder: Path
    config: CompareConfig = field(default_factory=CompareConfig)
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    skipped: dict[str, str] = field(default_factory=dict)    # system -> why it has no clips
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _results: tuple | None = None                               # (what it was computed from, results)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        unknown = set(self.config.systems) - set(SYSTEMS)
        if unknown:
            raise ValueError(f"systems must be among {', '.join(SYSTEMS)}; unknown: {', '.join(sorted(unknown))}")

    # ---- the pool ---------------------------------------------------------------------------------------
    def ready(self) -> dict[tuple[str, str], list[dict]]:
        """(prompt, system) -> clips whose files are on disk."""
        out: dict[tuple[str, str], list[dict]] = {}
        for c in self.store.clips():
            if c["prompt"] in self.config.prompts and c["system"] in self.config.systems and Path(c["path"]).is_file():
                out.setdefault((c["prompt"], c["system"]), []).append(c)
        return out

    def fill(self) -> int:
        """Render every missing clip (one at a time); returns how many were made. Safe to call again."""
        made = 0
        for seed in range(self.config.seeds):
            for prompt in self.config.prompts:
                for system in self.config.systems:
                    if system in self.skipped or len(self.ready().get((prompt, system), [])) > seed:
                        continue
                    try:
                        path = render_clip(system, prompt, seed, self.config.clip_s, self.folder, self.config.data)
                    except FileNotFoundError as exc:          # e.g. no POP909 here: that system sits out
                        self.skipped[system] = str(exc)
                        continue
                    self.store.add_clip(system, prompt, seed, path)
                    made += 1
        return made

    def start_filling(self) -> threading.Thread:
        t = threading.Thread(target=self.fill, name="compare-pool", daemon=True)
        t.start()
        return t

    # ---- pairs and votes -----------------------------------------------------------------------------
    def draw(self, rater_id: str, prompt: str | None = None) -> ShownPair:
        """The next pair for this rater: now and then a repeat of one they voted on (A/B swapped), otherwise the
        (prompt, system pair) cell shown least so far, clips and A/B order at random."""
        ready = self.ready()
        with self._lock:
            rows = self.store.pair_rows()
            mine = [r for r in rows if r["rater_id"] == rater_id and r["quality"] and not r["repeat_of"]]
            repeated = {r["repeat_of"] for r in rows if r["repeat_of"]}
            fresh = [r for r in mine if r["pair_id"] not in repeated and (prompt is None or r["prompt"] == prompt)]
            paths = {c["id"]: Path(c["path"]) for clips in ready.values() for c in clips}
            fresh = [r for r in fresh if r["clip_a"] in paths and r["clip_b"] in paths]
            if len(mine) >= REPEAT_AFTER and fresh and self.rng.random() < REPEAT_SHARE:
                r = fresh[int(self.rng.integers(len(fresh)))]
                return self._show(rater_id, r["prompt"], r["clip_b"], r["clip_a"], paths, repeat_of=r["pair_id"])
            prompts = [prompt] if prompt is not None else list(self.config.prompts)
            cells = [(pr, a, b) for pr in prompts for i, a in enumerate(self.config.systems)
                     for b in self.config.systems[i + 1:] if ready.get((pr, a)) and ready.get((pr, b))]
            if not cells:
                have = sum(len(v) for v in ready.values())
                raise LookupError(f"the comparison clips are still being prepared ({have} ready); try again soon")
            shown = {}
            for r in rows:
                if not r["repeat_of"]:
                    key = (r["prompt"], *sorted((r["system_a"], r["system_b"])))
                    shown[key] = shown.get(key, 0) + 1
            counts = [shown.get((pr, *sorted((a, b))), 0) for pr, a, b in cells]
            least = [c for c, n in zip(cells, counts) if n == min(counts)]
            pr, a, b = least[int(self.rng.integers(len(least)))]
            clip_a = ready[(pr, a)][int(self.rng.integers(len(ready[(pr, a)])))]
            clip_b = ready[(pr, b)][int(self.rng.integers(len(ready[(pr, b)])))]
            if self.rng.random() < 0.5:
                clip_a, clip_b = clip_b, clip_a
            return self._show(rater_id, pr, clip_a["id"], clip_b["id"], paths)

    def _show(self, rater_id: str, prompt: str, clip_a: str, clip_b: str, paths: dict[str, Path],
              repeat_of: str | None = None) -> ShownPair:
        pid = self.store.record_pair(rater_id, prompt, clip_a, clip_b, repeat_of)
        return ShownPair(pid, prompt, paths[clip_a], paths[clip_b])

    def vote(self, pair_id: str, rater_id: str, quality: str, match: str, comment: str = "",
             now: datetime | None = None) -> dict:
        """A rater's answer on a pair they were shown, once they had time to hear both clips."""
        from text2lofi.app.survey import check_choices

        check_choices(quality, match)                                        # the answer first, then the timing
        p = self.store.pair(pair_id) if isinstance(pair_id, str) else None
        if p is None:
            raise ValueError(f"pair_id {pair_id!r} is unknown: draw a pair first")
        if p["rater_id"] != rater_id:
            raise ValueError("pair_id belongs to another listener: draw your own pair")
        waited = ((now or datetime.now(timezone.utc)) - p["shown_at"]).total_seconds()
        if waited < self.config.min_listen_s:
            raise ValueError(f"listen to both clips first: voting opens {self.config.min_listen_s - waited:.0f} s "
                             f"from now")
        return self.store.vote(pair_id, quality, match, comment)

    # ---- results ---------------------------------------------------------------------------------------
    def results(self, n_boot: int = 200) -> dict:
        """Per question: pair win rates with 95% Wilson intervals and a Bradley-Terry ranking with 95% bootstrap
        intervals; votes, raters, rater consistency on repeats, and the votes a difference needs."""
        from text2lofi.app.survey import PAIR_QUESTIONS

        rows = [r for r in self.store.pair_rows() if r["quality"]]
        scores = self.store.ratings()
        # The bootstrap is the costly part and the Results tab asks on every page load: reuse the results until a
        # vote or a rating is added or changed.
        key = (n_boot, tuple((r["pair_id"], r["quality"], r["match"]) for r in rows),
               tuple(tuple(s.values()) for s in scores))
        if self._results is not None and self._results[0] == key:
            return self._results[1]
        first = [r for r in rows if not r["repeat_of"]]
        out: dict = {"votes": len(first), "raters": len({r["rater_id"] for r in rows}), "questions": {}}
        for q in PAIR_QUESTIONS:
            votes = [Vote(r["system_a"], r["system_b"], winner(r, q)) for r in first]
            ranking = sorted(bradley_terry_intervals(votes, n_boot=n_boot).items(), key=lambda kv: -kv[1][0])
            out["questions"][q] = {"pairs": pair_table(votes), "ranking": ranking}
        by_id = {r["pair_id"]: r for r in rows}
        out["repeats"], out["consistency"] = consistency(
            (winner(by_id[r["repeat_of"]], "quality"), winner(r, "quality"))
            for r in rows if r["repeat_of"] in by_id)
        out["votes_needed"] = {p: votes_needed(p) for p in (0.6, 0.65, 0.7, 0.75)}
        out["likert"] = {q: mean_interval([s[q] for s in scores]) + (len(scores),) for q in ("clarity", "quality",
                                                                                                "match")}
        self._results = (key, out)
        return out


def winner(row: dict, question: str) -> str:
    """The system a vote chose on `question` ("same" for a tie)."""
    choice = row[question]
    return row["system_a"] if choice == "A" else row["system_b"] if choice == "B" else "same"


# ---- rendering one clip ------------------------------------------------------------------------------------
def render_clip(system: str, prompt: str, seed: int, clip_s: float, folder: Path, data: str | None = None) -> Path:
    """One clip of `system` for `prompt`, clip_s seconds, as an untagged MP3 named by a random id."""
    import uuid

    from text2lofi.audio import files
    from text2lofi.pipeline import generate, render_midi, resolve

    c = resolve(prompt, seed=1000 + seed, duration_s=clip_s)
    if system == "rwkv":
        track = generate(c)
    else:
        bars = int(np.ceil(clip_s / (240.0 / c.tempo_bpm))) + 1
        track = render_midi(baseline_midi(system, c, bars, seed, data), c)
    path = Path(folder) / f"{uuid.uuid4().hex}.mp3"
    files.write_audio(path, track.iter_audio(), track.sample_rate)          # no tags: nothing names the system
    return path


def baseline_midi(system: str, c, bars: int, seed: int, data: str | None = None) -> pretty_midi.PrettyMIDI:
    """`bars` bars of piano from a baseline (or a real excerpt) at the conditions' tempo (and key, where the
    system takes one)."""
    import pretty_midi
    import torch

    from text2lofi.compose.tokenizer import MusicTokenizer
    from text2lofi.evaluate import baselines as bl
    from text2lofi.evaluate.systems import EvalConfig, baselines_dir, excerpt

    if system == "markov":
        chain = bl.MarkovChain.load(baselines_dir(EvalConfig()) / "markov_piano.npz")
        tok = MusicTokenizer.piano()
        prefix = tok.condition_prefix(key_pc=c.tonic_pc, mode=c.mode, tempo_bpm=c.tempo_bpm, style="pop")
        tokens = chain.generate(tok, prefix, bars, torch.Generator().manual_seed(seed))
        return tok.to_midi(tok.decode_bars(tokens[len(prefix):]), tempo_bpm=c.tempo_bpm)
    if system == "convlstm":
        model = bl.load_convlstm(baselines_dir(EvalConfig()) / "convlstm.pt")
        # Its seed window: from POP909 where present, else from a Markov piece (the model needs 9 steps to start).
        try:
            rolls = bl.pop909_rolls(data or EvalConfig().pop909, "val", limit=8)
        except (FileNotFoundError, OSError, ValueError):
            rolls = []
        if not rolls:
            rolls = [bl.piano_roll(baseline_midi("markov", c, 4, seed))]
        window = bl.seed_windows(rolls, 1, np.random.default_rng(seed))[0]
        # Run it as the evaluation does (CONVLSTM_BARS, the original's growing offset) and play its last bars.
        roll, _ = bl.generate_convlstm(model, window, max(bars, bl.CONVLSTM_BARS) * 16, offset=True)
        return bl.roll_to_midi(roll[-bars * 16:], bpm=c.tempo_bpm)
    if system == "real":
        folder = Path(data or EvalConfig().pop909)
        pieces = bl.pop909_files(folder, "val") if folder.is_dir() else []
        if not pieces:
            raise FileNotFoundError(f"no POP909 pieces in {folder}: the 'real' system needs the data set")
        pm = excerpt(pretty_midi.PrettyMIDI(str(pieces[seed % len(pieces)][1])), bars)
        return _retimed(pm, c.tempo_bpm)
    raise ValueError(f"system must be one of {', '.join(SYSTEMS)}, got {system!r}")


def _retimed(pm: pretty_midi.PrettyMIDI, bpm: float) -> pretty_midi.PrettyMIDI:
    """Pitched notes moved onto a constant `bpm` (beat positions kept), so a real excerpt plays at the prompt's
    tempo like every other system's clip."""
    import pretty_midi

    out = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    inst = pretty_midi.Instrument(0, name="piano")
    for n in (n for i in pm.instruments if not i.is_drum for n in i.notes):
        start, end = (pm.time_to_tick(t) / pm.resolution * 60.0 / bpm for t in (n.start, n.end))
        inst.notes.append(pretty_midi.Note(n.velocity, n.pitch, start, max(end, start + 0.05)))
    out.instruments.append(inst)
    return out


"""The Gradio page: Create (rating beside the track), Score a video, Chat, Listen forever, Compare, Results,
and the stable API, wired to `app.studio.Studio`.

API (names are a public contract, see docs/api.md):
  /generate  (prompt: str, duration_s: float | None, seed: int | None) -> (audio file, MIDI file, info dict)
  /interpret (prompt: str, previous: dict | None) -> conditions dict
  /rate      (generation_id: str, clarity: int, quality: int, match: int, comment: str) -> dict
  /accompany (midi: file, prompt: str, continue_s: float | None, seed: int | None) -> (audio file, MIDI file,
             info dict): the file's notes kept, drums, bass and textures added, the piano continued if asked
  /refine    (generation_id: str, text: str) -> as /generate: that track edited by text ("slower"), its seed kept
  /loop      (prompt: str, duration_s: float | None, seed: int | None) -> as /generate, a seamless loop
  /extend    (generation_id: str, seconds: float) -> as /generate: that track made longer, notes before its outro kept
  /vary      (generation_id: str, part: "piano" | "drums" | "bass", seed: int | None, section: int | None)
             -> as /generate: that part drawn again (in one section of info's plan if given), the rest kept
  /score_video (video: file, prompt: str, level_db: float | None, seed: int | None, keep_audio: bool)
             -> (video file, info dict): music exactly as long as the video, the picture copied
  /listen    (prompt: str) -> an endless stream of (audio chunk, now-playing line)
  /survey_pair (prompt: str | None) -> (audio A, audio B, {"pair_id", "prompt"}): a blind pair for this client
  /survey_vote (pair_id: str, quality: "A"|"B"|"same", match: "A"|"B"|"same", comment: str) -> dict
  /steer     (text: str) -> conditions dict: changes the caller's running /listen stream at its next bar line
  /remix     (generation_id: str, levels: dict of layer -> dB) -> as /generate: that track mixed again from its
             stems at those levels (piano, drums, bass, each texture, "lofi"; -60 is off), nothing composed again
Every other event is private (left out of the API's description; the page reaches it through the queue).
Everything goes through the queue: /run is closed. Each event is checked when it is queued (`_Gate`): a bad
argument, a full generation lane or a client over its limits is refused there (HTTP 422, a message naming the
field) before anything runs or is stored. docs/reliability.md has the lanes, limits and figures.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import math
import os
import queue
import statistics
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr
import numpy as np

from text2lofi.app.serve import AppConfig, default_output_dir
from text2lofi.app.studio import (HISTORY_SIZE, MAX_PROMPT_CHARS, SAVING, SEED_RANGE, Studio, StudioError,
                                  check_id, check_prompt, describe, shown)
from text2lofi.app.compare import CONSENT
from text2lofi.app.guard import GRADIO_CACHE, Backoff, Identity, RateWindow, Sweeper
from text2lofi.app.survey import CHOICES, MAX_COMMENT_CHARS, QUESTIONS, SurveyStore, check_score
from text2lofi.pipeline import LOFI_LAYER, MIX_DB_RANGE, PARTS, iter_chunks, master_stream, mixer_layers
from text2lofi.conditions import DURATION_RANGE, SAMPLE_RATE, TEMPO_RANGE, TEXTURES, TONICS

if TYPE_CHECKING:
    from matplotlib.figure import Figure   # imported where plotted: the Results tab, not the app's start

EXAMPLES = [
    "rainy night study beats, 4 minutes",
    "sunny sunday morning coffee, jazzy, 2 minutes",
    "slow melancholic piano by the fireplace, no drums",
    "late night city drive, tape hiss, 90 bpm",
    "ocean waves and soft keys to fall asleep, 10 minutes",
]


def _refusal(message: str) -> gr.Error:
    """The page's and API's answer to a request we refuse on purpose: the message, and no traceback in the log
    (an expected refusal is not a fault)."""
    return gr.Error(message, print_exception=False)


def _optional_number(text: str | None, name: str, lo: float, hi: float, whole: bool = False) -> float | None:
    """An override box: empty -> None (keep what the text says), else a number in lo..hi or a clear error."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise _refusal(f"{name} must be a number, got {text!r}") from None
    if not lo <= value <= hi or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise _refusal(f"{name} must be {kind} from {lo:g} to {hi:g}, got {text}")
    return value


_PLOTTING = threading.Lock()


# ---- checks made when an event is queued: (value) -> None, StudioError naming the field -----------------------
def _optional(check: Callable) -> Callable:
    return lambda value: None if value is None else check(value)


def _number(field: str, lo: float = -math.inf, hi: float = math.inf, whole: bool = False) -> Callable:
    def check(value) -> None:
        # bool is an int to Python but never a number a user meant; 4.5 is not a whole number (no rounding).
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise StudioError(f"{field} must be a number, got {shown(value)}")
        if whole and value != int(value):
            raise StudioError(f"{field} must be a whole number, got {value!r}")
        if not lo <= value <= hi:
            raise StudioError(f"{field} must be from {lo:g} to {hi:g}, got {value!r}")
    return check


def _text(field: str, limit: int = MAX_PROMPT_CHARS) -> Callable:
    def check(value) -> None:
        if value is not None and not isinstance(value, str):
            raise StudioError(f"{field} must be text, got {type(value).__name__}")
        if value and len(value) > limit:
            raise StudioError(f"{field} is {len(value)} characters; the limit is {limit}")
    return check


def _one_of(field: str, allowed: tuple) -> Callable:
    def check(value) -> None:
        if value not in allowed:
            raise StudioError(f"{field} must be one of {', '.join(map(str, allowed))}, got {shown(value)}")
    return check


def _flag(field: str) -> Callable:
    def check(value) -> None:
        if not isinstance(value, bool):
            raise StudioError(f"{field} must be true or false, got {shown(value)}")
    return check


def _levels(value) -> None:
    """The mixer's levels: a dict of layer name -> dB (which layers a track has is checked against it)."""
    if not isinstance(value, dict):
        raise StudioError(f"levels must be a dict of layer -> dB such as {{\"piano\": 3, \"rain\": -60}}, "
                          f"got {shown(value)}")
    if len(value) > len(MIX_LAYERS):
        raise StudioError(f"levels has {len(value)} layers; a track has at most {len(MIX_LAYERS)}")
    for name, db in value.items():
        if name not in MIX_LAYERS:
            raise StudioError(f"levels: {shown(name)} is not a layer (they are {', '.join(MIX_LAYERS)})")
        _number(f"levels[{name!r}]", *MIX_DB_RANGE)(db)


PROMPT, TEXT = check_prompt, (lambda v: check_prompt(v, "text", "slower"))
GENERATION_ID, PAIR_ID = check_id, (lambda v: check_id(v, "pair_id"))
SEED = Studio.check_seed
SCORE = {q: functools.partial(check_score, q) for q in QUESTIONS}
COMMENT = _text("comment", MAX_COMMENT_CHARS)


def _client(request: gr.Request | None) -> str:
    """The key per-client limits count under: the caller's address (behind a proxy, the proxy's)."""
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


class _Gate:
    """Checks every event when it is queued (a Gradio validator), before any work or waiting: argument types and
    sizes, the generation lane's room, and the caller's limits. A refusal is HTTP 422 with a message naming the
    field; nothing runs and nothing is stored."""

    def __init__(self, config: AppConfig, identity: Identity):
        self.config, self.identity, limits = config, identity, config.limits
        self.starts = RateWindow(limits.starts_per_minute, 60.0)
        self.ratings = RateWindow(limits.ratings_per_minute, 60.0)
        self.admin = Backoff(limits.admin_free_tries, limits.admin_backoff_s, limits.admin_backoff_max_s)
        self.streams: dict[str, int] = {}                  # client -> endless streams it holds now
        self.took: deque[float] = deque(maxlen=20)         # seconds the last generations ran
        self._lock = threading.Lock()
        self.demo: gr.Blocks | None = None

    def _generation_lane(self) -> tuple[int, int]:
        """(waiting, running) generations. Read from Gradio's queue, the one place that knows which queued events
        are still wanted (a closed tab's event leaves it); `demo._queue` is internal to Gradio 6, and the busy test
        in tests/test_reliability.py fails if it changes."""
        lane = self.demo._queue.event_queue_per_concurrency_id.get(GENERATE) if self.demo else None
        return (len(lane.queue), lane.current_concurrency) if lane else (0, 0)

    def _admit(self, lane: str, request: gr.Request, values: dict) -> str | None:
        """Why this request may not be queued now, or None."""
        client = _client(request)
        if lane == GENERATE:
            waiting, running = self._generation_lane()
            if waiting >= self.config.queue_size:
                typical = statistics.median(self.took) if self.took else 30.0
                eta = math.ceil(typical * (waiting + running) / max(self.config.concurrency, 1))
                return (f"busy: {waiting} tracks are waiting for {self.config.concurrency} makers; try again in "
                        f"about {eta} s")
            wait = self.starts.take(client)
            if wait:
                return (f"too many tracks started from your address ({self.config.limits.starts_per_minute} a "
                        f"minute); try again in {math.ceil(wait)} s")
        elif lane == LISTEN:
            with self._lock:
                if self.streams.get(client, 0) >= self.config.limits.streams_per_client:
                    return (f"you already have {self.streams[client]} streams playing (the limit is "
                            f"{self.config.limits.streams_per_client}): stop one first")
        elif lane == RATE:
            wait = self.ratings.take(self.rater(values.get("rater"), request))
            if wait:
                return (f"too many ratings ({self.config.limits.ratings_per_minute} a minute); try again in "
                        f"{math.ceil(wait)} s")
        elif lane == ADMIN:
            wait = self.admin.wait(client)
            if wait:
                return f"too many wrong passwords; try again in {math.ceil(wait)} s"
        return None

    def rater(self, page_rater: str | None, request: gr.Request) -> str:
        """Who is writing: the page's signed identity, else an id the server derives from the API session."""
        return page_rater or self.identity.for_session(getattr(request, "session_hash", None))

    def __call__(self, fn: Callable, lane: str | None = None, toast: bool = False, names: list[str] | None = None,
                 **checks: Callable) -> Callable:
        """A validator for `fn`'s event: `checks` maps fn's parameter names to checks (value -> ValueError naming
        the field when it is refused); lane adds its room and limits (GENERATE, LISTEN, RATE, ADMIN). toast:
        refuse with an error the page shows as a message (HTTP 400) instead of marking an input (422), for page
        events whose inputs are not all on screen (a State). names: the inputs' names when fn takes *args."""
        names = names or [n for n, p in inspect.signature(fn).parameters.items()
                          if n not in ("progress", "request") and p.kind is p.POSITIONAL_OR_KEYWORD]

        def validate(*args):
            *values, request = args
            values = dict(zip(names, values))
            refused: dict[str, str] = {}
            for name, check in checks.items():
                try:
                    check(values.get(name))
                except ValueError as exc:                 # StudioError, or the survey's own check of a score
                    refused[name] = str(exc)
            if not refused and lane:
                why = self._admit(lane, request, values)
                if why:
                    refused[names[0] if names else "request"] = why
            if refused and toast:
                raise _refusal(next(iter(refused.values())))
            verdicts = [gr.validate(n not in refused, refused.get(n, "")) for n in names]
            return verdicts[0] if len(verdicts) == 1 else verdicts      # Gradio wraps a single input's answer

        params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
        validate.__signature__ = inspect.Signature(
            params + [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)])
        validate.__annotations__ = {"request": gr.Request}        # Gradio passes the request by this annotation
        return validate

    @contextlib.contextmanager
    def _clock(self):
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.took.append(time.monotonic() - t0)

    def timed(self, fn: Callable) -> Callable:
        """fn, its running time kept for the busy message's estimate (a generator stays one, for Gradio)."""
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def run_all(*args, **kwargs):
                with self._clock():
                    yield from fn(*args, **kwargs)
            return run_all

        @functools.wraps(fn)
        def run(*args, **kwargs):
            with self._clock():
                return fn(*args, **kwargs)
        return run

    @contextlib.contextmanager
    def stream(self, request: gr.Request):
        """Count one endless stream for the caller while it plays."""
        client = _client(request)
        with self._lock:
            self.streams[client] = self.streams.get(client, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self.streams[client] -= 1
                if not self.streams[client]:
                    del self.streams[client]


GENERATE, LISTEN, RATE, ADMIN = "generate", "listen", "rate", "admin"


def survey_table(summary: dict) -> list[list[Any]]:
    """Rows: question, answers, mean, then how many gave 1..5 (the original project's survey table)."""
    rows = []
    for q in QUESTIONS:
        s = summary["questions"][q]
        mean = "" if s["mean"] is None else round(s["mean"], 2)
        rows.append([q, s["n"], mean, *(s["counts"][k] for k in range(1, 6))])
    return rows


def survey_plot(summary: dict) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    fig = Figure(figsize=(8, 3), dpi=90)
    ax = fig.subplots()
    width = 0.25
    for i, q in enumerate(QUESTIONS):
        counts = summary["questions"][q]["counts"]
        ax.bar(np.arange(1, 6) + (i - 1) * width, [counts[k] for k in range(1, 6)], width, label=q)
    ax.set_xticks(range(1, 6))
    ax.set_xlabel("score")
    ax.set_ylabel("ratings")
    ax.set_ylim(0, max(1, max(max(summary["questions"][q]["counts"].values()) for q in QUESTIONS)) * 1.1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    fig.tight_layout()
    return fig


def compare_view(results: dict, systems: tuple[str, ...]) -> tuple[str, list, list, Figure]:
    """The Results tab's blind-comparison part: a summary, the pair table, the ranking and its plot."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter
    votes, raters = results["votes"], results["raters"]
    if not votes:
        summary = ("**Blind comparisons:** no votes yet. Open the **Compare** tab to listen to two clips of the "
                   "same text and say which is better; rankings with their uncertainty appear here.")
    else:
        repeats, agree = results["repeats"], results["consistency"]
        summary = (f"**Blind comparisons:** {_plural(votes, 'vote')} from {_plural(raters, 'rater')}. Ranking: "
                   "Bradley-Terry strength (geometric mean 1) with a 95% bootstrap interval; pair win rates with "
                   "95% Wilson intervals (a tie counts half). " +
                   (f"Consistency: the same choice on {agree:.0%} of {_plural(repeats, 'repeated pair')}. "
                    if repeats else ""))
    likert = [f"{q} {m:.2f} ({lo:.2f}-{hi:.2f})" for q, (m, lo, hi, n) in results["likert"].items()
              if m is not None and lo is not None]
    if likert:
        n = next(iter(results["likert"].values()))[3]
        summary += (f"\n\nSingle-track ratings, mean (95% interval) of {_plural(n, 'rating')}: "
                    + ", ".join(likert) + ".")
    need = results["votes_needed"]
    (p0, n0), *rest = need.items()
    summary += (f"\n\nHow many votes: telling a system that wins {p0:.0%} of the time from a coin flip takes about "
                f"{n0} votes on that pair; " + "; ".join(f"{p:.0%}: {n}" for p, n in rest)
                + " (80% power, 5% level; docs/survey.md).")
    pairs, ranking = [], []
    for q, r in results["questions"].items():
        for row in r["pairs"]:
            lo, hi = row["ci95"]
            pairs.append([q, f"{row['system']} vs {row['versus']}", row["votes"], row["wins"], row["losses"],
                          row["ties"], f"{row['win_rate']:.2f}", f"{lo:.2f}-{hi:.2f}"])
        for rank, (name, (s, lo, hi)) in enumerate(r["ranking"], 1):
            ranking.append([q, rank, name, f"{s:.2f}", f"{lo:.2f}-{hi:.2f}"])
    fig = Figure(figsize=(8, 3), dpi=90)
    ax = fig.subplots()
    if votes:
        names = sorted({name for r in results["questions"].values() for name, _ in r["ranking"]})
        for k, (q, r) in enumerate(results["questions"].items()):      # one row per system, a dot per question
            strength = dict(r["ranking"])
            s = np.array([strength[n][0] for n in names])
            err = np.array([[strength[n][0] - strength[n][1], strength[n][2] - strength[n][0]] for n in names]).T
            ax.errorbar(s, np.arange(len(names)) + 0.15 * k, xerr=err, fmt="o", capsize=3, label=q)
        ax.set_yticks(np.arange(len(names)) + 0.075, names)
        ax.set_xscale("log")
        # Plain tick labels: the default log labels go through mathtext, whose parser is not thread-safe.
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend()
        ax.set_xlabel("Bradley-Terry strength (log scale, 95% interval)")
    else:
        ax.text(0.5, 0.5, "no votes yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    fig.tight_layout()
    return summary, pairs, ranking, fig


def _with_notes(g) -> str:
    """What was made (and at which mixer levels), and every clamp or word not understood, so nothing is silent."""
    notes, levels = g.conditions.warnings, g.metadata.get("mix_levels")
    mix = ", ".join(f"{k.replace('_', ' ')} {'off' if v <= MIX_DB_RANGE[0] else f'{v:+g} dB'}"
                    for k, v in (levels or {}).items() if v)
    return (g.describe() + (f"\n\n**Mix:** {mix}" if mix else "")
            + ("\n\n**Note:** " + "; ".join(notes) if notes else ""))


# Stop right after Start: the Start's request may reach the server after the Stop's; the Stop waits this long (s)
# for it. Gradio's cancel cannot help then: before the Start is queued the page has no event id to cancel.
STOP_WAIT_S = 2.0
CANCEL_WAITING_JS = "() => { document.querySelector('#listen-cancel')?.click(); }"
STOP_PLAYER_JS = "() => { document.querySelectorAll('#listen-audio audio').forEach((a) => a.pause()); }"
HEADLINE_CHARS = 80      # a prompt quoted in a heading: longer ones are cut (a 2,000-character one fills a phone)


def _headline(text: str, limit: int = HEADLINE_CHARS) -> str:
    """A prompt as a heading shows it: one line, at most `limit` characters, cut at a word with '…'."""
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:.") + "…"


def describe_short(g) -> str:
    """A track in a list: length, tempo, key, seed (two takes of one text differ there), and whether it is a mix."""
    c, (minutes, seconds) = g.conditions, divmod(int(round(g.duration_s)), 60)
    mixed = " · mixed" if g.metadata.get("mix_levels") else ""
    return f"{minutes}:{seconds:02d} · {c.tempo_bpm:.0f} BPM · {c.key} {c.mode} · seed {c.seed}{mixed}"


def _tracks_label(n: int) -> str:
    return f"Your tracks ({n}, kept in this browser)" if n else "Your tracks (none yet)"


def _tracks_panel(n: int) -> gr.Accordion:
    return gr.Accordion(label=_tracks_label(n))


def _pcm16(audio: np.ndarray) -> tuple[int, np.ndarray]:
    """(n, 2) float32 -> what a streaming gr.Audio takes: (sample rate, int16 samples)."""
    return SAMPLE_RATE, (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


class _Abandoned(Exception):
    """The page that asked for a generation has gone: its work stops at the next chunk."""


# The Create tab's outputs for one track, in order (see _Handlers._shown_generation and build_app's `created`).
CREATED = ("audio", "downloads", "piano_roll", "conditions", "summary", "chart", "generation_id", "heading")
_EMPTY_TRACK = (None, None, None, None, "", "", None, "Generate a track, listen, then rate it here.")
PREVIEW_PIECE = 2 * SAMPLE_RATE                    # samples per message to the preview player (2 s)
MIX_LAYERS = (*PARTS, *TEXTURES, LOFI_LAYER)      # every slider the mixer has; a track shows its own


# Where each stage sits on the progress bar: its share of a page generation's time, measured on the 2-core box for
# a 4-minute track with the page's files (two runs, 22.9 s and 21.9 s): interpreting 0.2 %, composing and rendering
# bar by bar 72-75 %, mastering 8-9 %, writing WAV, MP3, MIDI and the piano roll 19-20 %. Composing and rendering
# interleave per bar and report the same position, so they share one span.
PROGRESS_SPANS = {"interpreting": (0.0, 0.01), "composing": (0.01, 0.76), "rendering": (0.01, 0.76),
                  "mastering": (0.76, 0.84), SAVING: (0.84, 1.0)}
PROGRESS_LABELS = {"interpreting": "reading your words", "composing": "composing and playing",
                   "rendering": "composing and playing", "mastering": "mastering", SAVING: "saving the files"}


def progress_reporter(bar: Callable, clock: Callable[[], float] = time.monotonic) -> Callable[[str, float], None]:
    """(stage, fraction) reports -> one forward-only bar with what is happening and, once a tenth is done, an
    estimate of the seconds left (from the pace so far)."""
    start, done = clock(), [0.0]

    def report(stage: str, fraction: float) -> None:
        lo, hi = PROGRESS_SPANS.get(stage, (0.0, 1.0))
        done[0] = max(done[0], lo + (hi - lo) * min(max(fraction, 0.0), 1.0))
        label = PROGRESS_LABELS.get(stage, stage)
        if 0.1 <= done[0] < 1.0:
            left = (clock() - start) * (1.0 - done[0]) / done[0]
            label += f" · about {math.ceil(left)} s left"
        bar(done[0], desc=label)
    return report


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class _Handlers:
    """Gradio event handlers: read the widgets, call the Studio, turn StudioError into gr.Error. No policy here."""

    def __init__(self, studio: Studio, config: AppConfig, gate: _Gate):
        self.studio, self.config, self.gate = studio, config, gate

    @staticmethod
    def _progress(bar: gr.Progress) -> Callable[[str, float], None]:
        return progress_reporter(bar)

    # ---- API --------------------------------------------------------------------------------------
    def api_generate(self, prompt: str, duration_s: float | None, seed: int | None, progress=gr.Progress()):
        with _shown():
            g = self.studio.create(prompt, seed=seed, duration_s=duration_s, progress=self._progress(progress))
        return str(g.files["wav"]), str(g.files["midi"]), g.info()

    def api_loop(self, prompt: str, duration_s: float | None, seed: int | None, progress=gr.Progress()):
        with _shown():
            g = self.studio.create(prompt, seed=seed, duration_s=duration_s, loop=True,
                                   progress=self._progress(progress))
        return str(g.files["wav"]), str(g.files["midi"]), g.info()

    def api_extend(self, generation_id: str, seconds: float, progress=gr.Progress()):
        with _shown():
            g = self.studio.extend(generation_id, seconds, progress=self._progress(progress))
        return str(g.files["wav"]), str(g.files["midi"]), g.info()

    def api_vary(self, generation_id: str, part: str, seed: int | None, section: int | None,
                 progress=gr.Progress()):
        with _shown():
            g = self.studio.vary(generation_id, part, seed, progress=self._progress(progress), section=section)
        return str(g.files["wav"]), str(g.files["midi"]), g.info()

    def api_score_video(self, video, prompt: str, level_db: float | None, seed: int | None, keep_audio: bool,
                        progress=gr.Progress()):
        with _shown():
            out, g = self.studio.score_video(video, prompt, seed, level_db, bool(keep_audio),
                                             self._progress(progress))
        return str(out), g.info()

    def api_interpret(self, prompt: str, previous: dict | None) -> dict:
        with _shown():
            return self.studio.conditions(prompt, previous).to_dict()

    def rate(self, generation_id: str, clarity: int, quality: int, match: int, comment: str,
             rater: str | None, request: gr.Request) -> dict:
        # Page users carry a signed anonymous id from their browser; API clients are one rater per session.
        with _shown():
            return self.studio.rate(generation_id, self.gate.rater(rater, request), clarity, quality, match,
                                    comment)

    # ---- page-only events -------------------------------------------------------------------------
    def rate_page(self, generation_id: str | None, clarity: int, quality: int, match: int, comment: str,
                  rater: str | None, request: gr.Request) -> str:
        r = self.rate(generation_id, clarity, quality, match, comment, rater, request)
        scores = ", ".join(f"{q} {r[q]}" for q in QUESTIONS)
        return f"**Thank you:** rating {'updated' if r['updated'] else 'stored'} ({scores})."

    @staticmethod
    def _overrides(seed, duration_s, tempo_bpm, key, lofi_amount, textures) -> dict:
        """The override boxes read into Conditions fields (None: as the text says); gr.Error names a bad box."""
        return dict(seed=_optional_number(seed, "seed", *SEED_RANGE, whole=True),
                    duration_s=_optional_number(duration_s, "duration_s", -math.inf, math.inf),  # range: studio
                    tempo_bpm=_optional_number(tempo_bpm, "tempo", *TEMPO_RANGE), key=key or None,
                    lofi_amount=_optional_number(lofi_amount, "lo-fi amount", 0.0, 1.0), textures=textures or None)

    def _kept_seed(self, seed: str | None, keep: bool, current: str | None) -> str | None:
        """The seed box, or with "keep this track's seed" ticked (and the box empty) the current track's seed."""
        if keep and not (seed or "").strip() and current:
            with _shown():
                earlier = self.studio.store.generation(check_id(current))
            if earlier is not None:
                return str(earlier["seed"])
        return seed

    def check_create(self, prompt, duration_s, tempo_bpm, key, seed, lofi_amount, textures, loop, keep_seed,
                     current):
        """Refuse a bad request before anything runs, with no outputs: the track on the page stays as it was."""
        seed = self._kept_seed(seed, keep_seed, current)
        with _shown():
            self.studio.conditions(prompt, **self._overrides(seed, duration_s, tempo_bpm, key, lofi_amount,
                                                             textures))

    def create(self, prompt, duration_s, tempo_bpm, key, seed, lofi_amount, textures, loop, keep_seed, current,
               progress=gr.Progress()):
        """Generate, the first bars playing in the preview while the rest is made (see _previewed)."""
        seed = self._kept_seed(seed, keep_seed, current)
        overrides = self._overrides(seed, duration_s, tempo_bpm, key, lofi_amount, textures)
        yield from self._previewed(lambda on_mix: self.studio.create(
            prompt, extras=True, loop=loop, progress=self._progress(progress), on_mix=on_mix, **overrides), prompt)

    def again_page(self, generation_id, progress=gr.Progress()):
        """A new take of the current track: its settings, a new seed."""
        yield from self._previewed(lambda on_mix: self.studio.again(
            generation_id, extras=True, progress=self._progress(progress), on_mix=on_mix))

    def _previewed(self, run: Callable, prompt: str | None = None):
        """Page outputs of a generation `run(on_mix)` made on a worker thread: while it runs, the preview player
        gets each mixed chunk through a streaming master (its gain set on the first chunk, see master_stream),
        so the first bars play within seconds; then the finished track's outputs. A closed page stops the work
        at its next chunk."""
        chunks: queue.Queue = queue.Queue()
        stop, result = threading.Event(), {}

        def on_mix(chunk: np.ndarray) -> None:
            if stop.is_set():
                raise _Abandoned()
            chunks.put(chunk)

        def work() -> None:
            try:
                result["done"] = run(on_mix)
            except BaseException as exc:                  # re-raised on the event's own thread below
                result["error"] = exc
            finally:
                chunks.put(None)

        def mixed():
            while (chunk := chunks.get()) is not None:
                yield chunk

        threading.Thread(target=work, name="text2lofi-generation", daemon=True).start()
        skip = [gr.skip()] * len(CREATED)
        try:
            for out in master_stream(mixed(), None, SAMPLE_RATE):
                # The first chunk waits for every part's level (often ~30 s of music); sent in short pieces, the
                # browser starts on the first one instead of on the whole chunk.
                for piece in iter_chunks(out, PREVIEW_PIECE):
                    yield *skip, _pcm16(piece)
        finally:
            stop.set()
        with _shown():
            if "error" in result:
                raise result["error"]
        g = result["done"]
        yield *self._shown_generation(g, prompt or g.prompt), gr.skip()

    def refine_page(self, generation_id, text, progress=gr.Progress()):
        """The current track changed by text ("slower, drop the rain"), its seed kept."""
        with _shown():
            g = self.studio.refine(generation_id, text, extras=True, progress=self._progress(progress))
        return *self._shown_generation(g, g.prompt), ""

    # ---- the mixer ------------------------------------------------------------------------------------
    def mixer_view(self, generation_id):
        """The mixer's sliders for the current track: its layers shown at their levels, the others hidden."""
        layers, levels = [], {}
        if generation_id:
            with contextlib.suppress(StudioError):
                g = self.studio.recall(generation_id)
                layers = mixer_layers(g.mixer) if g.mixer and g.mixer.is_dir() else []
                levels = g.metadata.get("mix_levels", {})
        note = ("Levels against the track as made; −60 dB is off. **Apply** makes a new version from the stems "
                "(seconds for a long track): nothing is composed again." if layers else "Generate a track to mix it.")
        return (*(gr.Slider(visible=name in layers, value=levels.get(name, 0.0)) for name in MIX_LAYERS), note)

    def remix_page(self, generation_id, *values, progress=gr.Progress()):
        # Only the levels away from 0 dB: the sliders of layers the track lacks are hidden at 0 (mixer_view).
        levels = {name: float(v) for name, v in zip(MIX_LAYERS, values) if v}
        with _shown():
            g = self.studio.remix(generation_id, levels, extras=True, progress=self._progress(progress))
        return self._shown_generation(g, g.prompt)

    def api_remix(self, generation_id: str, levels: dict, progress=gr.Progress()):
        with _shown():
            g = self.studio.remix(generation_id, levels, progress=self._progress(progress))
        return str(g.files["wav"]), str(g.files["midi"]), g.info()

    # ---- this browser's tracks ------------------------------------------------------------------------
    # The browser keeps [id, label] pairs, newest first. A page load checks every id (dropping unknown ones and
    # ones whose files were swept) and labels it afresh; a new track only adds its own entry.
    def _entry(self, generation_id) -> list[str] | None:
        try:
            g = self.studio.recall(generation_id)
        except StudioError:                      # not an id, unknown here, or its files were swept
            return None
        return [g.id, f"{_headline(g.prompt, 48)} · {describe_short(g)}"]

    @staticmethod
    def _listed(entries: list, value: str | None = None):
        """(the list to keep, the radio showing it, the panel's label)."""
        return (entries, gr.Radio(choices=[(label, gid) for gid, label in entries], value=value),
                _tracks_panel(len(entries)))

    def history_view(self, saved: list | None):
        """Page load: this browser's saved list, checked."""
        ids = [item[0] if isinstance(item, list) and item else item for item in saved or []]
        return self._listed([e for e in map(self._entry, ids[:HISTORY_SIZE]) if e])

    def remember(self, generation_id: str | None, saved: list | None):
        """The current track joins this browser's list (at the top if new)."""
        entries = [e for e in saved or [] if isinstance(e, list) and len(e) == 2]
        if generation_id and all(e[0] != generation_id for e in entries):
            entries = [e for e in [self._entry(generation_id)] if e] + entries[:HISTORY_SIZE - 1]
        return self._listed(entries, generation_id)

    def open_track(self, generation_id):
        """A track picked from the list becomes the current one: player, files, rating, mixer, edits."""
        with _shown():
            g = self.studio.recall(check_id(generation_id))
        return self._shown_generation(g, g.prompt)

    def forget(self, generation_id, current, saved):
        """Delete the picked track: off this browser's list and its files gone (what the survey stored stays)."""
        with _shown():
            self.studio.forget(check_id(generation_id))
        entries = [e for e in saved or [] if isinstance(e, list) and e and e[0] != generation_id]
        shown = (gr.skip(),) * len(CREATED) if current != generation_id else _EMPTY_TRACK
        return *self._listed(entries), *shown

    def accompany_page(self, midi, prompt, continue_s, seed, progress=gr.Progress()):
        with _shown():
            g = self.studio.accompany(midi, prompt, extras=True, progress=self._progress(progress),
                                      seed=_optional_number(seed, "seed", *SEED_RANGE, whole=True),
                                      continue_s=_optional_number(continue_s, "continue", 0.0,
                                                                  self.studio.max_duration_s) or 0.0)
        return self._shown_generation(g, g.prompt)

    def stems(self, generation_id, progress=gr.Progress()):
        with _shown():
            return gr.File(str(self.studio.stems_zip(generation_id, self._progress(progress))), visible=True)

    def extend_page(self, generation_id, seconds, progress=gr.Progress()):
        with _shown():
            g = self.studio.extend(generation_id, _optional_number(seconds, "extend by", 1, DURATION_RANGE[1]),
                                   extras=True, progress=self._progress(progress))
        return self._shown_generation(g, g.prompt)

    def vary_page(self, generation_id, part, progress=gr.Progress()):
        with _shown():
            g = self.studio.vary(generation_id, part, extras=True, progress=self._progress(progress))
        return self._shown_generation(g, g.prompt)

    def score_page(self, video, prompt, level_db, keep_audio, progress=gr.Progress()):
        with _shown():
            out, g = self.studio.score_video(video, prompt, level_db=_optional_number(level_db, "level", -60, 12),
                                             keep_audio=keep_audio, progress=self._progress(progress))
        return str(out), g.describe()

    @staticmethod
    def _shown_generation(g, prompt: str):
        downloads = [str(g.files[k]) for k in ("wav", "mp3", "midi")]
        shown = {"generation_id": g.id, **g.conditions.to_dict()}
        return (str(g.files["wav"]), downloads, str(g.files["piano_roll"]), shown, _with_notes(g), g.chart(), g.id,
                f"Rating: “{_headline(prompt)}” ({g.describe()})")

    def api_accompany(self, midi, prompt: str, continue_s: float | None, seed: int | None,
                      progress=gr.Progress()):
        with _shown():
            g = self.studio.accompany(midi, prompt, seed=seed, continue_s=continue_s or 0.0,
                                      progress=self._progress(progress))
        return str(g.files["wav"]), str(g.files["midi"]), g.info()

    @staticmethod
    def chat_say(message: str, history: list):
        """Your message shows at once (the answer follows in chat_answer)."""
        if not (message or "").strip():
            raise _refusal("Say what to change, e.g. 'slower' or 'add rain'.")
        return list(history or []) + [{"role": "user", "content": message}], "", message

    def chat_answer(self, message: str, history: list, current: str | None, progress=gr.Progress()):
        """An edit of the track you have now (made in Create, Chat or anywhere on the page), with its seed; a
        fresh track when there is none yet."""
        with _shown():
            if current:
                g = self.studio.refine(current, message, progress=self._progress(progress))
            else:
                g = self.studio.create(message, progress=self._progress(progress))
        history = list(history or []) + [
            {"role": "assistant", "content": gr.Audio(str(g.files["wav"]))},
            {"role": "assistant", "content": _with_notes(g)},
        ]
        return history, g.id, f"Rating: “{_headline(message)}” ({g.describe()})"

    def api_refine(self, generation_id: str, text: str, progress=gr.Progress()):
        with _shown():
            g = self.studio.refine(generation_id, text, progress=self._progress(progress))
        return str(g.files["wav"]), str(g.files["midi"]), g.info()

    def listen(self, prompt: str, request: gr.Request):
        """Endless stream: ((sample_rate, int16 samples), now-playing line) messages of listen_chunk_s seconds."""
        with _shown():
            chunks = self.studio.listen(prompt, self.config.listen_chunk_s, listener=request.session_hash)
        # Stop closes this generator: the stream ends with it, and the client's count of streams goes down.
        with contextlib.closing(chunks), self.gate.stream(request):
            for chunk, playing in chunks:                                # (n, 2) float32
                yield (_pcm16(chunk),
                       f"**Now playing:** {describe(playing, length=False)}")

    def steer(self, text: str, request: gr.Request) -> dict:
        """API: change the caller's running stream (started with /listen) from its next bar line."""
        with _shown():
            return self.studio.steer(request.session_hash, text).to_dict()

    def stop_page(self, request: gr.Request) -> None:
        """Stop: the caller's stream ends before its next chunk (or its first, while it is being made) and its
        event completes as a finished stream does. With none (a Start still waiting in the queue) it fails
        quietly, and the page cancels the waiting Start instead (see build_app)."""
        if not self.studio.stop_listening(request.session_hash, wait_s=STOP_WAIT_S):
            raise gr.Error("no stream is playing", visible=False, print_exception=False)

    def steer_page(self, text: str, request: gr.Request):
        with _shown():
            c = self.studio.steer(request.session_hash, text)
        return f"Changing at the next bar line to: {describe(c, length=False)}", ""

    # ---- blind paired comparisons --------------------------------------------------------------------
    def api_survey_pair(self, prompt: str | None, request: gr.Request):
        with _shown():
            p = self.studio.survey_pair(self.gate.rater(None, request), prompt or None)
        return str(p.path_a), str(p.path_b), {"pair_id": p.pair_id, "prompt": p.prompt}

    def api_survey_vote(self, pair_id: str, quality: str, match: str, comment: str, request: gr.Request) -> dict:
        with _shown():
            return self.studio.survey_vote(pair_id, self.gate.rater(None, request), quality, match, comment)

    def next_pair(self, rater: str | None):
        with _shown():
            p = self.studio.survey_pair(rater or "")
        return (str(p.path_a), str(p.path_b), f"**The text:** “{p.prompt}”", p.pair_id,
                f"Listen to both (voting opens after {self.studio.compare.config.min_listen_s:g} s), then vote.")

    def vote_page(self, pair_id, quality, match, comment, rater):
        with _shown():
            if not pair_id:
                raise StudioError("no pair yet: press Next pair first")
            self.studio.survey_vote(pair_id, rater or "", quality, match, comment)
        return "Thank you: vote stored. Press **Next pair** for another.", None, None, ""

    def results(self):
        summary = self.studio.store.summary()
        if summary["ratings"]:
            counts = (f"{_plural(summary['ratings'], 'rating')} from {_plural(summary['raters'], 'rater')} of "
                      f"{_plural(summary['rated_generations'], 'track')} "
                      f"({_plural(summary['generations'], 'track')} generated).")
        else:
            counts = (f"No ratings yet ({_plural(summary['generations'], 'track')} generated). Make a track, "
                      "listen, and rate it beside the track in Create; the table and chart fill in here.")
        compared = self.studio.compare.results()
        with _PLOTTING:             # matplotlib's text layout is not thread-safe; several Results loads overlap
            return (counts, survey_table(summary), survey_plot(summary),
                    *compare_view(compared, self.studio.compare.config.systems))

    @contextlib.contextmanager
    def _admin(self, request: gr.Request):
        """A refused password counts towards the caller's backoff (see _Gate); a right one clears it."""
        try:
            with _shown():
                yield
        except gr.Error:
            self.gate.admin.failed(_client(request))
            raise
        self.gate.admin.succeeded(_client(request))

    def export(self, password: str, request: gr.Request):
        with self._admin(request):
            return str(self.studio.export_csv(password))

    def export_pairs(self, password: str, request: gr.Request):
        with self._admin(request):
            return str(self.studio.export_pairs_csv(password))

    def comments(self, password: str, request: gr.Request):
        with self._admin(request):
            rows = self.studio.comments(password)
        return [[r["created_at"], r["prompt"], r["clarity"], r["quality"], r["match"], r["comment"]]
                for r in rows]


@contextlib.contextmanager
def _shown():
    """A refused request reaches the page and the API client as its own message (gr.Error), not a generic one."""
    try:
        yield
    except StudioError as exc:
        raise _refusal(str(exc)) from exc


def _ensure_rater(identity: Identity) -> Callable:
    """Page load: the browser's signed token gives its rater id; a missing or forged one gets a fresh token."""
    def ensure(stored: str | None):
        rater = identity.rater(stored)
        if rater is None:
            stored = identity.issue()
            rater = identity.rater(stored)
        return stored, rater
    return ensure


def build_app(store: SurveyStore, config: AppConfig | None = None) -> gr.Blocks:
    """The whole page and its API on one store, queue set up; the caller launches it."""
    config = config or AppConfig()
    output_dir = config.output_dir or default_output_dir()
    # Gradio copies every file it serves into its cache, read from this variable as each component is made: the
    # copies live in the output folder too, under the same retention.
    os.environ["GRADIO_TEMP_DIR"] = str(output_dir / GRADIO_CACHE)
    gate = _Gate(config, Identity(output_dir))
    studio = _Handlers(Studio(store, output_dir, config.max_duration_s, config.compare), config, gate)
    sweeper = Sweeper(output_dir, config.retention)
    gen = dict(concurrency_limit=config.concurrency, concurrency_id=GENERATE)

    with gr.Blocks(title="text2lofi") as demo:
        rater_saved = gr.BrowserState(None, storage_key="text2lofi-rater")
        rater = gr.State(None)
        gr.Markdown("# text2lofi\nType a mood, get a lo-fi track: piano and drums, vinyl and rain.")

        with gr.Tabs(overflow_behavior="wrap"):        # a phone shows every tab (in two rows), none in a menu
            with gr.Tab("Create", id="create"):
                with gr.Row():
                    with gr.Column(scale=3):
                        # lines=1 (growing to 4): Enter generates, Shift+Enter is a new line (Gradio submits on
                        # Enter only when a box starts as one line).
                        prompt = gr.Textbox(label="Describe your track", lines=1, max_lines=4, elem_id="prompt",
                                            placeholder="rainy night study beats, 4 minutes")
                        gr.Examples(EXAMPLES, inputs=prompt)
                        with gr.Accordion("Override what the text says (optional)", open=False):
                            with gr.Row():
                                # Textboxes, not Numbers: an empty box means "as the text says".
                                o_duration = gr.Textbox(label="Duration (s)", placeholder="from the text",
                                                        elem_id="duration")
                                o_tempo = gr.Textbox(label="Tempo (BPM)", placeholder="from the text")
                                o_key = gr.Dropdown(["", *TONICS], value="", label="Key")
                                o_seed = gr.Textbox(label="Seed", placeholder="random")
                            with gr.Row():
                                o_lofi = gr.Textbox(label="Lo-fi amount (0..1)", placeholder="from the text")
                                o_textures = gr.CheckboxGroup(list(TEXTURES), label="Textures")
                            o_loop = gr.Checkbox(label="Seamless loop (whole bars; the end flows into the start)",
                                                 elem_id="loop")
                        with gr.Row():
                            create_btn = gr.Button("Generate", variant="primary", elem_id="generate", scale=3)
                            o_keep_seed = gr.Checkbox(label="Keep this track's seed", elem_id="keep-seed",
                                                      scale=2)
                        with gr.Accordion(_tracks_label(0), open=True, elem_id="history-panel") as h_panel:
                            h_saved = gr.BrowserState([], storage_key="text2lofi-history")
                            h_list = gr.Radio([], label="Pick one to play, rate, mix or change it",
                                              elem_id="history")
                            h_delete = gr.Button("Delete the picked track", size="sm", elem_id="history-delete")
                        with gr.Accordion("Bring your own MIDI (optional)", open=False):
                            m_file = gr.File(label="MIDI file to accompany: its notes stay as they are",
                                             file_types=[".mid", ".midi"], type="filepath", elem_id="midi-upload")
                            with gr.Row():
                                m_continue = gr.Textbox(label="Then continue the piano for (s)", placeholder="0",
                                                        elem_id="midi-continue")
                                m_btn = gr.Button("Accompany", elem_id="accompany")
                    with gr.Column(scale=4):
                        # The first bars play here while the rest is made; the finished track then loads below.
                        c_preview = gr.Audio(label="Playing while it is made", streaming=True, autoplay=True,
                                             interactive=False, elem_id="track-preview")
                        c_audio = gr.Audio(label="Your track", type="filepath", interactive=False,
                                           elem_id="track-audio")
                        c_summary = gr.Markdown(elem_id="track-summary")
                        with gr.Row():
                            c_again = gr.Button("New take (same settings, new seed)", size="sm", elem_id="again")
                            c_vary = gr.Button("Vary the piano", size="sm", elem_id="vary-piano")
                        with gr.Row():
                            t_text = gr.Textbox(label="Change this track", scale=4, lines=1, elem_id="change-text",
                                                placeholder="slower, drop the rain, in D minor, 2 minutes")
                            t_btn = gr.Button("Change", scale=1, elem_id="change")
                        # Rating sits beside the track it rates (the one made last, here or in Chat).
                        r_gid = gr.State(None)                   # that track's generation id
                        with gr.Accordion("Rate this track (for our listening survey)", open=True,
                                          elem_id="rate-panel"):
                            r_heading = gr.Markdown("Generate a track, listen, then rate it here.",
                                                    elem_id="rate-heading")
                            with gr.Row():
                                r_clarity = gr.Slider(1, 5, value=3, step=1, label="Clarity: could you hear each "
                                                      "instrument clearly?", elem_id="rate-clarity")
                                r_quality = gr.Slider(1, 5, value=3, step=1, label="Quality: how good does it "
                                                      "sound?", elem_id="rate-quality")
                                r_match = gr.Slider(1, 5, value=3, step=1, label="Match: does it fit the text?",
                                                    elem_id="rate-match")
                            with gr.Row():
                                r_comment = gr.Textbox(label="Comment (optional)", lines=1, max_lines=4, scale=4,
                                                       max_length=MAX_COMMENT_CHARS)
                                r_btn = gr.Button("Submit rating", variant="primary", elem_id="submit-rating",
                                                  scale=1)
                            r_result = gr.Markdown(elem_id="rating-note")
                        c_files = gr.File(label="Downloads: WAV, MP3, MIDI", file_count="multiple")
                        with gr.Row():
                            c_stems_btn = gr.Button("Stems (zip): piano, drums, bass, textures", size="sm",
                                                    elem_id="stems")
                            c_stems = gr.File(label="Stems", elem_id="stems-file", visible=False)
                        with gr.Accordion("Mixer: each layer's level", open=False, elem_id="mixer"):
                            x_note = gr.Markdown("Generate a track to mix it.", elem_id="mixer-note")
                            with gr.Row():
                                x_levels = [gr.Slider(*MIX_DB_RANGE, value=0.0, step=1, visible=False,
                                                      label=("lo-fi effect" if name == LOFI_LAYER
                                                             else name.replace("_", " ")) + " (dB)",
                                                      elem_id=f"mix-{name}", min_width=140)
                                            for name in MIX_LAYERS]
                            x_btn = gr.Button("Apply the mix", elem_id="mix-apply")
                        c_roll = gr.Image(label="Piano roll", type="filepath", interactive=False)
                        with gr.Accordion("Chord chart (one chord per bar)", open=True):
                            c_chart = gr.Markdown(elem_id="chord-chart")
                        with gr.Accordion("More of this track", open=False):
                            with gr.Row():
                                e_seconds = gr.Textbox(label="Extend by (s)", value="30", elem_id="extend-seconds")
                                e_btn = gr.Button("Extend", elem_id="extend")
                            with gr.Row():
                                v_part = gr.Radio(["piano", "drums", "bass"], value="piano", label="Part to redraw",
                                                  elem_id="vary-part")
                                v_btn = gr.Button("Vary that part", elem_id="vary")
                        c_conditions = gr.JSON(label="Conditions used")

            with gr.Tab("Score a video", id="video"):
                with gr.Row():
                    with gr.Column():
                        s_video = gr.Video(label="Your video (the music will last exactly as long)",
                                           sources=["upload"], elem_id="video-in")
                        s_prompt = gr.Textbox(label="The music", value="calm lofi with rain", elem_id="video-prompt")
                        with gr.Row():
                            s_keep = gr.Checkbox(value=True, label="Keep the video's own sound (music under it)")
                            s_level = gr.Textbox(label="Music level (dB)", placeholder="-12 under sound, else 0")
                        s_btn = gr.Button("Score it", variant="primary", elem_id="score")
                    with gr.Column():
                        s_out = gr.Video(label="Scored video", interactive=False, elem_id="video-out")
                        s_summary = gr.Markdown(elem_id="video-summary")

            with gr.Tab("Chat", id="chat"):
                chat_said = gr.State("")               # the message being answered
                chatbot = gr.Chatbot(label="Refine your track", height=480, elem_id="chat")
                chat_box = gr.Textbox(label="Say what to change", placeholder="slower, drop the rain, 2 minutes")
                chat_btn = gr.Button("Send", variant="primary")

            with gr.Tab("Listen forever", id="listen"):
                l_prompt = gr.Textbox(label="Mood", value="rainy night study beats")
                with gr.Row():
                    l_start = gr.Button("Start", variant="primary")
                    l_stop = gr.Button("Stop")
                    # In the page but never shown: clicked by script to cancel a Start still waiting (see below).
                    l_cancel = gr.Button("Cancel the waiting start", visible="hidden", elem_id="listen-cancel")
                l_audio = gr.Audio(label="Endless stream", streaming=True, autoplay=True, interactive=False,
                                   elem_id="listen-audio")
                l_now = gr.Markdown(elem_id="now-playing")
                with gr.Row():
                    l_steer = gr.Textbox(label="Change it while it plays", scale=4, elem_id="steer-text",
                                         placeholder="slower, add rain, in D minor, no drums")
                    l_change = gr.Button("Change", scale=1, elem_id="steer")
                l_note = gr.Markdown(elem_id="steer-note")

            with gr.Tab("Compare", id="compare"):
                gr.Markdown(CONSENT)
                cmp_pair = gr.State(None)
                cmp_next = gr.Button("Next pair", variant="primary", elem_id="next-pair")
                cmp_prompt = gr.Markdown(elem_id="pair-prompt")
                with gr.Row():
                    cmp_a = gr.Audio(label="A", type="filepath", interactive=False, elem_id="clip-a")
                    cmp_b = gr.Audio(label="B", type="filepath", interactive=False, elem_id="clip-b")
                with gr.Row():
                    cmp_quality = gr.Radio(list(CHOICES), label="Which sounds better?", elem_id="vote-quality")
                    cmp_match = gr.Radio(list(CHOICES), label="Which fits the text better?", elem_id="vote-match")
                cmp_comment = gr.Textbox(label="Why? (optional)", max_length=MAX_COMMENT_CHARS)
                cmp_vote = gr.Button("Vote", elem_id="vote")
                cmp_note = gr.Markdown(elem_id="vote-note")

            with gr.Tab("Results", id="results") as results_tab:
                s_counts = gr.Markdown(elem_id="survey-counts")
                s_table = gr.Dataframe(headers=["question", "answers", "mean", "1", "2", "3", "4", "5"],
                                       label="Survey", interactive=False, elem_id="survey-table")
                s_plot = gr.Plot(label="Distribution per question")
                c_summary_md = gr.Markdown(elem_id="compare-summary")
                c_pairs = gr.Dataframe(headers=["question", "pair", "votes", "wins", "losses", "ties", "win rate",
                                                "95% CI"], label="Blind pairs", interactive=False,
                                       elem_id="compare-pairs")
                c_ranking = gr.Dataframe(headers=["question", "rank", "system", "strength", "95% CI"],
                                         label="Ranking (Bradley-Terry)", interactive=False, elem_id="compare-ranking")
                c_plot = gr.Plot(label="Ranking with intervals")
                s_refresh = gr.Button("Refresh")
                with gr.Accordion("Admin", open=False):
                    a_password = gr.Textbox(label="Admin password", type="password")
                    with gr.Row():
                        a_export = gr.Button("Export CSV")
                        a_export_pairs = gr.Button("Export comparisons CSV")
                        a_show = gr.Button("Show comments")
                    a_file = gr.File(label="CSV export")
                    a_comments = gr.Dataframe(headers=["time", "prompt", "clarity", "quality", "match",
                                                       "comment"], interactive=False, label="Comments")

        # API-only inputs/outputs: the stable /generate and /interpret signatures.
        with gr.Row(visible=False):
            api_prompt = gr.Textbox(label="prompt")
            api_duration = gr.Number(None, label="duration_s")
            # No precision on numbers: Gradio would round 1.5 to 2 before anything can refuse it.
            api_seed = gr.Number(None, label="seed")
            api_previous = gr.JSON(None, label="previous")
            api_audio = gr.Audio(type="filepath", label="audio")
            api_midi = gr.File(label="midi")
            api_info = gr.JSON(label="info")
            api_conditions = gr.JSON(label="conditions")
            api_generate_btn = gr.Button()
            api_interpret_btn = gr.Button()
            api_steer_btn = gr.Button()
            api_midi_in = gr.File(label="midi", type="filepath")
            api_continue = gr.Number(None, label="continue_s")
            api_accompany_btn = gr.Button()
            api_gid = gr.Textbox(label="generation_id")
            api_seconds = gr.Number(label="seconds")
            api_part = gr.Textbox(label="part")
            api_section = gr.Number(None, label="section")
            api_video_in = gr.File(label="video", type="filepath")
            api_level = gr.Number(None, label="level_db")
            api_keep = gr.Checkbox(True, label="keep_audio")
            api_video_out = gr.File(label="video")
            api_audio_b = gr.Audio(type="filepath", label="audio_b")
            api_pair = gr.JSON(label="pair")
            api_pair_id = gr.Textbox(label="pair_id")
            api_quality, api_match = gr.Textbox(label="quality"), gr.Textbox(label="match")
            api_comment = gr.Textbox(label="comment")
            api_scores = [gr.Number(None, label=q) for q in QUESTIONS]
            api_rate_btn = gr.Button()
            api_pair_btn, api_vote_btn = gr.Button(), gr.Button()
            api_loop_btn, api_extend_btn, api_vary_btn, api_score_btn, api_refine_btn = (gr.Button() for _ in range(5))
            api_levels, api_remix_btn = gr.JSON(None, label="levels"), gr.Button()

        results_out = [s_counts, s_table, s_plot, c_summary_md, c_pairs, c_ranking, c_plot]
        private = dict(api_visibility="private")
        light = dict(concurrency_limit=None)          # quick events never wait behind generations

        def make(trigger, fn, inputs, outputs, checks: dict | None = None, names: list[str] | None = None,
                 **kwargs):
            """A generation event: its own lane (GENERATE), checked and admitted when queued, timed."""
            page = kwargs.get("api_visibility") == "private"
            if page and isinstance(outputs, list):          # one progress bar, on the player, not one per panel
                kwargs["show_progress_on"] = outputs[0]
            return trigger(gate.timed(fn), inputs, outputs, validator=gate(fn, GENERATE, page, names, **(checks or {})),
                           **gen, **kwargs)

        page_prompt = dict(prompt=_text("prompt"))
        demo.load(_ensure_rater(gate.identity), rater_saved, [rater_saved, rater], **light, **private)
        demo.load(studio.results, None, results_out, **light, **private)

        created = [c_audio, c_files, c_roll, c_conditions, c_summary, c_chart, r_gid, r_heading]
        assert len(created) == len(CREATED)
        create_inputs = [prompt, o_duration, o_tempo, o_key, o_seed, o_lofi, o_textures, o_loop, o_keep_seed, r_gid]
        for go in (create_btn.click, prompt.submit):        # the button, or Enter in the prompt box
            checked = go(studio.check_create, create_inputs, None, **light, **private)
            make(checked.success, studio.create, create_inputs, created + [c_preview], page_prompt, **private)
        make(c_again.click, studio.again_page, r_gid, created + [c_preview], dict(generation_id=GENERATION_ID),
             **private)
        make(c_vary.click, studio.vary_page, [r_gid, gr.State("piano")], created, dict(generation_id=GENERATION_ID),
             **private)
        for change in (t_btn.click, t_text.submit):
            make(change, studio.refine_page, [r_gid, t_text], created + [t_text],
                 dict(generation_id=GENERATION_ID, text=TEXT), **private)
        make(x_btn.click, studio.remix_page, [r_gid, *x_levels], created, dict(generation_id=GENERATION_ID),
             ["generation_id", *MIX_LAYERS], **private)
        # Whatever made or opened the current track: it joins this browser's list, and the mixer shows its layers.
        history_out = [h_saved, h_list, h_panel]
        quiet = dict(show_progress="hidden", **light, **private)
        r_gid.change(studio.remember, [r_gid, h_saved], history_out, **quiet)
        r_gid.change(studio.mixer_view, r_gid, [*x_levels, x_note], **quiet)
        demo.load(studio.history_view, h_saved, history_out, **quiet)
        h_list.input(studio.open_track, h_list, created, **light, **private)
        h_delete.click(studio.forget, [h_list, r_gid, h_saved], history_out + created,
                       validator=gate(studio.forget, toast=True, generation_id=GENERATION_ID), **light, **private)
        make(e_btn.click, studio.extend_page, [r_gid, e_seconds], created, **private)
        make(c_stems_btn.click, studio.stems, r_gid, c_stems, **private)
        make(v_btn.click, studio.vary_page, [r_gid, v_part], created, **private)
        make(s_btn.click, studio.score_page, [s_video, s_prompt, s_level, s_keep], [s_out, s_summary], page_prompt,
             **private)
        make(m_btn.click, studio.accompany_page, [m_file, prompt, m_continue, o_seed], created, page_prompt,
             **private)
        for send in (chat_btn.click, chat_box.submit):
            said = send(studio.chat_say, [chat_box, chatbot], [chatbot, chat_box, chat_said],
                        validator=gate(studio.chat_say, toast=True, message=_text("message")), **light, **private)
            make(said.success, studio.chat_answer, [chat_said, chatbot, r_gid], [chatbot, r_gid, r_heading],
                 **private)
        listening = l_start.click(studio.listen, l_prompt, [l_audio, l_now], concurrency_limit=config.listeners,
                                  concurrency_id=LISTEN, api_name="listen",
                                  validator=gate(studio.listen, LISTEN, prompt=PROMPT))
        # Stop silences the player at once (it would play the 30-40 s it has buffered) and ends the stream on the
        # server, which then completes like any finished stream: Gradio's cancel races with chunks in flight and
        # marks the player "Error" (benchmarks/RESULTS.md, "fourth pass"). The cancel is used only for a Start
        # still waiting in the queue, through a hidden button: a `cancels=` on a chained event (.failure) is never
        # triggered in Gradio 6.31. Stop's own lane, as wide as the listeners, keeps waiting Stops (STOP_WAIT_S
        # each) off the threads the quick events share.
        l_stop.click(studio.stop_page, None, None, js=STOP_PLAYER_JS, concurrency_limit=config.listeners,
                     concurrency_id="stop", **private).failure(None, js=CANCEL_WAITING_JS, **private)
        l_cancel.click(None, cancels=[listening], **private)
        for steer_event in (l_change.click, l_steer.submit):
            steer_event(studio.steer_page, l_steer, [l_note, l_steer],
                        validator=gate(studio.steer_page, toast=True, text=TEXT), **light, **private)
        rating = dict(validator=gate(studio.rate, RATE, generation_id=GENERATION_ID, **SCORE, comment=COMMENT),
                      **light)
        page_rating = dict(validator=gate(studio.rate_page, RATE, True, generation_id=GENERATION_ID, **SCORE,
                                          comment=COMMENT), **light)
        r_btn.click(studio.rate_page, [r_gid, r_clarity, r_quality, r_match, r_comment, rater], r_result,
                    **page_rating, api_name="rate_page", **private).success(studio.results, None, results_out,
                                                                            **light, **private)
        # The API's own inputs: plain numbers, so 4.5 or 0 reach the check (a slider would round or refuse them
        # in Gradio's words).
        api_rate_btn.click(studio.rate, [api_gid, *api_scores, api_comment, rater], api_info, api_name="rate",
                           **rating)
        results_tab.select(studio.results, None, results_out, **light, **private)
        s_refresh.click(studio.results, None, results_out, **light, **private)
        for button, fn, out in ((a_export, studio.export, a_file), (a_export_pairs, studio.export_pairs, a_file),
                                (a_show, studio.comments, a_comments)):
            button.click(fn, a_password, out, validator=gate(fn, ADMIN, True, password=_text("password", 200)),
                         **light, **private)
        cmp_next.click(studio.next_pair, rater, [cmp_a, cmp_b, cmp_prompt, cmp_pair, cmp_note], **light, **private)
        cmp_vote.click(studio.vote_page, [cmp_pair, cmp_quality, cmp_match, cmp_comment, rater],
                       [cmp_note, cmp_quality, cmp_match, cmp_comment], validator=gate(studio.vote_page, RATE, True,
                                                                                       comment=COMMENT),
                       **light, **private)

        generated = [api_audio, api_midi, api_info]
        duration, seed = _optional(_number("duration_s")), SEED
        make(api_generate_btn.click, studio.api_generate, [api_prompt, api_duration, api_seed], generated,
             dict(prompt=PROMPT, duration_s=duration, seed=seed), api_name="generate")
        api_interpret_btn.click(studio.api_interpret, [api_prompt, api_previous], api_conditions,
                                api_name="interpret", validator=gate(studio.api_interpret, prompt=PROMPT), **light)
        make(api_accompany_btn.click, studio.api_accompany, [api_midi_in, api_prompt, api_continue, api_seed],
             generated, dict(prompt=_text("prompt"), continue_s=_optional(_number("continue_s", 0)), seed=seed),
             api_name="accompany")
        make(api_refine_btn.click, studio.api_refine, [api_gid, api_prompt], generated,
             dict(generation_id=GENERATION_ID, text=TEXT), api_name="refine")
        make(api_remix_btn.click, studio.api_remix, [api_gid, api_levels], generated,
             dict(generation_id=GENERATION_ID, levels=_levels), api_name="remix")
        make(api_loop_btn.click, studio.api_loop, [api_prompt, api_duration, api_seed], generated,
             dict(prompt=PROMPT, duration_s=duration, seed=seed), api_name="loop")
        make(api_extend_btn.click, studio.api_extend, [api_gid, api_seconds], generated,
             dict(generation_id=GENERATION_ID, seconds=_number("seconds", 0)), api_name="extend")
        make(api_vary_btn.click, studio.api_vary, [api_gid, api_part, api_seed, api_section], generated,
             dict(generation_id=GENERATION_ID, part=_one_of("part", PARTS), seed=seed,
                  section=_optional(_number("section", 0, whole=True))), api_name="vary")
        make(api_score_btn.click, studio.api_score_video, [api_video_in, api_prompt, api_level, api_seed, api_keep],
             [api_video_out, api_info], dict(prompt=PROMPT, level_db=_optional(_number("level_db", -60, 12)),
                                             seed=seed, keep_audio=_flag("keep_audio")), api_name="score_video")
        api_pair_btn.click(studio.api_survey_pair, api_prompt, [api_audio, api_audio_b, api_pair],
                           api_name="survey_pair", validator=gate(studio.api_survey_pair, prompt=_text("prompt")),
                           **light)
        api_vote_btn.click(studio.api_survey_vote, [api_pair_id, api_quality, api_match, api_comment], api_info,
                           api_name="survey_vote", validator=gate(
                               studio.api_survey_vote, RATE, pair_id=PAIR_ID, quality=_one_of("quality", CHOICES),
                               match=_one_of("match", CHOICES), comment=COMMENT), **light)
        api_steer_btn.click(studio.steer, api_prompt, api_conditions, api_name="steer",
                            validator=gate(studio.steer, text=TEXT), **light)

    # api_open=False: /gradio_api/run/<name> would run an event outside the queue, past every lane and limit.
    demo.queue(max_size=config.queue_total, api_open=False)
    gate.demo = demo
    demo.studio = studio.studio          # serve.main starts the comparison pool's rendering
    demo.sweeper = sweeper
    demo.output_dir = output_dir         # serve.main lets Gradio serve files from it
    return demo

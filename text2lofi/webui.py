"""The Gradio app: Create, Chat, Listen forever, Rate, Results, and the stable API.

API (names are a public contract, see docs/api.md):
  /generate  (prompt: str, duration_s: float | None, seed: int | None) -> (audio file, MIDI file, info dict)
  /interpret (prompt: str, previous: dict | None) -> conditions dict
  /rate      (generation_id: str, clarity: int, quality: int, match: int, comment: str) -> dict
Every other event is private (callable by the page only). Bad arguments raise gr.Error and store nothing.
"""
from __future__ import annotations

import secrets
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

import text2lofi
from text2lofi.conditions import DURATION_RANGE, TEMPO_RANGE, TEXTURES, TONICS, Conditions
from text2lofi.pipeline import STAGES
from text2lofi.survey import MAX_COMMENT_CHARS, QUESTIONS, SurveyStore

SAMPLE_RATE = 44100           # Hz, what text2lofi.stream() yields
EXAMPLES = [
    "rainy night study beats, 4 minutes",
    "sunny sunday morning coffee, jazzy, 2 minutes",
    "slow melancholic piano by the fireplace, no drums",
    "late night city drive, tape hiss, 90 bpm",
    "ocean waves and soft keys to fall asleep, 10 minutes",
]


@dataclass
class AppConfig:
    output_dir: Path | None = None    # where tracks are written; None: a fresh temporary folder per app
    max_duration_s: float = 600.0     # longest track one request may ask for (CPU time is shared)
    concurrency: int = 2              # generations running at once (each keeps about one core busy)
    queue_size: int = 64              # waiting requests beyond this are refused instead of piling up
    listen_chunk_s: float = 4.0       # seconds of audio per "listen forever" message
    listeners: int = 4                # simultaneous endless streams (each holds a worker thread)


def _random_seed() -> int:
    return secrets.randbelow(2**31)


def _optional_number(text: str | None, name: str, lo: float, hi: float, whole: bool = False) -> float | None:
    """An override box: empty -> None (keep what the text says), else a number in lo..hi or a clear error."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise gr.Error(f"{name} must be a number, got {text!r}") from None
    if not lo <= value <= hi or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise gr.Error(f"{name} must be {kind} from {lo:g} to {hi:g}, got {text}")
    return value


def _describe(c: Conditions) -> str:
    """One line a listener can read: what was actually generated."""
    parts = [f"{c.tempo_bpm:.0f} BPM", f"{c.key} {c.mode}", f"{c.duration_s:g} s"]
    parts.append("piano + drums" if c.piano and c.drums else ("piano only" if c.piano else "drums only"))
    if c.textures:
        parts.append("textures: " + ", ".join(c.textures))
    parts.append(f"lo-fi {c.lofi_amount:.2f}")
    parts.append(f"seed {c.seed}")
    return " · ".join(parts)


def piano_roll(midi, duration_s: float, path: Path) -> Path:
    """PNG picture of a PrettyMIDI over the track's 0..duration_s: piano notes as bars (pitch over seconds),
    drum hits as dots below."""
    fig = Figure(figsize=(10, 4), dpi=90)
    ax_piano, ax_drums = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for inst in midi.instruments:
        if inst.is_drum:
            ax_drums.scatter([n.start for n in inst.notes], [n.pitch for n in inst.notes], s=6, c="#c05040")
        else:
            ax_piano.barh([n.pitch for n in inst.notes], [n.end - n.start for n in inst.notes],
                          left=[n.start for n in inst.notes], height=0.8, color="#4060a0")
    ax_piano.set_ylabel("piano pitch")
    ax_drums.set_ylabel("drum")
    ax_drums.set_xlabel("seconds")
    ax_drums.set_xlim(0, duration_s)        # notes ringing past the end are cut off in the audio too
    fig.tight_layout()
    fig.savefig(path)
    return path


def survey_table(summary: dict) -> list[list[Any]]:
    """Rows: question, answers, mean, then how many gave 1..5 (the original project's survey table)."""
    rows = []
    for q in QUESTIONS:
        s = summary["questions"][q]
        mean = "" if s["mean"] is None else round(s["mean"], 2)
        rows.append([q, s["n"], mean, *(s["counts"][k] for k in range(1, 6))])
    return rows


def survey_plot(summary: dict) -> Figure:
    fig = Figure(figsize=(8, 3), dpi=90)
    ax = fig.subplots()
    width = 0.25
    for i, q in enumerate(QUESTIONS):
        counts = summary["questions"][q]["counts"]
        ax.bar(np.arange(1, 6) + (i - 1) * width, [counts[k] for k in range(1, 6)], width, label=q)
    ax.set_xticks(range(1, 6))
    ax.set_xlabel("score")
    ax.set_ylabel("ratings")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    fig.tight_layout()
    return fig


class _Studio:
    """The app's work: every event handler, sharing one survey store and one output folder."""

    def __init__(self, store: SurveyStore, config: AppConfig):
        self.store, self.config = store, config
        self.output_dir = Path(config.output_dir or tempfile.mkdtemp(prefix="text2lofi-app-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)

    # ---- shared steps -----------------------------------------------------------------------------
    def _conditions(self, prompt: str, previous: dict | None, progress: Callable[[str, float], None],
                    **overrides) -> Conditions:
        if not isinstance(prompt, str) or not prompt.strip():
            raise gr.Error("Type a prompt first, e.g. 'rainy night study beats, 2 minutes'.")
        progress("interpreting", 0.0)
        prev = Conditions.from_dict(previous) if previous else None
        c = text2lofi.interpret(prompt, previous=prev)
        changes = {k: v for k, v in overrides.items() if v is not None}
        if "duration_s" in changes:
            self._check_duration(float(changes["duration_s"]), "duration_s")
        if changes:
            c = c.replace(**changes)
        self._check_duration(c.duration_s, "the prompt's length")
        progress("interpreting", 1.0)
        return c

    def _check_duration(self, duration_s: float, what: str) -> None:
        lo, hi = DURATION_RANGE[0], self.config.max_duration_s
        if not lo <= duration_s <= hi:
            raise gr.Error(f"{what} is {duration_s:g} s; this server makes tracks of {lo:g} to {hi:g} s.")

    def _render(self, prompt: str, c: Conditions, progress: Callable[[str, float], None], stems: bool):
        """Generate, write the files, record the generation. Returns (track, generation_id, files)."""
        try:
            track = text2lofi.generate(c, progress=progress)
        except ValueError as exc:        # the pipeline's own "concise error" for bad input: show it
            raise gr.Error(str(exc)) from exc
        folder = Path(tempfile.mkdtemp(prefix="gen-", dir=self.output_dir))
        files = {"wav": track.save(folder / "track.wav"), "midi": track.save(folder / "track.mid")}
        if stems:
            files["mp3"] = track.save(folder / "track.mp3")
            files["stems"] = folder / "stems.zip"
            with zipfile.ZipFile(files["stems"], "w") as z:
                for p in track.save_stems(folder / "stems"):
                    z.write(p, p.name)
            files["piano_roll"] = piano_roll(track.midi, track.duration_s, folder / "piano_roll.png")
        gid = self.store.record_generation(prompt, track.conditions.to_dict(), seed=track.conditions.seed,
                                           model_versions=track.metadata.get("models", {}), files=files)
        return track, gid, files

    @staticmethod
    def _progress(bar: gr.Progress) -> Callable[[str, float], None]:
        # Pipeline stages map onto quarters of the bar; the label names the stage. Composing and rendering
        # run bar by bar, interleaved, so the bar only ever moves forward.
        done = [0.0]

        def report(stage: str, fraction: float) -> None:
            i = STAGES.index(stage) if stage in STAGES else 0
            done[0] = max(done[0], (i + min(max(fraction, 0.0), 1.0)) / len(STAGES))
            bar(done[0], desc=stage)
        return report

    # ---- API --------------------------------------------------------------------------------------
    def api_generate(self, prompt: str, duration_s: float | None, seed: int | None,
                     progress=gr.Progress()):
        report = self._progress(progress)
        if seed is not None and (seed < 0 or seed != int(seed)):
            raise gr.Error(f"seed must be a whole number >= 0, got {seed}")
        seed = _random_seed() if seed is None else int(seed)
        c = self._conditions(prompt, None, report, duration_s=duration_s, seed=seed)
        track, gid, files = self._render(prompt, c, report, stems=False)
        info = {"generation_id": gid, "conditions": track.conditions.to_dict(),
                "duration_s": track.duration_s, "models": track.metadata.get("models", {})}
        return str(files["wav"]), str(files["midi"]), info

    def api_interpret(self, prompt: str, previous: dict | None) -> dict:
        if previous is not None and not isinstance(previous, dict):
            raise gr.Error("previous must be a conditions dict (as returned by /interpret) or None")
        try:
            return self._conditions(prompt, previous, lambda *_: None).to_dict()
        except TypeError as exc:                       # e.g. a field of `previous` of the wrong type
            raise gr.Error(f"previous is not a valid conditions dict: {exc}") from exc

    def rate(self, generation_id: str, clarity: int, quality: int, match: int, comment: str,
             rater: str | None, request: gr.Request) -> dict:
        # Page users carry an anonymous id from their browser; API clients are one rater per client session.
        rater_id = rater or f"api-{request.session_hash}"
        try:
            return self.store.rate((generation_id or "").strip(), rater_id, clarity, quality, match,
                                   comment or "")
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc

    # ---- page-only events -------------------------------------------------------------------------
    def create(self, prompt, duration_s, tempo_bpm, key, seed, lofi_amount, textures, progress=gr.Progress()):
        report = self._progress(progress)
        seed = _optional_number(seed, "seed", 0, 2**31 - 1, whole=True)
        c = self._conditions(prompt, None, report,
                             duration_s=_optional_number(duration_s, "duration", *DURATION_RANGE),
                             tempo_bpm=_optional_number(tempo_bpm, "tempo", *TEMPO_RANGE),
                             key=key or None, seed=_random_seed() if seed is None else int(seed),
                             lofi_amount=_optional_number(lofi_amount, "lo-fi amount", 0.0, 1.0),
                             textures=textures or None)
        track, gid, files = self._render(prompt, c, report, stems=True)
        downloads = [str(files[k]) for k in ("wav", "mp3", "midi", "stems")]
        shown = {"generation_id": gid, **track.conditions.to_dict()}
        return (str(files["wav"]), downloads, str(files["piano_roll"]), shown, _describe(track.conditions),
                gid, f"Rating: “{prompt.strip()}” ({_describe(track.conditions)})")

    def chat(self, message: str, history: list, previous: dict | None, progress=gr.Progress()):
        report = self._progress(progress)
        c = self._conditions(message, previous, report)
        if previous is None:
            c = c.replace(seed=_random_seed())
        track, gid, files = self._render(message, c, report, stems=False)
        history = list(history or []) + [
            {"role": "user", "content": message},
            {"role": "assistant", "content": gr.Audio(str(files["wav"]))},
            {"role": "assistant", "content": _describe(track.conditions)},
        ]
        return (history, track.conditions.to_dict(), "", gid,
                f"Rating: “{message.strip()}” ({_describe(track.conditions)})")

    def listen(self, prompt: str):
        """Endless stream: (sample_rate, int16 samples) messages of listen_chunk_s seconds each."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise gr.Error("Type a mood first, e.g. 'rainy night study beats'.")
        # No length check: a stream is endless whatever length the text mentions.
        c = text2lofi.interpret(prompt).replace(seed=_random_seed())
        for chunk in text2lofi.stream(c, chunk_s=self.config.listen_chunk_s):    # (n, 2) float32
            yield SAMPLE_RATE, (np.clip(chunk, -1.0, 1.0) * 32767).astype(np.int16)

    def results(self):
        summary = self.store.summary()
        counts = (f"**{summary['ratings']}** ratings from **{summary['raters']}** raters of "
                  f"**{summary['rated_generations']}** tracks ({summary['generations']} generated).")
        return counts, survey_table(summary), survey_plot(summary)

    def export(self, password: str):
        try:
            text = self.store.export_csv(password)
        except PermissionError as exc:
            raise gr.Error(str(exc)) from exc
        path = Path(tempfile.mkdtemp(prefix="export-", dir=self.output_dir)) / "text2lofi-survey.csv"
        path.write_text(text, encoding="utf-8")
        return str(path)

    def comments(self, password: str):
        try:
            rows = self.store.comments(password)
        except PermissionError as exc:
            raise gr.Error(str(exc)) from exc
        return [[r["created_at"], r["prompt"], r["clarity"], r["quality"], r["match"], r["comment"]]
                for r in rows]


def _ensure_rater(stored: str | None):
    rater = stored or f"web-{uuid.uuid4()}"
    return rater, rater


def build_app(store: SurveyStore, config: AppConfig | None = None) -> gr.Blocks:
    """The whole page and its API on one store, queue set up; the caller launches it."""
    config = config or AppConfig()
    studio = _Studio(store, config)
    gen = dict(concurrency_limit=config.concurrency, concurrency_id="generate")

    with gr.Blocks(title="text2lofi") as demo:
        rater_saved = gr.BrowserState(None, storage_key="text2lofi-rater")
        rater = gr.State(None)
        gr.Markdown("# text2lofi\nType a mood, get a lo-fi track: piano and drums, vinyl and rain.")

        with gr.Tabs():
            with gr.Tab("Create", id="create"):
                with gr.Row():
                    with gr.Column(scale=3):
                        prompt = gr.Textbox(label="Describe your track", lines=2, elem_id="prompt",
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
                        create_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    with gr.Column(scale=4):
                        c_audio = gr.Audio(label="Your track", type="filepath", interactive=False,
                                           elem_id="track-audio")
                        c_summary = gr.Markdown(elem_id="track-summary")
                        c_files = gr.File(label="Downloads: WAV, MP3, MIDI, stems", file_count="multiple")
                        c_roll = gr.Image(label="Piano roll", type="filepath", interactive=False)
                        c_conditions = gr.JSON(label="Conditions used")

            with gr.Tab("Chat", id="chat"):
                chat_state = gr.State(None)            # Conditions dict of the latest version
                chatbot = gr.Chatbot(label="Refine your track", height=480, elem_id="chat")
                chat_box = gr.Textbox(label="Say what to change", placeholder="slower, drop the rain, 2 minutes")
                chat_btn = gr.Button("Send", variant="primary")

            with gr.Tab("Listen forever", id="listen"):
                l_prompt = gr.Textbox(label="Mood", value="rainy night study beats")
                with gr.Row():
                    l_start = gr.Button("Start", variant="primary")
                    l_stop = gr.Button("Stop")
                l_audio = gr.Audio(label="Endless stream", streaming=True, autoplay=True, interactive=False,
                                   elem_id="listen-audio")

            with gr.Tab("Rate", id="rate"):
                r_heading = gr.Markdown("Generate a track first (Create or Chat), listen, then rate it here.")
                r_gid = gr.Textbox(label="Generation id", elem_id="generation-id", interactive=False)
                r_clarity = gr.Slider(1, 5, value=3, step=1, precision=0, label="Clarity: could you hear "
                                      "each instrument clearly?", elem_id="rate-clarity")
                r_quality = gr.Slider(1, 5, value=3, step=1, precision=0, label="Quality: how good does it "
                                      "sound?", elem_id="rate-quality")
                r_match = gr.Slider(1, 5, value=3, step=1, precision=0, label="Match: does it fit the text?",
                                    elem_id="rate-match")
                r_comment = gr.Textbox(label="Comment (optional)", lines=2, max_length=MAX_COMMENT_CHARS)
                r_btn = gr.Button("Submit rating", variant="primary", elem_id="submit-rating")
                r_result = gr.JSON(label="Your rating")

            with gr.Tab("Results", id="results") as results_tab:
                s_counts = gr.Markdown(elem_id="survey-counts")
                s_table = gr.Dataframe(headers=["question", "answers", "mean", "1", "2", "3", "4", "5"],
                                       label="Survey", interactive=False, elem_id="survey-table")
                s_plot = gr.Plot(label="Distribution per question")
                s_refresh = gr.Button("Refresh")
                with gr.Accordion("Admin", open=False):
                    a_password = gr.Textbox(label="Admin password", type="password")
                    with gr.Row():
                        a_export = gr.Button("Export CSV")
                        a_show = gr.Button("Show comments")
                    a_file = gr.File(label="CSV export")
                    a_comments = gr.Dataframe(headers=["time", "prompt", "clarity", "quality", "match",
                                                       "comment"], interactive=False, label="Comments")

        # API-only inputs/outputs: the stable /generate and /interpret signatures.
        with gr.Row(visible=False):
            api_prompt = gr.Textbox(label="prompt")
            api_duration = gr.Number(None, label="duration_s")
            api_seed = gr.Number(None, label="seed", precision=0)
            api_previous = gr.JSON(None, label="previous")
            api_audio = gr.Audio(type="filepath", label="audio")
            api_midi = gr.File(label="midi")
            api_info = gr.JSON(label="info")
            api_conditions = gr.JSON(label="conditions")
            api_generate_btn = gr.Button()
            api_interpret_btn = gr.Button()

        results_out = [s_counts, s_table, s_plot]
        private = dict(api_visibility="private")
        demo.load(_ensure_rater, rater_saved, [rater_saved, rater], **private)
        demo.load(studio.results, None, results_out, **private)

        create_btn.click(studio.create, [prompt, o_duration, o_tempo, o_key, o_seed, o_lofi, o_textures],
                         [c_audio, c_files, c_roll, c_conditions, c_summary, r_gid, r_heading], **gen, **private)
        chat_inputs = ([chat_box, chatbot, chat_state],
                       [chatbot, chat_state, chat_box, r_gid, r_heading])
        chat_btn.click(studio.chat, *chat_inputs, **gen, **private)
        chat_box.submit(studio.chat, *chat_inputs, **gen, **private)
        listening = l_start.click(studio.listen, l_prompt, l_audio, concurrency_limit=config.listeners,
                                  concurrency_id="listen", **private)
        l_stop.click(None, cancels=[listening], **private)
        r_btn.click(studio.rate, [r_gid, r_clarity, r_quality, r_match, r_comment, rater], r_result,
                    api_name="rate", concurrency_limit=None).success(studio.results, None, results_out,
                                                                    **private)
        results_tab.select(studio.results, None, results_out, **private)
        s_refresh.click(studio.results, None, results_out, **private)
        a_export.click(studio.export, a_password, a_file, **private)
        a_show.click(studio.comments, a_password, a_comments, **private)

        api_generate_btn.click(studio.api_generate, [api_prompt, api_duration, api_seed],
                               [api_audio, api_midi, api_info], api_name="generate", **gen)
        api_interpret_btn.click(studio.api_interpret, [api_prompt, api_previous], api_conditions,
                                api_name="interpret")

    demo.queue(max_size=config.queue_size)
    return demo

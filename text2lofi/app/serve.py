"""Serve the page and the API: `python app.py [options]` and `text2lofi serve [options]` are this one command.

Environment: GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (where to listen), TEXT2LOFI_DB_URL (survey database,
default a SQLite file in the user's data folder), TEXT2LOFI_ADMIN_PASSWORD (CSV export and comments; blank: off).
Limits, retention and lanes are described in docs/reliability.md.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from text2lofi.app.compare import CompareConfig
from text2lofi.app.guard import Limits, Retention

# Largest upload the server takes: a video to score (a 5-minute 720p clip is ~50-100 MB) or a MIDI file.
MAX_UPLOAD = "100mb"


def default_output_dir() -> Path:
    """One folder for everything the app writes (tracks, Gradio's copies, exports), kept by `Retention`."""
    return Path(platformdirs.user_cache_dir("text2lofi")) / "outputs"


def headless_matplotlib() -> None:
    """Name matplotlib's backend before serving. Gradio asks for it around every call, on its event loop; with
    none named, asking imports pyplot and, on a machine with no font cache yet, builds one: seconds in which no
    request is answered (benchmarks/RESULTS.md, "fourth pass"). The environment names it without importing
    matplotlib at start-up; the plots import what they need on worker threads."""
    os.environ["MPLBACKEND"] = "agg"
    if "matplotlib" in sys.modules:           # read MPLBACKEND already: name it directly
        sys.modules["matplotlib"].use("agg")


@dataclass
class AppConfig:
    output_dir: Path | None = None    # where tracks are written; None: default_output_dir()
    max_duration_s: float = 600.0     # longest track one request may ask for (CPU time is shared)
    concurrency: int = 2              # generations running at once (each keeps about one core busy)
    queue_size: int = 64              # generations allowed to wait; beyond, callers hear "busy, try again in N s"
    queue_total: int = 4096           # every waiting event of every lane together (ratings drain at once)
    listen_chunk_s: float = 4.0       # seconds of audio per "listen forever" message
    listeners: int = 4                # simultaneous endless streams (each holds a worker thread)
    limits: Limits = field(default_factory=Limits)
    retention: Retention = field(default_factory=Retention)
    compare: CompareConfig = field(default_factory=CompareConfig)    # the blind comparison's systems and clips

    @property
    def threads(self) -> int:
        """Worker threads: every running generation and stream holds one, and so does a Stop waiting for its stream
        (at most `listeners`, web.STOP_WAIT_S each); ratings and page loads need the rest."""
        return self.concurrency + 2 * self.listeners + 64


def _lane_width(text: str) -> int:
    """A lane's width (--concurrency, --listeners): 0 would queue every request in it forever."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def build_parser(prog: str = "text2lofi serve") -> argparse.ArgumentParser:
    defaults = AppConfig()
    p = argparse.ArgumentParser(prog=prog, description="Serve the text2lofi page and its API.")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to bind (default 127.0.0.1, or GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                   help="port (default 7860, or GRADIO_SERVER_PORT)")
    p.add_argument("--db-url", default=None, help="survey database URL (default TEXT2LOFI_DB_URL or SQLite)")
    p.add_argument("--output-dir", type=Path, default=None,
                   help=f"where everything the app writes goes (default {default_output_dir()})")
    p.add_argument("--max-duration", type=float, default=defaults.max_duration_s, help="longest track, s")
    p.add_argument("--concurrency", type=_lane_width, default=defaults.concurrency, help="generations at once")
    p.add_argument("--listeners", type=_lane_width, default=defaults.listeners,
                   help="endless streams at once (Listen forever and /listen); more wait in the queue")
    p.add_argument("--queue-size", type=int, default=defaults.queue_size,
                   help="generations allowed to wait; more get 'busy, try again in N s'")
    limits, keep = defaults.limits, defaults.retention
    p.add_argument("--starts-per-minute", type=int, default=limits.starts_per_minute,
                   help="generations one client (IP address) may start per minute")
    p.add_argument("--streams-per-client", type=int, default=limits.streams_per_client,
                   help="endless streams one client may hold at once")
    p.add_argument("--ratings-per-minute", type=int, default=limits.ratings_per_minute,
                   help="ratings and votes one rater may write per minute")
    p.add_argument("--admin-free-tries", type=int, default=limits.admin_free_tries,
                   help="wrong admin passwords before a client waits (30 s, doubling)")
    p.add_argument("--keep-hours", type=float, default=keep.max_age_s / 3600,
                   help="generations older than this are removed")
    p.add_argument("--keep-gb", type=float, default=keep.max_bytes / 1024**3,
                   help="the oldest generations are removed while the output folder holds more")
    p.add_argument("--compare-systems", default=",".join(defaults.compare.systems),
                   help="systems in the blind comparison, comma-separated (rwkv, markov, convlstm, real)")
    p.add_argument("--compare-prompts", default=";".join(defaults.compare.prompts),
                   help="the comparison's prompts, separated by ';'")
    p.add_argument("--compare-clip-s", type=float, default=defaults.compare.clip_s, help="seconds per clip")
    p.add_argument("--compare-seeds", type=int, default=defaults.compare.seeds,
                   help="clips per system and prompt (pairs vary between them)")
    p.add_argument("--compare-min-listen-s", type=float, default=defaults.compare.min_listen_s,
                   help="seconds after a pair is shown before its vote is taken")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads per process (default 1: generations already run --concurrency at once)")
    return p


def main(argv: list[str] | None = None, prog: str = "text2lofi serve") -> int:
    args = build_parser(prog).parse_args(argv)
    from text2lofi.app.survey import SurveyStore
    from text2lofi.app.web import build_app
    from text2lofi.runtime import use_threads

    # Several generations share the cores; torch's default of one thread per core each oversubscribes them
    # (measured: a 6 s track took 8.5 s through the app with default threads, 1.3 s with one).
    use_threads(args.torch_threads)
    # What making a track needs is imported here, on this thread, before the page is served and before the clip
    # pool's thread starts. Left to load lazily, from a first request and the pool's thread at once, start-up
    # went wrong twice in three test runs (a first /generate whose queue join took over 5 s; a first track from
    # the page that had not arrived after 180 s). It costs about 1.3 s of start-up (benchmarks/RESULTS.md).
    for module in ("text2lofi.audio.mix", "text2lofi.compose.composer"):
        importlib.import_module(module)
    headless_matplotlib()
    compare = CompareConfig(systems=tuple(s.strip() for s in args.compare_systems.split(",") if s.strip()),
                            prompts=tuple(p.strip() for p in args.compare_prompts.split(";") if p.strip()),
                            clip_s=args.compare_clip_s, seeds=args.compare_seeds,
                            min_listen_s=args.compare_min_listen_s)
    limits = Limits(starts_per_minute=args.starts_per_minute, streams_per_client=args.streams_per_client,
                    ratings_per_minute=args.ratings_per_minute, admin_free_tries=args.admin_free_tries)
    retention = Retention(max_age_s=args.keep_hours * 3600, max_bytes=int(args.keep_gb * 1024**3))
    config = AppConfig(output_dir=args.output_dir, max_duration_s=args.max_duration,
                       concurrency=args.concurrency, listeners=args.listeners, queue_size=args.queue_size,
                       compare=compare, limits=limits, retention=retention)
    demo = build_app(SurveyStore(args.db_url), config)
    demo.studio.compare.start_filling()      # the pool renders in the background; pairs appear as clips land
    # No monitoring dashboard (it shows every request to whoever holds its URL); uploads (a video to score, a
    # MIDI file) are capped; threads: see AppConfig.threads. Gradio serves only files under the working folder, the
    # system's temp folder or allowed_paths: the output folder (by default under ~/.cache) is named here.
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=MAX_UPLOAD, enable_monitoring=False,
                max_threads=config.threads, allowed_paths=[str(demo.output_dir)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

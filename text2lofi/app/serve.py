"""Serve the page and the API: `python app.py [options]` and `text2lofi serve [options]` are this one command.

Environment: GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (where to listen), TEXT2LOFI_DB_URL (survey database,
default a SQLite file in the user's data folder), TEXT2LOFI_ADMIN_PASSWORD (CSV export and comments).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from text2lofi.app.compare import CompareConfig

# Largest upload the server takes: a video to score (a 5-minute 720p clip is ~50-100 MB) or a MIDI file.
MAX_UPLOAD = "100mb"


@dataclass
class AppConfig:
    output_dir: Path | None = None    # where tracks are written; None: a fresh temporary folder per app
    max_duration_s: float = 600.0     # longest track one request may ask for (CPU time is shared)
    concurrency: int = 2              # generations running at once (each keeps about one core busy)
    queue_size: int = 64              # waiting requests beyond this are refused instead of piling up
    listen_chunk_s: float = 4.0       # seconds of audio per "listen forever" message
    listeners: int = 4                # simultaneous endless streams (each holds a worker thread)
    compare: CompareConfig = field(default_factory=CompareConfig)    # the blind comparison's systems and clips


def build_parser(prog: str = "text2lofi serve") -> argparse.ArgumentParser:
    defaults = AppConfig()
    p = argparse.ArgumentParser(prog=prog, description="Serve the text2lofi page and its API.")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to bind (default 127.0.0.1, or GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                   help="port (default 7860, or GRADIO_SERVER_PORT)")
    p.add_argument("--db-url", default=None, help="survey database URL (default TEXT2LOFI_DB_URL or SQLite)")
    p.add_argument("--output-dir", type=Path, default=None, help="where tracks are written (default: temp)")
    p.add_argument("--max-duration", type=float, default=defaults.max_duration_s, help="longest track, s")
    p.add_argument("--concurrency", type=int, default=defaults.concurrency, help="generations at once")
    p.add_argument("--queue-size", type=int, default=defaults.queue_size, help="requests allowed to wait")
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
    compare = CompareConfig(systems=tuple(s.strip() for s in args.compare_systems.split(",") if s.strip()),
                            prompts=tuple(p.strip() for p in args.compare_prompts.split(";") if p.strip()),
                            clip_s=args.compare_clip_s, seeds=args.compare_seeds,
                            min_listen_s=args.compare_min_listen_s)
    config = AppConfig(output_dir=args.output_dir, max_duration_s=args.max_duration,
                       concurrency=args.concurrency, queue_size=args.queue_size, compare=compare)
    demo = build_app(SurveyStore(args.db_url), config)
    demo.studio.compare.start_filling()      # the pool renders in the background; pairs appear as clips land
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=MAX_UPLOAD)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

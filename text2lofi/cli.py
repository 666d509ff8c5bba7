"""`text2lofi` command line: argparse wiring over the library, nothing more."""
from __future__ import annotations

import argparse
import importlib
import json
import sys

# Subcommands whose argument parsing lives with the code they run: name -> (module, help).
DELEGATED = {
    "data": ("text2lofi.compose.data", "prepare token shards from a data source (data prepare --help)"),
    "train": ("rwkv_core.train", "train an RWKV-6 model on token shards"),
    "train-instruct": ("text2lofi.instruct.train", "generate instruction data and train the instruction LM"),
    "eval": ("text2lofi.evaluate.__main__", "run the evaluation and write metrics.json + report.md"),
    "serve": ("text2lofi.app.serve", "serve the page and the API (same as python app.py; serve --help)"),
    "baselines": ("text2lofi.evaluate.baselines", "train the ConvLSTM / Markov baselines the evaluation compares with"),
}


def _generate(args: argparse.Namespace) -> int:
    from text2lofi.pipeline import generate_to_files
    from text2lofi.runtime import use_threads

    use_threads()

    overrides = {k: v for k, v in (("duration_s", args.duration), ("tempo_bpm", args.tempo),
                                   ("key", args.key), ("lofi_amount", args.lofi)) if v is not None}
    seen: set[str] = set()

    def progress(stage: str, fraction: float) -> None:
        # Composing and rendering interleave bar by bar: announce each stage once.
        if stage not in seen:
            print(f"{stage}...", file=sys.stderr, flush=True)
            seen.add(stage)

    if args.loop:
        overrides["loop"] = True
    track = generate_to_files(args.prompt, args.output, midi=args.midi, stems=args.stems, seed=args.seed,
                              progress=None if args.quiet else progress, from_midi=args.from_midi,
                              continue_s=args.continue_s, **overrides)
    c = track.conditions
    print(f"wrote {args.output}: {track.duration_s:.3f} s, {c.tempo_bpm:g} BPM, {c.key} {c.mode}, "
          f"textures={','.join(c.textures) or 'none'}, seed={c.seed}")
    for path in track.written[1:]:                   # the MIDI, stems and the .json sidecars (conditions, seed)
        print(f"wrote {path}")
    for w in c.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def _remade(args: argparse.Namespace) -> int:
    """extend / vary: a track made again from its .json sidecar, written like generate's output."""
    from text2lofi.audio.files import check_output_path
    from text2lofi.pipeline import extend, vary
    from text2lofi.runtime import use_threads

    use_threads()
    out = check_output_path(args.output)
    midi = check_output_path(args.midi) if args.midi else None
    track = extend(args.track, args.seconds) if args.command == "extend" else \
        vary(args.track, args.part, args.seed, args.section)
    written = [track.save(out)] + ([track.save(midi)] if midi else [])
    print(f"wrote {', '.join(map(str, written))}: {track.duration_s:.3f} s ({track.metadata['made_from']})")
    for w in track.conditions.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def _score(args: argparse.Namespace) -> int:
    from text2lofi.pipeline import score_video
    from text2lofi.runtime import use_threads

    use_threads()
    track = score_video(args.video, args.prompt, args.output, seed=args.seed, level_db=args.level,
                        keep_audio=not args.replace_audio)
    v, c = track.metadata["video"], track.conditions
    sound = f"music under the video's sound at {v['level_db']:g} dB" if v["kept_audio"] else \
        f"music as the sound at {v['level_db']:g} dB"
    print(f"wrote {args.output}: {v['duration_s']:.3f} s, picture copied, {sound}; {c.tempo_bpm:g} BPM, "
          f"{c.key} {c.mode}, seed={c.seed}")
    for w in c.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def _previous(text: str):
    """--previous: a sidecar .json that generate wrote (its "conditions"), a conditions .json, or JSON text."""
    from pathlib import Path

    from text2lofi import Conditions

    source = text
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"--previous: {text!r} is neither JSON nor a file that exists")
        source = path.read_text()
    try:
        data = json.loads(source)
    except ValueError as exc:
        raise ValueError(f"--previous: cannot read it as JSON ({exc})") from None
    data = data.get("conditions", data) if isinstance(data, dict) else data
    return Conditions.from_dict(data)


def _interpret(args: argparse.Namespace) -> int:
    from text2lofi import interpret

    previous = _previous(args.previous) if args.previous else None
    print(json.dumps(interpret(args.prompt, previous=previous).to_dict(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="text2lofi", description="Text to lo-fi music.")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="text -> finished track (WAV/MP3/FLAC by extension)")
    g.add_argument("prompt", help="what you want to hear, e.g. 'rainy night study beats, 4 minutes'")
    g.add_argument("-o", "--output", required=True, help="track.wav | track.mp3 | track.flac")
    g.add_argument("--midi", help="also write the MIDI (every part, one tempo map)")
    g.add_argument("--stems", help="folder for the balanced piano, drums and bass stems (WAV)")
    g.add_argument("--seed", type=int, help="the track's seed (the text's own if not given)")
    g.add_argument("--duration", type=float, help="seconds; overrides the text")
    g.add_argument("--tempo", type=float, help="BPM; overrides the text")
    g.add_argument("--key", help="tonic, e.g. A or Eb; overrides the text")
    g.add_argument("--lofi", type=float, help="0..1 strength of the lo-fi chain")
    g.add_argument("--from-midi", metavar="IN.mid",
                   help="accompany this MIDI file: its notes kept exactly as the piano, its tempo, key and chords "
                        "followed; drums, bass and textures added")
    g.add_argument("--continue", dest="continue_s", type=float, default=0.0, metavar="SECONDS",
                   help="with --from-midi: the piano model writes on for SECONDS after the file ends")
    g.add_argument("--loop", action="store_true",
                   help="a seamless loop: whole bars, the end flows into the start (use WAV or FLAC: MP3 pads)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    g.set_defaults(func=_generate)

    sc = sub.add_parser("score", help="music exactly as long as a video, put under it (the picture is copied)")
    sc.add_argument("video", help="the video to score (.mp4, .mov, .mkv, .webm, .m4v)")
    sc.add_argument("prompt", help="what the music should be, e.g. 'calm lofi with rain'")
    sc.add_argument("-o", "--output", required=True, help="the scored video (same kinds of file)")
    sc.add_argument("--seed", type=int, help="the music's seed (random if not given)")
    sc.add_argument("--level", type=float, help="the music's level in dB (default -12 under the video's own "
                                                 "sound, 0 when it is the only sound)")
    sc.add_argument("--replace-audio", action="store_true", help="drop the video's own sound")
    sc.set_defaults(func=_score)

    e = sub.add_parser("extend", help="a track made longer: every note before its outro kept, new bars and outro")
    e.add_argument("track", help="the track's .json sidecar (track.wav.json), or the audio file beside it")
    e.add_argument("seconds", type=float, help="how much longer, in seconds")
    v = sub.add_parser("vary", help="the same track with one part drawn again, the others note for note")
    v.add_argument("track", help="the track's .json sidecar (track.wav.json), or the audio file beside it")
    v.add_argument("part", choices=("piano", "drums", "bass"))
    v.add_argument("--seed", type=int, help="the part's new seed (random if not given)")
    v.add_argument("--section", type=int, help="redraw it in this section only (an index into the sidecar's "
                                                 "\"plan\"); every other bar stays")
    for p_ in (e, v):
        p_.add_argument("-o", "--output", required=True, help="out.wav | out.mp3 | out.flac")
        p_.add_argument("--midi", help="also write the MIDI")
        p_.set_defaults(func=_remade)

    i = sub.add_parser("interpret", help="text -> Conditions as JSON")
    i.add_argument("prompt", help="the text to read (an edit of --previous if given)")
    i.add_argument("--previous", help="the conditions to edit: a track's .json sidecar (track.wav.json), a "
                                      "conditions .json file, or JSON text")
    i.set_defaults(func=_interpret)

    for name, (_, help_) in DELEGATED.items():
        sub.add_parser(name, help=help_, add_help=False)
    return p


def _load_fluidsynth() -> None:
    """Load pyfluidsynth now, through the one import that sends its chatter to stderr: with $CI set it prints
    where it found the library on stdout, and pretty_midi imports it too; stdout is the CLI's answer."""
    from text2lofi.audio.render import load_fluidsynth
    try:
        load_fluidsynth()
    except ImportError:
        pass    # said with what to install when something first renders


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        module = importlib.import_module(DELEGATED[argv[0]][0])
        return module.main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    _load_fluidsynth()
    from text2lofi.audio.files import NoSpace       # a full disk: "error: no space left on <folder>"
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError, TypeError, NoSpace) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Training data: source readers -> `Piece`s -> token shards for rwkv_core.train.

Sources (each taken by path; data sets are never part of the repository):
  pop909   POP909 (github.com/music-x-lab/POP909-Dataset): NNN/NNN.mid + chord_midi.txt + key_audio.txt +
           beat_midi.txt; MELODY, BRIDGE and PIANO merged into one piano part.
  gmd      Groove MIDI Dataset (magenta.tensorflow.org/datasets/groove): info.csv (style, bpm, split) + MIDI.
  music21  music21's bundled corpus: the ABC folk tunes (multi-tune files split per X: header) and Bach chorales.
  folder   any folder of .mid/.midi/.abc (IrishMAN, E-GMD, Lakh, ...), read recursively.

Output in OUT: {train,val}.bin (uint16 tokens, segments concatenated), {train,val}.idx.npy (int64 segment
starts), meta.json ({"vocab_size", "tokenizer", "source", ...}), manifest.json (every file seen: used or skipped
and why, tokens, split) and tokenizer/ (MusicTokenizer.save). Work is done in chunks written atomically under
OUT/parts/, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import multiprocessing as mp
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import symusic
from tqdm import tqdm

from rwkv_core.config import add_config_args, config_from_args, opt

from text2lofi.conditions import PITCH_CLASS
from text2lofi.compose.theory import estimate_key
from text2lofi.compose.tokenizer import STYLES, MusicTokenizer

MAX_FILE_BYTES = 8 << 20     # bigger MIDI/ABC files are not music we want (or are broken)
MAX_BEATS = 4 * 1500         # "absurdly long": more than 1500 bars of 4/4
SOURCES = ("pop909", "gmd", "music21", "folder")


@dataclass
class Piece:
    id: str                       # stable, unique within the source; decides the split
    source: str
    kind: str                     # "piano" | "drums"
    midi: symusic.Score           # first 4/4 downbeat on a bar line where the source says where it is
    key_pc: int | None = None     # tonic pitch class, 0 = C
    mode: str | None = None       # "major" | "minor"
    chords: list[tuple[float, float, str]] = field(default_factory=list)  # (start_beat, end_beat, symbol)
    style: str = "other"          # one of tokenize.STYLES
    bpm: float | None = None
    split: str | None = None      # "train" | "val" where the source fixes it


@dataclass(frozen=True)
class Item:
    """One unit of work: how to read one piece. Picklable, so workers can load it themselves."""
    id: str
    source: str
    path: str
    extra: tuple = ()             # source-specific (GMD row fields, ABC tune text, ...)


class Skip(Exception):
    """A file we do not use, with the reason that goes into the manifest."""



# ---- key finding (text2lofi.compose.theory), for sources without a key annotation -------------------------------------
def _pc_weights(score: symusic.Score) -> np.ndarray:
    w = np.zeros(12)
    for tr in score.tracks:
        if not tr.is_drum:
            for n in tr.notes:
                w[n.pitch % 12] += n.duration
    return w


def _load_midi(path: str) -> symusic.Score:
    size = os.path.getsize(path)
    if size == 0:
        raise Skip("zero-length file")
    if size > MAX_FILE_BYTES:
        raise Skip(f"too large ({size} bytes)")
    try:
        score = symusic.Score(path)
    except Exception as e:  # symusic raises plain RuntimeErrors for broken MIDI
        raise Skip(f"unreadable MIDI: {str(e)[:120]}") from None
    n_notes = sum(len(t.notes) for t in score.tracks)
    if n_notes == 0:
        raise Skip("no notes")
    if score.end() / score.ticks_per_quarter > MAX_BEATS:
        raise Skip(f"too long ({score.end() / score.ticks_per_quarter:.0f} beats)")
    return score


def _first_tempo(score: symusic.Score, default: float = 100.0) -> float:
    return float(score.tempos[0].qpm) if len(score.tempos) else default


# ---- POP909 ------------------------------------------------------------------------------------------------
def list_pop909(path: str) -> list[Item]:
    root = Path(path)
    return [Item(d.name, "pop909", str(d)) for d in sorted(root.iterdir()) if d.is_dir() and d.name.isdigit()]


def _seconds_to_beats(score: symusic.Score) -> Callable[[float], float]:
    """Seconds -> beats through the piece's tempo map (piecewise linear between tempo changes)."""
    tpq = score.ticks_per_quarter
    tempos = sorted((t.time, t.mspq) for t in score.tempos) or [(0, 500000)]
    marks = [(0.0, 0.0, tempos[0][1])]  # (second, beat, microseconds per quarter from there on)
    for tick, mspq in tempos[1:]:
        s0, b0, m0 = marks[-1]
        marks.append((s0 + (tick / tpq - b0) * m0 / 1e6, tick / tpq, mspq))

    def convert(t: float) -> float:
        s0, b0, m0 = [m for m in marks if m[0] <= t][-1] if t >= 0 else marks[0]
        return b0 + (t - s0) * 1e6 / m0
    return convert


def read_pop909(item: Item, kind: str = "piano") -> Piece:
    d = Path(item.path)
    score = _load_midi(str(d / f"{d.name}.mid"))
    to_beats = _seconds_to_beats(score)
    key_pc, mode = None, None
    key_file = d / "key_audio.txt"
    if key_file.exists():  # the key held longest
        spans = []
        for line in key_file.read_text().split("\n"):
            parts = line.split()
            if len(parts) == 3 and ":" in parts[2]:
                spans.append((float(parts[1]) - float(parts[0]), parts[2]))
        if spans:
            tonic, quality = max(spans)[1].split(":")
            key_pc, mode = PITCH_CLASS.get(tonic), "minor" if quality.startswith("min") else "major"
    shift = 0.0  # beats that move the first 4/4 downbeat (beat_midi.txt's third column) onto a bar line
    beat_file = d / "beat_midi.txt"
    if beat_file.exists():
        for line in beat_file.read_text().split("\n"):
            parts = line.split()
            if len(parts) == 3 and float(parts[2]) == 1.0:
                first = to_beats(float(parts[0]))
                shift = (-round(first * 12) / 12) % 4.0
                break
    chords = []
    chord_file = d / "chord_midi.txt"
    if chord_file.exists():
        for line in chord_file.read_text().split("\n"):
            parts = line.split()
            if len(parts) == 3:
                chords.append((to_beats(float(parts[0])) + shift, to_beats(float(parts[1])) + shift, parts[2]))
    if shift:
        score = score.shift_time(round(shift * score.ticks_per_quarter))
    if key_pc is None:
        key_pc, mode = estimate_key(_pc_weights(score)) or (0, "major")
    return Piece(item.id, "pop909", "piano", score, key_pc, mode, chords, "pop", _first_tempo(score))


# ---- Groove MIDI Dataset -------------------------------------------------------------------------------------
def list_gmd(path: str) -> list[Item]:
    rows = list(csv.DictReader(open(Path(path) / "info.csv", newline="")))
    items = []
    for r in rows:
        extra = (r["style"], r["bpm"], r["beat_type"], r["time_signature"], r["split"], r["session"])
        items.append(Item(r["id"], "gmd", str(Path(path) / r["midi_filename"]), extra))
    return items


def read_gmd(item: Item, kind: str = "drums") -> Piece:
    style, bpm, _beat_type, ts, split, _session = item.extra
    if ts != "4-4":
        raise Skip(f"time signature {ts}, not 4/4")
    score = _load_midi(item.path)
    top = style.split("/")[0]
    # GMD's own split: validation and test both become our val.
    return Piece(item.id, "gmd", "drums", score, None, None, [], top if top in STYLES else "other",
                 float(bpm), "train" if split == "train" else "val")


# ---- music21 corpus (ABC folk tunes + Bach chorales) and ABC files ------------------------------------------
def split_abc(text: str) -> list[tuple[str, str]]:
    """Multi-tune ABC text -> [(X number, tune text)], each tune carrying the file's header lines."""
    header, tunes, current = [], [], None
    for line in text.splitlines():
        m = re.match(r"^X:\s*(\S*)", line)
        if m:
            current = [m.group(1) or str(len(tunes) + 1), [line]]
            tunes.append(current)
        elif current is None:
            header.append(line)
        else:
            current[1].append(line)
    return [(x, "\n".join(header + lines)) for x, lines in tunes]


def _abc_items(path: Path, source: str, rel: str) -> list[Item]:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return [Item(rel, source, str(path), ("unreadable", str(e)))]
    tunes = split_abc(text)
    if not tunes:
        return [Item(rel, source, str(path), ("abc", ""))]
    return [Item(f"{rel}#{x}", source, str(path), ("abc", t)) for x, t in tunes]


def list_music21(path: str | None = None) -> list[Item]:
    from music21 import corpus
    items = []
    for p in sorted(str(p) for p in corpus.getPaths(fileExtensions=("abc",))):
        items += _abc_items(Path(p), "music21", f"folk/{Path(p).parent.name}/{Path(p).name}")
    for p in sorted(str(p) for p in corpus.getComposer("bach")):
        if "bwv" in Path(p).name and Path(p).suffix in (".mxl", ".xml", ".musicxml"):
            items.append(Item("bach/" + Path(p).name, "music21", p, ("score", "")))
    return items


def _music21_to_piece(item: Item, stream: Any, style: str, kind: str) -> Piece:
    """music21 stream -> Piece, read note by note (avoids music21's MIDI export and its shared-TimeSignature
    trap on O'Neill tunes). Only meters whose bar is 2 or 4 beats fit our 4/4 grid; others are skipped."""
    from music21 import meter, tempo
    ts = next(iter(stream.recurse().getElementsByClass(meter.TimeSignature)), None)
    if ts is not None and ts.barDuration.quarterLength not in (2.0, 4.0):
        raise Skip(f"meter {ts.ratioString} does not fit 4/4 bars")
    stream = stream.stripTies()
    notes = []
    for n in stream.flatten().notes:
        ql = float(n.quarterLength)
        if ql <= 0:  # grace notes
            continue
        for p in n.pitches:
            vel = n.volume.velocity if n.volume.velocity is not None else 80
            notes.append((float(n.offset), ql, p.midi, int(vel)))
    if not notes:
        raise Skip("no notes")
    pickup = 0.0  # an anacrusis: move the first full bar onto a bar line
    first_measure = next(iter(stream.recurse().getElementsByClass("Measure")), None)
    if first_measure is not None and first_measure.paddingLeft:
        pickup = float(first_measure.paddingLeft)
    tpq = 480
    score = symusic.Score(tpq)
    track = symusic.Track(program=0, is_drum=False)
    for on, dur, pitch, vel in notes:
        track.notes.append(symusic.Note(round((on + pickup) * tpq), max(1, round(dur * tpq)), pitch, vel))
    score.tracks.append(track)
    if score.end() / tpq > MAX_BEATS:
        raise Skip("too long")
    mark = next(iter(stream.recurse().getElementsByClass(tempo.MetronomeMark)), None)
    bpm = float(mark.getQuarterBPM()) if mark is not None and mark.number else 100.0
    k = stream.analyze("key")
    return Piece(item.id, item.source, kind, score, k.tonic.pitchClass, k.mode if k.mode in ("major", "minor")
                 else "major", [], style, bpm)


def read_music21(item: Item, kind: str = "piano") -> Piece:
    from music21 import converter
    what, text = item.extra
    if what == "unreadable":
        raise Skip(f"unreadable: {text[:120]}")
    try:
        if what == "abc":
            if not text.strip() or not re.search(r"^K:", text, re.M):
                raise Skip("empty ABC tune (no K: line)")
            stream = converter.parse(text, format="abc")
        else:
            stream = converter.parse(item.path)
    except Skip:
        raise
    except Exception as e:
        raise Skip(f"unparseable: {type(e).__name__}: {str(e)[:100]}") from None
    style = "classical" if item.id.startswith("bach/") else "folk"
    if item.source == "folder":
        style = "other"
    try:
        return _music21_to_piece(item, stream, style, kind)
    except Skip:
        raise
    except Exception as e:
        raise Skip(f"unreadable score: {type(e).__name__}: {str(e)[:100]}") from None


# ---- any folder ------------------------------------------------------------------------------------------------
def list_folder(path: str) -> list[Item]:
    root = Path(path)
    items = []
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.suffix.lower() in (".mid", ".midi"):
            items.append(Item(rel, "folder", str(p), ("midi", "")))
        elif p.suffix.lower() == ".abc":
            items += _abc_items(p, "folder", rel)
    return items


def read_folder(item: Item, kind: str) -> Piece:
    if item.extra[0] != "midi":
        return read_music21(item, kind)
    score = _load_midi(item.path)
    if kind == "drums" and not any(t.is_drum and t.notes for t in score.tracks):
        raise Skip("no drum track")
    if kind == "piano" and not any(not t.is_drum and t.notes for t in score.tracks):
        raise Skip("no pitched track")
    key_pc, mode = (estimate_key(_pc_weights(score)) or (0, "major")) if kind == "piano" else (None, None)
    return Piece(item.id, "folder", kind, score, key_pc, mode, [], "other", _first_tempo(score))


LISTERS = {"pop909": list_pop909, "gmd": list_gmd, "music21": list_music21, "folder": list_folder}
READERS = {"pop909": read_pop909, "gmd": read_gmd, "music21": read_music21, "folder": read_folder}
DEFAULT_KIND = {"pop909": "piano", "gmd": "drums", "music21": "piano", "folder": "piano"}


def read_piece(item: Item, kind: str) -> Piece:
    return READERS[item.source](item, kind)


# ---- splitting, augmentation, encoding ---------------------------------------------------------------------------
def split_of(piece_id: str, val_pct: float) -> str:
    """Deterministic split by piece id: the same piece always lands on the same side."""
    h = int(hashlib.sha1(piece_id.encode()).hexdigest()[:8], 16)
    return "val" if h % 10000 < val_pct * 100 else "train"


@dataclass
class PrepareConfig:
    source: str
    out: str
    path: str | None = opt(None, "data set folder (music21: optional, uses the installed corpus)")
    kind: str | None = opt(None, "piano or drums; default: piano, drums for gmd")
    workers: int = 2
    max_len: int = 513            # ctx_len + 1: one training window per segment
    val_pct: float = 5.0          # % of pieces in validation (sources without their own split)
    transpose: str = "all"        # "all": 12 keys for training pieces (val stays in its own key); "none"
    tempo_jitter: float = 0.1     # training copies get bpm * U(1 - j, 1 + j) for the TempoBin token
    chunk: int = 64               # items per resumable part
    limit: int | None = None      # only the first N items (quick runs)
    seed: int = 0


def _encode_item(args: tuple[Item, PrepareConfig]) -> dict[str, Any]:
    item, cfg = args
    kind = cfg.kind or DEFAULT_KIND[cfg.source]
    entry: dict[str, Any] = {"id": item.id, "file": item.path}
    try:
        piece = read_piece(item, kind)
        tok = _tokenizer(kind)
        split = piece.split or split_of(f"{piece.source}/{piece.id}", cfg.val_pct)
        shifts = [0]
        if kind == "piano" and split == "train" and cfg.transpose == "all":
            shifts = list(range(-5, 7))
        rng = random.Random(f"{cfg.seed}/{piece.source}/{piece.id}")
        segments = []
        for t in shifts:
            bpm = piece.bpm or 100.0
            if split == "train" and cfg.tempo_jitter:
                bpm *= rng.uniform(1 - cfg.tempo_jitter, 1 + cfg.tempo_jitter)
            segments += tok.encode_segments(piece, cfg.max_len, transpose=t, tempo_bpm=bpm)
        if not segments:
            raise Skip("no bars with notes after encoding")
    except Skip as e:
        entry.update(status="skipped", reason=str(e))
        return entry
    except Exception as e:  # bad input never aborts a run
        entry.update(status="skipped", reason=f"error: {type(e).__name__}: {str(e)[:120]}")
        return entry
    entry.update(status="used", split=split, segments=len(segments), tokens=sum(map(len, segments)),
                 key_pc=piece.key_pc, mode=piece.mode, style=piece.style, bpm=piece.bpm)
    entry["_segments"] = segments
    return entry


_TOKENIZERS: dict[str, MusicTokenizer] = {}


def _tokenizer(kind: str) -> MusicTokenizer:
    if kind not in _TOKENIZERS:  # once per worker process
        _TOKENIZERS[kind] = MusicTokenizer.piano() if kind == "piano" else MusicTokenizer.drums()
    return _TOKENIZERS[kind]


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, mode) as f:
        write(f)
    os.replace(tmp, path)


def _write_part(parts: Path, index: int, entries: list[dict[str, Any]]) -> None:
    tokens, lengths, splits = [], [], []
    for e in entries:
        for seg in e.pop("_segments", []):
            tokens.extend(seg)
            lengths.append(len(seg))
            splits.append(e["split"] == "val")
    arrays = {"tokens": np.asarray(tokens, np.uint16), "lengths": np.asarray(lengths, np.int64),
              "val": np.asarray(splits, bool)}
    _atomic_write(parts / f"part_{index:05d}.npz", lambda f: np.savez(f, **arrays))
    # The JSON is written last: its presence marks the part as done.
    _atomic_write(parts / f"part_{index:05d}.json", lambda f: json.dump(entries, f), "w")


def prepare(cfg: PrepareConfig) -> dict[str, Any]:
    """Read a source, encode every piece, write shards + meta.json + manifest.json. Returns the manifest summary."""
    if cfg.source not in SOURCES:
        raise ValueError(f"unknown source {cfg.source!r}; one of {SOURCES}")
    if cfg.source != "music21" and not cfg.path:
        raise ValueError(f"--path is needed for source {cfg.source}")
    kind = cfg.kind or DEFAULT_KIND[cfg.source]
    cfg.kind = kind
    out = Path(cfg.out)
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    items = LISTERS[cfg.source](cfg.path)
    items = sorted(items, key=lambda it: it.id)[: cfg.limit]
    chunks = [items[i: i + cfg.chunk] for i in range(0, len(items), cfg.chunk)]
    todo = [i for i in range(len(chunks)) if not (parts / f"part_{i:05d}.json").exists()]
    bar = tqdm(total=len(items), initial=len(items) - sum(len(chunks[i]) for i in todo),
               desc=f"prepare {cfg.source}", unit="file")
    pool = mp.get_context("spawn").Pool(cfg.workers) if cfg.workers > 1 else None
    try:
        for i in todo:
            jobs = [(it, cfg) for it in chunks[i]]
            entries = pool.map(_encode_item, jobs) if pool else [_encode_item(j) for j in jobs]
            _write_part(parts, i, entries)
            bar.update(len(jobs))
    finally:
        bar.close()
        if pool:
            pool.close()
            pool.join()
    return _assemble(out, len(chunks), cfg)


def _assemble(out: Path, n_parts: int, cfg: PrepareConfig) -> dict[str, Any]:
    tok = _tokenizer(cfg.kind)
    streams: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    starts: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    offset = {"train": 0, "val": 0}
    entries: list[dict[str, Any]] = []
    for i in range(n_parts):
        entries += json.loads((out / "parts" / f"part_{i:05d}.json").read_text())
        with np.load(out / "parts" / f"part_{i:05d}.npz") as z:
            tokens, lengths, is_val = z["tokens"], z["lengths"], z["val"]
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        for split, sel in (("train", ~is_val), ("val", is_val)):
            for a, b in zip(bounds[:-1][sel], bounds[1:][sel]):
                streams[split].append(tokens[a:b])
                starts[split].append(np.asarray([offset[split]], np.int64))
                offset[split] += int(b - a)
    summary: dict[str, Any] = {"source": cfg.source, "path": cfg.path, "kind": cfg.kind,
                               "files_seen": len(entries),
                               "files_used": sum(e["status"] == "used" for e in entries),
                               "files_skipped": sum(e["status"] == "skipped" for e in entries)}
    for split in ("train", "val"):
        data = np.concatenate(streams[split]) if streams[split] else np.zeros(0, np.uint16)
        idx = np.concatenate(starts[split]) if starts[split] else np.zeros(0, np.int64)
        _atomic_write(out / f"{split}.bin", lambda f: f.write(data.tobytes()))
        _atomic_write(out / f"{split}.idx.npy", lambda f: np.save(f, idx))
        summary[f"{split}_tokens"] = int(len(data))
        summary[f"{split}_segments"] = int(len(idx))
        summary[f"{split}_pieces"] = sum(e.get("split") == split for e in entries)
    reasons: dict[str, int] = {}
    for e in entries:
        if e["status"] == "skipped":
            reason = re.sub(r"\d+", "N", e["reason"].split(":")[0])
            reasons[reason] = reasons.get(reason, 0) + 1
    summary["skip_reasons"] = reasons
    tok.save(out / "tokenizer")
    meta = {"vocab_size": tok.vocab_size, "tokenizer": {k: v for k, v in tok.to_dict().items() if k != "vocab"},
            "kind": cfg.kind, "source": cfg.source, "max_len": cfg.max_len, "transpose": cfg.transpose,
            "tempo_jitter": cfg.tempo_jitter, "val_pct": cfg.val_pct, "seed": cfg.seed, "summary": summary}
    _atomic_write(out / "meta.json", lambda f: json.dump(meta, f, indent=1), "w")
    _atomic_write(out / "manifest.json", lambda f: json.dump({"summary": summary, "files": entries}, f, indent=0),
                  "w")
    return summary


def main(argv: list[str] | None = None) -> int:
    """`text2lofi data prepare --source pop909 --path P --out DIR [--kind piano] [--workers 2] ...`"""
    ap = argparse.ArgumentParser(prog="text2lofi data", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="turn a source into token shards + manifest")
    add_config_args(p, PrepareConfig, choices={"source": SOURCES, "kind": ("piano", "drums"),
                                               "transpose": ("all", "none")})
    cfg = config_from_args(PrepareConfig, ap.parse_args(argv))
    summary = prepare(cfg)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

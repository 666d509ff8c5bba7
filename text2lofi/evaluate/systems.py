"""The systems the evaluation compares (real music, our RWKV pipeline, the ConvLSTM and Markov baselines): one runner
per system yielding a row of metrics per piece, and `run`, which scores them all and writes the report."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pretty_midi

from text2lofi.compose.theory import key_match
from text2lofi.conditions import PITCH_CLASS
from text2lofi.resources import checkpoints_dir, shared_data_dir
from text2lofi.evaluate import judges
from text2lofi.evaluate.metrics import (ADHERENCE, ANCHORS, JUDGED, METRIC_DOCS, ORIGINAL, SYMBOLIC, adherence,
                                        bar_starts, drum_bars,
                                        drum_notes, groove_consistency, key_name, key_of, pitched_notes,
                                        symbolic_metrics)
from text2lofi.evaluate.prompts import prompt_set
from text2lofi.evaluate.report import plain, write_report

DATA_DIR = shared_data_dir()


@dataclass
class EvalConfig:
    out: str = "eval"
    quick: bool = False
    # Data sets are never in the repository: by default they sit in ../shared/data beside the checkout (as in CI).
    pop909: str = str(DATA_DIR / "pop909")          # POP909 folder (real piano music; same split as training)
    gmd: str = str(DATA_DIR / "groove-midi")        # Groove MIDI Dataset folder (real drums, its validation split)
    baselines: str = ""                             # convlstm.pt + markov_piano.npz; empty: checkpoints/baselines
    systems: tuple[str, ...] = ("real", "rwkv", "convlstm", "markov")
    seed: int = 0
    bars: int = 32              # length of real excerpts and baseline generations, 4/4 bars
    n_real: int = 48            # POP909 validation pieces (all 48 at the default 5% split)
    n_real_drums: int = 60      # GMD validation beats
    n_prompts: int = 40
    prompt_durations: tuple[float, ...] = (15, 20, 30, 45, 60)     # seconds a prompt may ask for
    n_convlstm: int = 20        # per ConvLSTM variant
    n_markov: int = 40

    @classmethod
    def quick_config(cls, **kw) -> "EvalConfig":
        sizes = dict(quick=True, bars=16, n_real=8, n_real_drums=8, n_prompts=4, prompt_durations=(10, 15, 20),
                     n_convlstm=3, n_markov=6)
        return cls(**{**sizes, **kw})


def baselines_dir(cfg: EvalConfig) -> Path:
    return Path(cfg.baselines) if cfg.baselines else checkpoints_dir() / "baselines"


def excerpt(pm: pretty_midi.PrettyMIDI, n_bars: int) -> pretty_midi.PrettyMIDI:
    """The first n_bars 4-beat bars from the first bar holding a note onset, shifted to start at 0."""
    bars = bar_starts(pm)
    onsets = np.concatenate([pitched_notes(pm)[:, 0], drum_notes(pm)[:, 0]])
    if len(onsets) == 0 or len(bars) < 2:
        return pm
    first = max(0, int(np.searchsorted(bars, onsets.min(), side="right")) - 1)
    t0 = bars[first]
    t1 = bars[first + n_bars] if first + n_bars < len(bars) else bars[-1]
    bpm = float(pm.get_tempo_changes()[1][np.searchsorted(pm.get_tempo_changes()[0], t0, side="right") - 1])
    out = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    for inst in pm.instruments:
        new = pretty_midi.Instrument(inst.program, is_drum=inst.is_drum, name=inst.name)
        new.notes = [pretty_midi.Note(n.velocity, n.pitch, n.start - t0, min(n.end, t1) - t0)
                     for n in inst.notes if t0 <= n.start < t1]
        out.instruments.append(new)
    return out


def _real_rows(cfg: EvalConfig) -> tuple[list[dict], dict]:
    from text2lofi.evaluate.baselines import pop909_files
    from text2lofi.compose.data import list_gmd

    rows = []
    for pid, path in pop909_files(cfg.pop909, "val")[: cfg.n_real]:
        pm = excerpt(pretty_midi.PrettyMIDI(str(path)), cfg.bars)
        row = {"id": f"pop909/{pid}", **symbolic_metrics(pm)}
        key_file = path.parent / "key_audio.txt"
        if key_file.exists():                  # the longest annotated key span, as data.read_pop909 does
            spans = [ln.split() for ln in key_file.read_text().splitlines() if len(ln.split()) == 3]
            if spans:
                tonic, quality = max(spans, key=lambda s: float(s[1]) - float(s[0]))[2].split(":")
                found = key_of(pm)
                row["key_annotation_agreement"] = float(key_match(
                    found, PITCH_CLASS.get(tonic, -1), "minor" if quality.startswith("min") else "major", False))
        rows.append(row)
    items = [it for it in list_gmd(cfg.gmd) if it.extra[4] != "train" and it.extra[2] == "beat"
             and it.extra[3] == "4-4"]
    n_piano = len(rows)
    for it in items[: cfg.n_real_drums]:
        pm = excerpt(pretty_midi.PrettyMIDI(it.path), cfg.bars)
        backbeat, lacking, _ = drum_bars(pm)
        rows.append({"id": f"gmd/{it.id}", "drum_groove_consistency": groove_consistency(pm, drums=True),
                     "backbeat": backbeat, "drum_bars_lacking": lacking})
    return rows, {"pieces": len(rows), "piano_pieces": n_piano, "drum_pieces": len(rows) - n_piano,
                  "source": "POP909 val split (text2lofi.data.split_of) + GMD validation/test 4/4 beats; "
                            f"first {cfg.bars} bars from the first note"}


def _rwkv_rows(cfg: EvalConfig, out_dir: Path) -> tuple[list[dict], dict]:
    from text2lofi.pipeline import generate

    rows, models, seconds = [], {}, []
    midi_dir = out_dir / "midi"
    midi_dir.mkdir(parents=True, exist_ok=True)
    for i, spec in enumerate(prompt_set(cfg.n_prompts, cfg.seed, cfg.prompt_durations)):
        t0 = time.perf_counter()
        track = generate(spec.text, seed=cfg.seed + i)
        seconds.append(time.perf_counter() - t0)
        models.update(track.metadata.get("models", {}))
        c = track.conditions
        row = {"id": f"prompt{i}", "prompt": spec.text, **symbolic_metrics(track.midi),
               **adherence(track.midi, track.audio, track.sample_rate, spec),
               "interpret_tempo": float(abs(c.tempo_bpm - spec.tempo_bpm) <= 0.5),
               "interpret_key": float(c.tonic_pc == PITCH_CLASS[spec.key] and c.mode == spec.mode),
               "key_found": key_name(key_of(track.midi)), "drums_found": bool(len(drum_notes(track.midi)))}
        if judges.available():
            row.update(judged_adherence(track.audio, track.sample_rate, spec))
        rows.append(row)
        track.midi.write(str(midi_dir / f"rwkv_{i:03d}.mid"))
    return rows, {"pieces": len(rows), "models": models, "seconds_per_track_median": float(np.median(seconds)),
                  "source": "text2lofi.generate(prompt, seed) through interpret -> compose -> render -> master"}


def judged_adherence(audio: np.ndarray, sample_rate: int, spec) -> dict[str, float]:
    """Key and tempo heard in the audio by the outside judge, against what the prompt asked."""
    tonic, mode, _ = judges.audio_key(audio, sample_rate)
    asked = PITCH_CLASS[spec.key]
    ok = float(key_match((tonic, mode), asked, spec.mode, allow_relative=False))
    return {"audio_key": ok, f"audio_key_{spec.mode}": ok,
            "audio_key_dup": float(key_match((tonic, mode), asked, spec.mode, allow_relative=True)),
            "audio_tempo": float(judges.tempo_matches(judges.audio_tempo(audio, sample_rate), spec.tempo_bpm))}


def _convlstm_rows(cfg: EvalConfig, offset: bool, out_dir: Path) -> tuple[list[dict], dict]:
    from text2lofi.evaluate import baselines as bl

    path = baselines_dir(cfg) / "convlstm.pt"
    model = bl.load_convlstm(path)
    info = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").exists() else {}
    rng = np.random.default_rng(cfg.seed)
    rolls = bl.pop909_rolls(cfg.pop909, "val", limit=cfg.n_convlstm)
    x, y = bl.roll_windows(rolls)               # next-step prediction error on these pieces, vs predicting silence
    mse, mse_silence = bl.evaluate_convlstm(model, x, y), float(y.mean())
    seeds = bl.seed_windows(rolls, cfg.n_convlstm, rng)
    rows, raw_max, active = [], [], []
    for i, window in enumerate(seeds):
        roll, stats = bl.generate_convlstm(model, window, max(cfg.bars, bl.CONVLSTM_BARS) * 16, offset=offset)
        roll = roll[-cfg.bars * 16:]            # the last bars: a quick run's 16 bars would all be silent
        raw_max.append(stats["raw_max"])
        active.append(stats["active_share"])
        pm = bl.roll_to_midi(roll)
        rows.append({"id": f"seed{i}", **symbolic_metrics(pm)})
        pm.write(str(out_dir / "midi" / f"convlstm_{'offset' if offset else 'plain'}_{i:03d}.mid"))
    return rows, {"pieces": len(rows), "offset": offset, "epochs_run": info.get("epochs_run"),
                  "train_windows": info.get("train_windows"), "val_windows": int(len(y)), "val_mse": mse,
                  "val_mse_of_silence": mse_silence,
                  "raw_output_max": float(max(raw_max)) if raw_max else None,
                  "share_of_roll_cells_on": float(np.mean(active)) if active else None,
                  "source": f"ConvLSTM port seeded with 9-step windows of POP909 val pieces, the last {cfg.bars * 16} "
                            f"of {max(cfg.bars, bl.CONVLSTM_BARS) * 16} steps"}


def _markov_rows(cfg: EvalConfig, out_dir: Path) -> tuple[list[dict], dict]:
    import torch

    from text2lofi.evaluate.baselines import BASELINE_BPM, MarkovChain
    from text2lofi.compose.tokenizer import MusicTokenizer

    chain = MarkovChain.load(baselines_dir(cfg) / "markov_piano.npz")
    tok = MusicTokenizer.piano()
    if tok.vocab_size != len(chain.counts):
        raise ValueError(f"markov table has vocab {len(chain.counts)}, the piano tokenizer {tok.vocab_size}")
    rng = np.random.default_rng(cfg.seed)
    rows = []
    for i in range(cfg.n_markov):
        prefix = tok.condition_prefix(key_pc=int(rng.integers(12)), mode=("major", "minor")[int(rng.integers(2))],
                                      tempo_bpm=BASELINE_BPM, style="pop")
        tokens = chain.generate(tok, prefix, cfg.bars, torch.Generator().manual_seed(cfg.seed + i))
        pm = tok.to_midi(tok.decode_bars(tokens[len(prefix):]), tempo_bpm=BASELINE_BPM)
        rows.append({"id": f"markov{i}", **symbolic_metrics(pm)})
        pm.write(str(out_dir / "midi" / f"markov_{i:03d}.mid"))
    return rows, {"pieces": len(rows), "transitions": int(chain.counts.sum()),
                  "source": f"first-order chain over the piano tokens, grammar-masked, {cfg.bars} bars at "
                            f"{BASELINE_BPM:g} BPM"}


def summarise(rows: list[dict]) -> tuple[dict[str, float | None], dict[str, dict]]:
    """Per metric: mean over the pieces where it is defined, and {std, n}. Every symbolic metric gets a key (None
    when no piece defines it, e.g. consonance of a one-voice melody); adherence keys only where measured."""
    means, spread = {}, {}
    for name in SYMBOLIC + ADHERENCE + JUDGED + ("key_annotation_agreement",):
        vals = np.array([r[name] for r in rows if r.get(name) is not None and np.isfinite(r[name])])
        if len(vals):
            means[name] = float(vals.mean())
            spread[name] = {"std": float(vals.std()), "n": int(len(vals))}
        elif name in SYMBOLIC:
            means[name] = None
            spread[name] = {"std": None, "n": 0}
    return means, spread


def run(cfg: EvalConfig) -> dict:
    """Score every system in cfg.systems; write metrics.json, report.md, PNGs and the generated MIDI to cfg.out."""
    out = Path(cfg.out)
    (out / "midi").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    systems: dict[str, dict] = {}
    spread: dict[str, dict] = {}
    info: dict[str, dict] = {}
    runners: dict[str, Callable[[], tuple[list[dict], dict]]] = {
        "real": lambda: _real_rows(cfg),
        "rwkv": lambda: _rwkv_rows(cfg, out),
        "convlstm": lambda: _convlstm_rows(cfg, True, out),
        "convlstm_no_offset": lambda: _convlstm_rows(cfg, False, out),
        "markov": lambda: _markov_rows(cfg, out),
    }
    names = [v for s in cfg.systems for v in ((s, "convlstm_no_offset") if s == "convlstm" else (s,))]
    per_piece: dict[str, list[dict]] = {}
    for name in names:
        t0 = time.perf_counter()
        rows, meta = runners[name]()
        systems[name], spread[name] = summarise(rows)
        meta["seconds"] = round(time.perf_counter() - t0, 1)
        info[name] = meta
        per_piece[name] = rows
        print(f"eval: {name}: {len(rows)} pieces in {meta['seconds']} s", flush=True)
    result = {"systems": systems, "spread": spread, "info": info, "original": ORIGINAL, "anchors": ANCHORS,
              "definitions": METRIC_DOCS, "config": asdict(cfg),
              "seconds": round(time.perf_counter() - t_start, 1)}
    (out / "metrics.json").write_text(json.dumps(plain(result), indent=1))
    (out / "per_piece.json").write_text(json.dumps(plain(per_piece), indent=1))
    write_report(result, out)
    return result

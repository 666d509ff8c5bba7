"""Measure the shipped piano and drum models against the issue's musical targets.

Piano, primed with key K (+ mode) and a diatonic progression forced after every Bar token: share of sounding
pitch-time in K's scale or the bar's chord (target >= 0.90), the project's key finder (text2lofi.compose.theory, Temperley-
Kostka-Payne profile; every profile in keys.PROFILES is reported too) recovering K or its relative (target >= 80% of
samples), repetition over 64 bars. Baseline in the same run: the same loop with uniform
logits (grammar and masks only), so ratios say what the model adds.
Drums, primed with style + tempo: micro-timing against the 16th grid (vs real GMD grooves of that style), tempo
drift (mean offset of the first vs the last 16 bars, ms), kick/snare/hat hits per bar vs the real grooves' p5..p95,
repetition. Also the tokenizer's round-trip timing error on real GMD files (ms, median/p95).

  python benchmarks/music_targets.py --piano checkpoints/piano --drums checkpoints/drums \
      --gmd ../shared/data/groove-midi --samples 50 --bars 64 --json-out DIR
Generation goes through rwkv_core.sampling.TokenStream with MusicTokenizer.grammar_table() masks.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from rwkv_core import RWKV6, load
from rwkv_core.sampling import ContextWindow, SamplingConfig, TokenStream
from text2lofi.compose import data
from text2lofi.compose.composer import token_masks
from text2lofi.compose.theory import CHORD_QUALITIES, DEFAULT_PROFILE, PROFILES, estimate_key, key_match
from text2lofi.compose.tokenizer import GM_TO_KIT, MusicTokenizer
from text2lofi.conditions import PC_NAME, SCALE_STEPS
# Seed progressions per mode, as (interval from the tonic, quality).
PROGRESSIONS = {
    "pop": {"major": [(0, "maj"), (7, "maj"), (9, "min"), (5, "maj")],           # I V vi IV
            "minor": [(0, "min"), (8, "maj"), (3, "maj"), (10, "maj")]},         # i bVI bIII bVII
    "jazz": {"major": [(0, "maj7"), (9, "min7"), (2, "min7"), (7, "7")],        # Imaj7 vi7 ii7 V7
             "minor": [(0, "min7"), (5, "min7"), (10, "7"), (3, "maj7")]},      # i7 iv7 bVII7 bIIImaj7
}
DRUM_STYLES = (("hiphop", 90.0), ("funk", 100.0), ("rock", 120.0), ("jazz", 130.0))
KIT_GROUPS = {"kick": {36}, "snare": {38, 37, 39}, "hat": {42, 46}}


class UniformModel(torch.nn.Module):
    """Baseline 'model': equal logits for every token, so only the grammar and masks shape the output."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab, self.emb = vocab, torch.nn.Embedding(1, 1)

    def init_state(self, batch):
        return None

    def forward(self, idx, state=None, return_state=False):
        logits = torch.zeros(*idx.shape, self.vocab)
        return (logits, None) if return_state else logits

    def step(self, tokens, state):
        return torch.zeros(tokens.shape[0], self.vocab), None


def generate(model, tok: MusicTokenizer, prompts: list[list[int]], n_bars: int, sampling: SamplingConfig,
             chords=None, scales=None, seed=0) -> list[list[int]]:
    """Batch generation of n_bars per stream. chords[b]: token ids forced after each Bar (cycled); scales[b]: the
    pitch classes Pitch tokens are masked to (None: unmasked). As in compose, Position tokens only move forward
    within a bar (REMI's own order; a model may not loop inside a bar). Returns each stream's tokens from its first
    Bar."""
    B, V = len(prompts), tok.vocab_size
    masks = token_masks(tok)               # the tables compose samples with
    position, is_position = masks.position, masks.is_position
    current = torch.full((B,), -1)          # each stream's latest position in the current bar
    allowed = torch.ones(B, V, dtype=torch.bool)
    if scales is not None:
        for b, pcs in enumerate(scales):
            allowed[b] = masks.pitch_mask(frozenset(pcs), 0, 127)
    g = torch.Generator().manual_seed(seed)
    window = ContextWindow.for_model(model, tok.bar_id) if isinstance(model, RWKV6) else None
    stream = TokenStream(model, torch.tensor(prompts), sampling, generator=g, window=window)
    out = [[p[-2], p[-1]] if tok.kind == "piano" else [p[-1]] for p in prompts]
    bars = [1] * B
    prev = torch.tensor([p[-1] for p in prompts])
    done = torch.zeros(B, dtype=torch.bool)
    for _ in range(n_bars * 400):
        mask = masks.grammar[prev] & allowed & (~is_position | (position[None] > current[:, None]))
        if chords is not None:
            at_bar = (prev == tok.bar_id).nonzero().flatten().tolist()
            for b in at_bar:
                mask[b] = False
                mask[b, chords[b][(bars[b] - 1) % len(chords[b])]] = True
        nxt = stream.next(mask)
        current = torch.where(is_position[nxt], position[nxt], torch.where(nxt == tok.bar_id, -1, current))
        for b in (~done).nonzero().flatten().tolist():
            t = int(nxt[b])
            if t == tok.bar_id:
                bars[b] += 1
                if bars[b] > n_bars:
                    done[b] = True
                    continue
            out[b].append(t)
        prev = nxt
        if done.all():
            break
    return out


def scale_share(bars, chord_pcs, scale) -> float:
    """Share of sounding pitch-time (duration-weighted) in the scale or the bar's chord."""
    inside = total = 0.0
    for j, notes in enumerate(bars):
        for n in notes:
            total += n.duration
            if n.pitch % 12 in scale or n.pitch % 12 in chord_pcs[j % len(chord_pcs)]:
                inside += n.duration
    return inside / total if total else float("nan")


def repetition(bars) -> dict[str, float]:
    """distinct: distinct bars / bars; max_run: longest run of identical consecutive bars; collapsed: the last
    half of the piece is one repeated bar."""
    keys = [tuple(sorted((round(n.onset, 3), n.pitch) for n in b)) for b in bars]
    run = best = 1
    for a, b in zip(keys, keys[1:]):
        run = run + 1 if a == b else 1
        best = max(best, run)
    half = keys[len(keys) // 2:]
    return {"distinct": len(set(keys)) / max(len(keys), 1), "max_run": best,
            "collapsed": float(len(set(half)) <= 1)}


def pitch_class_weights(bars) -> np.ndarray:
    """(12,) beats each pitch class sounds in decoded bars."""
    w = np.zeros(12)
    for notes in bars:
        for n in notes:
            w[n.pitch % 12] += n.duration
    return w


def key_recovered(bars, key_pc, mode, profile: str = DEFAULT_PROFILE) -> bool:
    return key_match(estimate_key(pitch_class_weights(bars), profile), key_pc, mode, allow_relative=True)


def piano_targets(model, tok, n_samples, n_bars, sampling, seed, progression="pop", sample_dir=None) -> dict:
    keys = [(i % 12, "major" if (i // 12) % 2 == 0 else "minor") for i in range(n_samples)]
    prompts, chords, chord_pcs, scales = [], [], [], []
    for k, mode in keys:
        prog = [((k + r) % 12, q) for r, q in PROGRESSIONS[progression][mode]]
        ids = [tok.vocab[f"Chord_{PC_NAME[r]}:{q}"] for r, q in prog]
        chords.append(ids)
        chord_pcs.append([{(r + i) % 12 for i in CHORD_QUALITIES[q]} for r, q in prog])
        scales.append({(k + s) % 12 for s in SCALE_STEPS[mode]})
        prompts.append(tok.condition_prefix(k, mode, 80.0, "pop") + [tok.bar_id, ids[0]])
    result = {}
    for name, m in (("model", model), ("uniform_baseline", UniformModel(tok.vocab_size))):
        for masked in (False, True):
            t0 = time.perf_counter()
            seqs = generate(m, tok, prompts, n_bars, sampling, chords, scales if masked else None, seed=seed)
            secs = time.perf_counter() - t0
            decoded = [tok.decode_bars(s)[:n_bars] for s in seqs]
            shares = [scale_share(d, chord_pcs[i], scales[i]) for i, d in enumerate(decoded)]
            reps = [repetition(d) for d in decoded]
            row = {"scale_or_chord_share_mean": float(np.nanmean(shares)),
                   "samples_share_ge_0.9": float(np.mean([s >= 0.9 for s in shares])),
                   "key_recovered": float(np.mean([key_recovered(d, k, md) for d, (k, md) in zip(decoded, keys)])),
                   "key_recovered_by_profile": {p: float(np.mean([key_recovered(d, k, md, p) for d, (k, md)
                                                                  in zip(decoded, keys)])) for p in PROFILES},
                   "distinct_bar_ratio_mean": float(np.mean([r["distinct"] for r in reps])),
                   "max_identical_run_median": float(np.median([r["max_run"] for r in reps])),
                   "collapsed_share": float(np.mean([r["collapsed"] for r in reps])),
                   "notes_per_bar": float(np.mean([sum(map(len, d)) / max(len(d), 1) for d in decoded])),
                   "bars_generated_mean": float(np.mean([len(d) for d in decoded])), "seconds": round(secs, 1)}
            result[f"{name}{'_scale_masked' if masked else ''}"] = row
            if sample_dir is not None and name == "model":
                for i in range(2 if not masked else 1):
                    k, md = keys[i]
                    tag = f"{progression}_{'masked' if masked else 'free'}_{PC_NAME[k]}_{md}"
                    tok.to_midi(decoded[i][:16], tempo_bpm=80.0).write(str(Path(sample_dir) / f"sample_{tag}.mid"))
    return result


def shard_segments(shard_dir: str, tok: MusicTokenizer, split: str = "val", limit: int | None = None, seed: int = 0):
    """Yield (tokens, key pitch class, mode) for the segments of a prepared piano shard (each starts with its
    condition prefix, so the key is the annotated one); limit: a seeded random subset of that many."""
    tokens = np.memmap(Path(shard_dir) / f"{split}.bin", dtype=np.uint16, mode="r")
    starts = list(np.load(Path(shard_dir) / f"{split}.idx.npy")) + [len(tokens)]
    order = range(len(starts) - 1)
    if limit is not None and limit < len(order):
        order = sorted(np.random.default_rng(seed).choice(len(order), limit, replace=False))
    for i in order:
        seg = tokens[starts[i]:starts[i + 1]].tolist()
        yield seg, PC_NAME.index(tok.id_to_token[seg[1]][4:]), tok.id_to_token[seg[2]][5:]


def real_piano_reference(shard_dir: str, tok: MusicTokenizer) -> dict:
    """The same piano metrics on real validation segments (prepared POP909 shards, ~6 bars each), for scale."""
    shares, found = [], []
    for seg, k, mode in shard_segments(shard_dir, tok):
        chords = [tok.chord_of(seg[i + 1]) for i, t in enumerate(seg[:-1]) if t == tok.bar_id]
        if not chords:
            continue
        pcs = [set() if c is None else {(c[0] + i) % 12 for i in CHORD_QUALITIES[c[1]]} for c in chords]
        bars = tok.decode_bars(seg)
        shares.append(scale_share(bars, pcs, {(k + s) % 12 for s in SCALE_STEPS[mode]}))
        found.append({p: key_recovered(bars, k, mode, p) for p in PROFILES})
    return {"segments": len(shares), "scale_or_chord_share_mean": float(np.nanmean(shares)),
            "samples_share_ge_0.9": float(np.mean(np.array(shares) >= 0.9)),
            "key_recovered": float(np.mean([f[DEFAULT_PROFILE] for f in found])),
            "key_recovered_by_profile": {p: float(np.mean([f[p] for f in found])) for p in PROFILES}}


def hits_per_bar(bars) -> dict[str, float]:
    n = max(len(bars), 1)
    return {g: sum(n_.pitch in pcs for b in bars for n_ in b) / n for g, pcs in KIT_GROUPS.items()}


def grid_offsets_ms(bars, bpm) -> np.ndarray:
    """Signed offset of each onset from the nearest 16th note, ms."""
    on = np.array([n.onset for b in bars for n in b])
    return (on - np.round(on * 4) / 4) * 60000.0 / bpm if len(on) else np.zeros(0)


def real_grooves(gmd_path: str, tok: MusicTokenizer) -> dict[str, list]:
    """Per style: decoded bars of GMD's 'beat' grooves (not fills), with their bpm."""
    out = defaultdict(list)
    for item in data.list_gmd(gmd_path):
        style, bpm, beat_type = item.extra[0].split("/")[0], float(item.extra[1]), item.extra[2]
        if beat_type != "beat" or style not in dict(DRUM_STYLES):
            continue
        try:
            piece = data.read_gmd(item)
        except data.Skip:
            continue
        bars = tok.decode_bars([t for b in tok.encode_bars(piece.midi) for t in b])
        if len(bars) >= 4:
            out[style].append((bars, bpm))
    return out


def roundtrip_error_ms(gmd_path: str, tok: MusicTokenizer, n_files: int = 120) -> dict[str, float]:
    """Onset error a drum encode/decode round trip adds on real GMD files (each note to its nearest decoded
    twin of the same kit note), ms."""
    errors = []
    for item in data.list_gmd(gmd_path)[::7][:n_files]:
        try:
            piece = data.read_gmd(item)
        except data.Skip:
            continue
        sec = piece.midi.to("second")
        spb = 60.0 / piece.bpm
        orig = [(n.time, GM_TO_KIT[n.pitch]) for t in sec.tracks if t.is_drum for n in t.notes if n.pitch in GM_TO_KIT]
        bars_tok = tok.encode_bars(piece.midi)
        lead = int(min(n.time for t in piece.midi.tracks for n in t.notes) // (4 * piece.midi.ticks_per_quarter))
        dec = defaultdict(list)
        for j, b in enumerate(tok.decode_bars([t for b in bars_tok for t in b])):
            for n in b:
                dec[n.pitch].append((4 * (lead + j) + n.onset) * spb)
        for t, p in orig:
            if dec[p]:
                errors.append(min(abs(t - d) for d in dec[p]) * 1000)
    e = np.array(errors)
    return {"notes": int(len(e)), "median_ms": float(np.median(e)), "p95_ms": float(np.percentile(e, 95)),
            "max_ms": float(e.max())}


def drum_targets(model, tok, gmd_path, n_per_style, n_bars, sampling, seed, sample_dir=None) -> dict:
    real = real_grooves(gmd_path, tok)
    result = {}
    for si, (style, bpm) in enumerate(DRUM_STYLES):
        prompts = [tok.condition_prefix(0, "major", bpm, style) + [tok.bar_id]] * n_per_style
        seqs = generate(model, tok, prompts, n_bars, sampling, seed=seed + si)
        decoded = [tok.decode_bars(s)[:n_bars] for s in seqs]
        dens = [hits_per_bar(d) for d in decoded]
        real_dens = [hits_per_bar(b) for b, _ in real[style]]
        ranges = {g: (float(np.percentile([r[g] for r in real_dens], 5)),
                      float(np.percentile([r[g] for r in real_dens], 95))) for g in KIT_GROUPS}
        gen_off = np.concatenate([grid_offsets_ms(d, bpm) for d in decoded])
        real_off = np.concatenate([grid_offsets_ms(b, rb) for b, rb in real[style]])
        drift = []
        for d in decoded:
            if len(d) >= 32:
                first, last = grid_offsets_ms(d[:16], bpm), grid_offsets_ms(d[-16:], bpm)
                if len(first) and len(last):
                    drift.append(float(last.mean() - first.mean()))
        downbeat = [np.mean([any(n.onset < 0.125 for n in b) for b in d]) for d in decoded]
        reps = [repetition(d) for d in decoded]
        mean = {g: float(np.mean([x[g] for x in dens])) for g in KIT_GROUPS}
        real_median = {g: float(np.median([r[g] for r in real_dens])) for g in KIT_GROUPS}
        result[style] = {
            "bpm": bpm, "samples": len(decoded), "bars_generated_mean": float(np.mean([len(d) for d in decoded])),
            "hits_per_bar_mean": mean, "real_hits_per_bar_p5_p95": ranges,
            "real_hits_per_bar_median": real_median,
            "density_in_real_range": {g: ranges[g][0] <= mean[g] <= ranges[g][1] for g in KIT_GROUPS},
            "samples_density_in_range": float(np.mean([all(ranges[g][0] <= x[g] <= ranges[g][1]
                                                            for g in KIT_GROUPS) for x in dens])),
            "abs_offset_from_16th_ms_median": float(np.median(np.abs(gen_off))) if len(gen_off) else None,
            "real_abs_offset_from_16th_ms_median": float(np.median(np.abs(real_off))),
            "abs_offset_from_16th_ms_p95": float(np.percentile(np.abs(gen_off), 95)) if len(gen_off) else None,
            "real_abs_offset_from_16th_ms_p95": float(np.percentile(np.abs(real_off), 95)),
            "drift_first_vs_last_16_bars_ms_median": float(np.median(np.abs(drift))) if drift else None,
            "bars_with_downbeat_hit": float(np.mean(downbeat)),
            "real_bars_with_downbeat_hit": float(np.mean([np.mean([any(n.onset < 0.125 for n in b) for b in bars])
                                                          for bars, _ in real[style]])),
            "real_distinct_bar_ratio_mean": float(np.mean([repetition(bars)["distinct"] for bars, _ in real[style]])),
            "distinct_bar_ratio_mean": float(np.mean([r["distinct"] for r in reps])),
            "max_identical_run_median": float(np.median([r["max_run"] for r in reps])),
            "collapsed_share": float(np.mean([r["collapsed"] for r in reps])), "real_grooves": len(real[style])}
        if sample_dir is not None and style in ("hiphop", "funk"):
            tok.to_midi(decoded[0][:16], tempo_bpm=bpm).write(str(Path(sample_dir) / f"sample_{style}_{bpm:g}bpm.mid"))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--piano", help="checkpoint folder: one .pth + its .json sidecar + tokenizer.json/miditok.json")
    ap.add_argument("--drums", help="checkpoint folder: one .pth + its .json sidecar + tokenizer.json/miditok.json")
    ap.add_argument("--gmd", help="Groove MIDI Dataset folder (real grooves for the drum ranges)")
    ap.add_argument("--piano-shards", help="prepared POP909 shards: the piano metrics on real val segments too")
    ap.add_argument("--progression", choices=sorted(PROGRESSIONS), default="pop", help="piano seed progression")
    ap.add_argument("--samples", type=int, default=50, help="piano samples (drums: per style, a quarter of it)")
    ap.add_argument("--bars", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--temperature", type=float, default=0.95, help="default: what compose uses")
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--write-samples", action="store_true", help="write sample MIDIs into the checkpoint folders")
    ap.add_argument("--json-out", help="write targets.json into this folder per model (default: checkpoint folder)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    sampling = SamplingConfig(a.temperature, 0, a.top_p)
    report = {}
    for kind, folder in (("piano", a.piano), ("drums", a.drums)):
        if not folder:
            continue
        (weights,) = sorted(Path(folder).glob("*.pth"))   # a checkpoint folder holds exactly one
        model = load(weights).eval()
        tok = MusicTokenizer.load(folder)
        samples = Path(folder) if a.write_samples else None
        if kind == "piano":
            res = piano_targets(model, tok, a.samples, a.bars, sampling, a.seed, a.progression, samples)
            if a.piano_shards:
                res["real_pop909_val_segments"] = real_piano_reference(a.piano_shards, tok)
                print("piano reference, real POP909 val segments:", res["real_pop909_val_segments"])
            for k in ("model", "model_scale_masked"):
                base = res[k.replace("model", "uniform_baseline")]
                print(f"piano {k}: scale/chord share {res[k]['scale_or_chord_share_mean']:.3f} "
                      f"(x{res[k]['scale_or_chord_share_mean'] / base['scale_or_chord_share_mean']:.2f} vs uniform), "
                      f"key recovered {res[k]['key_recovered']:.2f} (uniform {base['key_recovered']:.2f}; "
                      f"Krumhansl-Kessler profile {res[k]['key_recovered_by_profile']['krumhansl']:.2f}), "
                      f"distinct bars {res[k]['distinct_bar_ratio_mean']:.2f}, collapsed {res[k]['collapsed_share']:.2f}")
        else:
            res = drum_targets(model, tok, a.gmd, max(a.samples // 4, 2), a.bars, sampling, a.seed, samples)
            res["roundtrip_timing_error"] = roundtrip_error_ms(a.gmd, tok)
            for style, r in res.items():
                if style != "roundtrip_timing_error":
                    print(f"drums {style}: hits/bar {r['hits_per_bar_mean']} in real range {r['density_in_real_range']}, "
                          f"|offset| median {r['abs_offset_from_16th_ms_median']:.1f} ms "
                          f"(x{r['abs_offset_from_16th_ms_median'] / max(r['real_abs_offset_from_16th_ms_median'], 1e-9):.2f}"
                          f" vs real GMD), drift {r['drift_first_vs_last_16_bars_ms_median']} ms, "
                          f"distinct bars {r['distinct_bar_ratio_mean']:.2f}")
            print("drum round trip:", res["roundtrip_timing_error"])
        report[kind] = res
        out = Path(a.json_out or folder)
        out.mkdir(parents=True, exist_ok=True)
        res["sampling"] = {"temperature": a.temperature, "top_p": a.top_p, "bars": a.bars, "seed": a.seed}
        name = f"targets_{a.progression}.json" if kind == "piano" else "targets.json"
        (out / name).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

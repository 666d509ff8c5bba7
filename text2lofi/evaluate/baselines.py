"""Baselines the evaluation compares against: the original project's ConvLSTM and a first-order Markov chain.

ConvLSTM — a PyTorch port of the earlier approach, kept faithful on purpose (including its weaknesses):
  MIDI -> binary piano roll, 106 pitches (MIDI 21..126) x 16th-note steps; a window of 9 steps predicts the next
  step. Per step: Conv1D(128 filters, kernel 1, ReLU) + MaxPool(2) over the pitch axis three times, a fourth
  Conv1D(128, kernel 1, ReLU), flattened (13 x 128); then LSTM(128, return sequences) -> LSTM(64, last step) ->
  BatchNorm -> Dense(106, sigmoid). MSE loss, Adam (lr 1e-3), up to 100 epochs (bounded by a CPU-time budget).
  Generation feeds each thresholded prediction back in. Its author found raw outputs never exceeded 0.6 and added a
  growing offset (0.65, x1.001 per step) to every prediction; we read the rounding as truncation to an integer (the
  only reading under which outputs below 0.6 give silence), so with the offset a pitch sounds when
  p + 0.65 * 1.001**t >= 1. Without it we round at 0.5. Both are reported.

Markov — a first-order chain over the piano RWKV model's own tokens (bigram counts of its training shards), sampled
  through `rwkv_core.sampling.sample_logits` under the tokenizer's grammar mask: the floor any learnt model must beat.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pretty_midi
import torch
from torch import nn

from rwkv_core.config import add_config_args, config_from_args
from text2lofi.runtime import use_threads

LOWEST_PITCH = 21                  # A0; the roll covers MIDI 21..126
N_PITCHES = 106
STEPS_PER_BEAT = 4                 # 16th notes
WINDOW = 9                         # steps of context per prediction
OFFSET_START, OFFSET_GROWTH = 0.65, 1.001
BASELINE_BPM = 90.0                # tempo the baselines' output is written at (a typical lo-fi/pop tempo)
# Bars the ConvLSTM always runs for: the original's threshold offset only lets notes through after ~430 steps
# (27 bars of 16 steps), so a shorter run is silent; shorter pieces are the last bars of this run.
CONVLSTM_BARS = 32


# ---------------------------------------------------------------------------------------------------------------
# Piano roll <-> MIDI
# ---------------------------------------------------------------------------------------------------------------

def piano_roll(pm: pretty_midi.PrettyMIDI) -> np.ndarray:
    """(steps, 106) bool: pitch sounding at each 16th-note step of the MIDI's own beat grid (drums ignored)."""
    end = pm.get_end_time()
    beats = list(pm.get_beats())
    beat_s = 60.0 / pm.get_tempo_changes()[1][-1]
    while beats and beats[-1] + beat_s <= end + 1e-9:     # get_beats stops early on short pieces: finish the grid
        beats.append(beats[-1] + beat_s)
    if end <= 0 or not beats:
        return np.zeros((0, N_PITCHES), dtype=bool)
    beats = np.array(beats + [beats[-1] + beat_s])
    # step times: each beat split in 4, sampled a hair after the step start so a note starting on it counts
    steps = (beats[:-1, None] + np.diff(beats)[:, None] * np.arange(STEPS_PER_BEAT) / STEPS_PER_BEAT).ravel() + 1e-3
    steps = steps[steps < end]
    roll = np.zeros((len(steps), N_PITCHES), dtype=bool)
    for inst in pm.instruments:
        if inst.is_drum:
            continue
        for n in inst.notes:
            p = n.pitch - LOWEST_PITCH
            if 0 <= p < N_PITCHES:
                roll[np.searchsorted(steps, n.start):np.searchsorted(steps, n.end), p] = True
    return roll


def roll_to_midi(roll: np.ndarray, bpm: float = BASELINE_BPM, program: int = 0) -> pretty_midi.PrettyMIDI:
    """(steps, 106) bool -> piano MIDI; consecutive on-steps of one pitch become one note (velocity 80)."""
    step_s = 60.0 / bpm / STEPS_PER_BEAT
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    inst = pretty_midi.Instrument(program=program, name="piano")
    padded = np.vstack([np.zeros((1, roll.shape[1]), bool), roll.astype(bool), np.zeros((1, roll.shape[1]), bool)])
    change = np.diff(padded.astype(np.int8), axis=0)          # +1 at onsets, -1 at offsets
    for p in range(roll.shape[1]):
        ons, offs = np.flatnonzero(change[:, p] == 1), np.flatnonzero(change[:, p] == -1)
        inst.notes += [pretty_midi.Note(80, p + LOWEST_PITCH, a * step_s, b * step_s) for a, b in zip(ons, offs)]
    inst.notes.sort(key=lambda n: (n.start, n.pitch))
    pm.instruments.append(inst)
    return pm


def roll_windows(rolls: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every (9-step window, next step) pair of every roll: X (n, 9, 106) bool, Y (n, 106) bool."""
    xs, ys = [], []
    for r in rolls:
        if len(r) <= WINDOW:
            continue
        view = np.lib.stride_tricks.sliding_window_view(r, (WINDOW, N_PITCHES))[:-1, 0]   # (len-9, 9, 106)
        xs.append(view)
        ys.append(r[WINDOW:])
    if not xs:
        return np.zeros((0, WINDOW, N_PITCHES), bool), np.zeros((0, N_PITCHES), bool)
    return np.concatenate(xs), np.concatenate(ys)


# ---------------------------------------------------------------------------------------------------------------
# ConvLSTM
# ---------------------------------------------------------------------------------------------------------------

class ConvLSTM(nn.Module):
    """The original's network: per-step 1x1 convolutions with pitch pooling, two LSTMs, BatchNorm, sigmoid."""

    def __init__(self, filters: int = 128):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv1d(1, filters, 1)] + [nn.Conv1d(filters, filters, 1) for _ in range(3)])
        self.pool = nn.MaxPool1d(2)
        flat = filters * (N_PITCHES // 2 // 2 // 2)              # 106 -> 53 -> 26 -> 13 pitch bins
        self.lstm1 = nn.LSTM(flat, 128, batch_first=True)
        self.lstm2 = nn.LSTM(128, 64, batch_first=True)
        self.norm = nn.BatchNorm1d(64)
        self.out = nn.Linear(64, N_PITCHES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 9, 106) float in {0,1} -> next-step probabilities (B, 106)."""
        b, t, p = x.shape
        h = x.reshape(b * t, 1, p)                               # each time step is its own 1-channel signal
        for conv in self.convs[:3]:
            h = self.pool(torch.relu(conv(h)))                   # (B*T, 128, 53 -> 26 -> 13)
        h = torch.relu(self.convs[3](h)).reshape(b, t, -1)       # (B, T, 1664)
        h, _ = self.lstm1(h)                                     # (B, T, 128)
        h, _ = self.lstm2(h)                                     # (B, T, 64)
        return torch.sigmoid(self.out(self.norm(h[:, -1])))      # (B, 106)


@dataclass
class ConvLSTMTrainConfig:
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    cpu_budget_s: float = 900.0       # stop after this much CPU time of this process (checked between batches);
                                      # CPU rather than wall time, so a busy machine does not shorten training
    max_train_windows: int = 0        # 0 = all; else a fixed random subset, so an "epoch" fits the budget
    max_val_windows: int = 5000       # fixed random subset of validation windows scored after every epoch
    seed: int = 0
    threads: int = 1


def train_convlstm(train_rolls: Sequence[np.ndarray], val_rolls: Sequence[np.ndarray],
                   config: ConvLSTMTrainConfig,
                   on_epoch: Callable[[dict], None] | None = None) -> tuple[ConvLSTM, dict]:
    """Train on all windows of train_rolls (MSE, Adam); keep the weights of the best validation loss.

    Returns (model, info) where info holds epochs_run (fractional when the budget stops mid-epoch), losses, windows.
    """
    use_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    x_tr, y_tr = roll_windows(train_rolls)
    if config.max_train_windows and len(x_tr) > config.max_train_windows:
        pick = np.sort(rng.choice(len(x_tr), config.max_train_windows, replace=False))
        x_tr, y_tr = x_tr[pick], y_tr[pick]
    x_va, y_va = roll_windows(val_rolls)
    if len(x_va) > config.max_val_windows:
        pick = np.sort(rng.choice(len(x_va), config.max_val_windows, replace=False))
        x_va, y_va = x_va[pick], y_va[pick]
    if len(x_tr) == 0:
        raise ValueError("no training windows: every roll is shorter than 10 steps")
    model = ConvLSTM()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = nn.MSELoss()
    start, wall_start = time.process_time(), time.monotonic()
    best, best_state, epochs_run, history = math.inf, None, 0.0, []
    n_batches = math.ceil(len(x_tr) / config.batch_size)
    for epoch in range(config.epochs):
        model.train()
        order = rng.permutation(len(x_tr))
        total, done = 0.0, 0
        for i in range(n_batches):
            idx = np.sort(order[i * config.batch_size:(i + 1) * config.batch_size])
            if len(idx) < 2:                      # BatchNorm needs two samples
                continue
            xb = torch.from_numpy(x_tr[idx]).float()
            yb = torch.from_numpy(y_tr[idx]).float()
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            done += len(idx)
            if time.process_time() - start > config.cpu_budget_s:
                break
        epochs_run = epoch + done / len(x_tr)
        val = evaluate_convlstm(model, x_va, y_va) if len(x_va) else math.nan
        history.append({"epoch": round(epochs_run, 3), "train_mse": total / max(done, 1), "val_mse": val,
                        "cpu_s": round(time.process_time() - start, 1),
                        "wall_s": round(time.monotonic() - wall_start, 1)})
        if on_epoch:
            on_epoch(history[-1])
        if not val > best:                                   # also true when there is no validation data
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
        if time.process_time() - start > config.cpu_budget_s:
            break
    model.load_state_dict(best_state)
    model.eval()
    info = {"epochs_run": round(epochs_run, 3), "train_windows": int(len(x_tr)), "val_windows": int(len(x_va)),
            "best_val_mse": best, "val_mse_of_silence": float(y_va.mean()) if len(y_va) else math.nan,
            "history": history, "config": asdict(config),
            "train_cpu_seconds": round(time.process_time() - start, 1),
            "train_wall_seconds": round(time.monotonic() - wall_start, 1)}
    return model, info


@torch.no_grad()
def evaluate_convlstm(model: ConvLSTM, x: np.ndarray, y: np.ndarray, batch_size: int = 1024) -> float:
    """Mean squared error over (x, y) windows, eval mode."""
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch_size):
        pred = model(torch.from_numpy(x[i:i + batch_size]).float())
        total += float(((pred - torch.from_numpy(y[i:i + batch_size]).float()) ** 2).sum())
    model.train()
    return total / (len(x) * N_PITCHES)


@torch.no_grad()
def generate_convlstm(model: ConvLSTM, seed_window: np.ndarray, n_steps: int, offset: bool) -> tuple[np.ndarray, dict]:
    """Continue a (9, 106) seed for n_steps, feeding each thresholded step back in.

    offset=False: a pitch sounds when p >= 0.5 (rounding). offset=True: the original's growing offset,
    p + 0.65 * 1.001**t >= 1 (truncation). Returns (roll (n_steps, 106) bool, stats of the raw outputs).
    """
    model.eval()
    window = torch.from_numpy(np.asarray(seed_window, dtype=np.float32)[None])     # (1, 9, 106)
    out = np.zeros((n_steps, N_PITCHES), dtype=bool)
    raw_max = 0.0
    for t in range(n_steps):
        p = model(window)[0].numpy()                                                # (106,)
        raw_max = max(raw_max, float(p.max()))
        step = (p + OFFSET_START * OFFSET_GROWTH ** t >= 1.0) if offset else (p >= 0.5)
        out[t] = step
        window = torch.cat([window[:, 1:], torch.from_numpy(step.astype(np.float32))[None, None]], dim=1)
    return out, {"raw_max": raw_max, "active_share": float(out.mean())}


def save_convlstm(model: ConvLSTM, path: str | Path, info: dict) -> None:
    """Weights (fp32 state dict) + a JSON sidecar with the training info."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps(info, indent=2, default=float))


def load_convlstm(path: str | Path) -> ConvLSTM:
    model = ConvLSTM()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------
# First-order Markov chain over the piano model's tokens
# ---------------------------------------------------------------------------------------------------------------

class MarkovChain:
    """Bigram counts counts[prev, next] over token segments; samples under the tokenizer's grammar mask."""

    def __init__(self, counts: np.ndarray):
        self.counts = np.asarray(counts, dtype=np.int64)              # (V, V)

    @classmethod
    def fit(cls, segments: Iterable[Sequence[int]], vocab_size: int) -> "MarkovChain":
        segs = [np.asarray(seg, dtype=np.int64) for seg in segments]
        starts = np.cumsum([0] + [len(x) for x in segs[:-1]])
        return cls.fit_flat(np.concatenate(segs) if segs else np.zeros(0, np.int64), starts, vocab_size)

    @classmethod
    def fit_flat(cls, tokens: np.ndarray, starts: np.ndarray, vocab_size: int,
                 chunk: int = 1 << 23) -> "MarkovChain":
        """Count bigrams of concatenated segments (tokens, segment start offsets), never across a boundary."""
        counts = np.zeros(vocab_size * vocab_size, dtype=np.int64)
        is_last = np.zeros(len(tokens), dtype=bool)                 # token i ends its segment: no pair (i, i+1)
        is_last[np.asarray(starts[1:], dtype=np.int64) - 1] = True
        for a in range(0, max(len(tokens) - 1, 0), chunk):
            b = min(a + chunk, len(tokens) - 1)
            prev = np.asarray(tokens[a:b], dtype=np.int64)
            nxt = np.asarray(tokens[a + 1:b + 1], dtype=np.int64)
            keep = ~is_last[a:b]
            counts += np.bincount(prev[keep] * vocab_size + nxt[keep], minlength=vocab_size * vocab_size)
        return cls(counts.reshape(vocab_size, vocab_size))

    @classmethod
    def from_shards(cls, folder: str | Path, split: str = "train") -> "MarkovChain":
        """Fit on DIR/{split}.bin (uint16 tokens) cut at DIR/{split}.idx.npy segment starts; V from meta.json."""
        folder = Path(folder)
        vocab = int(json.loads((folder / "meta.json").read_text())["vocab_size"])
        tokens = np.memmap(folder / f"{split}.bin", dtype=np.uint16, mode="r")
        idx = folder / f"{split}.idx.npy"
        starts = np.load(idx) if idx.exists() else np.zeros(1, dtype=np.int64)
        return cls.fit_flat(tokens, starts, vocab)

    def save(self, path: str | Path) -> None:
        """Sparse npz: (prev, next, count) triples + vocab size (a few hundred kB for the piano vocab)."""
        rows, cols = np.nonzero(self.counts)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, rows=rows.astype(np.uint16), cols=cols.astype(np.uint16),
                            counts=self.counts[rows, cols].astype(np.uint32), vocab_size=len(self.counts))

    @classmethod
    def load(cls, path: str | Path) -> "MarkovChain":
        z = np.load(path)
        v = int(z["vocab_size"])
        counts = np.zeros((v, v), dtype=np.int64)
        counts[z["rows"].astype(int), z["cols"].astype(int)] = z["counts"]
        return cls(counts)

    def generate(self, tokenizer, prefix: Sequence[int], n_bars: int, generator: torch.Generator,
                 max_tokens: int = 100_000) -> list[int]:
        """Sample n_bars bars after `prefix` (which ends before the first Bar). Each step draws from the counts of the
        previous token restricted to what the grammar allows (uniform over the allowed set when none was seen)."""
        from rwkv_core.sampling import SamplingConfig, sample_logits

        grammar = tokenizer.grammar_table()                                  # (V, V) bool
        with np.errstate(divide="ignore"):
            log_counts = torch.from_numpy(np.log(self.counts.astype(np.float64))).float()   # -inf where unseen
        tokens, bars = list(prefix), 0
        cfg = SamplingConfig()
        while bars <= n_bars and len(tokens) < max_tokens:    # the (n_bars + 1)-th Bar token ends the last bar
            prev = tokens[-1]
            mask = grammar[prev]
            logits = log_counts[prev].clone()
            if not torch.isfinite(logits[mask]).any():
                logits = torch.zeros_like(logits)
            nxt = int(sample_logits(logits[None], cfg, generator, mask[None])[0])
            tokens.append(nxt)
            bars += nxt == tokenizer.bar_id
        return tokens[:-1] if tokens[-1] == tokenizer.bar_id else tokens


# ---------------------------------------------------------------------------------------------------------------
# Data: the same POP909 pieces and train/val split as the RWKV piano model
# ---------------------------------------------------------------------------------------------------------------

def pop909_files(path: str | Path, split: str, val_pct: float = 5.0) -> list[tuple[str, Path]]:
    """(piece id, MIDI path) of POP909 pieces on one side of text2lofi.compose.data's deterministic split."""
    from text2lofi.compose.data import list_pop909, split_of

    return [(it.id, Path(it.path) / f"{it.id}.mid") for it in list_pop909(str(path))
            if split_of(f"pop909/{it.id}", val_pct) == split]


def pop909_rolls(path: str | Path, split: str, limit: int | None = None) -> list[np.ndarray]:
    return [piano_roll(pretty_midi.PrettyMIDI(str(f))) for _, f in pop909_files(path, split)[:limit]]


def seed_windows(rolls: Sequence[np.ndarray], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """n random (9, 106) windows with at least one note, one per roll in turn (the original seeded from data)."""
    out = []
    for i in range(n * 50):
        if len(out) == n:
            break
        r = rolls[i % len(rolls)]
        if len(r) <= WINDOW:
            continue
        start = int(rng.integers(0, len(r) - WINDOW))
        if r[start:start + WINDOW].any():
            out.append(r[start:start + WINDOW])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Train the baselines: `python -m text2lofi.evaluate.baselines convlstm|markov ...`."""
    ap = argparse.ArgumentParser(prog="text2lofi baselines", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    cv = sub.add_parser("convlstm", help="train the ConvLSTM port on POP909 (train split)")
    cv.add_argument("--pop909", required=True, help="POP909 folder")
    cv.add_argument("--out", default="checkpoints/baselines")
    add_config_args(cv, ConvLSTMTrainConfig)
    mk = sub.add_parser("markov", help="count the piano model's token bigrams from its training shards")
    mk.add_argument("--shards", default="data/piano", help="folder with train.bin (+ train.idx.npy) and meta.json")
    mk.add_argument("--out", default="checkpoints/baselines")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.cmd == "convlstm":
        cfg = config_from_args(ConvLSTMTrainConfig, args)
        t0 = time.monotonic()
        train, val = pop909_rolls(args.pop909, "train"), pop909_rolls(args.pop909, "val")
        print(f"piano rolls: {len(train)} train, {len(val)} val pieces ({time.monotonic() - t0:.0f} s)", flush=True)
        model, info = train_convlstm(train, val, cfg, on_epoch=lambda h: print(json.dumps(h), flush=True))
        info.update(train_pieces=len(train), val_pieces=len(val), data=str(args.pop909))
        save_convlstm(model, out / "convlstm.pt", info)
        print(json.dumps({k: v for k, v in info.items() if k != "history"}, default=float), flush=True)
    else:
        chain = MarkovChain.from_shards(args.shards)
        chain.save(out / "markov_piano.npz")
        print(f"markov: vocab {chain.counts.shape[0]}, {int(chain.counts.sum())} transitions", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

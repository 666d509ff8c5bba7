"""Which key profile should the project's key finder use? Pick on POP909 training segments, report on validation.

Ground truth is POP909's annotated key (the condition prefix of each prepared segment, about 6 bars). For every
profile in text2lofi.keys.PROFILES: share of segments whose estimated key is exactly the annotated one, and share
where it is the annotated key or its relative major/minor. The profile with the best key-or-relative share on the
training sample is the one to use; validation segments (songs never trained on) say whether it holds.

  python benchmarks/key_finders.py --shards data/pop909 --train-segments 3000
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from music_targets import pitch_class_weights, shard_segments  # noqa: E402

from text2lofi.compose.theory import DEFAULT_PROFILE, PROFILES, estimate_key, key_match  # noqa: E402
from text2lofi.compose.tokenizer import MusicTokenizer  # noqa: E402


def accuracy(items) -> dict[str, dict[str, float]]:
    """items: (pitch-class weights, key pc, mode) -> {profile: {exact, or_relative}}."""
    out = {}
    for name in PROFILES:
        found = [(estimate_key(w, name), k, m) for w, k, m in items]
        out[name] = {"exact": float(np.mean([key_match(f, k, m, False) for f, k, m in found])),
                     "or_relative": float(np.mean([key_match(f, k, m, True) for f, k, m in found]))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", required=True, help="prepared POP909 piano shards (train.bin, val.bin, ...)")
    ap.add_argument("--train-segments", type=int, default=3000, help="random training segments to pick on")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    tok = MusicTokenizer.load(Path(a.shards) / "tokenizer")
    results = {}
    for split, limit in (("train", a.train_segments), ("val", None)):
        items = [(pitch_class_weights(tok.decode_bars(seg)), k, m) for seg, k, m in shard_segments(a.shards, tok, split, limit, a.seed)]
        items = [it for it in items if it[0].sum() > 0]
        results[split] = accuracy(items)
        print(f"{split}: {len(items)} segments")
        for name, r in results[split].items():
            print(f"  {name:10s} exact {r['exact']:.3f}  key or relative {r['or_relative']:.3f}")
    best = max(PROFILES, key=lambda p: results["train"][p]["or_relative"])
    base = results["val"]["krumhansl"]["or_relative"]
    print(f"best on train: {best} (project default: {DEFAULT_PROFILE}); on val {results['val'][best]['or_relative']:.3f}"
          f" = x{results['val'][best]['or_relative'] / base:.2f} vs the Krumhansl-Kessler profile ({base:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

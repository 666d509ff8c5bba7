"""`text2lofi eval` / `python -m text2lofi.evaluate`: score real music, our models and the baselines."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from text2lofi.evaluate.systems import EvalConfig, run


def main(argv: Sequence[str] | None = None) -> int:
    """`text2lofi eval [--quick] --out DIR`: score real music, our models and the baselines; write the report."""
    d = EvalConfig()
    ap = argparse.ArgumentParser(prog="text2lofi eval", description=main.__doc__)
    ap.add_argument("--out", default=d.out, help="folder for metrics.json, report.md, PNGs, MIDI")
    ap.add_argument("--quick", action="store_true", help="small samples (a few minutes on 2 CPU cores)")
    ap.add_argument("--pop909", default=d.pop909)
    ap.add_argument("--gmd", default=d.gmd)
    ap.add_argument("--baselines", default=d.baselines)
    ap.add_argument("--systems", default=",".join(d.systems),
                    help="comma-separated subset of real,rwkv,convlstm,markov")
    ap.add_argument("--seed", type=int, default=d.seed)
    for name in ("bars", "n_real", "n_real_drums", "n_prompts", "n_convlstm", "n_markov"):
        ap.add_argument("--" + name.replace("_", "-"), type=int, default=None)
    args = ap.parse_args(argv)
    unknown = set(args.systems.split(",")) - set(d.systems)
    if unknown:
        ap.error(f"unknown system(s): {', '.join(sorted(unknown))}")
    kw = dict(out=args.out, pop909=args.pop909, gmd=args.gmd, baselines=args.baselines,
              systems=tuple(args.systems.split(",")), seed=args.seed)
    kw.update({k: getattr(args, k) for k in ("bars", "n_real", "n_real_drums", "n_prompts", "n_convlstm", "n_markov")
               if getattr(args, k) is not None})
    from text2lofi.runtime import use_threads

    use_threads(1)
    cfg = EvalConfig.quick_config(**kw) if args.quick else EvalConfig(**kw)
    result = run(cfg)
    print(f"eval: wrote {Path(cfg.out) / 'metrics.json'} and report.md in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

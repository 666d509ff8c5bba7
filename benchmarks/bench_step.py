"""One recurrent RWKV-6 step on the shipped weights, the three forms side by side: TorchStep (the baseline, the GPU
path and what CPU generation ran when issue 15 was filed), NumpyStep (where no C compiler is found) and CStep (what
CPU generation runs), at batch 1 and 4, alternated; medians of --repeats blocks of 200 steps.

    python benchmarks/bench_step.py
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from rwkv_core.cpu_step import CStep
from rwkv_core.model import NumpyStep, TorchStep
from text2lofi.compose.composer import load_music_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(1)
    for kind in ("piano", "drums"):
        model = load_music_model(kind).model
        forms = {"torch": TorchStep(model), "numpy": NumpyStep(model), "C": CStep(model)}
        for batch in (1, 4):
            state = model.init_state(batch)
            tokens = torch.randint(0, model.config.vocab_size, (batch,), generator=torch.Generator().manual_seed(0))
            for _ in range(30):                                  # a state that has seen some tokens
                logits, state = forms["torch"](tokens, state)
                tokens = logits.argmax(-1)
            us: dict[str, list[float]] = {name: [] for name in forms}
            with torch.inference_mode():
                for _ in range(args.repeats):
                    for name, step in forms.items():
                        t = time.perf_counter()
                        for _ in range(200):
                            step(tokens, state)
                        us[name].append((time.perf_counter() - t) / 200 * 1e6)
            base = statistics.median(us["torch"])
            print(f"{kind} batch {batch}: " + ", ".join(
                f"{name} {statistics.median(t):5.0f} us ({base / statistics.median(t):.2f}x)" for name, t in us.items())
                + " per step, x the torch step")

if __name__ == "__main__":
    main()

"""One recurrent RWKV-6 step on the shipped weights, the two forms side by side: TorchStep (the baseline, the GPU
path and what CPU generation ran before) and NumpyStep (what CPU generation runs), at batch 1 and 4, alternated;
medians of --repeats blocks of 200 steps.

    python benchmarks/bench_step.py
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from rwkv_core.model import NumpyStep, TorchStep
from text2lofi.compose.composer import load_music_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(1)
    for kind in ("piano", "drums"):
        model = load_music_model(kind).model
        forms = {"torch": TorchStep(model), "numpy": NumpyStep(model)}
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
            a, b = statistics.median(us["torch"]), statistics.median(us["numpy"])
            print(f"{kind} batch {batch}: torch {a:5.0f} us, numpy {b:5.0f} us per step: {a / b:.2f}x the torch step")


if __name__ == "__main__":
    main()

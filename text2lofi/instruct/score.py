"""Scoring `interpret` on prompt files in the public eval format (../shared/eval/README.md):
{"id", "text", "expect"} or, for conversations, {"id", "turns", "expect_last"}.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from text2lofi.conditions import PITCH_CLASS, Conditions


def check(expect: dict, c: Conditions, prev: Conditions | None = None) -> dict[str, bool]:
    """One verdict per expected attribute."""
    out: dict[str, bool] = {}
    for k, v in expect.items():
        if k == "duration_s":
            ok = abs(c.duration_s - v) <= 1
        elif k == "tempo":
            ok = v[0] <= c.tempo_bpm <= v[1]
        elif k == "tempo_exact":
            ok = abs(c.tempo_bpm - v) <= 0.5
        elif k == "key":
            ok = PITCH_CLASS.get(c.key) == PITCH_CLASS.get(v)
        elif k == "mode":
            ok = c.mode == v
        elif k == "drums":
            ok = c.drums == v
        elif k == "energy":
            ok = c.energy <= 0.4 if v == "low" else c.energy >= 0.6
        elif k == "textures_include":
            ok = all(t in c.textures for t in v)
        elif k == "textures_exclude":
            ok = not any(t in c.textures for t in v)
        elif k in ("tempo_lt_prev", "tempo_gt_prev", "energy_lt_prev"):
            if prev is None:
                ok = False
            elif k == "tempo_lt_prev":
                ok = (c.tempo_bpm < prev.tempo_bpm) == v
            elif k == "tempo_gt_prev":
                ok = (c.tempo_bpm > prev.tempo_bpm) == v
            else:
                ok = (c.energy < prev.energy) == v
        else:
            raise ValueError(f"unknown expectation {k!r}")
        out[k] = bool(ok)
    return out


def score_prompts(path: str | Path, interpret_fn: Callable | None = None) -> dict:
    """-> {"prompts", "attributes", "attr_acc", "prompt_acc", "failures": [{id, text, failed, got}]}."""
    if interpret_fn is None:
        from text2lofi.instruct.interpreter import interpret as interpret_fn
    n_attr = ok_attr = n_prompt = ok_prompt = 0
    failures = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        if "turns" in item:
            prev = c = None
            for turn in item["turns"]:
                prev, c = c, interpret_fn(turn, previous=c)
            verdict = check(item["expect_last"], c, prev)
            text = " | ".join(item["turns"])
        else:
            c = interpret_fn(item["text"])
            verdict = check(item["expect"], c)
            text = item["text"]
        n_attr += len(verdict)
        ok_attr += sum(verdict.values())
        n_prompt += 1
        ok_prompt += all(verdict.values())
        if not all(verdict.values()):
            failures.append({"id": item["id"], "text": text, "failed": [k for k, v in verdict.items() if not v],
                             "got": {k: v for k, v in c.to_dict().items() if k not in ("progression", "warnings")}})
    return {"prompts": n_prompt, "attributes": n_attr, "attr_acc": ok_attr / max(1, n_attr),
            "prompt_acc": ok_prompt / max(1, n_prompt), "failures": failures}

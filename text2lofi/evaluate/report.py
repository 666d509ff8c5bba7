"""The evaluation report: findings where our system loses, plots, and report.md from a run's result."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from text2lofi.evaluate.metrics import ANCHORS, CLOSER_TO_REAL, JUDGED, METRIC_DOCS, ORIGINAL, SYMBOLIC
from text2lofi.evaluate.prompts import prompt_set

def plain(x):
    """JSON-safe copy: numpy scalars -> Python numbers, tuples -> lists, NaN/inf -> null (strict JSON)."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _fmt(value, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{100 * value:.1f}%" if pct else f"{value:.3f}"


HIGHER_IS_BETTER = ("consonance", "tempo_bin", "tempo_bin_tolerant", "correct_key", "correct_key_dup", "drums_match",
                    "audio_key", "audio_key_dup", "audio_key_major", "audio_key_minor", "audio_tempo",
                    "exact_duration")
LOWER_IS_BETTER = ("dissonance", "empty_bar_rate", "duration_error_s", "silent")


def worse_findings(result: dict, ours: str = "rwkv") -> list[str]:
    """Plain sentences for every metric where `ours` loses: to another system, to real music, to the original's
    reported number, or to a published anchor."""
    systems, lines = result["systems"], []
    mine = systems.get(ours, {})
    real = systems.get("real", {})
    # A mostly silent system's metrics describe its few sounding pieces only: not a fair comparison.
    mute = {n for n, v in systems.items() if (v.get("silent") or 0.0) > 0.5}
    lines += [f"({n} is silent in {100 * systems[n]['silent']:.0f}% of its pieces; its metrics are not compared.)"
              for n in sorted(mute)]
    for metric, value in mine.items():
        if value is None:
            continue
        for other, vals in systems.items():
            if other in (ours, "real") or other in mute or vals.get(metric) is None:
                continue
            theirs = vals[metric]
            if metric in HIGHER_IS_BETTER and theirs > value:
                lines.append(f"{metric}: {ours} {value:.3f} is below {other} {theirs:.3f}.")
            elif metric in LOWER_IS_BETTER and theirs < value:
                lines.append(f"{metric}: {ours} {value:.3f} is above {other} {theirs:.3f} (lower is better).")
            elif (metric in CLOSER_TO_REAL and real.get(metric) is not None
                  and abs(theirs - real[metric]) < abs(value - real[metric])):
                lines.append(f"{metric}: {other} ({theirs:.3f}) is closer to real music ({real[metric]:.3f}) "
                             f"than {ours} ({value:.3f}).")
        spread_real = result.get("spread", {}).get("real", {}).get(metric, {})
        if (metric in CLOSER_TO_REAL and real.get(metric) is not None and spread_real.get("std") is not None
                and abs(value - real[metric]) > spread_real["std"]):
            lines.append(f"{metric}: {ours} {value:.3f} is more than one standard deviation "
                         f"({spread_real['std']:.3f}) away from real music ({real[metric]:.3f}).")
        if metric == "correct_key" and real.get("key_annotation_agreement", 0.0) > value:
            lines.append(f"correct_key: {ours} {100 * value:.1f}% is below what the same key finder achieves on "
                         f"real music against its annotations ({100 * real['key_annotation_agreement']:.1f}%).")
        if metric in HIGHER_IS_BETTER and real.get(metric) is not None and real[metric] > value:
            lines.append(f"{metric}: {ours} {value:.3f} is below real music {real[metric]:.3f}.")
        if metric in LOWER_IS_BETTER and real.get(metric) is not None and real[metric] < value:
            lines.append(f"{metric}: {ours} {value:.3f} is above real music {real[metric]:.3f} (lower is better).")
        if metric in ORIGINAL:
            orig = ORIGINAL[metric]
            if (metric == "consonance" and value < orig) or (metric == "dissonance" and value > orig):
                lines.append(f"{metric}: {ours} {value:.3f} is worse than the original project's reported {orig}.")
        for anchor, vals in ANCHORS.items():
            if metric in vals and vals[metric] > value:
                lines.append(f"{metric}: {ours} {100 * value:.1f}% is below {anchor}'s published "
                             f"{100 * vals[metric]:.1f}% (different test prompts: MidiCaps captions).")
    return lines


def _plot(result: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems, spread = result["systems"], result["spread"]
    names = list(systems)
    files = []
    fig, axes = plt.subplots(2, 7, figsize=(24, 7))
    for ax in axes.ravel()[len(SYMBOLIC):]:
        ax.axis("off")
    for ax, metric in zip(axes.ravel(), SYMBOLIC):
        xs = [n for n in names if systems[n].get(metric) is not None]
        ax.bar(range(len(xs)), [systems[n][metric] for n in xs],
               yerr=[spread[n][metric]["std"] for n in xs], capsize=3, color="#6a8caf")
        ax.set_xticks(range(len(xs)), xs, rotation=35, ha="right", fontsize=8)
        if metric in ORIGINAL:
            ax.axhline(ORIGINAL[metric], color="#c0504d", ls="--", lw=1, label="original (reported)")
            ax.legend(fontsize=7)
        ax.set_title(metric, fontsize=9)
    fig.suptitle("Symbolic metrics per system (mean, error bar = std over pieces)")
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=90)
    plt.close(fig)
    files.append("metrics.png")
    adh = ("tempo_bin", "tempo_bin_tolerant", "correct_key", "correct_key_dup")
    rows = {n: systems[n] for n in names if all(m in systems[n] for m in adh)}
    rows.update(ANCHORS)
    if len(rows) > len(ANCHORS):
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.8 / len(rows)
        for j, (n, vals) in enumerate(rows.items()):
            ax.bar(np.arange(len(adh)) + j * width, [100 * vals[m] for m in adh], width, label=n)
        ax.set_xticks(np.arange(len(adh)) + 0.4 - width / 2, ["TB", "TBT", "CK", "CKD"])
        ax.set_ylabel("% of prompts")
        ax.set_title("Prompt adherence (anchors: published, on MidiCaps)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "adherence.png", dpi=90)
        plt.close(fig)
        files.append("adherence.png")
    return files


def write_report(result: dict, out: Path) -> None:
    """report.md + PNGs in `out` from a run()'s result."""
    out = Path(out)
    systems, spread, info, cfg = result["systems"], result["spread"], result["info"], result["config"]
    plots = _plot(result, out)
    names = list(systems)

    def cell(name, metric, pct=False):
        v = systems[name].get(metric)
        if v is None:
            return "–"
        return f"{_fmt(v, pct)} ± {_fmt(spread[name][metric]['std'], pct)} (n={spread[name][metric]['n']})"

    md = ["# text2lofi evaluation", "",
          f"Command: `text2lofi eval{' --quick' if cfg['quick'] else ''} --out {cfg['out']}` (seed {cfg['seed']}); "
          f"{result['seconds']:.0f} s. Cells: mean ± std over pieces (n = pieces where the metric is defined).", ""]
    md += ["## The original project's four metrics", "",
           "| system | rhythm consistency | consonance | dissonance | key changes / min |", "|---|---|---|---|---|"]
    for n in names:
        md.append(f"| {n} | " + " | ".join(cell(n, m) for m in ORIGINAL) + " |")
    md.append("| original project (reported, piano) | " + " | ".join(f"{v}" for v in ORIGINAL.values()) + " |")
    md += ["", "The original's numbers come from its own code (its analysis window and sampling grid are not known), "
               "so the fair yardstick for every row here is `real`, measured with exactly the same code."]
    md += ["", "## Further symbolic metrics", "",
           "| system | " + " | ".join(SYMBOLIC[4:]) + " |", "|---" * (len(SYMBOLIC) - 3) + "|"]
    for n in names:
        md.append(f"| {n} | " + " | ".join(cell(n, m) for m in SYMBOLIC[4:]) + " |")
    adh_systems = [n for n in names if "tempo_bin" in systems[n]]
    md += ["", "## Prompt adherence", ""]
    if adh_systems:
        md += ["| system | TB | TBT | CK | CKD |", "|---|---|---|---|---|"]
        for n in adh_systems:
            md.append(f"| {n} | " + " | ".join(cell(n, m, pct=True) for m in
                                               ("tempo_bin", "tempo_bin_tolerant", "correct_key", "correct_key_dup"))
                      + " |")
        for a, vals in ANCHORS.items():
            md.append(f"| {a} (published, MidiCaps) | " + " | ".join(_fmt(v, True) for v in vals.values()) + " |")
        md += ["", "| system | drums iff asked | exact duration | duration error (s) | loudness (LUFS) | "
                   "interpreted BPM | interpreted key |", "|---|---|---|---|---|---|---|"]
        for n in adh_systems:
            md.append(f"| {n} | {cell(n, 'drums_match', True)} | {cell(n, 'exact_duration', True)} | "
                      f"{cell(n, 'duration_error_s')} | {cell(n, 'loudness_lufs')} | "
                      f"{cell(n, 'interpret_tempo', True)} | {cell(n, 'interpret_key', True)} |")
        md += ["", "The anchors were measured on MidiCaps captions, ours on our own prompt set (below): the numbers "
                   "sit side by side for scale, not as a controlled comparison. Our prompts state tempo and key "
                   "explicitly, and TB/TBT read the MIDI's tempo map, which our composer writes from the interpreted "
                   "tempo: TB mostly measures text interpretation. CK/CKD analyse the notes themselves."]
        judged = [n for n in adh_systems if "audio_key" in systems[n]]
        if judged:
            md += ["", "### Heard in the audio (outside judge: Essentia)", "",
                   "| system | key | key or relative | key, major prompts | key, minor prompts | tempo (x2, x0.5 ok) |",
                   "|---|---|---|---|---|---|"]
            for n in judged:
                md.append(f"| {n} | " + " | ".join(cell(n, m, pct=True) for m in JUDGED) + " |")
            md += ["", METRIC_DOCS["audio_key"] + " " + METRIC_DOCS["audio_tempo"]]
    else:
        md.append("No text-conditioned system was run.")
    if "key_annotation_agreement" in systems.get("real", {}):
        md += ["", f"Key finder vs POP909's key annotations on the real excerpts (the ceiling for CK): "
                   f"{cell('real', 'key_annotation_agreement', True)}."]
    md += ["", "## Where we are worse", ""]
    if "rwkv" in systems:
        lines = worse_findings(result)
        md += [f"- {ln}" for ln in lines] or ["- Nowhere on these metrics."]
    else:
        md.append("- rwkv was not run.")
    md += ["", "## Systems, sample sizes, seeds", ""]
    for n in names:
        meta = {k: v for k, v in info[n].items() if k != "source"}
        md.append(f"- **{n}** — {info[n].get('source', '')}. " + ", ".join(f"{k}: {v}" for k, v in meta.items()))
    if "convlstm" in info:
        a, b = info["convlstm"], info.get("convlstm_no_offset", {})
        md += ["", "`convlstm` is the original's generation with its growing offset (a pitch sounds when "
                   "p + 0.65 x 1.001^t >= 1, so from step 431 on every pitch sounds); `convlstm_no_offset` rounds "
                   f"at 0.5. Largest raw output seen: {_fmt(a.get('raw_output_max'))}; share of piano-roll cells "
                   f"on: {_fmt(a.get('share_of_roll_cells_on'))} with the offset, "
                   f"{_fmt(b.get('share_of_roll_cells_on'))} without. Training: {a.get('epochs_run')} epochs over "
                   f"{a.get('train_windows')} windows. Next-step MSE on the {a.get('val_windows')} windows of the "
                   f"seed pieces: {_fmt(a.get('val_mse'))}; predicting silence everywhere: "
                   f"{_fmt(a.get('val_mse_of_silence'))}."]
    if "rwkv" in info:
        md += ["", "Prompts (seed {}):".format(cfg["seed"]), ""]
        prompts = prompt_set(cfg["n_prompts"], cfg["seed"], cfg["prompt_durations"])
        md += [f"{i}. {p.text}" for i, p in enumerate(prompts)]
    md += ["", "## Definitions", ""]
    md += [f"- **{k}**: {v}" for k, v in METRIC_DOCS.items()]
    md += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    (out / "report.md").write_text("\n".join(md) + "\n")

"""Evaluation: scores the pipeline's outputs, real music and the baselines with the same metrics.

In: PrettyMIDI (and audio) from `text2lofi.generate`, POP909 / Groove MIDI excerpts, the baselines' output.
Out: metrics.json, per_piece.json, report.md and plots (`text2lofi eval`, `python -m text2lofi.evaluate`).

Modules: `metrics` (pure metric functions and their definitions), `prompts` (the prompt set),
`baselines` (the original project's ConvLSTM and a Markov chain), `systems` (one runner per system and the
run), `report` (findings, plots, markdown). The pipeline never imports this package.
"""

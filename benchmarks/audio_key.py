"""Is the asked key heard? Generates the evaluation's prompts (explicit key, tempo, length) and asks the outside judge
(Essentia, majority of five key profiles) which key it hears in the mastered audio, by mode; the same tracks' key
by our own MIDI key finder (CK) is printed beside it as the in-run reference. Needs the `eval` extra (Essentia).

    .venv/bin/python benchmarks/audio_key.py --prompt-seed 0     # the prompt set of `text2lofi eval`
    .venv/bin/python benchmarks/audio_key.py --prompt-seed 1     # another 40 prompts, not used to tune anything
"""
from __future__ import annotations

import argparse

from text2lofi import generate
from text2lofi.compose.theory import key_match
from text2lofi.conditions import PC_NAME, PITCH_CLASS
from text2lofi.evaluate import judges
from text2lofi.evaluate.metrics import key_of
from text2lofi.evaluate.prompts import prompt_set
from text2lofi.runtime import use_threads


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--prompt-seed", type=int, default=0)
    ap.add_argument("-v", "--verbose", action="store_true", help="print every track that is heard in another key")
    args = ap.parse_args(argv)
    use_threads()
    heard = {"major": [], "minor": []}
    midi = []
    for i, spec in enumerate(prompt_set(args.prompts, args.prompt_seed, (15, 20, 30, 45, 60))):
        t = generate(spec.text, seed=i)
        tonic, mode, answers = judges.audio_key(t.audio, t.sample_rate)
        ok = key_match((tonic, mode), PITCH_CLASS[spec.key], spec.mode, allow_relative=False)
        heard[spec.mode].append(ok)
        midi.append(key_match(key_of(t.midi), PITCH_CLASS[spec.key], spec.mode, allow_relative=False))
        if args.verbose and not ok:
            print(f"asked {spec.key} {spec.mode}, heard {PC_NAME[tonic]} {mode}: {t.conditions.progression} "
                  f"{answers}", flush=True)
    every = heard["major"] + heard["minor"]
    print(f"prompt set seed {args.prompt_seed}, {len(every)} tracks: key heard in the audio (Essentia) "
          f"{sum(every) / len(every):.3f} (major {sum(heard['major'])}/{len(heard['major'])}, "
          f"minor {sum(heard['minor'])}/{len(heard['minor'])}); our MIDI key finder (CK) {sum(midi) / len(midi):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

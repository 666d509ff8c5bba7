"""Metrics on tiny hand-made MIDI with answers worked out by hand, plus a small end-to-end eval run."""
import json
import math

import numpy as np
import pretty_midi
import pytest

from text2lofi.conditions import tempo_bin
from text2lofi.evaluate import __main__ as eval_main
from text2lofi.evaluate import metrics as ev
from text2lofi.evaluate import prompts, report, systems

BPM = 120.0          # one beat = 0.5 s, one 4/4 bar = 2 s
BAR = 2.0


def make_pm(notes, drums=(), bpm=BPM):
    """notes / drums: iterables of (start_s, end_s, pitch)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    piano = pretty_midi.Instrument(program=0)
    piano.notes = [pretty_midi.Note(velocity=80, pitch=p, start=s, end=e) for s, e, p in notes]
    pm.instruments.append(piano)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        kit.notes = [pretty_midi.Note(velocity=90, pitch=p, start=s, end=e) for s, e, p in drums]
        pm.instruments.append(kit)
    return pm


def tonal_bars(tonic, first_bar, n_bars):
    """n_bars of a held major triad plus an eighth-note major scale on `tonic` (MIDI pitch)."""
    notes = []
    for b in range(first_bar, first_bar + n_bars):
        t0 = b * BAR
        notes += [(t0, t0 + BAR, tonic + i) for i in (0, 4, 7)]
        scale = (0, 2, 4, 5, 7, 9, 11, 12)
        notes += [(t0 + j * 0.25, t0 + (j + 1) * 0.25, tonic + 12 + s) for j, s in enumerate(scale)]
    return notes


def test_major_triad_is_fully_consonant():
    pm = make_pm([(0, 2, 60), (0, 2, 64), (0, 2, 67)])
    assert ev.consonance(pm) == 1.0
    assert ev.dissonance(pm) == 0.0


def test_held_minor_second_is_fully_dissonant():
    pm = make_pm([(0, 4, 60), (0, 4, 61)])
    assert ev.dissonance(pm) == 1.0


def test_mixed_chord_counts_pairs():
    # C-E (4, consonant), C-F# (6, dissonant), E-F# (2, dissonant): one consonant pair of three.
    pm = make_pm([(0, 2, 60), (0, 2, 64), (0, 2, 66)])
    assert ev.consonance(pm) == pytest.approx(1 / 3)
    counts = ev.interval_counts(pm)
    assert counts[4] == counts[6] == counts[2] == 40          # 2 s on a 0.05 s grid


def test_consonance_only_counts_overlapping_time():
    # Minor second for 1 s, then a fifth for 3 s: 20 dissonant samples, 60 consonant.
    pm = make_pm([(0, 4, 60), (0, 1, 61), (1, 4, 67)])
    assert ev.consonance(pm) == pytest.approx(0.75)


def test_single_melody_has_no_intervals():
    assert math.isnan(ev.consonance(make_pm([(0, 1, 60), (1, 2, 62)])))


def test_rhythm_consistency():
    equal = make_pm([(i * 0.5, i * 0.5 + 0.5, 60) for i in range(8)])
    assert ev.rhythm_consistency(equal) == pytest.approx(1.0)
    # durations 1 s and 3 s: mu 2, sigma 1 -> 2/3
    mixed = make_pm([(0, 1, 60), (1, 4, 62)])
    assert ev.rhythm_consistency(mixed) == pytest.approx(2 / 3)


def test_key_found_for_each_window_and_one_modulation():
    # 8 bars in C major, then 8 bars in F# major: 4 windows of 4 bars, one change, 32 s of music.
    pm = make_pm(tonal_bars(48, 0, 8) + tonal_bars(54, 8, 8))
    assert ev.window_keys(pm) == [(0, "major"), (0, "major"), (6, "major"), (6, "major")]
    assert ev.key_change_count(pm) == 1
    assert ev.key_changes(pm) == pytest.approx(1 / (32 / 60))
    steady = make_pm(tonal_bars(57, 0, 16))
    assert ev.key_of(steady) == (9, "major")
    assert ev.key_changes(steady) == 0.0


def test_minor_key_detected():
    a_minor = []
    for b in range(4):
        t0 = b * BAR
        a_minor += [(t0, t0 + BAR, p) for p in (57, 60, 64)]                       # A minor triad
        a_minor += [(t0 + j * 0.25, t0 + (j + 1) * 0.25, 69 + s) for j, s in enumerate((0, 2, 3, 5, 7, 8, 11, 12))]
    assert ev.key_of(make_pm(a_minor)) == (9, "minor")


def test_scale_consistency():
    c_scale = make_pm([(i * 0.5, i * 0.5 + 0.5, 60 + s) for i, s in enumerate((0, 2, 4, 5, 7, 9, 11))])
    assert ev.scale_consistency(c_scale) == 1.0
    chromatic = make_pm([(i * 0.5, i * 0.5 + 0.5, 60 + i) for i in range(12)])
    assert ev.scale_consistency(chromatic) == pytest.approx(7 / 12)


def test_pitch_class_entropy():
    one_pitch = make_pm([(0, 8, 60)])
    assert ev.pitch_class_entropy(one_pitch) == 0.0
    # 12 pitch classes, equal time, all inside one 4-bar window (8 s)
    chromatic = make_pm([(i * 0.5, i * 0.5 + 0.5, 60 + i) for i in range(12)])
    assert ev.pitch_class_entropy(chromatic) == pytest.approx(math.log2(12))


def test_groove_consistency():
    same = make_pm([(b * BAR + q * 0.5, b * BAR + q * 0.5 + 0.25, 60) for b in range(4) for q in range(4)])
    assert ev.groove_consistency(same) == 1.0
    # bar A: onsets at 16th positions 0 and 8; bar B: 4 and 12 -> 4 positions differ -> 1 - 4/16
    alt = make_pm([(0, 0.1, 60), (1.0, 1.1, 60), (2.5, 2.6, 60), (3.5, 3.6, 60)])
    assert ev.groove_consistency(alt) == pytest.approx(0.75)
    hits = [(b * BAR + q * 0.5, b * BAR + q * 0.5 + 0.1, 36) for b in range(4) for q in (0, 2)]
    kit = make_pm([(0, 8, 60)], drums=hits)
    assert ev.groove_consistency(kit, drums=True) == 1.0


def test_empty_bar_rate():
    # notes in bar 0 and bar 3 of 4 -> bars 1 and 2 are empty
    pm = make_pm([(0, 1, 60), (6, 7, 62)])
    assert ev.empty_bar_rate(pm) == pytest.approx(0.5)
    held = make_pm([(0, 7.5, 60)])             # one note held through all four bars
    assert ev.empty_bar_rate(held) == 0.0
    assert ev.empty_bar_rate(make_pm([])) == 1.0       # a silent generation is all empty bars


def test_repetition_rate():
    a = [(0.0, 0.5, 60), (1.0, 1.5, 64)]
    b = [(0.0, 0.5, 62), (0.5, 1.0, 65)]
    bars = [a, a, b, a]                           # A A B A: bars 2 and 4 repeat an earlier bar
    pm = make_pm([(i * BAR + s, i * BAR + e, p) for i, bar in enumerate(bars) for s, e, p in bar])
    assert ev.repetition_rate(pm) == pytest.approx(0.5)


def test_tempo_bins_match_midicaps_edges():
    assert [tempo_bin(x) for x in (30, 40, 65, 89.9, 90, 120, 150, 200, 215)] == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert ev.midi_tempo(make_pm([(0, 4, 60)], bpm=85.0)) == pytest.approx(85.0)


def test_key_match_ck_and_ckd():
    assert ev.key_match((0, "major"), 0, "major", allow_relative=False)
    assert not ev.key_match((9, "minor"), 0, "major", allow_relative=False)
    assert ev.key_match((9, "minor"), 0, "major", allow_relative=True)      # relative minor of C
    assert ev.key_match((4, "major"), 1, "minor", allow_relative=True)      # relative major of C# minor
    assert not ev.key_match((4, "minor"), 0, "major", allow_relative=True)
    assert not ev.key_match(None, 0, "major", allow_relative=True)


def test_loudness_of_a_known_sine():
    sr = 44100
    t = np.arange(sr * 3) / sr
    sine = 0.5 * np.sin(2 * np.pi * 997 * t)              # -6.02 dBFS peak, mono: -3.01 - 6.02 LUFS
    assert ev.integrated_lufs(sine, sr) == pytest.approx(-9.03, abs=0.1)


def test_adherence_scores_tempo_key_drums_and_length():
    sr = 44100
    pm = make_pm(tonal_bars(57, 0, 8), drums=[(0, 0.1, 36)], bpm=85.0)     # A major at 85 BPM, with drums
    audio = np.zeros((sr * 20, 2), dtype=np.float32)
    audio[:, 0] = audio[:, 1] = 0.1 * np.sin(2 * np.pi * 440 * np.arange(sr * 20) / sr)
    asked = prompts.PromptSpec("t", tempo_bpm=80.0, key="A", mode="major", duration_s=20.0, drums=True)
    row = ev.adherence(pm, audio, sr, asked)
    assert row["tempo_bin"] == 1.0 and row["correct_key"] == 1.0 and row["drums_match"] == 1.0
    assert row["exact_duration"] == 1.0 and row["duration_error_s"] == 0.0
    assert -25 < row["loudness_lufs"] < -15
    # 100 BPM is the next bin up (90..110): TB misses, TBT forgives; F# minor is A major's relative key.
    other = prompts.PromptSpec("t", tempo_bpm=100.0, key="F#", mode="minor", duration_s=21.0, drums=False)
    row = ev.adherence(pm, audio, sr, other)
    assert (row["tempo_bin"], row["tempo_bin_tolerant"]) == (0.0, 1.0)
    assert (row["correct_key"], row["correct_key_dup"]) == (0.0, 1.0)
    assert row["drums_match"] == 0.0 and row["exact_duration"] == 0.0
    assert row["duration_error_s"] == pytest.approx(1.0)


def test_prompt_set_is_seeded_and_states_its_targets():
    a, b = prompts.prompt_set(12, seed=5), prompts.prompt_set(12, seed=5)
    assert a == b and a != prompts.prompt_set(12, seed=6)
    for p in a:
        assert f"{int(p.tempo_bpm)} bpm" in p.text and f"{p.key} {p.mode}" in p.text
        assert f"{int(p.duration_s)} seconds" in p.text and (("no drums" in p.text) != p.drums)


def test_excerpt_starts_at_the_first_note_and_keeps_n_bars():
    pm = make_pm([(4.0 + i * 0.5, 4.5 + i * 0.5, 60 + i % 5) for i in range(40)])   # starts in bar 2 (4 s)
    ex = systems.excerpt(pm, 4)
    starts = [n.start for n in ex.instruments[0].notes]
    assert min(starts) == 0.0 and max(starts) < 4 * BAR
    assert len(starts) == 16                                     # 4 bars of 4 quarter notes


def _write_tiny_sources(root):
    """A POP909-like folder with two validation pieces and a GMD-like folder with one validation beat."""
    from text2lofi.compose.data import split_of

    val_ids = [f"{i:03d}" for i in range(1, 400) if split_of(f"pop909/{i:03d}", 5.0) == "val"][:2]
    for pid, tonic in zip(val_ids, (48, 55)):
        d = root / "pop909" / pid
        d.mkdir(parents=True)
        make_pm(tonal_bars(tonic, 0, 8)).write(str(d / f"{pid}.mid"))
        name = {48: "C", 55: "G"}[tonic]
        (d / "key_audio.txt").write_text(f"0.0\t16.0\t{name}:maj\n")
    gmd = root / "gmd" / "drummer1"
    gmd.mkdir(parents=True)
    make_pm([], drums=[(b * BAR + q * 0.5, b * BAR + q * 0.5 + 0.1, 36 if q % 2 == 0 else 38)
                       for b in range(8) for q in range(4)]).write(str(gmd / "1.mid"))
    (root / "gmd" / "info.csv").write_text(
        "drummer,session,id,style,bpm,beat_type,time_signature,midi_filename,audio_filename,duration,split\n"
        "drummer1,drummer1/s,drummer1/s/1,funk/groove1,120,beat,4-4,drummer1/1.mid,x.wav,16.0,validation\n")
    return val_ids


def test_eval_runs_end_to_end_on_tiny_data(tmp_path):
    import torch

    from text2lofi.evaluate import baselines as bl
    from text2lofi.compose.tokenizer import MusicTokenizer

    _write_tiny_sources(tmp_path)
    models = tmp_path / "baselines"
    torch.manual_seed(0)
    bl.save_convlstm(bl.ConvLSTM().eval(), models / "convlstm.pt", {"epochs_run": 0.0})
    tok = MusicTokenizer.piano()
    pitch_id = {tok.pitch_of(i): i for i in tok.ids_of_type("Pitch")}
    seg = tok.condition_prefix(key_pc=0, mode="major", tempo_bpm=80.0, style="pop")
    for p in [60, 64, 67, 72] * 4:
        seg += [tok.bar_id, tok.chord_token("C"), tok.ids_of_type("Position")[0], pitch_id[p],
                tok.ids_of_type("Velocity")[8], tok.ids_of_type("Duration")[3]]
    bl.MarkovChain.fit([seg], tok.vocab_size).save(models / "markov_piano.npz")

    out = tmp_path / "eval"
    assert eval_main.main(["--quick", "--out", str(out), "--pop909", str(tmp_path / "pop909"), "--gmd",
                    str(tmp_path / "gmd"), "--baselines", str(models), "--systems", "real,convlstm,markov",
                    "--bars", "4", "--n-convlstm", "1", "--n-markov", "2"]) == 0
    result = json.loads((out / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    systems = result["systems"]
    assert set(systems) == {"real", "convlstm", "convlstm_no_offset", "markov"}
    for name in systems:                          # the four keys on every system (None = undefined)
        assert {"rhythm_consistency", "consonance", "dissonance", "key_changes"} <= set(systems[name])
    assert systems["real"]["consonance"] + systems["real"]["dissonance"] == pytest.approx(1.0)
    assert 0.0 < systems["markov"]["rhythm_consistency"] <= 1.0
    # The real pieces are a held triad + scale in C and G major: consonant, in one key, analysed correctly.
    assert systems["real"]["key_changes"] == 0.0
    assert systems["real"]["key_annotation_agreement"] == 1.0
    assert systems["real"]["drum_groove_consistency"] == 1.0
    assert result["spread"]["real"]["consonance"]["n"] == 2
    assert result["info"]["markov"]["pieces"] == 2 and result["info"]["convlstm"]["offset"] is True
    report = (out / "report.md").read_text()
    assert "original project (reported, piano) | 0.34 | 0.87 | 0.13 | 0.2" in report
    assert "## Where we are worse" in report and "## Definitions" in report
    assert (out / "metrics.png").stat().st_size > 10_000
    assert len(list((out / "midi").glob("markov_*.mid"))) == 2


def test_json_output_is_strict():
    plain = report.plain({"a": np.float64("nan"), "b": (np.int64(3), math.inf), "c": [np.float32(0.5)]})
    assert json.loads(json.dumps(plain, allow_nan=False)) == {"a": None, "b": [3, None], "c": [0.5]}


def test_worse_findings_name_losses_and_skip_silent_systems():
    result = {"systems": {
        "real": {"consonance": 0.9, "dissonance": 0.1, "repetition_rate": 0.02, "silent": 0.0,
                 "key_annotation_agreement": 0.8, "drum_groove_consistency": 0.86},
        "rwkv": {"consonance": 0.8, "dissonance": 0.2, "repetition_rate": 0.10, "silent": 0.0,
                 "correct_key": 0.5, "drum_groove_consistency": 0.77},
        "markov": {"consonance": 0.6, "dissonance": 0.4, "repetition_rate": 0.0, "silent": 0.0},
        "mute": {"consonance": 1.0, "dissonance": 0.0, "repetition_rate": 0.0, "silent": 0.9}},
        "spread": {"real": {"drum_groove_consistency": {"std": 0.05, "n": 9}}}}
    lines = report.worse_findings(result)
    assert any(ln.startswith("drum_groove_consistency: rwkv 0.770 is more than one standard deviation") for ln in lines)
    assert any(ln.startswith("correct_key: rwkv 50.0% is below what the same key finder achieves") for ln in lines)
    assert "consonance: rwkv 0.800 is below real music 0.900." in lines
    assert any(ln.startswith("repetition_rate: markov (0.000) is closer to real") for ln in lines)
    assert any("is below text2midi's published 33.6%" in ln for ln in lines) is False     # 50% beats 33.6%
    assert not any(ln.startswith("consonance: rwkv") and "mute" in ln for ln in lines)
    assert any(ln.startswith("(mute is silent in 90%") for ln in lines)
    assert "dissonance: rwkv 0.200 is worse than the original project's reported 0.13." in lines


def test_drum_bars_count_backbeats_rolls_and_the_bass_by_hand():
    """4 bars at 120 BPM (2 s each): bars 1-2 a beat (kick 1 and 3, snare 2 and 4, hats), bar 3 a tom run,
    bar 4 no drums at all; a bass plays in bar 1 only."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    drums, bass, piano = pretty_midi.Instrument(0, is_drum=True), pretty_midi.Instrument(33), pretty_midi.Instrument(0)
    for bar in (0, 1):
        for beat, pitch in ((0, 36), (1, 38), (2, 36), (3, 38)):
            drums.notes.append(pretty_midi.Note(90, pitch, bar * 2 + beat * 0.5, bar * 2 + beat * 0.5 + 0.1))
        for k in range(8):
            drums.notes.append(pretty_midi.Note(60, 42, bar * 2 + k * 0.25, bar * 2 + k * 0.25 + 0.05))
    for k in range(16):                                       # bar 3: 16th-note mid toms
        drums.notes.append(pretty_midi.Note(70, 47, 4 + k * 0.125, 4 + k * 0.125 + 0.1))
    bass.notes.append(pretty_midi.Note(80, 33, 0.0, 1.9))
    piano.notes.append(pretty_midi.Note(60, 60, 0.0, 8.0))    # the piece lasts 4 bars
    pm.instruments += [drums, bass, piano]
    backbeat, lacking, with_bass = ev.drum_bars(pm)
    assert backbeat == pytest.approx(2 / 3)                   # bars 1-2 of the 3 with drums
    assert lacking == pytest.approx(1 / 3)                    # the tom run: no kick, no hat
    assert with_bass == pytest.approx(1 / 3)
    assert all(math.isnan(x) for x in ev.drum_bars(pretty_midi.PrettyMIDI()))

"""The ConvLSTM port and the Markov chain on tiny data the tests make themselves."""
import numpy as np
import pretty_midi
import pytest
import torch

from text2lofi.evaluate import baselines as bl
from text2lofi.compose.tokenizer import MusicTokenizer


def sixteenth_midi(events, bpm=120.0):
    """events: (start_step, end_step, pitch) on a 16th grid."""
    step = 60.0 / bpm / 4
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    inst = pretty_midi.Instrument(0)
    inst.notes = [pretty_midi.Note(80, p, a * step, b * step) for a, b, p in events]
    pm.instruments.append(inst)
    return pm


def test_piano_roll_round_trip_keeps_notes():
    events = [(0, 4, 60), (0, 2, 64), (4, 8, 67), (8, 16, 21), (12, 16, 126)]
    roll = bl.piano_roll(sixteenth_midi(events))
    assert roll.shape[1] == bl.N_PITCHES
    assert roll[0:4, 60 - 21].all() and not roll[4, 60 - 21]
    assert roll[8:16, 0].all() and roll[12:16, 105].all()
    back = bl.roll_to_midi(roll, bpm=120.0)
    step = 0.125
    got = sorted((round(n.start / step), round(n.end / step), n.pitch) for n in back.instruments[0].notes)
    assert got == sorted(events)
    assert back.get_tempo_changes()[1][0] == pytest.approx(120.0)


def test_pitches_outside_the_roll_are_dropped():
    roll = bl.piano_roll(sixteenth_midi([(0, 4, 20), (0, 4, 127), (0, 4, 60)]))
    assert roll.sum() == 4                       # only the C4 survives, 4 steps long


def test_windows_pair_nine_steps_with_the_next():
    rng = np.random.default_rng(0)
    roll = rng.random((20, bl.N_PITCHES)) < 0.1
    x, y = bl.roll_windows([roll, roll[:5]])     # the 5-step roll is too short for any window
    assert x.shape == (11, 9, bl.N_PITCHES) and y.shape == (11, bl.N_PITCHES)
    assert (x[3] == roll[3:12]).all() and (y[3] == roll[12]).all()


def test_convlstm_learns_a_repeating_pattern_and_keeps_best_weights():
    # Two alternating chords, 4 steps each: the next step is predictable from the last 9.
    c, g = np.zeros(bl.N_PITCHES, bool), np.zeros(bl.N_PITCHES, bool)
    c[[60 - 21, 64 - 21, 67 - 21]] = True
    g[[55 - 21, 59 - 21, 62 - 21]] = True
    roll = np.array(([c] * 4 + [g] * 4) * 12)
    x, y = bl.roll_windows([roll])
    torch.manual_seed(0)
    untrained = bl.evaluate_convlstm(bl.ConvLSTM(), x, y)
    cfg = bl.ConvLSTMTrainConfig(epochs=10, batch_size=8, lr=1e-2, cpu_budget_s=120, seed=0)
    model, info = bl.train_convlstm([roll], [roll], cfg)
    assert info["epochs_run"] == 10 and len(info["history"]) == 10
    trained = bl.evaluate_convlstm(model, x, y)
    assert info["val_mse_of_silence"] == pytest.approx(y.mean())      # MSE of always predicting no notes
    assert trained < 0.5 * untrained
    assert trained == pytest.approx(min(h["val_mse"] for h in info["history"]), rel=1e-5)


def test_growing_offset_turns_every_pitch_on_after_431_steps():
    # 0.65 * 1.001**t >= 1 from t = 431 on: every pitch sounds whatever the network says.
    torch.manual_seed(0)
    model = bl.ConvLSTM().eval()
    seed = np.zeros((bl.WINDOW, bl.N_PITCHES), bool)
    roll, stats = bl.generate_convlstm(model, seed, 440, offset=True)
    assert roll.shape == (440, bl.N_PITCHES)
    assert roll[431:].all()
    assert 0.0 <= stats["raw_max"] <= 1.0
    plain, _ = bl.generate_convlstm(model, seed, 20, offset=False)
    assert plain.shape == (20, bl.N_PITCHES)


def test_convlstm_save_load(tmp_path):
    model = bl.ConvLSTM().eval()
    bl.save_convlstm(model, tmp_path / "c.pt", {"epochs_run": 0})
    again = bl.load_convlstm(tmp_path / "c.pt")
    x = torch.rand(2, 9, bl.N_PITCHES).round()
    assert torch.equal(model(x), again(x))
    assert (tmp_path / "c.json").exists()


def tiny_piano_tokens(tok, pitches):
    """One bar per pitch: Bar, Chord, Position 0, Pitch, Velocity, Duration (a quarter note)."""
    pos0 = tok.ids_of_type("Position")[0]
    vel, dur = tok.ids_of_type("Velocity")[8], tok.ids_of_type("Duration")[3]
    pitch_id = {tok.pitch_of(i): i for i in tok.ids_of_type("Pitch")}
    chord = tok.chord_token("C")
    seg = tok.condition_prefix(key_pc=0, mode="major", tempo_bpm=80.0, style="pop")
    for p in pitches:
        seg += [tok.bar_id, chord, pos0, pitch_id[p], vel, dur]
    return seg


def test_markov_generates_bars_from_learnt_transitions(tmp_path):
    tok = MusicTokenizer.piano()
    seg = tiny_piano_tokens(tok, [60, 64, 67, 72] * 5)
    chain = bl.MarkovChain.fit([seg], tok.vocab_size)
    assert chain.counts.sum() == len(seg) - 1
    prefix = tok.condition_prefix(key_pc=0, mode="major", tempo_bpm=80.0, style="pop")
    out = chain.generate(tok, prefix, n_bars=8, generator=torch.Generator().manual_seed(3))
    bars = tok.decode_bars(out[len(prefix):])
    assert len(bars) == 8
    assert {n.pitch for bar in bars for n in bar} <= {60, 64, 67, 72}
    assert all(len(bar) >= 1 for bar in bars)
    # same seed -> same music; saved and loaded chain -> same counts
    again = chain.generate(tok, prefix, n_bars=8, generator=torch.Generator().manual_seed(3))
    assert again == out
    chain.save(tmp_path / "m.npz")
    assert np.array_equal(bl.MarkovChain.load(tmp_path / "m.npz").counts, chain.counts)


def test_markov_from_shards_cuts_at_segment_starts(tmp_path):
    tokens = np.array([1, 3, 5, 1, 3, 7], dtype=np.uint16)    # two segments: [1,3,5] and [1,3,7]
    tokens.tofile(tmp_path / "train.bin")
    np.save(tmp_path / "train.idx.npy", np.array([0, 3], dtype=np.int64))
    (tmp_path / "meta.json").write_text('{"vocab_size": 8}')
    chain = bl.MarkovChain.from_shards(tmp_path)
    assert chain.counts[1, 3] == 2 and chain.counts[3, 5] == 1 and chain.counts[3, 7] == 1
    assert chain.counts[5, 1] == 0                              # no transition across the segment boundary
    assert chain.counts.sum() == 4

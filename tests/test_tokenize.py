"""Round trips through MusicTokenizer on small MIDI made here: notes, onsets, drums, conditions, chords, grammar."""
import pretty_midi
import pytest
import torch

from text2lofi.compose.data import Piece
from text2lofi.compose.theory import read_chord
from text2lofi.compose.tokenizer import DRUM_KIT, MusicTokenizer, Note, tempo_token_bin

PIANO, DRUMS = MusicTokenizer.piano(), MusicTokenizer.drums()


def make_midi(notes, bpm=90.0, drums=False):
    """notes: (onset_beats, duration_beats, pitch, velocity) -> PrettyMIDI at a constant tempo."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    inst = pretty_midi.Instrument(program=0, is_drum=drums)
    spb = 60.0 / bpm
    for on, dur, pitch, vel in notes:
        inst.notes.append(pretty_midi.Note(vel, pitch, on * spb, (on + dur) * spb))
    pm.instruments.append(inst)
    return pm


def piece(notes, kind="piano", bpm=90.0, key_pc=9, mode="minor", chords=(), style="pop"):
    midi = make_midi(notes, bpm, drums=kind == "drums")
    return Piece("t", "test", kind, midi, key_pc, mode, list(chords), style, bpm)


def flat(bars):
    return [(4 * b + n.onset, n.duration, n.pitch, n.velocity) for b, notes in enumerate(bars) for n in notes]


def test_piano_notes_and_triplet_onsets_round_trip():
    # Straight eighths, a triplet, a long chord across beats, in bars 0-2.
    notes = [(0, 0.5, 60, 80), (0.5, 0.5, 62, 80), (1, 1 / 3, 64, 96), (4 / 3, 1 / 3, 65, 96), (5 / 3, 1 / 3, 67, 96),
             (4, 2, 57, 64), (4, 2, 60, 64), (4, 2, 64, 64), (9.25, 0.75, 72, 110)]
    segs = PIANO.encode_segments(piece(notes), max_len=512)
    tokens = [t for s in segs for t in s]
    got = sorted(flat(PIANO.decode_bars(tokens)))
    assert len(got) == len(notes)
    for (on, dur, p, v), (on2, dur2, p2, v2) in zip(sorted(notes), got):
        assert p == p2
        assert abs(on - on2) < 1e-6 and abs(dur - dur2) < 1e-6   # on the 12-per-beat grid: exact
        assert abs(v - v2) <= 8                                    # 16 velocity bins


def test_placement_does_not_depend_on_midi_tempo():
    notes = [(0, 1, 60, 80), (2.5, 0.5, 67, 80), (5, 1, 64, 80)]
    slow = PIANO.encode_segments(piece(notes, bpm=62.0))[0]
    fast = PIANO.encode_segments(piece(notes, bpm=150.0))[0]
    tb = PIANO.ids_of_type("TempoBin")
    assert [t for t in slow if t not in tb] == [t for t in fast if t not in tb]
    assert PIANO.token_type(slow[3]) == "TempoBin" and slow[3] != fast[3]


def test_condition_prefix_and_transposition_follow():
    notes = [(0, 1, 57, 80), (1, 1, 60, 80), (2, 1, 64, 80)]
    seg = PIANO.encode_segments(piece(notes, key_pc=9, mode="minor", bpm=80), transpose=3)[0]
    names = [PIANO.id_to_token[t] for t in seg[:6]]
    assert names[:5] == ["BOS_None", "Key_C", "Mode_minor", f"TempoBin_{tempo_token_bin(80)}", "Style_pop"]
    assert names[5] == "Bar_None"
    assert sorted(n.pitch for n in PIANO.decode_bars(seg)[0]) == [60, 63, 67]
    assert PIANO.id_to_token[seg[6]] == "Chord_C:min"  # A minor detected, moved up 3 semitones
    assert seg == PIANO.condition_prefix(0, "minor", 80, "pop") + seg[5:]


def test_chord_tokens_from_annotations_and_detection():
    # Bar 0 annotated Dm7 (notes say otherwise: the annotation wins); bar 1 unannotated C-E-G-B -> Cmaj7.
    notes = [(0, 4, 60, 80), (0, 4, 64, 80), (0, 4, 67, 80), (4, 4, 60, 80), (4, 4, 64, 80), (4, 4, 67, 80),
             (4, 4, 71, 80)]
    seg = PIANO.encode_segments(piece(notes, chords=[(0.0, 4.0, "D:min7")]))[0]
    bars = [i for i, t in enumerate(seg) if t == PIANO.bar_id]
    assert [PIANO.id_to_token[seg[i + 1]] for i in bars] == ["Chord_D:min7", "Chord_C:maj7"]
    assert PIANO.chord_token("Am9") == PIANO.vocab["Chord_A:min7"]
    assert PIANO.chord_token("G7") == PIANO.vocab["Chord_G:7"]
    assert PIANO.chord_token("C:maj") == PIANO.vocab["Chord_C:maj"]
    assert PIANO.chord_token("F#m7b5") == PIANO.vocab["Chord_Gb:hdim7"]
    assert PIANO.chord_token("Bb/D") == PIANO.vocab["Chord_Bb:maj"]
    assert PIANO.chord_token("H7") is None and read_chord("N") is None
    assert PIANO.chord_of(PIANO.chord_token("Ebm7")) == (3, "min7")


def test_drums_kit_mapping_swing_timing_and_is_drum():
    # Swung 8th hats (second eighth 2/3 of a beat late), a laid-back snare 20 ms late at 90 BPM, GM aliases.
    bpm, late = 90.0, 0.020 * 90 / 60
    notes = []
    for beat in range(8):
        notes += [(beat, 0.1, 42, 70), (beat + 2 / 3, 0.1, 44, 50)]       # 44 pedal hat -> closed hat
    notes += [(0, 0.1, 35, 110), (1 + late, 0.1, 40, 100), (3 + late, 0.1, 38, 120), (4, 0.1, 57, 100),
              (6, 0.1, 56, 90)]                                            # 56 cowbell is not in the kit
    segs = DRUMS.encode_segments(piece(notes, kind="drums", bpm=bpm, style="hiphop"))
    assert [DRUMS.id_to_token[t] for t in segs[0][:3]] == ["BOS_None", f"TempoBin_{tempo_token_bin(bpm)}", "Style_hiphop"]
    bars = DRUMS.decode_bars([t for s in segs for t in s])
    got = flat(bars)
    assert {p for _, _, p, _ in got} == {36, 38, 42, 49}
    assert len(got) == len(notes) - 1
    # Every onset back within half a grid step (1/48 beat = 13.9 ms at 90 BPM).
    expected = sorted((on, {35: 36, 40: 38, 38: 38, 42: 42, 44: 42, 57: 49}[p]) for on, _, p, _ in notes if p != 56)
    errors_ms = [abs(a[0] - b[0]) * 60 / bpm * 1000 for a, b in zip(expected, sorted((g[0], g[2]) for g in got))]
    assert max(errors_ms) <= 60 / bpm / 48 * 1000 + 1e-6
    midi = DRUMS.to_midi(bars, tempo_bpm=bpm)
    assert midi.instruments[0].is_drum and len(midi.instruments[0].notes) == len(got)
    assert abs(midi.get_tempo_changes()[1][0] - bpm) < 1e-6


def test_segments_hold_whole_bars_within_max_len():
    notes = [(b * 4 + i * 0.25, 0.25, 60 + i % 12, 80) for b in range(24) for i in range(16)]
    segs = PIANO.encode_segments(piece(notes), max_len=200)
    assert len(segs) > 3
    n_bars = 0
    for s in segs:
        assert len(s) <= 200 and s[:5] == PIANO.condition_prefix(9, "minor", 90.0, "pop")
        assert s[5] == PIANO.bar_id
        n_bars += len(PIANO.decode_bars(s))
    assert n_bars == 24 and segs[-1][-1] == PIANO.eos_id


def test_grammar_accepts_encoded_music_and_never_offers_conditions():
    notes = [(i * 0.5, 0.5, 60 + i % 7, 80) for i in range(24)]
    for tok, kind in ((PIANO, "piano"), (DRUMS, "drums")):
        pitches = (60, 62) if kind == "piano" else (36, 42)
        seg = tok.encode_segments(piece([(o, d, pitches[i % 2], v) for i, (o, d, _, v) in enumerate(notes)],
                                        kind=kind))[0]
        start = len(tok.condition_prefix()) - 1   # from the Style token on: Style -> Bar -> ...
        music = [t for t in seg[start:] if t != tok.eos_id]
        for prev, nxt in zip(music[:-1], music[1:]):
            assert tok.allowed_next(prev)[nxt], (tok.id_to_token[prev], tok.id_to_token[nxt])
        table = tok.grammar_table()
        for t in ("Key", "Mode", "TempoBin", "Style", "Special"):
            assert not table[:, tok.ids_of_type(t)].any()
    after_pos = PIANO.allowed_next(PIANO.ids_of_type("Position")[0])
    assert set(torch.nonzero(after_pos).flatten().tolist()) == set(PIANO.ids_of_type("Pitch"))
    drum_pitches = torch.nonzero(DRUMS.allowed_next(DRUMS.ids_of_type("Position")[5])).flatten().tolist()
    assert sorted(DRUMS.pitch_of(i) for i in drum_pitches) == sorted(DRUM_KIT.values())


def test_decode_tolerates_malformed_tokens():
    p = PIANO
    pos, pitch = p.ids_of_type("Position"), p.ids_of_type("Pitch")
    vel, dur = p.ids_of_type("Velocity"), p.ids_of_type("Duration")
    tokens = [pitch[10], vel[3],                       # note with no position: dropped
              p.bar_id, pos[12], pitch[39], vel[8],    # no duration: dropped
              pos[24], pitch[40], vel[8], dur[11],     # complete
              10 ** 6, -3, p.bar_id, p.vocab["Chord_C:maj"], dur[2]]
    bars = p.decode_bars(tokens)
    assert len(bars) == 2 and bars[1] == []
    assert bars[0] == [Note(2.0, 1.0, p.pitch_of(pitch[40]), bars[0][0].velocity)]
    assert p.decode_bars([]) == []


def test_save_load(tmp_path):
    for tok in (PIANO, DRUMS):
        tok.save(tmp_path / tok.kind)
        back = MusicTokenizer.load(tmp_path / tok.kind)
        assert back.vocab == tok.vocab and back.kind == tok.kind
        assert back.positions_per_bar == {"piano": 48, "drums": 96}[tok.kind]
        assert (tmp_path / tok.kind / "miditok.json").exists()


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        MusicTokenizer("bass", PIANO.remi)

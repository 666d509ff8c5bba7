"""`text2lofi data prepare` over small sources made here: shards, manifest, split, resume, and every bad-input case."""
import json

import numpy as np
import pretty_midi
import pytest

from text2lofi.compose import data
from text2lofi.compose.tokenizer import MusicTokenizer

TUNES = """%abc
X:1
T:Good reel
M:4/4
L:1/8
K:D
|:DFAF DFAF|GBdB GBdB|AFDF AFDF|E2D2 D4:|

X:2
T:A jig
M:6/8
L:1/8
K:G
GAB cBA|GAB d2c|

X:3
T:Broken
M:4/4
K:
|:zzz zzz((((( [[[ |
"""


def write_midi(path, notes, bpm=100.0, drums=False):
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    inst = pretty_midi.Instrument(0, is_drum=drums)
    spb = 60 / bpm
    for on, dur, pitch in notes:
        inst.notes.append(pretty_midi.Note(90, pitch, on * spb, (on + dur) * spb))
    pm.instruments.append(inst)
    pm.write(str(path))


def scale_run(n_bars, base=60):
    return [(i * 0.5, 0.5, base + (0, 2, 4, 5, 7, 9, 11)[i % 7]) for i in range(8 * n_bars)]


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "mixed"
    (d / "sub").mkdir(parents=True)
    for i in range(6):
        write_midi(d / f"good{i}.mid", scale_run(4, 55 + i))
    write_midi(d / "sub" / "nested.midi", scale_run(2))
    (d / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage" * 3)
    (d / "zero.mid").write_bytes(b"")
    write_midi(d / "silent.mid", [])
    write_midi(d / "endless.mid", [(0, 1, 60), (4 * 2000, 1, 62)], bpm=240)   # 2000 bars
    write_midi(d / "drums_only.mid", [(0, 0.1, 36)], drums=True)
    (d / "tunes.abc").write_text(TUNES)
    (d / "notes.txt").write_text("not music, not listed")
    return d


def test_folder_source_skips_bad_input_and_lists_why(folder, tmp_path):
    out = tmp_path / "out"
    assert data.main(["prepare", "--source", "folder", "--path", str(folder), "--out", str(out),
                      "--workers", "1", "--transpose", "none", "--val-pct", "30"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    files = {f["id"]: f for f in manifest["files"]}
    assert len(files) == 15 and manifest["summary"]["files_seen"] == 15   # 12 files, tunes.abc holds 3 tunes
    used = {k for k, f in files.items() if f["status"] == "used"}
    assert used == {f"good{i}.mid" for i in range(6)} | {"sub/nested.midi", "tunes.abc#1"}
    reasons = {k: f.get("reason", "") for k, f in files.items()}
    assert reasons["zero.mid"] == "zero-length file"
    assert reasons["corrupt.mid"].startswith("unreadable MIDI")
    assert reasons["silent.mid"] == "no notes"
    assert reasons["endless.mid"].startswith("too long")
    assert reasons["drums_only.mid"] == "no pitched track"
    assert reasons["tunes.abc#2"].startswith("meter 6/8")
    assert reasons["tunes.abc#3"].startswith(("unparseable", "empty", "no notes", "unreadable"))
    # Shards: tokens and segment starts add up to what the manifest says, per split, and decode to music.
    meta = json.loads((out / "meta.json").read_text())
    tok = MusicTokenizer.load(out / "tokenizer")
    assert meta["vocab_size"] == tok.vocab_size
    for split in ("train", "val"):
        tokens = np.fromfile(out / f"{split}.bin", dtype=np.uint16)
        starts = np.load(out / f"{split}.idx.npy")
        assert len(tokens) == sum(f.get("tokens", 0) for f in files.values() if f.get("split") == split)
        assert starts.dtype == np.int64 and all(tokens[s] == tok.bos_id for s in starts)
        assert tokens.max() < tok.vocab_size
    train_ids = {k for k in used if files[k]["split"] == "train"}
    assert train_ids and train_ids != used                  # 30% val: both sides hold pieces, none both
    bars = tok.decode_bars(np.fromfile(out / "train.bin", dtype=np.uint16).tolist())
    assert sum(len(b) for b in bars) > 100


def test_transposition_gives_all_twelve_keys_to_training_pieces(tmp_path):
    d = tmp_path / "one"
    d.mkdir()
    write_midi(d / "song.mid", scale_run(2))
    out = tmp_path / "out"
    data.prepare(data.PrepareConfig("folder", path=str(d), out=str(out), workers=1, val_pct=0.0))
    tok = MusicTokenizer.load(out / "tokenizer")
    tokens = np.fromfile(out / "train.bin", dtype=np.uint16)
    starts = np.load(out / "train.idx.npy")
    keys = [tok.id_to_token[int(tokens[s + 1])] for s in starts]
    assert len(set(keys)) == 12                               # the estimated key, then -5..+6 semitones
    # The notes move with the key token: lowest pitch minus tonic is the same interval in every copy.
    lowest = [min(n.pitch for b in tok.decode_bars(tokens[s:s + 80].tolist()) for n in b) for s in starts]
    tonic = [data.PITCH_CLASS[k[4:]] for k in keys]
    assert len({(lo - t) % 12 for lo, t in zip(lowest, tonic)}) == 1
    assert max(lowest) - min(lowest) == 11


def test_prepare_resumes_and_is_deterministic(folder, tmp_path):
    out = tmp_path / "out"
    cfg = data.PrepareConfig("folder", path=str(folder), out=str(out), workers=1, chunk=4, transpose="none")
    first = data.prepare(cfg)
    parts = sorted((out / "parts").glob("part_*.json"))
    assert len(parts) == 4                                     # 14 items in chunks of 4
    before = {p: p.stat().st_mtime_ns for p in parts}
    train = (out / "train.bin").read_bytes()
    parts[1].unlink()                                          # as if killed while writing part 1
    again = data.prepare(cfg)
    assert again == first and (out / "train.bin").read_bytes() == train
    assert [p.stat().st_mtime_ns == before[p] for p in parts if p != parts[1]] == [True] * 3
    assert not list(out.rglob("*.tmp"))


def test_pop909_reader_key_chords_and_downbeat(tmp_path):
    d = tmp_path / "pop909" / "001"
    d.mkdir(parents=True)
    # 120 BPM, one pickup beat: the first downbeat is at 0.5 s = beat 1.
    write_midi(d / "001.mid", [(0, 1, 67)] + [(1 + i, 1, 57 + (i % 4) * 3) for i in range(8)], bpm=120)
    (d / "key_audio.txt").write_text("0.0\t1.0\tC:maj\n1.0\t9.0\tA:min\n")
    (d / "chord_midi.txt").write_text("0.5\t2.5\tA:min7\n2.5\t4.5\tD:min\n")
    (d / "beat_midi.txt").write_text("0.0 0.0 0.0\n0.5 1.0 1.0\n1.0 0.0 0.0\n")
    (tmp_path / "pop909" / "LICENSE").write_text("x")
    items = data.list_pop909(str(tmp_path / "pop909"))
    assert [i.id for i in items] == ["001"]
    p = data.read_pop909(items[0])
    assert (p.key_pc, p.mode, p.style, round(p.bpm)) == (9, "minor", "pop", 120)
    assert p.chords == [(4.0, 8.0, "A:min7"), (8.0, 12.0, "D:min")]    # shifted 3 beats: downbeat on bar 1
    tok = MusicTokenizer.piano()
    bars = tok.encode_bars(p.midi, p.chords)
    assert [tok.id_to_token[b[1]] for b in bars] == ["Chord_G:maj", "Chord_A:min7", "Chord_D:min"]
    assert tok.decode_bars(bars[1])[0][0].onset == 0.0         # the downbeat note starts bar 1


def test_gmd_reader_uses_its_split_style_and_skips_other_meters(tmp_path):
    root = tmp_path / "gmd"
    (root / "drummer1").mkdir(parents=True)
    write_midi(root / "drummer1" / "a.mid", [(i * 0.5, 0.1, (36, 42, 38, 42)[i % 4]) for i in range(32)], 96, True)
    write_midi(root / "drummer1" / "b.mid", [(i, 0.1, 36) for i in range(12)], 120, True)
    header = "drummer,session,id,style,bpm,beat_type,time_signature,midi_filename,audio_filename,duration,split\n"
    rows = ["drummer1,drummer1/s,drummer1/s/1,funk/groove1,96,beat,4-4,drummer1/a.mid,,10,validation",
            "drummer1,drummer1/s,drummer1/s/2,jazz/swing,120,beat,3-4,drummer1/b.mid,,6,train"]
    (root / "info.csv").write_text(header + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    summary = data.prepare(data.PrepareConfig("gmd", path=str(root), out=str(out), workers=1))
    assert (summary["files_used"], summary["files_skipped"], summary["val_pieces"]) == (1, 1, 1)
    assert summary["skip_reasons"] == {"time signature N-N, not N/N": 1}
    tok = MusicTokenizer.load(out / "tokenizer")
    val = np.fromfile(out / "val.bin", dtype=np.uint16).tolist()
    assert [tok.id_to_token[t] for t in val[:3]] == ["BOS_None", "TempoBin_4", "Style_funk"]
    hits = [n for b in tok.decode_bars(val) for n in b]
    assert len(hits) == 32 and {n.pitch for n in hits} == {36, 38, 42}


def test_split_is_by_piece_and_deterministic():
    ids = [f"song{i}" for i in range(2000)]
    splits = [data.split_of(i, 5.0) for i in ids]
    assert splits == [data.split_of(i, 5.0) for i in ids]
    assert 60 <= splits.count("val") <= 140


def test_abc_split_keeps_header_per_tune():
    tunes = data.split_abc("%header\nL:1/8\n" + TUNES)
    assert [x for x, _ in tunes] == ["1", "2", "3"]
    assert all(t.startswith("%header\nL:1/8") for _, t in tunes)


def test_music21_oneills_tunes_read_without_midi_export_trap():
    # O'Neill's 1850 is where music21's MIDI export trips over a shared TimeSignature; we read notes directly.
    music21 = pytest.importorskip("music21", reason="music21 corpus not installed")
    from pathlib import Path
    path = Path(music21.__file__).parent / "corpus" / "oneills1850" / "0001-0050.abc"
    items = {i.id.split("#")[1]: i for i in data._abc_items(path, "music21", "folk/oneills1850/0001-0050.abc")}
    assert len(items) == 50
    reel = data.read_music21(items["2"])
    assert (reel.style, reel.key_pc, reel.mode) == ("folk", 2, "major") and len(reel.midi.tracks[0].notes) > 40
    bars = MusicTokenizer.piano().encode_bars(reel.midi)
    assert 8 <= len(bars) <= 40
    with pytest.raises(data.Skip, match="meter 6/8"):
        data.read_music21(items["5"])

"""A small MIDI song the tests write for themselves: 8 bars in D minor at 90 BPM, block chords Dm Gm A Dm low and
a melody of their chord tones above (no two notes of one pitch overlap, so the file reads back note for note)."""
import pretty_midi

BPM = 90.0
BEAT = 60.0 / BPM
BAR = 4 * BEAT
CHORDS = ["Dm", "Gm", "A", "Dm"]
VOICINGS = {"Dm": (50, 53, 57), "Gm": (55, 58, 62), "A": (57, 61, 64)}


def write(path, bars: int = 8, key: str | None = "D minor", tempo: bool = True, drums_only: bool = False):
    """Block chords low, a melody of chord tones an octave and more above (no two notes of one pitch overlap)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=BPM if tempo else 120.0)
    if key:
        pm.key_signature_changes.append(pretty_midi.KeySignature(pretty_midi.key_name_to_key_number(key), 0))
    inst = pretty_midi.Instrument(0, is_drum=drums_only)
    for b in range(bars):
        chord = VOICINGS[CHORDS[b % 4]]
        for p in chord:
            inst.notes.append(pretty_midi.Note(64, p, b * BAR, b * BAR + 3.75 * BEAT))
        for k, p in enumerate((chord[2] + 12, chord[0] + 24, chord[1] + 24, chord[2] + 24)):
            inst.notes.append(pretty_midi.Note(84, p, b * BAR + k * BEAT, b * BAR + (k + 0.75) * BEAT))
    pm.instruments.append(inst)
    pm.write(str(path))
    if not tempo:                    # pretty_midi always writes a tempo: take it out of the file
        import mido
        f = mido.MidiFile(str(path))
        for track in f.tracks:
            track[:] = [m for m in track if m.type != "set_tempo"]
        f.save(str(path))
    return path

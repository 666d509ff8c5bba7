"""Stage 2, compose: Conditions -> notes of piano and drums on one bar grid, for any length.

In: `text2lofi.Conditions`. Out: `ComposedBar`s (absolute sample times on the shared `BarGrid`, as
`text2lofi.conditions.NoteEvent`s) and, for a whole track, one PrettyMIDI with a single tempo map.

Modules: `theory` (chords, scales, key finding; pure), `arrangement` (bar grid, seed progression, section plan;
pure and cheap), `tokenizer` (MIDI <-> tokens over MidiTok), `composer` (the RWKV-6 models sampled bar by bar),
`data` (token shards for training from POP909, Groove MIDI, music21 or a folder).
Importing `theory` or `arrangement` loads neither torch nor MidiTok.
"""

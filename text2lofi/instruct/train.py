"""Training the instruction LM: synthetic examples from prompts/ -> LM inputs (parse + retrieval) -> a tiny GPT-2
trained on the output tokens only -> checkpoints/instruct. `text2lofi train-instruct` runs `main`."""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rwkv_core.config import add_config_args, config_from_args
from text2lofi.instruct.data import Example, PromptBank, generate_examples, load_bank
from text2lofi.instruct.lm import (MIN_SIMILARITY, SPECIALS, TOP_K, InstructLM, Retriever, SentenceEmbedder,
                                   checkpoint_dir, lexicon_hash, lm_input_words, output_vocab)
from text2lofi.instruct.parse import PARSER_WORDS, Speller, parse, segments
from text2lofi.runtime import use_threads


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
    out: str = ""                 # where the model is written; empty: the shipped checkpoints/instruct
    inputs_cache: str = ""       # optional JSON file keeping the (slow to embed) LM inputs between runs


def build_tokenizer(train_inputs: list[list[str]], bank: PromptBank, min_count: int):
    """Word-level tokenizer: specials, output tokens, lexicon-entry tokens, then input words seen >= min_count."""
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


def next_logits_of(model) -> Callable[[list[int]], np.ndarray]:
    """InstructLM's net call on a transformers GPT2LMHeadModel (as trained, before it is saved)."""
    @torch.inference_mode()
    def next_logits(ids: list[int]) -> np.ndarray:
        return model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
    return next_logits


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
    use_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    bank = load_bank()
    embedder = SentenceEmbedder()
    out_dir = Path(cfg.out) if cfg.out else checkpoint_dir()
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
    lm = InstructLM(next_logits_of(model), tokenizer, output_vocab(bank))
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
    model.save_pretrained(out_dir)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "instruct_meta.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta["val"], indent=1))
    return meta


def main(argv: list[str] | None = None) -> int:
    """`text2lofi train-instruct`: generate the synthetic data from prompts/ and train the instruction LM."""
    ap = argparse.ArgumentParser(prog="text2lofi train-instruct", description=main.__doc__)
    cfg = config_from_args(TrainConfig, add_config_args(ap, TrainConfig).parse_args(argv))
    train(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The composer driven by tiny random RWKV-6 models passed in (no checkpoints): what it promises whatever the models
sample — bars end within their token cap, positions only move forward inside a bar, every piano bar has its chord's
root in the bass, loops repeat their phrase with a new last bar, sections follow the plan, and one seed is one piece."""
from __future__ import annotations

import pytest
import torch

from rwkv_core import RWKV6, RWKV6Config
from text2lofi.compose import composer as comp
from text2lofi.compose.arrangement import plan_sections
from text2lofi.compose.theory import chord_tones
from text2lofi.compose.tokenizer import DRUM_KIT, MusicTokenizer
from text2lofi.conditions import Conditions

CAP = 30          # tokens per bar in these tests: small, so the random models hit it and the tests stay fast


def _tiny(kind: str, tok: MusicTokenizer, seed: int) -> comp.MusicModel:
    torch.manual_seed(seed)
    model = RWKV6(RWKV6Config(n_layer=1, n_embd=64, vocab_size=tok.vocab_size, ctx_len=64)).eval()
    with torch.no_grad():       # several matrices start at zero: perturb, so the logits depend on the context
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return comp.MusicModel(kind, model, tok, f"{kind}@tiny{seed}")


@pytest.fixture(scope="module")
def models():
    return _tiny("piano", MusicTokenizer.piano(), 1), _tiny("drums", MusicTokenizer.drums(), 2)


@pytest.fixture(autouse=True)
def small_cap(monkeypatch):
    monkeypatch.setitem(comp.MAX_TOKENS_PER_BAR, "piano", CAP)
    monkeypatch.setitem(comp.MAX_TOKENS_PER_BAR, "drums", CAP)


def _bars(models, n_bars: int, candidates: int = 1, **kw):
    c = Conditions(tempo_bpm=90, key="D", mode="minor", seed=5, swing=0.0, **kw)
    composer = comp.Composer(c, piano=models[0], drums=models[1], groove_candidates=candidates)
    return composer, list(composer.bars(n_bars))


def test_every_bar_ends_within_its_token_cap_and_positions_move_forward(models):
    piano = comp.PartWriter(models[0], models[0].tokenizer.condition_prefix(key_pc=2, mode="minor", tempo_bpm=90,
                                                                             style="pop"),
                            comp.SamplingConfig(temperature=1.0), torch.Generator().manual_seed(0))
    for _ in range(12):
        notes = piano.next_bar("Dm7")
        # Each note costs at least three tokens (pitch, velocity, duration): a capped bar holds at most CAP / 3.
        assert len(notes) <= CAP // 3
        onsets = [n.onset for n in notes]
        assert onsets == sorted(onsets)                       # sampled in order: never back in time
        assert all(0 <= o < 4 for o in onsets)


def test_every_bar_has_its_root_in_the_bass(models):
    """With the bass part: its root on every downbeat once the beat is in; in the intro (and with no bass part)
    the piano holds the root itself."""
    for bass in (True, False):
        composer, bars = _bars(models, 24, bass=bass)
        half_beat = composer.grid.samples_per_beat / 2
        for b in bars[:-1]:                                   # the last bar is the final chord, checked below
            root = chord_tones(b.chord)[0]
            low = b.bass if bass and b.section != "intro" else b.piano
            assert not (b.bass and (not bass or b.section == "intro"))
            assert any(e.pitch < 52 and e.pitch % 12 == root and e.start_sample - b.start_sample < half_beat
                       for e in low), (bass, b.index, b.section)


def test_the_bass_locks_to_the_kick(models):
    composer, bars = _bars(models, 24)
    kick_bars = 0
    for b in bars[:-1]:
        if not b.bass or not b.drums:
            continue
        def beats(events):        # onsets in beats from the bar start
            return [(e.start_sample - b.start_sample) / composer.grid.samples_per_beat for e in events]

        kicks = beats(e for e in b.drums if e.pitch == comp.KICK)
        # every bass note starts on the downbeat or with a kick (kicks are snapped to 16ths: within half a 16th)
        assert all(t == 0 or any(abs(t - k) <= 0.125 for k in kicks) for t in beats(b.bass))
        kick_bars += bool(kicks)
        assert all(28 <= e.pitch < 28 + 12 + 7 for e in b.bass)          # E1 up to the fifth above D#2
    assert kick_bars >= 4


def test_loops_repeat_their_phrase_and_vary_the_last_bar(models):
    composer, bars = _bars(models, 40)
    plan = list(plan_sections(40, True, True))
    first = 0
    for s in plan:
        if s.name == "loop" and s.n_bars == 8:
            break
        first += s.n_bars
    loop = bars[first:first + 8]

    def rel(events, bar):      # notes relative to their bar start, so repeated bars compare equal
        return [(e.start_sample - bar.start_sample, e.pitch, e.velocity) for e in events]

    for j in range(4, 7):                                     # bars 5-7 replay the 4-bar phrase
        assert rel(loop[j].piano, loop[j]) == rel(loop[j - 4].piano, loop[j - 4])
    assert rel(loop[7].piano, loop[7]) != rel(loop[3].piano, loop[3])        # a new last bar
    # A 2-bar groove: bars 5-6 repeat it as it is; bars 3-4 and 7 keep its kick and backbeat but vary the hats
    # and ghost notes (velocities at least).
    keep = {DRUM_KIT["kick"]} | comp.BACKBEAT
    for j in (4, 5):
        assert rel(loop[j].drums, loop[j]) == rel(loop[j % 2].drums, loop[j % 2])
    for j in (2, 3, 6):
        mine, source = rel(loop[j].drums, loop[j]), rel(loop[j % 2].drums, loop[j % 2])
        assert mine != source
        assert [e for e in mine if e[1] in keep and e[2] > 40] == [e for e in source if e[1] in keep and e[2] > 40]


def test_sections_follow_the_plan_and_the_track_ends_on_the_tonic(models):
    composer, bars = _bars(models, 40)
    plan = list(plan_sections(40, True, True))
    names = [s.name for s in plan for _ in range(s.n_bars)]
    assert [b.section for b in bars] == names
    assert names[:4] == ["intro"] * 4 and names[-4:] == ["outro"] * 4
    assert all(not b.drums for b in bars[:4]) and all(b.piano for b in bars[:4])    # drums enter after the intro
    assert all(b.drums for b in bars[4:12])
    last = bars[-1]
    assert last.chord == "Dm7"
    assert {e.pitch % 12 for e in last.piano} == set(chord_tones("Dm7")[1])
    assert [b.start_sample for b in bars] == [composer.grid.bar_start(i) for i in range(40)]


def test_same_seed_same_notes_other_seed_other_notes(models):
    _, a = _bars(models, 10)
    _, b = _bars(models, 10)
    assert [(x.piano, x.drums) for x in a] == [(x.piano, x.drums) for x in b]
    c = Conditions(tempo_bpm=90, key="D", mode="minor", seed=6)
    other = list(comp.Composer(c, piano=models[0], drums=models[1]).bars(10))
    assert [x.piano for x in other] != [x.piano for x in a]


def test_each_groove_is_the_best_scoring_of_its_candidates(models, monkeypatch):
    scored: list[tuple[tuple, float]] = []
    real = comp.beat_score

    def recording(bar):
        score = real(bar)
        scored.append((tuple(bar), score))
        return score

    monkeypatch.setattr(comp, "beat_score", recording)
    composer, bars = _bars(models, 24, candidates=4)
    first_loop = next(b.index for b in bars if b.section == "loop")
    # the first loop's groove was chosen from the first 4 x 2 bars scored: candidate k's bars are 2k and 2k + 1
    groove = [tuple(scored[k] for k in (2 * c, 2 * c + 1)) for c in range(4)]
    totals = [sum(x[1] for x in g) for g in groove]
    best = totals.index(max(totals))
    spb = composer.grid.samples_per_beat
    for j in range(2):
        played = bars[first_loop + j]
        notes = [(round((e.start_sample - played.start_sample) / spb, 3), e.pitch) for e in played.drums]
        assert notes == [(round(n.onset, 3), n.pitch) for n in groove[best][j][0]]
    assert len(set(g[0][0] for g in groove)) > 1                        # the candidates differ


@pytest.mark.parametrize("hits, score", [
    ([(0, 36), (1, 38), (3, 38)] + [(t / 2, 42) for t in range(8)], 6),     # kick, backbeat, hats: a beat
    ([(t / 4, 38) for t in range(16)], 4),                                   # a snare roll: no kick, no hats
    ([(t / 2, 47) for t in range(8)], 1),                                    # a tom run: only "not too dense"
])
def test_beat_score_tells_a_beat_from_a_roll(hits, score):
    assert comp.beat_score([comp.Note(t, 0.1, p, 90) for t, p in hits]) == score

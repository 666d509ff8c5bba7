"""The sampler and the TokenStream engine: constraints respected, seeded runs repeat, streams are independent."""
import pytest
import torch

from rwkv_core import RWKV6, RWKV6Config
from rwkv_core.sampling import ContextWindow, SamplingConfig, TokenStream, sample_logits

V = 50
PROBS = torch.tensor([0.40, 0.25, 0.15, 0.10, 0.06, 0.04])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def counts(tokens: torch.Tensor, n: int) -> torch.Tensor:
    return torch.bincount(tokens, minlength=n).float() / tokens.numel()


def test_full_distribution_is_sampled_faithfully():
    logits = PROBS.log().expand(20000, -1)
    freq = counts(sample_logits(logits, SamplingConfig(), gen()), 6)
    torch.testing.assert_close(freq, PROBS, rtol=0, atol=0.015)


def test_temperature_zero_is_greedy_and_temperature_flattens():
    logits = torch.randn(8, V, generator=gen(1))
    assert torch.equal(sample_logits(logits, SamplingConfig(temperature=0), gen()), logits.argmax(-1))
    many = PROBS.log().expand(20000, -1)
    hot = counts(sample_logits(many, SamplingConfig(temperature=3.0), gen()), 6)
    cold = counts(sample_logits(many, SamplingConfig(temperature=0.3), gen()), 6)
    assert hot[0] < PROBS[0] < cold[0] and hot[5] > PROBS[5] > cold[5]


def test_top_k_keeps_exactly_the_k_most_likely():
    logits = PROBS.log().expand(20000, -1)
    freq = counts(sample_logits(logits, SamplingConfig(top_k=3), gen()), 6)
    assert (freq[3:] == 0).all() and (freq[:3] > 0).all()
    torch.testing.assert_close(freq[:3], PROBS[:3] / PROBS[:3].sum(), rtol=0, atol=0.015)


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = PROBS.log().expand(20000, -1)
    # 0.40 + 0.25 = 0.65 < 0.7, + 0.15 = 0.80 >= 0.7: three tokens survive
    freq = counts(sample_logits(logits, SamplingConfig(top_p=0.7), gen()), 6)
    assert (freq[3:] == 0).all() and (freq[:3] > 0).all()
    # a tiny p still keeps the most likely token
    assert (sample_logits(logits[:100], SamplingConfig(top_p=0.01), gen()) == 0).all()


def test_mask_is_respected_even_against_likely_tokens():
    logits = PROBS.log().expand(5000, -1).clone()
    mask = torch.zeros(5000, 6, dtype=torch.bool)
    mask[:, 4:] = True                                     # only the two least likely tokens allowed
    for cfg in (SamplingConfig(), SamplingConfig(temperature=0), SamplingConfig(top_k=2), SamplingConfig(top_p=0.5)):
        out = sample_logits(logits, cfg, gen(), mask=mask)
        assert ((out == 4) | (out == 5)).all(), cfg
    with pytest.raises(ValueError, match="allows no token"):
        sample_logits(logits[:2], SamplingConfig(), gen(), mask=torch.zeros(2, 6, dtype=torch.bool))


def test_seeded_determinism():
    logits = torch.randn(16, V, generator=gen(2))
    cfg = SamplingConfig(temperature=1.2, top_k=20, top_p=0.9)
    a = [sample_logits(logits, cfg, g) for g in [gen(7)] for _ in range(5)]
    b = [sample_logits(logits, cfg, g) for g in [gen(7)] for _ in range(5)]
    c = [sample_logits(logits, cfg, g) for g in [gen(8)] for _ in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_config_validation():
    with pytest.raises(ValueError):
        SamplingConfig(top_p=0.0)
    with pytest.raises(ValueError):
        SamplingConfig(temperature=-1)


# ---- TokenStream ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model() -> RWKV6:
    torch.manual_seed(0)
    m = RWKV6(RWKV6Config(n_layer=2, n_embd=64, vocab_size=V, ctx_len=32))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m


def test_stream_is_seeded_and_consistent_with_parallel_mode(model):
    prompt = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    cfg = SamplingConfig(temperature=1.0, top_k=10)
    a, b = TokenStream(model, prompt, cfg, gen(3)), TokenStream(model, prompt, cfg, gen(3))
    out_a = torch.stack([a.next() for _ in range(24)], dim=1)
    out_b = torch.stack([b.next() for _ in range(24)], dim=1)
    assert torch.equal(out_a, out_b) and out_a.shape == (2, 24)

    # greedy decoding through the stream == argmax of a parallel pass over what it produced
    greedy = TokenStream(model, prompt, SamplingConfig(temperature=0), gen())
    out = torch.stack([greedy.next() for _ in range(12)], dim=1)
    full = model(torch.cat([prompt, out], dim=1))
    assert torch.equal(full[:, 3:-1].argmax(-1), out)


def test_streams_in_a_batch_do_not_interact(model):
    prompt = torch.tensor([[9, 8, 7], [1, 1, 1], [9, 8, 7]])
    greedy = SamplingConfig(temperature=0)
    batch = TokenStream(model, prompt, greedy, gen())
    alone = TokenStream(model, prompt[:1], greedy, gen())
    out_batch = torch.stack([batch.next() for _ in range(10)], dim=1)
    out_alone = torch.stack([alone.next() for _ in range(10)], dim=1)
    assert torch.equal(out_batch[0], out_alone[0]) and torch.equal(out_batch[2], out_alone[0])


def test_feed_sequence_equals_feeding_one_by_one(model):
    prompt = torch.tensor([[3, 1, 4]])
    forced = torch.tensor([[1, 5, 9, 2, 6]])
    whole = TokenStream(model, prompt, SamplingConfig(), gen())
    whole.feed(forced)
    stepwise = TokenStream(model, prompt, SamplingConfig(), gen())
    for t in range(forced.shape[1]):
        stepwise.feed(forced[:, t])
    torch.testing.assert_close(whole.logits, stepwise.logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(whole.state.wkv, stepwise.state.wkv, rtol=0, atol=1e-4)
    with pytest.raises(ValueError):
        whole.feed(torch.tensor([1, 2]))                     # wrong batch size


def test_clone_branches_without_touching_the_original(model):
    stream = TokenStream(model, torch.tensor([[2, 7, 1, 8]]), SamplingConfig(), gen(4))
    logits_before = stream.logits.clone()
    branch = stream.clone(generator=gen(5))
    for _ in range(5):
        branch.next()
    assert torch.equal(stream.logits, logits_before)
    # a branch fed the same tokens as its source stays in lockstep with it
    twin = stream.clone()
    tokens = torch.tensor([11])
    stream.feed(tokens)
    twin.feed(tokens)
    assert torch.equal(stream.logits, twin.logits)


def test_masked_generation_only_emits_allowed_tokens(model):
    stream = TokenStream(model, torch.zeros(2, 1, dtype=torch.long), SamplingConfig(temperature=1.5), gen(6))
    even = torch.zeros(2, V, dtype=torch.bool)
    even[:, ::2] = True
    out = torch.stack([stream.next(mask=even) for _ in range(40)])
    assert (out % 2 == 0).all() and len(out.unique()) > 3


def test_context_window_restarts_on_prompt_plus_the_latest_whole_spans(model):
    """Boundary token 0 opens a span. Past max_tokens, at the next boundary, the stream continues exactly as a fresh
    stream on the prompt + the most recent whole spans that fit in keep_tokens (ending with the new boundary)."""
    window = ContextWindow(max_tokens=12, keep_tokens=7, boundary=0)
    prompt = torch.tensor([[3, 4]])
    stream = TokenStream(model, prompt, SamplingConfig(), gen(), window=window)
    plain = TokenStream(model, prompt, SamplingConfig(), gen())
    spans = [[0, 5, 6, 7], [0, 8, 9], [0, 11, 12, 13]]          # 2 + 11 tokens: past max_tokens inside span 3
    for t in [t for s in spans for t in s]:
        stream.feed(torch.tensor([t]))
        plain.feed(torch.tensor([t]))
    torch.testing.assert_close(stream.logits, plain.logits)     # no boundary since the limit: no restart yet
    stream.feed(torch.tensor([0]))                               # the boundary that opens span 4: restart
    kept = [0, 11, 12, 13, 0]                                    # span 2 + span 3 + span 4 would be 8 > 7
    assert stream.history == [kept]
    fresh = TokenStream(model, torch.tensor([[3, 4] + kept]), SamplingConfig(), gen())
    torch.testing.assert_close(stream.logits, fresh.logits, rtol=0, atol=1e-5)
    for t in (14, 15):                                          # and it goes on from the fresh state
        stream.feed(torch.tensor([t]))
        fresh.feed(torch.tensor([t]))
    torch.testing.assert_close(stream.logits, fresh.logits, rtol=0, atol=1e-5)


def test_context_window_restarts_each_stream_on_its_own(model):
    window = ContextWindow(max_tokens=8, keep_tokens=4, boundary=0)
    prompt = torch.tensor([[3, 4], [5, 6]])
    batch = TokenStream(model, prompt, SamplingConfig(), gen(), window=window)
    rows = [TokenStream(model, prompt[i:i + 1], SamplingConfig(), gen(), window=window) for i in range(2)]
    forced = torch.tensor([[0, 7, 7, 0, 7, 7, 0, 7, 0],      # row 0 restarts at its third 0, keeping [0, 7, 7, 0]
                           [9, 9, 9, 9, 9, 9, 9, 9, 9]])     # row 1 has no boundary: never restarts
    for t in range(forced.shape[1]):
        batch.feed(forced[:, t])
        for i, r in enumerate(rows):
            r.feed(forced[i:i + 1, t])
    assert batch.history[0] == [0, 7, 7, 0, 7, 0] and len(batch.history[1]) == 9
    for i, r in enumerate(rows):
        torch.testing.assert_close(batch.logits[i], r.logits[0], rtol=0, atol=1e-5)


def test_context_window_needs_keep_below_max():
    with pytest.raises(ValueError):
        ContextWindow(max_tokens=8, keep_tokens=8, boundary=0)


def test_candidates_sampled_side_by_side_continue_alone_exactly(model):
    """repeat(n) samples n continuations in one batch; select(b) goes on as if stream b had always been alone;
    a stream left inactive keeps its state while the others advance."""
    prompt = torch.tensor([[1, 2, 3, 4]])
    base = TokenStream(model, prompt, SamplingConfig(temperature=1.0), generator=gen(3))
    batch = base.repeat(4)
    assert torch.equal(batch.logits, base.logits.expand(4, -1))
    drawn = torch.stack([batch.next() for _ in range(6)], dim=1)          # (4, 6)
    assert len({tuple(r) for r in drawn.tolist()}) > 1                     # different candidates
    b = 2
    alone = TokenStream(model, torch.cat([prompt, drawn[b:b + 1]], dim=1), SamplingConfig(), generator=gen(0))
    chosen = batch.select(b)
    torch.testing.assert_close(chosen.logits, alone.logits, rtol=1e-4, atol=1e-4)
    before = batch.logits[1].clone(), batch.state.wkv[:, 1].clone()
    batch.next(active=torch.tensor([True, False, True, True]))
    assert torch.equal(batch.logits[1], before[0]) and torch.equal(batch.state.wkv[:, 1], before[1])
    assert not torch.equal(batch.logits[0], chosen.logits[0])

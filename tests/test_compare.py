"""Blind paired comparisons: the statistics against hand-computed cases, the pair design (balance, order,
repeats), votes and their refusals, concurrency, results and export — on a real SQLite store."""
from __future__ import annotations

import collections
import math
import threading
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from text2lofi.app.compare import SYSTEMS, CompareConfig, ComparePool, render_clip
from text2lofi.app.survey import SurveyStore
from text2lofi.evaluate.paired import (Vote, bradley_terry, consistency, mean_interval, pair_table, votes_needed,
                                       wilson)


def later() -> datetime:
    """'After listening': 5 minutes from now (from the moment of the vote, not of the import: a long suite reaches
    these tests more than 5 minutes after collecting them)."""
    return datetime.now(timezone.utc) + timedelta(minutes=5)


# ---- statistics ----------------------------------------------------------------------------------------
def test_wilson_interval_matches_the_textbook_case():
    lo, hi = wilson(8, 10)                                      # Wilson (1927); e.g. Newcombe (1998), table I
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)
    assert wilson(0, 0) == (0.0, 1.0)


def test_bradley_terry_is_the_maximum_likelihood_estimate():
    two = bradley_terry([Vote("x", "y", "x")] * 6 + [Vote("x", "y", "y")] * 2)
    assert two["x"] / two["y"] == pytest.approx(3.0)                    # 6 wins to 2: P(x beats y) = 3/4
    votes = ([Vote("x", "y", "x")] * 6 + [Vote("x", "y", "y")] * 2 + [Vote("y", "z", "y")] * 3
             + [Vote("y", "z", "z")] + [Vote("x", "z", "x")] * 2 + [Vote("x", "z", "same")] * 2)
    s = bradley_terry(votes)
    # At the MLE each system's expected wins equal its observed wins (ties half each).
    games = collections.Counter(frozenset((v.a, v.b)) for v in votes)
    observed = {"x": 6 + 2 + 1, "y": 2 + 3, "z": 1 + 1}
    for i in s:
        expected = sum(n * s[i] / (s[i] + s[j]) for pair, n in games.items() if i in pair
                       for j in pair - {i})
        assert expected == pytest.approx(observed[i], rel=1e-6)
    assert math.prod(s.values()) == pytest.approx(1.0)
    assert bradley_terry([Vote("x", "y", "x")] * 3)["y"] > 0            # never lost / never won stays finite


def test_pair_table_votes_needed_means_and_consistency_by_hand():
    rows = pair_table([Vote("b", "a", "a")] * 3 + [Vote("a", "b", "b")] + [Vote("a", "b", "same")] * 2)
    assert rows == [{"system": "a", "versus": "b", "votes": 6, "wins": 3, "losses": 1, "ties": 2,
                     "win_rate": 4 / 6, "ci95": wilson(4, 6)}]
    # n = ((1.96 * 0.5 + 0.8416 * sqrt(0.6 * 0.4)) / 0.1) ** 2 = 193.9 -> 194
    assert votes_needed(0.6) == 194 and votes_needed(0.7) == 47
    m, lo, hi = mean_interval([1, 2, 3, 4, 5])
    assert (m, round(lo, 3), round(hi, 3)) == (3.0, 1.614, 4.386)      # 3 -+ 1.96 * 1.5811 / sqrt(5)
    assert consistency([("a", "a"), ("a", "b"), ("same", "same"), ("b", "b")]) == (4, 0.75)


# ---- the design ----------------------------------------------------------------------------------------
@pytest.fixture
def pool(tmp_path):
    """Three systems x two prompts, one clip each, registered in a real store (files are placeholders: drawing
    pairs never reads them)."""
    store = SurveyStore(f"sqlite:///{tmp_path / 's.sqlite3'}", admin_password="pw")
    cfg = CompareConfig(systems=("rwkv", "markov", "convlstm"), prompts=("p1", "p2"), seeds=1)
    for prompt in cfg.prompts:
        for system in cfg.systems:
            path = tmp_path / f"{system}-{prompt}.mp3"
            path.write_bytes(b"x")
            store.add_clip(system, prompt, 0, path)
    return ComparePool(store, tmp_path / "pool", cfg, rng=np.random.default_rng(0))


def test_a_thousand_pairs_are_balanced_over_cells_and_positions(pool):
    seen, first = collections.Counter(), collections.Counter()
    systems_of = {c["id"]: c["system"] for c in pool.store.clips()}
    for k in range(1000):
        p = pool.draw(f"r{k % 50}")                    # no votes: no repeats
        row = pool.store.pair(p.pair_id)
        seen[(p.prompt, *sorted((row["system_a"], row["system_b"])))] += 1
        first[systems_of[row["clip_a"]]] += 1
    assert len(seen) == 6 and max(seen.values()) - min(seen.values()) <= 1    # 6 cells, 166 or 167 each
    for system in ("rwkv", "markov", "convlstm"):                            # A or B at random: ~1/3 as A
        assert 280 <= first[system] <= 390, first


def test_repeats_come_back_swapped_now_and_then(pool):
    shown = []
    for _ in range(200):
        p = pool.draw("steady")
        pool.vote(p.pair_id, "steady", "A", "A", now=later())
        shown.append(pool.store.pair(p.pair_id))
    repeats = [r for r in shown if r["repeat_of"]]
    assert 8 <= len(repeats) <= 40                                   # REPEAT_SHARE 0.1 of 197 eligible
    for r in repeats:
        original = pool.store.pair(r["repeat_of"])
        assert (r["clip_a"], r["clip_b"]) == (original["clip_b"], original["clip_a"])
    # Always voting "A" means always picking the other clip on a swapped repeat: consistency 0.
    assert pool.results(n_boot=20)["consistency"] == 0.0


def test_a_vote_needs_its_own_pair_a_valid_choice_and_time_to_listen(pool):
    p = pool.draw("r1")
    for call, message in [
        (lambda: pool.vote(p.pair_id, "r1", "A", "B"), "listen to both clips first"),
        (lambda: pool.vote(p.pair_id, "r2", "A", "B", now=later()), "belongs to another listener"),
        (lambda: pool.vote("nope", "r1", "A", "B", now=later()), "pair_id 'nope' is unknown"),
        (lambda: pool.vote(p.pair_id, "r1", "C", "B", now=later()), "quality must be one of A, B, same"),
        (lambda: pool.vote(p.pair_id, "r1", "A", "maybe", now=later()), "match must be one of A, B, same"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    assert pool.store.pair(p.pair_id)["vote"] is None                 # nothing stored
    pool.vote(p.pair_id, "r1", "B", "same", "warmer", now=later())
    assert pool.store.pair(p.pair_id)["vote"] == {"quality": "B", "match": "same", "comment": "warmer"}


def test_concurrent_votes_are_all_stored_and_results_rank_them(pool):
    pairs = [pool.draw(f"r{k}") for k in range(60)]
    errors = []

    def vote(p, k):
        try:
            row = pool.store.pair(p.pair_id)
            # rwkv wins whenever it plays; otherwise markov over convlstm.
            best = "rwkv" if "rwkv" in (row["system_a"], row["system_b"]) else "markov"
            choice = "A" if row["system_a"] == best else "B"
            pool.vote(p.pair_id, f"r{k}", choice, choice, now=later())
        except Exception as exc:          # noqa: BLE001 - collected and asserted below
            errors.append(exc)
    threads = [threading.Thread(target=vote, args=(p, k)) for k, p in enumerate(pairs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r["quality"] is not None for r in pool.store.pair_rows()) == 60
    results = pool.results(n_boot=50)
    assert results["votes"] == 60 and results["raters"] == 60
    ranking = [name for name, _ in results["questions"]["quality"]["ranking"]]
    assert ranking == ["rwkv", "markov", "convlstm"]
    with pytest.raises(PermissionError):
        pool.store.export_pairs_csv("wrong")
    exported = pool.store.export_pairs_csv("pw")
    assert exported.count("\n") == 61 and "system_a" in exported.splitlines()[0]


# ---- real clips ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("system", ["rwkv", "markov", "convlstm"])
def test_clips_are_untagged_files_named_by_a_random_id(system, tmp_path):
    from pedalboard.io import AudioFile
    path = render_clip(system, "rainy night study beats", 0, 6.0, tmp_path)
    assert not any(name in path.name for name in SYSTEMS)
    data = path.read_bytes()
    assert not any(name.encode() in data.lower() for name in SYSTEMS + ("text2lofi", "piano@", "pop909"))
    with AudioFile(str(path)) as f:
        assert abs(f.frames / f.samplerate - 6.0) < 0.1
        audio = f.read(f.frames)
    assert np.sqrt(np.mean(audio ** 2)) > 0.01                         # music, not silence


def test_results_with_no_votes_are_empty_not_an_error(pool):
    r = pool.results(n_boot=10)
    assert r["votes"] == 0 and r["questions"]["quality"] == {"pairs": [], "ranking": []}
    assert bradley_terry([]) == {}

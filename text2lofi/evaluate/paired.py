"""Statistics of blind paired listening tests: win rates with confidence intervals, a Bradley-Terry ranking with
bootstrap intervals, Likert means with intervals, rater consistency, and how many votes a difference needs.
Pure (numpy only) so the page, the admin export and the tests share one implementation.

A vote compares system `a` (heard as A or B) with system `b` and says "a", "b" or "same"; "same" counts half a
win to each side (the usual tie rule for Bradley-Terry, Davidson 1970 being the heavier alternative).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

Z95 = 1.959963984540054          # two-sided 95% normal quantile
Z80_POWER = 0.8416212335729143   # one-sided quantile for 80% power


@dataclass(frozen=True)
class Vote:
    a: str            # one system of the pair
    b: str            # the other
    winner: str       # a, b, or "same"


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion (successes may be fractional: ties count half)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def pair_table(votes: Iterable[Vote]) -> list[dict]:
    """Per unordered system pair (sorted names): votes, wins of each, ties, the first's win rate and its 95%
    Wilson interval."""
    cells: dict[tuple[str, str], list[float]] = {}
    for v in votes:
        first, second = sorted((v.a, v.b))
        cell = cells.setdefault((first, second), [0, 0, 0])
        cell[0 if v.winner == first else 1 if v.winner == second else 2] += 1
    rows = []
    for (first, second), (w1, w2, ties) in sorted(cells.items()):
        n = w1 + w2 + ties
        lo, hi = wilson(w1 + 0.5 * ties, n)
        rows.append({"system": first, "versus": second, "votes": n, "wins": w1, "losses": w2, "ties": ties,
                     "win_rate": (w1 + 0.5 * ties) / n, "ci95": (lo, hi)})
    return rows


def bradley_terry(votes: Sequence[Vote], systems: Sequence[str] | None = None, iterations: int = 1000,
                  tolerance: float = 1e-10) -> dict[str, float]:
    """Bradley-Terry strengths by Hunter's (2004) MM iteration, normalised to a geometric mean of 1:
    P(i beats j) = s_i / (s_i + s_j). Ties count half a win each. A system with no wins gets a tiny strength
    rather than 0 (a prior of one tie against the field keeps the MLE finite)."""
    names = list(systems) if systems else sorted({x for v in votes for x in (v.a, v.b)})
    if not names:
        return {}
    index = {s: k for k, s in enumerate(names)}
    k = len(names)
    wins = np.zeros((k, k))                  # wins[i, j]: times i beat j (ties: half each)
    for v in votes:
        i, j = index[v.a], index[v.b]
        if v.winner == v.a:
            wins[i, j] += 1
        elif v.winner == v.b:
            wins[j, i] += 1
        else:
            wins[i, j] += 0.5
            wins[j, i] += 0.5
    if (wins.sum(axis=1) == 0).any() or (wins.sum(axis=0) == 0).any():
        wins = wins + 0.5 / max(1, k - 1) * (1 - np.eye(k))
    games = wins + wins.T
    total_wins = wins.sum(axis=1)
    s = np.ones(k)
    for _ in range(iterations):
        denom = (games / (s[:, None] + s[None, :])).sum(axis=1)
        new = total_wins / denom
        new /= np.exp(np.mean(np.log(new)))
        if np.max(np.abs(new - s)) < tolerance:
            s = new
            break
        s = new
    return {name: float(s[index[name]]) for name in names}


def bradley_terry_intervals(votes: Sequence[Vote], n_boot: int = 200, seed: int = 0
                            ) -> dict[str, tuple[float, float, float]]:
    """Strength and its 95% bootstrap percentile interval per system: (strength, low, high), votes resampled
    with replacement."""
    votes = list(votes)
    names = sorted({x for v in votes for x in (v.a, v.b)})
    point = bradley_terry(votes, names)
    rng = np.random.default_rng(seed)
    draws = np.array([[bradley_terry([votes[i] for i in rng.integers(0, len(votes), len(votes))], names)[s]
                       for s in names] for _ in range(n_boot)]) if votes else np.empty((0, len(names)))
    out = {}
    for k, name in enumerate(names):
        lo, hi = (np.percentile(draws[:, k], [2.5, 97.5]) if len(draws) else (point[name], point[name]))
        out[name] = (point[name], float(lo), float(hi))
    return out


def mean_interval(values: Sequence[float], z: float = Z95) -> tuple[float | None, float | None, float | None]:
    """Mean and its normal-approximation 95% interval (mean +- z * sd / sqrt(n)); (None, None, None) if empty."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return (None, None, None)
    m = float(x.mean())
    if len(x) == 1:
        return (m, None, None)
    half = z * float(x.std(ddof=1)) / math.sqrt(len(x))
    return (m, m - half, m + half)


def consistency(repeats: Iterable[tuple[str, str]]) -> tuple[int, float | None]:
    """(repeated pairs, share where the rater chose the same system both times) from (first, second) winners."""
    pairs = list(repeats)
    if not pairs:
        return 0, None
    return len(pairs), sum(a == b for a, b in pairs) / len(pairs)


def votes_needed(win_rate: float, power_z: float = Z80_POWER, alpha_z: float = Z95) -> int:
    """Votes on one pair to tell `win_rate` from a coin flip (0.5) with 80% power at a two-sided 5% level
    (normal approximation for one proportion)."""
    p = float(win_rate)
    if not 0.0 < p < 1.0 or p == 0.5:
        raise ValueError(f"win_rate must be in (0, 1) and not 0.5, got {win_rate}")
    n = ((alpha_z * 0.5 + power_z * math.sqrt(p * (1 - p))) / (p - 0.5)) ** 2
    return int(math.ceil(n))

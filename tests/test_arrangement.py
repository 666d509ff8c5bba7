"""The shared bar grid and the section plan (pure functions, no models)."""
import pytest

from text2lofi import Conditions
from text2lofi.compose.arrangement import BarGrid, plan_sections, progression_for
from text2lofi.compose.theory import chord_tones


def test_grid_has_no_drift_after_twelve_hours():
    g = BarGrid(tempo_bpm=83.0)
    bars = g.bars_for(12 * 3600 * 44100)
    # Bar starts are computed from the index: the last one is exactly where the tempo says.
    assert g.bar_start(bars) == round(bars * 4 * 60 / 83.0 * 44100)
    exact = 4 * 60 / 83.0 * 44100        # 127518.07 samples per bar
    assert all(g.bar_start(i + 1) - g.bar_start(i) in (int(exact), int(exact) + 1) for i in range(0, bars, 997))


def test_grid_positions_inside_a_bar():
    g = BarGrid(tempo_bpm=120.0)         # 0.5 s per beat, 2 s per bar
    assert g.sample_at(3, 1.5) == round((3 * 2.0 + 0.75) * 44100)


@pytest.mark.parametrize("n_bars", [1, 3, 6, 7, 15, 16, 31, 80, 301])
@pytest.mark.parametrize("piano,drums", [(True, True), (True, False), (False, True)])
def test_sections_cover_exactly_the_bars(n_bars, piano, drums):
    sections = list(plan_sections(n_bars, piano, drums))
    assert sum(s.n_bars for s in sections) == n_bars
    assert all(1 <= s.phrase_bars <= s.n_bars for s in sections)
    # A part that is off is never switched on by the plan.
    assert all(s.piano <= piano and s.drums <= drums for s in sections)
    # Something always plays.
    assert all(s.piano or s.drums for s in sections)


def test_long_tracks_have_intro_breaks_and_outro():
    names = [s.name for s in plan_sections(80, True, True)]
    assert names[0] == "intro" and names[-1] == "outro" and "break" in names
    intro, brk = next(s for s in plan_sections(80, True, True) if s.name == "intro"), \
        next(s for s in plan_sections(80, True, True) if s.name == "break")
    assert intro.piano and not intro.drums and not brk.drums


def test_endless_plan_never_ends_with_an_outro():
    gen = plan_sections(None, True, True)
    names = [next(gen).name for _ in range(50)]
    assert "outro" not in names and names.count("break") >= 10


def test_chords_and_default_progression_follow_the_key():
    assert chord_tones("Am9") == (9, (0, 4, 7, 9))       # read as Am7: A C E G
    with pytest.raises(ValueError):
        chord_tones("xyz")
    c = Conditions(key="Eb", mode="major")
    prog = progression_for(c)
    assert prog[0].startswith("Eb") and len(prog) == 4
    c2 = Conditions(key="A", mode="minor", progression=["Am7", "nonsense!", "G7"])
    assert progression_for(c2) == ["Am7", "G7"] and c2.warnings

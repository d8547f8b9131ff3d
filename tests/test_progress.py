"""Progress bars: on by default for long work, a tick per step, silenced by progress=False."""

from __future__ import annotations

import builtins

import pytest

import mixedmodels as mm
from mixedmodels import progress as progress_module
from mixedmodels.inference.derivatives import evaluation_count
from mixedmodels.progress import progress_bar, step_bar


def _dyestuff():
    return mm.lmer("Yield ~ 1 + (1 | Batch)", mm.datasets.load("Dyestuff"))


def test_progress_false_is_the_iterable_itself():
    items = [1, 2, 3]
    assert progress_bar(items, enabled=False) is items


def test_a_bar_ticks_per_item_and_stays(capsys):
    assert list(progress_bar(range(5), enabled=True, desc="bootstrap")) == list(range(5))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "bootstrap" in captured.err and "5/5" in captured.err
    assert captured.err.endswith("\n")  # the finished bar is kept


def test_the_default_bar_waits_for_long_work(capsys, monkeypatch):
    assert list(progress_bar(range(3))) == [0, 1, 2]
    assert capsys.readouterr().err == ""  # quick: nothing shown
    monkeypatch.setattr(progress_module, "DELAY_SECONDS", 0.0)
    list(progress_bar(range(3), desc="long"))
    assert "long" in capsys.readouterr().err


def test_without_tqdm_there_is_no_bar(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name == "tqdm" or name.startswith("tqdm."):
            raise ImportError("no tqdm here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    assert list(progress_bar(range(3), enabled=True)) == [0, 1, 2]
    with step_bar(3, "x", True) as bar:
        bar.update(1)
    assert capsys.readouterr().err == ""


def test_bootstrap_ticks_per_replicate(capsys):
    m = _dyestuff()
    m.bootstrap(4, seed=1, progress=True)
    err = capsys.readouterr().err
    assert "bootstrap" in err and "4/4" in err and "replicate" in err
    m.bootstrap(4, seed=1, progress=False)
    assert capsys.readouterr().err == ""


def test_profile_ticks_per_point_and_ends_full(capsys):
    m = _dyestuff()
    table = m.profile(progress=True)
    err = capsys.readouterr().err
    assert "profile" in err and "100%" in err
    # The last state of the bar counts every point walked (the estimates excluded).
    final = err.replace("\r", "\n").strip().splitlines()[-1]
    done, total = final.split("|")[2].split()[0].split("/")
    assert int(done) == int(total) >= len(table) - table["parameter"].nunique()
    m.profile(progress=False)
    assert capsys.readouterr().err == ""


def test_satterthwaite_ticks_per_evaluation(capsys):
    m = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    m.coef_table(progress=True)
    err = capsys.readouterr().err
    n = evaluation_count(len(m.theta))
    assert "Satterthwaite df" in err and f"{n}/{n}" in err


@pytest.mark.parametrize("enabled", [False, None])
def test_quick_work_prints_nothing_by_default(enabled, capsys):
    m = mm.lmer("Reaction ~ Days + (1 | Subject)", mm.datasets.load("sleepstudy"))
    m.coef_table(progress=enabled)
    assert capsys.readouterr().err == ""

"""The long commands' progress: a tqdm bar on a terminal, plain lines elsewhere, nothing when disabled."""

from __future__ import annotations

import io

import pytest

from blender_serve.progress import PlainProgress, format_duration, progress_bar


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_every_period_and_a_last_one():
    out, clock = io.StringIO(), _Clock()
    with PlainProgress(100, "collect", "rec", file=out, period_s=10, clock=clock) as bar:
        for t in range(1, 41):
            clock.t = t * 0.5  # 2 records a second
            bar.update(1)
            if t == 30:
                bar.set_postfix(loss="0.5000")
    assert out.getvalue().splitlines() == [
        "collect: 20/100 rec (20%), 10s elapsed, ~40s left",
        "collect: 40/100 rec (40%), 20s elapsed, ~30s left, loss=0.5000",
        "collect: 40/100 rec (40%), in 20s, loss=0.5000",
    ]


def test_an_unknown_total_and_a_resumed_run():
    out, clock = io.StringIO(), _Clock()
    bar = PlainProgress(None, "score", "rec", file=out, period_s=5, clock=clock)
    clock.t = 6
    bar.update(3)
    bar.close()
    bar.close()  # twice is once
    assert out.getvalue().splitlines() == ["score: 3 rec, 6s elapsed", "score: 3 rec, in 6s"]
    out, clock = io.StringIO(), _Clock()
    bar = PlainProgress(10, "train-ranker", "step", initial=5, file=out, period_s=1, clock=clock)
    clock.t = 2
    bar.update(1)  # 1 step in 2 s since the resume: 4 left, 8 s
    assert out.getvalue() == "train-ranker: 6/10 step (60%), 2s elapsed, ~8s left\n"


def test_disabled_prints_nothing():
    out = io.StringIO()
    with progress_bar(10, "eval", enabled=False, file=out) as bar:
        bar.update(10)
    assert out.getvalue() == ""


def test_tqdm_on_a_terminal_plain_lines_in_a_pipe(monkeypatch):
    pytest.importorskip("tqdm")
    with progress_bar(3, "x", file=_Terminal()) as bar:
        assert type(bar).__module__.startswith("tqdm")
    assert isinstance(progress_bar(3, "x", file=io.StringIO()), PlainProgress)
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):  # the `eval` extra not installed
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    assert isinstance(progress_bar(3, "x", file=_Terminal()), PlainProgress)


@pytest.mark.parametrize("seconds, text", [(0.4, "0s"), (42, "42s"), (185, "3m05s"), (3720, "1h02m"), (-1, "0s")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text

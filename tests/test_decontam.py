"""Decontamination by normalized question text."""

from __future__ import annotations

import pytest

from distill.data.decontam import decontaminate, normalize_question


@pytest.mark.parametrize(
    "a, b, same",
    [
        ("Tom has 3 apples.", "tom has 3 apples", True),
        ("Tom  has\n3 apples ?", "Tom has 3 apples?", True),
        ("Ｔｏｍ has ３ apples.", "Tom has 3 apples.", True),  # full-width
        ("小明 有 3 个 苹果 。", "小明有3个苹果。", True),  # segmented Math23K text vs original
        ("Tom has 3 apples.", "Tom has 4 apples.", False),  # numbers matter
        ("Tom has 3 apples.", "Tom has 3 pears.", False),
    ],
)
def test_normalize_question(a: str, b: str, same: bool) -> None:
    assert (normalize_question(a) == normalize_question(b)) is same


def _row(i: str, q: str, ds: str = "mawps", split: str = "train") -> dict:
    return {"id": f"{ds}/{i}", "dataset": ds, "split": split, "question": q}


def test_decontaminate_counts_per_pair_and_keeps_removed_rows() -> None:
    train = [_row("1", "A has 3."), _row("2", "B has 4."), _row("3", "C has 5."), _row("4", "a HAS 3 ")]
    evals = [
        _row("t1", "A has 3.", split="test"),
        _row("s1", "C has 5!", ds="svamp", split="all"),
        _row("s2", "A has 3", ds="svamp", split="all"),
    ]
    kept, removed, report = decontaminate(train, evals)
    assert [r["id"] for r in kept] == ["mawps/2"]
    assert sorted(r["id"] for r in removed) == ["mawps/1", "mawps/3", "mawps/4"]
    d = report.to_dict()
    assert d["train_rows"] == 4 and d["kept"] == 1 and d["removed"] == 3
    pairs = {(p["train"], p["eval"]): p["removed"] for p in d["removed_by_pair"]}
    assert pairs == {
        ("mawps:train", "mawps:test"): 2,
        ("mawps:train", "svamp:all"): 3,
    }


def test_no_eval_rows_keeps_everything() -> None:
    train = [_row("1", "x"), _row("2", "y")]
    kept, removed, report = decontaminate(train, [])
    assert len(kept) == 2 and not removed and report.kept == 2

"""Dataset loaders: every loader on its hand-written fixture (tests/fixtures/<dataset>/, the
published format, with deliberately bad records), the errors for unknown splits and missing
files, the generic file loader, and (marked ``shared_data``) the real files' counts."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from distill.data import (
    DataError,
    DataNotFoundError,
    UnknownSplitError,
    dataset_names,
    get_loader,
)
from distill.data.base import LoadResult
from distill.data.loaders import MissingColumnError, load_file
from distill.records import PROBLEM_SCHEMA, to_table

FIXTURES = Path(__file__).resolve().parent / "fixtures"

BUILTIN = ["addsub", "asdiv", "asdiv-a", "gsm8k", "math23k", "math500", "mawps", "multiarith",
           "singleeq", "svamp", "weak12k"]

# dataset -> split -> (problems, rejects) on the fixtures
EXPECTED = {
    "gsm8k": {"train": (3, 6), "test": (2, 0)},
    "mawps": {"all": (5, 5), "train": (2, 0), "valid": (1, 0), "test": (1, 0)},
    "math23k": {"all": (6, 3), "train": (3, 2), "valid": (1, 2), "test": (2, 2)},
    "svamp": {"all": (3, 3)},
    "asdiv": {"all": (11, 4)},
    "asdiv-a": {"all": (8, 4), "fold0": (2, 0), "fold1": (4, 1), "fold2": (1, 1),
                "fold3": (1, 1), "fold4": (1, 0)},
    "multiarith": {"all": (2, 2)},
    "addsub": {"all": (2, 1)},
    "singleeq": {"all": (3, 1)},
    "weak12k": {"train": (2, 0), "valid": (1, 0), "test": (1, 0), "all": (3, 1)},
    "math500": {"test": (2, 3)},
}
SPLITS = [(name, split) for name, splits in EXPECTED.items() for split in splits]


def load(name: str, split: str, data_dir: Path = FIXTURES) -> LoadResult:
    return get_loader(name).load(split, data_dir)


def by_id(result: LoadResult) -> dict[str, dict]:
    return {p["id"]: p for p in result.problems}


def meta(row: dict) -> dict:
    return json.loads(row["meta"])


def rejects(result: LoadResult) -> list[tuple[str, str, str]]:
    """(file name, position, field) of every reject."""
    return [(Path(r.source).name, r.record, r.field) for r in result.rejects]


# --------------------------------------------------------------------------- registry / common


def test_every_builtin_loader_is_registered_with_layout_and_description():
    assert set(BUILTIN) <= set(dataset_names())
    for name in BUILTIN:
        loader = get_loader(name)
        assert loader.name == name
        assert loader.layout and loader.description, name


@pytest.mark.parametrize("name", BUILTIN)
def test_splits_lists_the_fixture_splits(name):
    assert get_loader(name).splits(FIXTURES) == list(EXPECTED[name])


@pytest.mark.parametrize("name,split", SPLITS)
def test_fixture_counts_schema_and_accounting(name, split):
    result = load(name, split)
    assert (len(result.problems), len(result.rejects)) == EXPECTED[name][split]
    to_table(result.problems, PROBLEM_SCHEMA)  # every row fits the Problem schema
    ids = [p["id"] for p in result.problems]
    assert len(ids) == len(set(ids))
    assert all(i.startswith(f"{name}/") for i in ids)
    assert {p["dataset"] for p in result.problems} <= {name}
    assert {p["split"] for p in result.problems} <= {split}
    for r in result.rejects:
        assert (r.dataset, r.split) == (name, split)
        assert r.reason and r.raw is not None and r.field and r.record
        assert Path(r.source).is_file()
    assert result.problems == load(name, split).problems  # deterministic


@pytest.mark.parametrize("name", BUILTIN)
def test_unknown_split_lists_the_splits_present(name):
    with pytest.raises(UnknownSplitError) as err:
        load(name, "dev")
    msg = str(err.value)
    assert "'dev'" in msg
    for split in EXPECTED[name]:
        assert split in msg


@pytest.mark.parametrize("name", BUILTIN)
def test_missing_files_raise_data_not_found_naming_the_path(name, tmp_path):
    loader = get_loader(name)
    assert loader.splits(tmp_path) == []
    for split in EXPECTED[name]:
        with pytest.raises(DataNotFoundError) as err:
            loader.load(split, tmp_path)
        assert str(tmp_path) in str(err.value)
    with pytest.raises(UnknownSplitError) as err:
        loader.load("dev", tmp_path)
    assert loader.layout in str(err.value)


def test_a_split_whose_own_file_is_missing_names_that_file(tmp_path):
    shutil.copytree(FIXTURES / "mawps", tmp_path / "mawps")
    (tmp_path / "mawps/mwptoolkit_split/validset.json").unlink()
    loader = get_loader("mawps")
    assert loader.splits(tmp_path) == ["all", "train", "test"]
    with pytest.raises(DataNotFoundError, match="validset.json"):
        loader.load("valid", tmp_path)
    with pytest.raises(UnknownSplitError, match=r"missing: .*validset.json.*available: all"):
        loader.check_split("valid", tmp_path)
    loader.check_split("train", tmp_path)


def test_a_json_array_file_that_does_not_parse_is_a_data_error(tmp_path):
    (tmp_path / "svamp").mkdir()
    (tmp_path / "svamp/SVAMP.json").write_text('[{"ID": "chal-1", "Body": "x"', encoding="utf-8")
    with pytest.raises(DataError, match="SVAMP.json: not valid JSON"):
        load("svamp", "all", tmp_path)


def test_a_json_file_that_is_not_an_array_is_a_data_error(tmp_path):
    (tmp_path / "svamp").mkdir()
    (tmp_path / "svamp/SVAMP.json").write_text('{"ID": "chal-1"}', encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON array"):
        load("svamp", "all", tmp_path)


# --------------------------------------------------------------------------- gsm8k


def test_gsm8k_rows():
    result = load("gsm8k", "train")
    rows = by_id(result)
    assert list(rows) == ["gsm8k/train-0", "gsm8k/train-1", "gsm8k/train-8"]
    first = rows["gsm8k/train-0"]
    assert (first["lang"], first["answer"], first["answer_raw"], first["equation"]) == \
        ("en", "12", "12", None)
    assert meta(first) == {"solution": "Tom has 3 * 4 = <<3*4=12>>12 pens.\n#### 12"}
    comma = rows["gsm8k/train-1"]
    assert (comma["answer"], comma["answer_raw"]) == ("2400", "2,400")
    assert rows["gsm8k/train-8"]["answer"] == "30"  # the last '####' wins
    assert [p["id"] for p in load("gsm8k", "test").problems] == ["gsm8k/test-0", "gsm8k/test-1"]


def test_gsm8k_rejects():
    result = load("gsm8k", "train")
    assert rejects(result) == [
        ("train.jsonl", "line 3", "record"),   # malformed JSON
        ("train.jsonl", "line 5", "answer"),   # no answer field
        ("train.jsonl", "line 6", "question"), # blank question
        ("train.jsonl", "line 7", "answer"),   # no '####'
        ("train.jsonl", "line 8", "answer"),   # '#### Bob'
        ("train.jsonl", "line 10", "record"),  # a JSON list, not an object
    ]
    reasons = [r.reason for r in result.rejects]
    assert reasons[0].startswith("malformed JSON")
    assert reasons[1] == "missing"
    assert "####" in reasons[3]
    assert "not a number" in reasons[4] and "Bob" in reasons[4]
    lines = (FIXTURES / "gsm8k/train.jsonl").read_text(encoding="utf-8").splitlines()
    assert result.rejects[0].raw == lines[2]  # the line exactly as read


# --------------------------------------------------------------------------- mawps


def test_mawps_rows_and_duplicate_ids():
    result = load("mawps", "all")
    rows = by_id(result)
    assert list(rows) == ["mawps/1", "mawps/2", "mawps/3", "mawps/2#2", "mawps/7"]
    one = rows["mawps/1"]
    assert (one["lang"], one["answer"], one["answer_raw"], one["equation"]) == \
        ("en", "20", "20.0", "x=4*5")
    assert meta(one) == {"segmented_text": one["question"]}
    assert (rows["mawps/2"]["answer"], rows["mawps/2"]["answer_raw"]) == ("6", "6")  # ans as string
    assert rows["mawps/3"]["equation"] == "(2.0*x)+3.0=11.0"  # implicit equations kept
    dup = rows["mawps/2#2"]
    assert dup["question"].startswith("Jo has 7 pens")
    assert meta(dup)["duplicate_of"] == "mawps/2"


def test_mawps_rejects():
    result = load("mawps", "all")
    assert rejects(result) == [
        ("MAWPS.json", "index 3", "ans"),
        ("MAWPS.json", "index 4", "original_text"),
        ("MAWPS.json", "index 5", "ans"),
        ("MAWPS.json", "index 6", "id"),
        ("MAWPS.json", "index 8", "record"),
    ]
    assert [r.reason for r in result.rejects][:4] == [
        "missing", "empty", "not a number: 'many'", "missing"]
    assert json.loads(result.rejects[0].raw)["id"] == 4


def test_mawps_split_files_share_the_ids_of_mawps_json():
    everything = by_id(load("mawps", "all"))
    for split in ("train", "valid", "test"):
        for row in load("mawps", split).problems:
            assert row["question"] == everything[row["id"]]["question"]


# --------------------------------------------------------------------------- math23k


def test_math23k_rows():
    result = load("math23k", "all")
    rows = by_id(result)
    assert list(rows) == ["math23k/1", "math23k/2", "math23k/5", "math23k/7", "math23k/8",
                          "math23k/7#2"]
    one = rows["math23k/1"]
    assert (one["lang"], one["answer"], one["equation"]) == ("zh", "8", "x=3+5")
    assert meta(one) == {
        "segmented_text": "小明 有 3 个 苹果 ， 又 买 了 5 个 ， 现在 一共 有 多少 个 苹果 ？"}
    assert rows["math23k/5"]["answer"] == "14.4"
    assert meta(rows["math23k/7#2"])["duplicate_of"] == "math23k/7"


def test_math23k_malformed_object_is_a_reject_and_reading_resumes():
    result = load("math23k", "all")
    assert rejects(result) == [
        ("Math_23K.json", "line 15", "record"),
        ("Math_23K.json", "line 22", "ans"),
        ("Math_23K.json", "line 35", "original_text"),
    ]
    bad = result.rejects[0]
    assert bad.reason.startswith("malformed JSON")
    assert bad.raw.startswith('{\n    "id":"3"') and bad.raw.endswith("}")
    assert '"id":"4"' not in bad.raw


def test_math23k_splits():
    train, valid, test = (load("math23k", s) for s in ("train", "valid", "test"))
    assert [p["id"] for p in valid.problems] == ["math23k/2"]
    assert [p["id"] for p in test.problems] == ["math23k/5", "math23k/8"]
    assert [p["id"] for p in train.problems] == ["math23k/1", "math23k/7", "math23k/7#2"]
    # the malformed object (id 3) is listed in valid: its reject belongs to valid
    assert rejects(valid) == [("Math_23K.json", "line 15", "record"),
                              ("valid23k_processed.json", "index 2", "id")]
    assert "'99'" in valid.rejects[1].reason and "not in Math_23K.json" in valid.rejects[1].reason
    assert rejects(test) == [("test23k_processed.json", "index 2", "id"),
                             ("test23k_processed.json", "index 3", "id")]
    assert "listed twice" in test.rejects[0].reason
    assert rejects(train) == [("Math_23K.json", "line 22", "ans"),
                              ("Math_23K.json", "line 35", "original_text")]
    # train + valid + test cover Math_23K.json exactly once
    everything = load("math23k", "all")
    split_ids = [p["id"] for r in (train, valid, test) for p in r.problems]
    assert sorted(split_ids) == sorted(p["id"] for p in everything.problems)


def test_math23k_also_reads_the_records_written_as_one_json_array(tmp_path):
    (tmp_path / "math23k").mkdir()
    records = [{"id": "1", "original_text": "小明有3个苹果，又买了5个，一共有几个？",
                "segmented_text": "", "equation": "x=3+5", "ans": "8"}, ["not an object"]]
    (tmp_path / "math23k/Math_23K.json").write_text(json.dumps(records), encoding="utf-8")
    result = load("math23k", "all", tmp_path)
    assert [p["id"] for p in result.problems] == ["math23k/1"]
    assert rejects(result) == [("Math_23K.json", "line 1, index 1", "record")]


# --------------------------------------------------------------------------- svamp


def test_svamp():
    result = load("svamp", "all")
    rows = by_id(result)
    assert list(rows) == ["svamp/chal-1", "svamp/chal-2", "svamp/chal-2#2"]
    one = rows["svamp/chal-1"]
    assert one["question"] == ("Lisa has 12 stickers. She gives 5 stickers to her brother. "
                               "How many stickers does Lisa have now?")
    assert (one["answer"], one["answer_raw"], one["equation"]) == ("7", "7.0", "( 12.0 - 5.0 )")
    assert meta(one)["Type"] == "Subtraction" and meta(one)["ID"] == "chal-1"
    assert meta(rows["svamp/chal-2#2"])["duplicate_of"] == "svamp/chal-2"
    assert rejects(result) == [("SVAMP.json", "index 2", "Answer"),
                               ("SVAMP.json", "index 3", "Body"),
                               ("SVAMP.json", "index 4", "Answer")]


# --------------------------------------------------------------------------- asdiv / asdiv-a


def test_asdiv_rows_units_and_non_numeric_answers():
    result = load("asdiv", "all")
    rows = by_id(result)
    assert list(rows) == ["asdiv/nluds-0001", "asdiv/nluds-0002", "asdiv/nluds-0003",
                          "asdiv/nluds-0004", "asdiv/nluds-0008", "asdiv/nluds-0010",
                          "asdiv/nluds-0011", "asdiv/nluds-0012", "asdiv/nluds-0013",
                          "asdiv/nluds-0014", "asdiv/nluds-0015"]
    one = rows["asdiv/nluds-0001"]
    assert one["question"] == ("Three red balls and four blue balls are in a bag. "
                               "How many balls are in the bag?")
    # published `7+2=9` form: the expression is the equation, the result is checked
    assert (one["answer"], one["answer_raw"], one["equation"]) == ("7", "7 (balls)", "3+4")
    m = meta(one)
    assert (m["unit"], m["Solution-Type"], m["Grade"], m["Source"], m["Formula"]) == \
        ("balls", "Addition", "1", "made-up", "3+4=7")
    assert "formula_check" not in m
    three = rows["asdiv/nluds-0003"]
    assert (three["answer"], three["answer_raw"], three["equation"]) == (None, "Emma", None)
    assert meta(three)["Formula"] == "9>6"  # entity unescaped
    assert meta(three)["formula_check"] == "unparsable"
    assert (rows["asdiv/nluds-0004"]["answer"], rows["asdiv/nluds-0004"]["answer_raw"]) == \
        (None, "3:30 p.m.")


def test_asdiv_formulas_as_published():
    """ASDiv writes ``expression=result``; remainders, several formulas, label noise."""
    rows = by_id(load("asdiv", "all"))

    def got(pid: str) -> tuple:
        row = rows[f"asdiv/{pid}"]
        m = meta(row)
        return row["equation"], m.get("formula_check"), m["Formula"]

    assert got("nluds-0002") == ("4*3", None, "4*3=12")
    assert got("nluds-0008") == ("5", None, "5=5")
    assert got("nluds-0012") == ("4.80/4", None, "4.80/4=1.20")  # 1.20 is the answer 1.2
    assert got("nluds-0013") == ("(9-6)*2", None, "(9-6)*2=6")
    assert meta(rows["asdiv/nluds-0013"])["Solution-Type/Subgoal-1"] == "Subtraction"
    # Ceil-Division: 248/16 = 15 r8, answer 16 -- no floor/ceiling in the equation grammar
    assert got("nluds-0011") == (None, "remainder", "248/16=15 r8")
    assert rows["asdiv/nluds-0011"]["answer"] == "16"
    # label noise loads as published (data stats counts it) and says why
    assert got("nluds-0014") == ("15+4", "disagrees", "15+4=19")
    assert meta(rows["asdiv/nluds-0014"])["formula_note"] == \
        "the formula gives 19, the answer is '18 (marbles)'"
    assert got("nluds-0015") == (None, "several", "8-3=5;5-2=3")
    assert got("nluds-0004") == (None, "unparsable", "2:00+1:30=3:30")


@pytest.mark.parametrize("formula, answer, equation, check", [
    ("7+2=9", "9 (apples)", "7+2", "agrees"),
    ("(12.46/2)*6=37.38", "37.38 (dollars)", "(12.46/2)*6", "agrees"),
    ("20-8-3=9", "9 (dollars)", "20-8-3", "agrees"),
    ("1050/65=16 r10", "16 (cups)", None, "remainder"),
    ("39/7=5 r4", "5 (balloons)", None, "remainder"),
    ("25%*40=10", "10", "25%*40", "agrees"),
    ("12*8=96 square feet", "96 (square feet)", "12*8", "agrees"),
    ("x+5=12", "7", "x+5=12", "agrees"),          # a formula with a variable is kept whole
    ("x+5=12", "8", None, "disagrees"),           # ... only when it gives the answer
    ("6+2=9", "9", "6+2", "inconsistent"),        # the expression does not give its result
    ("6+2=8", "9 (birds)", "6+2", "disagrees"),
    ("9-6=3", "Emma", None, "non_numeric_answer"),
    ("9>6", "Emma", None, "unparsable"),
    ("1/0=1", "1", None, "unparsable"),
    ("8-3=5;5-2=3", "5; 3", None, "several"),
    ("  ", "3", None, "unparsable"),
])
def test_asdiv_read_formula(formula: str, answer: str, equation, check: str):
    from distill.data.loaders.asdiv import read_formula

    reading = read_formula(formula, answer)
    assert (reading.equation, reading.check) == (equation, check)
    assert (reading.note is None) == (check == "agrees")


def test_asdiv_rejects():
    result = load("asdiv", "all")
    assert rejects(result) == [
        ("ASDiv.xml", "line 32", "record"),    # unescaped '&'
        ("ASDiv.xml", "line 39", "Question"),  # no <Question>
        ("ASDiv.xml", "line 45", "Answer"),    # blank <Answer>
        ("ASDiv.xml", "line 59", "record"),    # no </Problem>: the next problem still loads
    ]
    assert result.rejects[0].reason.startswith("malformed XML")
    assert result.rejects[0].raw.startswith('<Problem ID="nluds-0005"')
    assert result.rejects[0].raw.endswith("</Problem>")
    assert "no closing </Problem>" in result.rejects[3].reason


def test_asdiv_a_folds():
    result = load("asdiv-a", "all")
    rows = by_id(result)
    assert list(rows) == ["asdiv-a/nluds-0001", "asdiv-a/nluds-0002", "asdiv-a/nluds-0008",
                          "asdiv-a/nluds-0010", "asdiv-a/nluds-0011", "asdiv-a/nluds-0012",
                          "asdiv-a/nluds-0013", "asdiv-a/nluds-0014"]
    assert meta(rows["asdiv-a/nluds-0008"])["fold"] == "fold2"
    assert rows["asdiv-a/nluds-0001"]["answer"] == "7"
    assert sorted(rejects(result)) == [
        ("ASDiv.xml", "line 32", "record"),   # nluds-0005 (fold1) is malformed
        ("fold2.txt", "line 2", "ID"),        # nluds-0999 is not in ASDiv.xml
        ("fold3.txt", "line 3", "ID"),        # listed twice in fold3
        ("fold4.txt", "line 1", "ID"),        # also listed in fold0
    ]
    fold2 = load("asdiv-a", "fold2")
    assert "'nluds-0999'" in fold2.rejects[0].reason and fold2.rejects[0].raw == "nluds-0999"
    assert [p["id"] for p in load("asdiv-a", "fold4").problems] == ["asdiv-a/nluds-0001"]


# --------------------------------------------------------------------------- AI2 arithmetic sets


def test_multiarith():
    result = load("multiarith", "all")
    one = by_id(result)["multiarith/0"]
    assert (one["answer"], one["equation"]) == ("6", "X=((5.0+3.0)-2.0)")
    assert one["question"].startswith("Amy had 5 pencils")  # source padding stripped
    assert meta(one) == {"lAlignments": [8, 29, 52]}
    assert rejects(result) == [("MultiArith.json", "index 2", "lSolutions"),
                               ("MultiArith.json", "index 3", "iIndex")]


def test_addsub_string_solutions():
    result = load("addsub", "all")
    one = by_id(result)["addsub/1"]
    assert (one["answer"], one["answer_raw"], one["equation"]) == ("43", "43", "X = 70 - 27")
    assert rejects(result) == [("AddSub.json", "index 2", "lSolutions")]
    assert "not a number" in result.rejects[0].reason


def test_singleeq():
    result = load("singleeq", "all")
    rows = by_id(result)
    assert (rows["singleeq/0"]["answer"], rows["singleeq/0"]["equation"]) == ("43", "27+x=70")
    assert rows["singleeq/2"]["equation"] is None  # no lEquations: loads without an equation
    assert rejects(result) == [("questions.json", "index 3", "sQuestion")]


# --------------------------------------------------------------------------- weak12k


def test_weak12k_uses_ans_as_gold_and_keeps_answer_in_meta():
    result = load("weak12k", "all")
    rows = by_id(result)
    assert list(rows) == ["weak12k/1", "weak12k/2", "weak12k/2#2"]
    one = rows["weak12k/1"]
    assert (one["lang"], one["answer_raw"], one["equation"]) == ("zh", "0.666666666667", None)
    assert meta(one)["answer"] == 2.0  # not the gold: it disagrees with ans
    assert rows["weak12k/2"]["answer"] == "20"
    assert rejects(result) == [("weak12k.json", "index 2", "ans")]
    assert [p["id"] for p in load("weak12k", "train").problems] == ["weak12k/1", "weak12k/2"]


def test_weak12k_single_file_may_be_named_Weak12K(tmp_path):
    (tmp_path / "weak12k").mkdir()
    shutil.copy(FIXTURES / "weak12k/weak12k.json", tmp_path / "weak12k/Weak12K.json")
    loader = get_loader("weak12k")
    assert loader.splits(tmp_path) == ["all"]
    assert len(loader.load("all", tmp_path).problems) == 3
    with pytest.raises(UnknownSplitError, match="available: all"):
        loader.load("train2", tmp_path)
    with pytest.raises(DataNotFoundError, match="train.json"):
        loader.load("train", tmp_path)


# --------------------------------------------------------------------------- math500


def test_math500():
    result = load("math500", "test")
    rows = by_id(result)
    assert list(rows) == ["math500/test/prealgebra/1.json", "math500/test/precalculus/2.json"]
    one = rows["math500/test/prealgebra/1.json"]
    assert (one["answer"], one["equation"]) == ("14", None)
    m = meta(one)
    assert (m["subject"], m["level"], m["unique_id"]) == ("Prealgebra", 1, "test/prealgebra/1.json")
    assert "boxed{14}" in m["solution"]
    latex = rows["math500/test/precalculus/2.json"]
    assert latex["answer_raw"] == "\\frac{\\pi}{4}"  # kept whether or not it parses as a number
    assert rejects(result) == [("test.jsonl", "line 3", "problem"),
                               ("test.jsonl", "line 4", "answer"),
                               ("test.jsonl", "line 5", "record")]


# --------------------------------------------------------------------------- generic files

COLUMNS = {"question": "q", "answer": "a", "id": "uid", "equation": "eq"}


def test_load_file_jsonl():
    result = load_file(FIXTURES / "generic/problems.jsonl", COLUMNS)
    rows = by_id(result)
    assert list(rows) == ["problems/u1", "problems/u2"]
    assert (rows["problems/u1"]["answer"], rows["problems/u1"]["equation"]) == ("5", "x=2+3")
    assert meta(rows["problems/u1"]) == {"source": "book"}
    assert rows["problems/u2"]["equation"] is None  # row without the column
    assert [(r.record, r.field) for r in result.rejects] == [
        ("line 3", "a"), ("line 4", "q"), ("line 5", "record")]
    to_table(result.problems, PROBLEM_SCHEMA)


def test_load_file_csv():
    result = load_file(FIXTURES / "generic/problems.csv", COLUMNS, dataset="mine", lang="en")
    rows = by_id(result)
    assert list(rows) == ["mine/u1", "mine/u2", "mine/u6"]
    assert rows["mine/u6"]["question"] == "A question over\ntwo lines: 4 times 2?"
    assert {r["dataset"] for r in result.problems} == {"mine"}
    assert [(r.record, r.field) for r in result.rejects] == [
        ("line 4", "a"), ("line 5", "q"), ("line 6", "record")]
    assert result.rejects[2].raw == "u5,Too few fields,7"
    assert "has 3 fields" in result.rejects[2].reason


def test_load_file_parquet_default_mapping_and_row_index_ids(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "extra.parquet"
    pq.write_table(pa.table({
        "question": ["Lee has 4 cards and gets 4 more. How many cards?", None, "Why?"],
        "answer": ["8", "3", None],
        "grade": [2, 3, 1],
    }), path)
    result = load_file(path)
    assert [p["id"] for p in result.problems] == ["extra/0"]
    assert meta(result.problems[0]) == {"grade": 2}
    assert [(r.record, r.field, r.reason) for r in result.rejects] == [
        ("row 1", "question", "missing"), ("row 2", "answer", "missing")]


def test_load_file_without_an_answer_column(tmp_path):
    path = tmp_path / "unlabeled.jsonl"
    path.write_text(json.dumps({"text": "Kim has 3 pens and buys 2 more. How many?"}) + "\n",
                    encoding="utf-8")
    result = load_file(path, {"question": "text"})
    assert [(p["id"], p["answer"]) for p in result.problems] == [("unlabeled/0", None)]


def test_load_file_missing_column_names_it_and_lists_the_columns():
    with pytest.raises(MissingColumnError) as err:
        load_file(FIXTURES / "generic/problems.csv", {"question": "q", "answer": "gold"})
    msg = str(err.value)
    assert "'gold'" in msg and "uid, q, a, eq, source" in msg
    with pytest.raises(MissingColumnError, match="'answer'"):
        load_file(FIXTURES / "generic/problems.jsonl", {"question": "q", "answer": "answer"})


def test_load_file_bad_arguments(tmp_path):
    with pytest.raises(DataNotFoundError, match="nope.csv"):
        load_file(tmp_path / "nope.csv")
    (tmp_path / "x.txt").write_text("q\n", encoding="utf-8")
    with pytest.raises(DataError, match="cannot tell the format"):
        load_file(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="unknown key"):
        load_file(FIXTURES / "generic/problems.csv", {"question": "q", "gold": "a"})


# --------------------------------------------------------------------------- real files


@pytest.fixture(scope="module")
def real(shared_data_dir):
    """Loads of the real files, each done once, with their wall times."""
    cache: dict[tuple[str, str], tuple[LoadResult, float]] = {}

    def get(name: str, split: str) -> LoadResult:
        if (name, split) not in cache:
            start = time.perf_counter()
            result = get_loader(name).load(split, shared_data_dir)
            cache[name, split] = (result, time.perf_counter() - start)
        return cache[name, split][0]

    return get


def assert_clean(result: LoadResult, n: int) -> None:
    assert result.rejects == []
    assert len(result.problems) == n
    assert len({p["id"] for p in result.problems}) == n
    assert not any("duplicate_of" in p["meta"] for p in result.problems)


@pytest.mark.shared_data
def test_real_gsm8k(real):
    train, test = real("gsm8k", "train"), real("gsm8k", "test")
    assert_clean(train, 7473)
    assert_clean(test, 1319)
    assert train.problems[0]["id"] == "gsm8k/train-0" and train.problems[0]["answer"] == "72"
    assert all(p["answer"] is not None and p["equation"] is None for p in train.problems)


@pytest.mark.shared_data
def test_real_mawps(real):
    for split, n in (("all", 2373), ("train", 1898), ("valid", 237), ("test", 238)):
        assert_clean(real("mawps", split), n)
    ids = {s: {p["id"] for p in real("mawps", s).problems} for s in ("train", "valid", "test")}
    assert not ids["train"] & ids["test"] and not ids["train"] & ids["valid"]
    everything = {p["id"] for p in real("mawps", "all").problems}
    assert ids["train"] | ids["valid"] | ids["test"] == everything
    assert all(p["equation"] for p in real("mawps", "all").problems)


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_math23k(real):
    for split, n in (("all", 23162), ("train", 21162), ("valid", 1000), ("test", 1000)):
        assert_clean(real("math23k", split), n)
    ids = {s: {p["id"] for p in real("math23k", s).problems} for s in ("train", "valid", "test")}
    assert not ids["train"] & ids["test"] and not ids["train"] & ids["valid"]
    assert not ids["valid"] & ids["test"]
    assert all(p["lang"] == "zh" and p["answer"] is not None
               for p in real("math23k", "all").problems)
    rows = by_id(real("math23k", "all"))
    assert rows["math23k/1"]["answer"] == "20" and rows["math23k/1"]["equation"] == "x=(11-1)*2"
    assert "segmented_text" in meta(rows["math23k/1"])

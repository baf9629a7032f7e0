"""`mathdistill evaluate STUDENT --data ...`: a trained student scored on any dataset.

A tiny scratch student (untrained: its answers are whatever it decodes) inside a run directory
laid out as the pipeline leaves it; the command's report must count exactly what the same
decoding gives in this process, and land where the user expects it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill.cli import app

REPO = Path(__file__).resolve().parent.parent


def _problems(n: int) -> list[dict]:
    from distill.data.synthetic import SyntheticConfig
    from distill.data.synthetic import generate as synth

    return synth(SyntheticConfig(seed=11, langs=["en"], max_steps=2), "test", n=n)


def _run_with_student(tmp_path: Path, problems: list[dict]) -> tuple[Path, Path]:
    """A run directory (config.yaml, manifest.json, train/result.json) around a scratch
    equation student with max_new_tokens 8 in its evaluate.inference."""
    from distill.config import dump_config, load_config
    from distill.train.config import StudentConfig
    from distill.train.students import get_student

    run = tmp_path / "run"
    texts = lambda: (p["masked_question"] for p in problems)  # noqa: E731
    ckpt = get_student("scratch").prepare(StudentConfig(vocab_size=400), texts,
                                          run / "train" / "student" / "epoch_0001")
    cfg = load_config(REPO / "configs" / "quickstart.yaml")
    cfg.evaluate.inference.max_new_tokens = 8
    dump_config(cfg, run / "config.yaml")
    (run / "manifest.json").write_text("{}")
    (run / "train" / "result.json").write_text(json.dumps(
        {"checkpoint_dir": "train/student/epoch_0001"}))
    return run, Path(ckpt)


@pytest.mark.ray
def test_a_run_s_student_on_a_file_of_problems(ray_local, tmp_path: Path, monkeypatch) -> None:
    import distill.cli_common as cli_common
    from distill.evaluate.config import InferenceConfig
    from distill.evaluate.infer import generate, grammars_for, prediction_rows
    from distill.evaluate.report import score_problems, summarize

    monkeypatch.setattr(cli_common, "init_ray", lambda cfg: None)  # the session's Ray
    problems = _problems(10)
    run, ckpt = _run_with_student(tmp_path, problems)
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps({"question": p["question"], "answer": p["answer"]}) + "\n"
                            for p in problems))
    result = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    out = run / "evaluations" / "mine-all"  # a file's problems: its name, split "all"
    assert (out / "report.json").is_file() and (out / "report.md").is_file()
    preds = [json.loads(line) for line in (out / "predictions.jsonl").open()]
    assert [p["gold"] for p in preds] == [p["answer"] for p in problems]

    # the same decoding here: the run's evaluate.inference, under the equation grammar
    from distill.cli_common import load_problems, source

    rows = load_problems(source(str(data), "test", None, None), None).problems
    for r in rows:
        r["dataset"] = "x"
    cfg = InferenceConfig(max_new_tokens=8)
    outputs = generate(str(ckpt), [r["masked_question"] for r in rows], cfg,
                       grammars_for("equation_prefix", rows, cfg))
    expected = summarize(score_problems(prediction_rows(rows, outputs, "equation_prefix")))
    assert (report["n"], report["correct"]) == (10, expected["correct"])
    assert [p["output"] for p in preds] == [o[0] for o in outputs]
    assert report["target"] == "equation_prefix"

    # --num-beams: the beam's best output, under the same grammar (its own report folder)
    beam_out = tmp_path / "beam"
    result = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(data), "--json",
                                      "--num-beams", "3", "--out", str(beam_out)])
    assert result.exit_code == 0, result.output
    beam_report = json.loads(result.stdout.strip().splitlines()[-1])
    assert beam_report["decoding"] == "beam@3" and report["decoding"] == "greedy"
    beam_cfg = InferenceConfig(max_new_tokens=8, num_beams=3)
    beams = generate(str(ckpt), [r["masked_question"] for r in rows], beam_cfg,
                     grammars_for("equation_prefix", rows, beam_cfg))
    assert [json.loads(line)["output"] for line in (beam_out / "predictions.jsonl").open()] \
        == [o[0] for o in beams]


def test_bad_students_and_data_are_named(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(tmp_path / "nope"), "--data", "gsm8k"])
    assert result.exit_code == 2 and "no such run directory" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["evaluate", str(tmp_path / "empty"), "--data", "gsm8k"])
    assert result.exit_code == 2 and "neither a run directory" in result.output


def test_default_report_folders() -> None:
    from distill.evaluate.cli import default_out

    assert default_out(Path("/r/train/student/epoch_3"), Path("/r"), "svamp:test") == \
        Path("/r/evaluations/svamp-test")
    assert default_out(Path("/ckpts/best"), None, "asdiv_a:fold0") == \
        Path("evaluations/best/asdiv_a-fold0")

"""A student's likelihood of given targets (``distill.evaluate.infer.score_targets``): how
refinement's middle model ranks a problem's candidate labels (``refine.rescore``).

The score of a pair is the training loss of that one example times its token (or tree symbol)
count, whatever else is in the batch; a target a tree student cannot write scores ``inf``; and
the candidate the model was trained on is the one it ranks first."""

from __future__ import annotations

import math

import pytest
import torch

from distill.evaluate.config import InferenceConfig
from distill.evaluate.infer import score_targets
from distill.refine.core import most_likely, rescore_candidates
from distill.train.collate import IGNORE_INDEX, collate, encode_examples
from distill.train.config import TrainConfig
from distill.train.students import get_student
from training_helpers import sft_rows, synthetic_problems, texts_of

STUDENTS = {
    "tree": {"kind": "scratch", "architecture": "tree", "vocab_size": 600,
             "model_overrides": {"hidden_size": 64, "embedding_size": 32, "num_layers": 1}},
    "t5": {"kind": "scratch", "vocab_size": 600,
           "model_overrides": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2,
                               "d_kv": 16}},
    "qwen2": {"kind": "scratch", "architecture": "qwen2", "vocab_size": 600,
              "model_overrides": {"hidden_size": 32, "intermediate_size": 64,
                                  "num_hidden_layers": 1, "num_attention_heads": 2,
                                  "num_key_value_heads": 1}},
}


def _student(name: str):
    rows = sft_rows(synthetic_problems(24, "train"))
    cfg = TrainConfig.model_validate({"student": STUDENTS[name], "target": "equation_prefix",
                                      "max_source_length": 64, "max_target_length": 16})
    torch.manual_seed(0)
    model, tok = get_student("scratch").build(cfg.student, texts_of(rows))
    model.eval()
    return model, tok, rows


def _loss_of_one(model, tok, source: str, target: str) -> tuple[float, int]:
    """The training loss of one example and how many tokens / symbols it averages over."""
    enc = encode_examples(tok, [source], [target], bool(model.config.is_encoder_decoder), 64, 16)
    batch = collate(enc, tok.pad_token_id, bool(model.config.is_encoder_decoder))
    with torch.no_grad():
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=batch["labels"]).loss
    if hasattr(model, "target_nll"):
        n = int(model._classes(batch["labels"]).ge(0).sum())
    else:
        n = int(batch["labels"].ne(IGNORE_INDEX).sum())
    return float(loss), n


@pytest.mark.parametrize("name", list(STUDENTS))
def test_a_score_is_the_loss_of_that_example_whatever_the_batch(name: str) -> None:
    model, tok, rows = _student(name)
    sources = [r["source_text"] for r in rows[:6]]
    targets = [r["target_text"] for r in rows[:6]]
    # each source also with another row's target (a wrong label), in one mixed batch
    sources, targets = sources + sources, targets + targets[1:] + targets[:1]
    config = InferenceConfig(batch_size=4, max_source_length=64)
    scores = score_targets((model, tok), sources, targets, config, max_target_length=16)
    for source, target, score in zip(sources, targets, scores):
        loss, n = _loss_of_one(model, tok, source, target)
        assert n > 0 and score == pytest.approx(loss * n, rel=1e-4, abs=1e-4)
    # one at a time gives the same numbers
    alone = [score_targets((model, tok), [s], [t], config, 16)[0]
             for s, t in zip(sources[:3], targets[:3])]
    assert alone == pytest.approx(scores[:3], rel=1e-5)


def test_a_target_a_tree_student_cannot_write_scores_infinity() -> None:
    model, tok, rows = _student("tree")
    source = rows[0]["source_text"]  # a question with N0 and N1 only
    assert "N7" not in source
    scores = score_targets((model, tok), [source] * 3, ["+ N0 N1", "+ N0 N7", "+ N0"],
                           InferenceConfig(max_source_length=64), max_target_length=16)
    assert math.isfinite(scores[0]) and scores[1:] == [math.inf, math.inf]


def test_the_label_a_student_learned_is_the_one_it_ranks_first(tmp_path, one_thread) -> None:
    """A tree student trained on ``+ N1 N0`` where the data's own label is ``+ N0 N1`` (the same
    answers) ranks the label it learned first, on every training problem, against the other
    one and against a wrong one."""
    from distill.train.loop import LocalContext, train_loop

    rows = sft_rows(synthetic_problems(96, "train"))
    learned = [dict(r, target_text="+ N1 N0") if r["target_text"] == "+ N0 N1" else r
               for r in rows]
    swapped = [r for r in learned if r["target_text"] == "+ N1 N0"]
    assert len(swapped) == 21
    cfg = TrainConfig.model_validate({
        "student": STUDENTS["tree"], "target": "equation_prefix", "epochs": 12, "batch_size": 8,
        "lr": 5e-3, "seed": 0, "max_source_length": 64, "max_target_length": 16,
        "log_every_steps": 100})
    init = get_student("scratch").prepare(cfg.student, texts_of(learned), tmp_path / "init",
                                          seed=0)
    ctx = LocalContext(tmp_path / "ckpt")
    train_loop(cfg, init, learned, ctx)
    student = str(ctx.checkpoints[-1])
    config = InferenceConfig(max_source_length=64)
    for r in learned:
        first, *others = ([r["target_text"], "+ N0 N1", "* N0 N1"] if r in swapped
                          else [r["target_text"], "* N1 N0"])
        nll = score_targets(student, [r["source_text"]] * (1 + len(others)), [first, *others],
                            config, max_target_length=16)
        assert most_likely([first, *others], nll) == first, (r, nll)


def test_the_candidates_of_a_problem_are_its_labels_then_the_search_matches_in_rank_order():
    rows = [{"id": "a", "sample_idx": 2, "verdict": "correct", "masked_equation": "x = N1 + N0"},
            {"id": "a", "sample_idx": 0, "verdict": "correct", "masked_equation": "x = N0 + N1"},
            {"id": "a", "sample_idx": 1, "verdict": "wrong", "masked_equation": "x = N0 * N1"},
            {"id": "a", "sample_idx": 3, "verdict": "correct", "masked_equation": None}]
    assert rescore_candidates(["x = N0 + N1"], rows) == ["x = N0 + N1", "x = N1 + N0"]
    assert rescore_candidates(["x = N0 - 1"], rows) == ["x = N0 - 1", "x = N0 + N1",
                                                         "x = N1 + N0"]
    assert rescore_candidates([], rows[:2]) == ["x = N0 + N1", "x = N1 + N0"]
    assert rescore_candidates(["x = N0 + N1"], rows[1:]) == []  # nothing to choose
    assert most_likely(["a", "b", "c"], [2.0, 1.0, 1.0]) == "b"   # a tie: the first
    assert most_likely(["a", "b"], [math.inf, math.inf]) is None
    with pytest.raises(ValueError, match="2 scores for 3"):
        most_likely(["a", "b", "c"], [1.0, 2.0])

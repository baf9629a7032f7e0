"""The tree-decoding student (``architecture: tree``): its tokenizer, its decoder's contract
(every output a well-formed prefix equation over the question's own quantities, greedy or
sampled), what it learns, and its life in the training loop (checkpoints, resume)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from distill.equations import parse_prefix, placeholders
from distill.evaluate.config import InferenceConfig
from distill.evaluate.infer import generate, prediction_rows
from distill.train.config import StudentConfig, TrainConfig
from distill.train.loop import LocalContext, train_loop
from distill.train.students import get_student, load_student
from distill.train.students import SPECIAL_TOKENS
from distill.train.tree import TreeModel, symbols_of_targets, train_word_tokenizer
from training_helpers import sft_rows, synthetic_problems, texts_of


def _problems(n: int, split: str = "train") -> list[dict]:
    return synthetic_problems(n, split)


_sft, _texts = sft_rows, texts_of


def _config(**kw) -> TrainConfig:
    base = {"student": {"kind": "scratch", "preset": "tiny", "architecture": "tree",
                        "model_overrides": {"hidden_size": 64, "embedding_size": 32,
                                            "num_layers": 1, "dropout": 0.1}},
            "target": "equation_prefix", "epochs": 2, "batch_size": 8, "lr": 5e-3,
            "log_every_steps": 1, "seed": 0, "max_source_length": 64, "max_target_length": 16}
    base.update(kw)
    return TrainConfig.model_validate(base)


def test_symbols_of_targets_reads_only_equations() -> None:
    texts = ["Tom has N0 apples and 2 more .", "* N0 + N1 100", "= x - N0 3.14", "neg N0",
             "/ N0 N1 extra words", "+ N0 1"]
    assert symbols_of_targets(texts) == ["1", "100", "3.14", "x"]


def test_word_tokenizer_one_token_per_symbol_and_spaces_back(tmp_path: Path) -> None:
    rows = _sft(_problems(24))
    cfg = _config()
    model, tok = get_student("scratch").build(cfg.student, _texts(rows))
    for text in ("* N0 + N1 N12", "= N1 - N0 neg N3", "/ N39 N0"):
        ids = tok(text)["input_ids"]
        assert len(ids) == len(text.split()) + 1 and ids[-1] == tok.eos_token_id
        assert tok.decode(ids, skip_special_tokens=True) == text
    # words seen twice in the training texts are tokens, rarer ones <unk>
    split = tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str
    words = Counter(w for r in rows for w, _ in split(r["source_text"]))
    assert words["How"] == 24 and words["?"] == 24
    assert all(tok.convert_tokens_to_ids(w) != tok.unk_token_id
               for w, n in words.items() if n >= 2)
    assert tok("zzyzx", add_special_tokens=False)["input_ids"] == [tok.unk_token_id]
    assert isinstance(model, TreeModel)
    # each CJK character is a word; numbers and punctuation stand alone
    zh = train_word_tokenizer(["小明有N0个苹果，小红有N1个。", "小明有N1个苹果。"] * 2,
                              max_placeholders=4, special_tokens=SPECIAL_TOKENS,
                              constants=["1"], vocab_size=100)
    ids = zh("小明有N0个苹果。", add_special_tokens=False)["input_ids"]
    assert zh.convert_ids_to_tokens(ids) == ["小", "明", "有", "N0", "个", "苹", "果", "。"]


@pytest.mark.parametrize("num_samples", [1, 4])
def test_untrained_outputs_are_well_formed_over_the_questions_quantities(num_samples) -> None:
    """Whatever the weights, every output parses as a prefix equation and names only the
    quantities its own question has: the decoder cannot write anything else."""
    problems = _problems(40, "test")
    cfg = _config()
    model, tok = get_student("scratch").build(cfg.student, _texts(_sft(_problems(24))))
    model.eval()
    outs = generate((model, tok), [p["masked_question"] for p in problems],
                    InferenceConfig(max_new_tokens=12, num_samples=num_samples, temperature=1.5))
    assert all(len(o) == num_samples for o in outs)
    for p, texts in zip(problems, outs):
        for text in texts:
            assert len(text.split()) <= 11, text
            assert set(placeholders(parse_prefix(text))) <= set(range(len(p["quantities"]))), text
    rows = prediction_rows(problems, outs)
    assert not [r for r in rows if r["error"] == "unparsable"]


def test_the_encoder_reads_padded_rows_as_the_packed_gru_does() -> None:
    """Without packing, each direction of the encoder still reads only a row's own tokens:
    states and gradients equal the packed ``nn.GRU``'s (zeros at the padding)."""
    torch.manual_seed(0)
    model, _ = get_student("scratch").build(_config(student={
        "kind": "scratch", "preset": "tiny", "architecture": "tree",
        "model_overrides": {"hidden_size": 24, "embedding_size": 16, "num_layers": 2,
                            "dropout": 0.0}}).student, _texts(_sft(_problems(24))))
    lengths = torch.tensor([7, 3, 1, 5])
    mask = torch.arange(7).unsqueeze(0) < lengths.unsqueeze(1)
    emb = torch.randn(4, 7, 16, requires_grad=True)
    mine = model._bidirectional_states(emb, lengths, mask)
    packed = torch.nn.utils.rnn.pack_padded_sequence(emb, lengths, batch_first=True,
                                                     enforce_sorted=False)
    reference, _ = torch.nn.utils.rnn.pad_packed_sequence(model.encoder(packed)[0],
                                                          batch_first=True, total_length=7)
    assert torch.allclose(mine, reference, atol=1e-6)
    weights = torch.randn_like(mine)
    grads = torch.autograd.grad((mine * weights).sum(), [emb, model.encoder.weight_hh_l1_reverse])
    expected = torch.autograd.grad((reference * weights).sum(),
                                   [emb, model.encoder.weight_hh_l1_reverse])
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, atol=1e-5)


def _beam_inputs(n: int):
    problems = _problems(n, "test")
    model, tok = get_student("scratch").build(_config().student, _texts(_sft(_problems(24))))
    torch.manual_seed(5)  # an untrained decoder with spread-out scores: beams differ
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.5)
    batch = tok([p["masked_question"] for p in problems], padding=True, return_tensors="pt")
    return problems, model.eval(), tok, batch["input_ids"], batch["attention_mask"]


def test_beam_search_finds_trees_at_least_as_likely_as_greedy_in_order() -> None:
    """A beam of one is greedy decoding; a wider beam keeps distinct well-formed trees per
    input, most likely first, the first at least as likely as greedy's (scores under the
    decoding rules), and returns the ``k`` best as rows of token ids."""
    problems, model, tok, ids, mask = _beam_inputs(24)
    greedy = model.generate(ids, mask, max_new_tokens=12)
    one = model._beam_trees(ids, mask.bool(), 12, 1)
    assert tok.batch_decode(model._token_rows([t[0][1] for t in one], "cpu"),
                            skip_special_tokens=True) == tok.batch_decode(
        greedy, skip_special_tokens=True)
    wide = model._beam_trees(ids, mask.bool(), 12, 4)
    assert sum(w[0][1] != o[0][1] for w, o in zip(wide, one)) >= 3  # the search changes answers
    for p, trees, (greedy_score, _) in zip(problems, wide, (t[0] for t in one)):
        scores = [score for score, _ in trees]
        assert scores == sorted(scores, reverse=True) and scores[0] >= greedy_score - 1e-5
        assert len(trees) == 4 and len({tuple(c) for _, c in trees}) == 4
    k = 3
    rows = tok.batch_decode(model.generate(ids, mask, max_new_tokens=12, num_beams=4,
                                           num_return_sequences=k), skip_special_tokens=True)
    assert len(rows) == k * len(problems)
    for i, p in enumerate(problems):
        assert rows[i * k: (i + 1) * k] == tok.batch_decode(
            model._token_rows([c for _, c in wide[i][:k]], "cpu"), skip_special_tokens=True)
        for text in rows[i * k: (i + 1) * k]:
            assert len(text.split()) <= 11, text
            assert set(placeholders(parse_prefix(text))) <= set(range(len(p["quantities"])))
    with pytest.raises(ValueError, match="num_return_sequences"):
        model.generate(ids, mask, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="not both"):
        model.generate(ids, mask, num_beams=2, do_sample=True)


def test_training_targets_it_cannot_represent_give_no_loss() -> None:
    rows = _sft(_problems(8))
    cfg = _config()
    model, tok = get_student("scratch").build(cfg.student, _texts(rows))
    src = [rows[0]["source_text"]] * 4
    enc = tok(src, padding=True, return_tensors="pt")
    labels = tok(["* N0 N1", "= x + N0 N1", "neg N0", "* N0"], padding=True,
                 return_tensors="pt")["input_ids"]
    labels = labels.masked_fill(labels.eq(tok.pad_token_id), -100)
    full = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels).loss
    assert math.isfinite(float(full)) and float(full) > 0
    # the incomplete "* N0" contributes nothing: the loss is that of the three others
    three = model(input_ids=enc["input_ids"][:3], attention_mask=enc["attention_mask"][:3],
                  labels=labels[:3]).loss
    model.eval()
    with torch.no_grad():
        a = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels).loss
        b = model(input_ids=enc["input_ids"][:3], attention_mask=enc["attention_mask"][:3],
                  labels=labels[:3]).loss
    assert math.isclose(float(a), float(b), rel_tol=1e-5)
    del three


#: held-out accuracy after 12 epochs on 96 problems: 1.0, 1.0, 0.979 with seeds 0, 1, 2
ACCURACY_FLOOR = 0.95


def test_it_learns_the_synthetic_problems_and_round_trips(tmp_path: Path, one_thread) -> None:
    """Trained on 96 two-step synthetic problems, the tree student solves held-out ones
    (:data:`ACCURACY_FLOOR`), and a checkpoint read back decodes the same."""
    rows = _sft(_problems(96))
    cfg = _config(epochs=12)
    init = get_student("scratch").prepare(cfg.student, _texts(rows), tmp_path / "init", seed=0)
    ctx = LocalContext(tmp_path / "ckpt")
    train_loop(cfg, init, rows, ctx)
    held_out = _problems(48, "test")
    inference = InferenceConfig(max_new_tokens=12)
    outputs = generate(str(ctx.checkpoints[-1]), [p["masked_question"] for p in held_out], inference)
    from distill.evaluate import score_problems, summarize

    report = summarize(score_problems(prediction_rows(held_out, outputs)))
    assert report["accuracy"] >= ACCURACY_FLOOR, report
    model, tok = load_student(ctx.checkpoints[-1])
    assert isinstance(model, TreeModel)
    # a trained tree student is also a starting point (refinement's `start: last`)
    as_init = StudentConfig(kind="hf_seq2seq", name_or_path=str(ctx.checkpoints[-1]))
    assert isinstance(get_student("hf_seq2seq").build(as_init)[0], TreeModel)
    again = generate((model.eval(), tok), [p["masked_question"] for p in held_out], inference)
    assert again == outputs
    state = json.loads((ctx.checkpoints[-1] / "trainer_state.json").read_text())
    assert state["target"] == "equation_prefix" and state["epoch"] == 12
    # (kill and resume: tests/test_train.py, test_resume_after_kill_continues_exactly[tree])


def test_tree_students_write_prefix_equations_only() -> None:
    with pytest.raises(ValueError, match="tree"):
        _config(target="equation_infix")
    with pytest.raises(ValueError, match="tree"):
        _config(target="cot")

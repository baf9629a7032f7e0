"""Students: registry, tokenizer training (en + zh), every family built from a config, and the
from_pretrained round trip on a folder saved here."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.config import ConfigError, validate_config
from distill.train.config import StudentConfig, TrainConfig
from distill.train.students import (
    MAX_PLACEHOLDERS,
    OPERATOR_TOKENS,
    UnknownStudentError,
    get_student,
    load_student,
    parameter_count,
    register_student,
    student_names,
    train_tokenizer,
)

import torch
import transformers

EN = [
    "A waiter had N0 customers . If N1 of them left and the rest had N2 people at each table , how many tables ?",
    "Benny worked N0 hours for N1 days . How many hours did he work in total ?",
    "Jessica weighs N0 pounds . Thomas weighs N1 pounds . How much heavier is Jessica ?",
    "/ - N0 N1 N2", "* N0 N1", "- N0 N1", "+ N0 N1",
]
ZH = ["小明有N0个苹果，又买了N1个梨。一共有多少个水果？", "钢笔每支N0元，小丽买了N1支，付了N2元。应找回多少元？",
      "长方形花园长N0米，宽N1米。围栏每米N2元。"]


def _texts():
    return (EN + ZH) * 5


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(_texts(), 800, append_eos=True)


def test_registry_lists_kinds_and_rejects_unknown_and_duplicates() -> None:
    assert student_names() == ["hf_causal", "hf_seq2seq", "scratch"]
    with pytest.raises(UnknownStudentError, match="valid names: hf_causal, hf_seq2seq, scratch"):
        get_student("flan")
    with pytest.raises(ValueError, match="already registered"):
        register_student("scratch")(type("Again", (), {}))
    with pytest.raises(ConfigError, match=r"train.yaml: student.kind: .*unknown student kind 'flan'"):
        validate_config({"student": {"kind": "flan"}}, TrainConfig, "train.yaml")
    with pytest.raises(ConfigError, match="needs name_or_path"):
        validate_config({"student": {"kind": "hf_seq2seq"}}, TrainConfig, "train.yaml")
    with pytest.raises(ConfigError, match="deepspeed.zero_stage"):
        validate_config({"deepspeed": {"zero_stage": 4}}, TrainConfig, "train.yaml")
    with pytest.raises(ConfigError, match="unknown key"):
        validate_config({"epoch": 3}, TrainConfig, "train.yaml")


@pytest.mark.parametrize("text", [
    "* N0 + N1 N12", "= + * N0 x N1 N2", "N0 * (N1 - N39) / 3.14", "neg N3", "N0+N1",
])
def test_placeholders_and_operators_are_single_tokens(tokenizer, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = [tokenizer.decode([i]).strip() for i in ids]
    for sym in [p for p in text.replace("(", " ( ").replace(")", " ) ").replace("+", " + ").split()]:
        if sym.startswith("N") or sym in OPERATOR_TOKENS or sym == "neg":
            assert sym in pieces, (text, pieces)
    assert tokenizer.decode(ids) == text  # exact round trip, spaces included


def test_tokenizer_special_ids_eos_and_words_containing_symbols(tokenizer) -> None:
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id,
            tokenizer.bos_token_id) == (0, 1, 2, 3)
    assert tokenizer("* N0 N1")["input_ids"][-1] == 1  # T5-style: </s> appended
    assert len(tokenizer("* N0 N1", add_special_tokens=False)["input_ids"]) == 3
    for i in range(MAX_PLACEHOLDERS):
        assert len(tokenizer(f"N{i}", add_special_tokens=False)["input_ids"]) == 1
    ids = tokenizer("negative numbers", add_special_tokens=False)["input_ids"]
    assert "neg" not in [tokenizer.decode([i]) for i in ids]  # neg only as a whole word
    assert tokenizer.decode(ids) == "negative numbers"


def test_tokenizer_covers_chinese(tokenizer) -> None:
    seen = "小明有N0个苹果，又买了N1个梨。"
    ids = tokenizer(seen, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == seen
    assert tokenizer.unk_token_id not in ids
    for ch in "小明苹果梨":  # characters of the training text are one token each
        assert len(tokenizer(ch, add_special_tokens=False)["input_ids"]) == 1, ch
    unseen = "鳄鱼吃了N0条鱼"  # characters never seen: bytes, never <unk>
    ids = tokenizer(unseen, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == unseen


def test_scratch_students_build_and_round_trip(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    t5 = StudentConfig(kind="scratch", preset="tiny", vocab_size=800)
    model, tok = get_student("scratch").build(t5, _texts, seed=0)
    assert model.config.is_encoder_decoder and model.config.vocab_size == len(tok)
    assert 1_000_000 < parameter_count(model) < 5_000_000  # "a few M"
    where = get_student("scratch").prepare(t5, _texts, tmp_path / "t5", seed=0)
    assert Path(where) == tmp_path / "t5"
    loaded = AutoModelForSeq2SeqLM.from_pretrained(where)
    tok2 = AutoTokenizer.from_pretrained(where)
    assert tok2("* N0 N1")["input_ids"] == tok("* N0 N1")["input_ids"]
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)  # seeded init, saved and read back exactly
    # prepare keeps an existing student (a resumed run keeps its tokenizer)
    mtime = (tmp_path / "t5" / "tokenizer.json").stat().st_mtime_ns
    get_student("scratch").prepare(t5, lambda: ["other text"], tmp_path / "t5")
    assert (tmp_path / "t5" / "tokenizer.json").stat().st_mtime_ns == mtime

    qwen = StudentConfig(kind="scratch", architecture="qwen2", vocab_size=800)
    where = get_student("scratch").prepare(qwen, _texts, tmp_path / "qwen", seed=0)
    m = AutoModelForCausalLM.from_pretrained(where)
    assert not m.config.is_encoder_decoder and type(m).__name__ == "Qwen2ForCausalLM"
    tq = AutoTokenizer.from_pretrained(where)
    assert tq("* N0 N1")["input_ids"][-1] != tq.eos_token_id  # decoder-only: no eos appended


def test_small_preset_is_tens_of_millions() -> None:
    from transformers import T5Config

    from distill.train.students import PRESET_VOCAB, PRESETS

    n = parameter_count(transformers.T5ForConditionalGeneration(
        T5Config(vocab_size=PRESET_VOCAB["small"], **PRESETS["t5"]["small"])))
    assert 10_000_000 < n < 100_000_000


def _save_hf(tmp_path: Path, name: str, model, tokenizer) -> str:
    d = tmp_path / name
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    return str(d)


@pytest.mark.parametrize("family", ["t5", "qwen2", "llama", "gpt2"])
def test_hf_students_from_a_saved_folder(tmp_path: Path, family: str) -> None:
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
        T5Config,
        T5ForConditionalGeneration,
    )

    seq2seq = family == "t5"
    tok = train_tokenizer(_texts(), 600, append_eos=seq2seq)
    if family == "gpt2":  # GPT-2 has no pad token: load_student gives it eos
        tok.pad_token = None
    v = len(tok)
    model = {
        "t5": lambda: T5ForConditionalGeneration(T5Config(vocab_size=v, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                                          num_heads=2, decoder_start_token_id=0)),
        "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(vocab_size=v, hidden_size=32, intermediate_size=64,
                                                     num_hidden_layers=1, num_attention_heads=2,
                                                     num_key_value_heads=1)),
        "llama": lambda: LlamaForCausalLM(LlamaConfig(vocab_size=v, hidden_size=32, intermediate_size=64,
                                                     num_hidden_layers=1, num_attention_heads=2,
                                                     num_key_value_heads=1)),
        "gpt2": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=v, n_embd=32, n_layer=1, n_head=2,
                                                  bos_token_id=3, eos_token_id=1)),
    }[family]()
    path = _save_hf(tmp_path, family, model, tok)
    kind = "hf_seq2seq" if seq2seq else "hf_causal"
    cfg = StudentConfig(kind=kind, name_or_path=path)
    assert get_student(kind).prepare(cfg, _texts, tmp_path / "unused") == path
    m, t = get_student(kind).build(cfg)
    assert bool(m.config.is_encoder_decoder) == seq2seq
    assert t.pad_token_id is not None and m.config.pad_token_id == t.pad_token_id
    other = "hf_causal" if seq2seq else "hf_seq2seq"
    with pytest.raises(ValueError, match=f"use kind '{kind}'"):
        get_student(other).build(StudentConfig(kind=other, name_or_path=path))
    m2, _ = load_student(path)
    assert type(m2) is type(m)

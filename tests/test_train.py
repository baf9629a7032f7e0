"""The training core without Ray: collation, data order, the loop (golden losses and accuracy,
resume after a kill, DeepSpeed in one process), inference and prediction rows.

Golden values live in tests/golden/train_tiny.json; the test only compares with them. After an
intended change to training, regenerate them by hand with ``python tests/update_golden.py`` and
say why in the commit.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from distill.train.collate import (
    IGNORE_INDEX,
    collate,
    encode_examples,
    encode_prompts,
    epoch_batches,
)
from distill.evaluate.config import InferenceConfig
from distill.train.config import TrainConfig
from distill.evaluate.infer import equation_answer, generate, prediction_rows
from distill.train.loop import LocalContext, deepspeed_config, lr_lambda, train_loop
from distill.train.students import get_student, train_tokenizer

import torch
import transformers  # noqa: F401 - the students need it
from training_helpers import (
    Killed,
    KilledAfterFirstCheckpoint,
    sft_rows,
    synthetic_problems,
    texts_of,
)

GOLDEN = Path(__file__).resolve().parent / "golden" / "train_tiny.json"


# ----------------------------------------------------------------------------- data
_problems, _sft, _texts = synthetic_problems, sft_rows, texts_of


def _config(**kw) -> TrainConfig:
    base = {"student": {"kind": "scratch", "preset": "tiny", "vocab_size": 600},
            "epochs": 2, "batch_size": 8, "lr": 2e-3, "log_every_steps": 1, "seed": 0,
            "max_source_length": 64, "max_target_length": 16}
    base.update(kw)
    return TrainConfig.model_validate(base)


# ---------------------------------------------------------------------- collation
def test_epoch_batches_are_seeded_even_and_cover_everything() -> None:
    a = epoch_batches(10, 3, epoch=0, seed=1)
    assert a == epoch_batches(10, 3, epoch=0, seed=1)
    assert a != epoch_batches(10, 3, epoch=1, seed=1)
    assert sorted(i for b in a for i in b) == list(range(10))
    shards = [epoch_batches(10, 2, epoch=3, seed=1, rank=r, world_size=3) for r in range(3)]
    assert len({len(s) for s in shards}) == 1  # equal step counts: collectives stay in step
    seen = [i for s in shards for b in s for i in b]
    assert len(seen) == 12 and set(seen) == set(range(10))  # padded by wrapping around
    with pytest.raises(ValueError):
        epoch_batches(0, 2, 0, 0)


def test_collate_layouts() -> None:
    tok = train_tokenizer(["Tom has N0 apples", "+ N0 N1"] * 5, 400, append_eos=True)
    enc = encode_examples(tok, ["Tom has N0 apples", "Tom"], ["+ N0 N1", "N0"], True, 32, 8)
    assert all(e.target[-1] == tok.eos_token_id for e in enc)
    b = collate(enc, tok.pad_token_id, encoder_decoder=True)
    assert b["input_ids"].shape[0] == 2 and b["labels"][1, -1] == IGNORE_INDEX
    assert b["n_tokens"] == int(b["attention_mask"].sum()) + sum(len(e.target) for e in enc)
    # decoder-only: prompt + separator, then target + eos; only the target is learned
    ctok = train_tokenizer(["Tom has N0 apples", "+ N0 N1"] * 5, 400, append_eos=False)
    enc = encode_examples(ctok, ["Tom has N0 apples"], ["+ N0 N1"], False, 32, 8)
    assert enc[0].prompt == encode_prompts(ctok, ["Tom has N0 apples"], False, 32)[0]
    b = collate(enc, ctok.pad_token_id, encoder_decoder=False)
    n_prompt = len(enc[0].prompt)
    assert (b["labels"][0, :n_prompt] == IGNORE_INDEX).all()
    assert b["labels"][0, n_prompt:].tolist() == enc[0].target
    # truncation keeps eos
    long = encode_examples(tok, ["x"], ["+ N0 + N1 + N2 + N3 + N4 N5"], True, 32, 4)[0]
    assert len(long.target) == 4 and long.target[-1] == tok.eos_token_id


def test_schedules_and_deepspeed_config() -> None:
    lin = lr_lambda("linear", warmup=2, total=10)
    assert [round(lin(s), 3) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    cos = lr_lambda("cosine", warmup=0, total=10)
    assert cos(0) == 1.0 and abs(cos(5) - 0.5) < 1e-9 and abs(cos(10)) < 1e-9
    assert lr_lambda("constant", 0, 10)(9) == 1.0
    cfg = _config(precision="bf16", gradient_accumulation_steps=2,
                  deepspeed={"enabled": True, "zero_stage": 3, "offload_optimizer": True,
                             "extra": {"zero_optimization": {"overlap_comm": True}}})
    ds = deepspeed_config(cfg, world_size=4)
    assert ds["train_batch_size"] == 8 * 2 * 4 and ds["bf16"] == {"enabled": True}
    assert ds["zero_optimization"] == {"stage": 3, "offload_optimizer": {"device": "cpu"},
                                       "overlap_comm": True}


# ------------------------------------------------------------------ golden numbers
def _golden_run(tmp_path: Path) -> dict:
    rows = _sft(_problems(48))
    cfg = _config(epochs=4)
    init = get_student("scratch").prepare(cfg.student, _texts(rows), tmp_path / "init", seed=cfg.seed)
    ctx = LocalContext(tmp_path / "ckpt")
    train_loop(cfg, init, rows, ctx)
    losses = [r["loss"] for r in ctx.reports if "epoch_time_s" not in r]
    held_out = _problems(48, "test")
    outputs = generate(str(ctx.checkpoints[-1]), [p["masked_question"] for p in held_out],
                       InferenceConfig(max_new_tokens=12))
    from distill.evaluate import score_problems, summarize

    report = summarize(score_problems(prediction_rows(held_out, outputs)))
    return {"first_losses": [round(x, 5) for x in losses[:20]], "last_loss": round(losses[-1], 5),
            "steps": len(losses), "accuracy": report["accuracy"]}


def test_golden_losses_and_accuracy(tmp_path: Path, one_thread) -> None:
    got = _golden_run(tmp_path)
    want = json.loads(GOLDEN.read_text())
    assert got["steps"] == want["steps"]
    for i, (g, w) in enumerate(zip(got["first_losses"], want["first_losses"])):
        assert math.isclose(g, w, rel_tol=1e-3, abs_tol=1e-3), (i, got["first_losses"], want["first_losses"])
    assert math.isclose(got["last_loss"], want["last_loss"], rel_tol=0.02, abs_tol=0.02)
    assert abs(got["accuracy"] - want["accuracy"]) <= 2 / 48 + 1e-9, (got, want)


def test_golden_test_only_compares(tmp_path: Path, monkeypatch) -> None:
    """No environment variable turns the golden test into a rewrite of its own expectations:
    a run that differs fails and the stored file stays as it was. Rewriting is
    tests/update_golden.py's job."""
    import update_golden

    stored = tmp_path / "golden.json"
    stored.write_text(GOLDEN.read_text())
    want = json.loads(GOLDEN.read_text())
    drifted = dict(want, first_losses=[x + 1.0 for x in want["first_losses"]])
    monkeypatch.setattr(sys.modules[__name__], "GOLDEN", stored)
    monkeypatch.setattr(sys.modules[__name__], "_golden_run", lambda tmp: drifted)
    for var in ("MATHDISTILL_UPDATE_GOLDEN", "UPDATE_GOLDEN", "CI"):
        monkeypatch.setenv(var, "1")
    with pytest.raises(AssertionError):
        test_golden_losses_and_accuracy(tmp_path, None)
    assert json.loads(stored.read_text()) == want
    # the script by hand does rewrite it (with the same run the test does)
    assert update_golden.main(stored) == drifted
    assert json.loads(stored.read_text()) == drifted


# ------------------------------------------------------------------------- resume
#: the tree student (tests/test_tree_student.py) at a test's size
TREE_STUDENT = {"kind": "scratch", "architecture": "tree", "vocab_size": 600,
                "model_overrides": {"hidden_size": 64, "embedding_size": 32, "num_layers": 1}}


@pytest.mark.parametrize("student", [None, TREE_STUDENT], ids=["t5", "tree"])
def test_resume_after_kill_continues_exactly(tmp_path: Path, one_thread, student) -> None:
    rows = _sft(_problems(24))
    cfg = _config(epochs=2, **({"student": student} if student else {}))
    init = get_student("scratch").prepare(cfg.student, _texts(rows), tmp_path / "init")
    whole = LocalContext(tmp_path / "whole")
    final = train_loop(cfg, init, rows, whole)

    with pytest.raises(Killed):
        train_loop(cfg, init, rows, KilledAfterFirstCheckpoint(tmp_path / "killed"))
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == ["epoch_0001"]
    again = LocalContext(tmp_path / "killed")
    resumed = train_loop(cfg, init, rows, again)
    assert {r["epoch"] for r in again.reports} == {2}  # epoch 1 was not trained again
    assert resumed["step"] == final["step"]
    assert math.isclose(resumed["loss"], final["loss"], rel_tol=1e-6)  # same as no kill
    state = json.loads((tmp_path / "killed" / "epoch_0002" / "trainer_state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    # a finished run started again does nothing
    assert train_loop(cfg, init, rows, LocalContext(tmp_path / "killed")) == {}


class _Float64Context(LocalContext):
    """A context whose ``wrap_model`` "moves" the model by casting it to float64: on CPU, the
    stand-in for the move to a GPU (the checkpoint loads as float32 on the CPU, the way it
    loads on the CPU before going to a GPU)."""

    def wrap_model(self, model):
        return model.to(torch.float64)


class _Float64KilledAfterFirstCheckpoint(_Float64Context, KilledAfterFirstCheckpoint):
    pass


def test_resume_restores_the_optimizer_on_the_parameters_device(tmp_path: Path, one_thread) -> None:
    """The optimizer state of a resumed run lives where the moved parameters are (dtype here,
    device on a GPU), and the resumed run continues as the uninterrupted one."""
    rows = _sft(_problems(16))
    cfg = _config(epochs=2)
    init = get_student("scratch").prepare(cfg.student, _texts(rows), tmp_path / "init")
    whole = _Float64Context(tmp_path / "whole")
    final = train_loop(cfg, init, rows, whole)
    with pytest.raises(Killed):
        train_loop(cfg, init, rows, _Float64KilledAfterFirstCheckpoint(tmp_path / "killed"))
    again = _Float64Context(tmp_path / "killed")
    resumed = train_loop(cfg, init, rows, again)  # before the fix: AdamW fails, float32 state
    assert {r["epoch"] for r in again.reports} == {2}
    assert resumed["step"] == final["step"]
    # (the weights went through the float32 checkpoint: equal up to float32 rounding)
    assert math.isclose(resumed["loss"], final["loss"], rel_tol=1e-6)
    saved = torch.load(tmp_path / "killed" / "epoch_0002" / "training_state.pt", weights_only=True)
    states = [t for st in saved["optimizer"]["state"].values() for k, t in st.items() if k != "step"]
    assert states and {t.dtype for t in states} == {torch.float64}


class _CudaContext(LocalContext):
    @property
    def device(self):
        return torch.device("cuda:0")

    def wrap_model(self, model):
        return model.to(self.device)


class _CudaKilledAfterFirstCheckpoint(_CudaContext, KilledAfterFirstCheckpoint):
    pass


@pytest.mark.gpu
def test_resume_on_gpu(tmp_path: Path) -> None:
    """The GPU case the float64 test stands in for: the run resumed on a GPU steps, with its
    Adam state on the GPU."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    rows = _sft(_problems(16))
    cfg = _config(epochs=2)
    init = get_student("scratch").prepare(cfg.student, _texts(rows), tmp_path / "init")
    final = train_loop(cfg, init, rows, _CudaContext(tmp_path / "whole"))
    with pytest.raises(Killed):
        train_loop(cfg, init, rows, _CudaKilledAfterFirstCheckpoint(tmp_path / "killed"))
    resumed = train_loop(cfg, init, rows, _CudaContext(tmp_path / "killed"))
    assert resumed["step"] == final["step"]
    assert math.isclose(resumed["loss"], final["loss"], rel_tol=1e-4)
    saved = torch.load(tmp_path / "killed" / "epoch_0002" / "training_state.pt", weights_only=True)
    assert {t.device.type for st in saved["optimizer"]["state"].values()
            for k, t in st.items() if k != "step"} == {"cuda"}


def _weight_dtypes(checkpoint: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(checkpoint / "model.safetensors"), "pt") as f:
        return {str(f.get_tensor(k).dtype).removeprefix("torch.") for k in f.keys()}


def test_training_weights_are_float32_whatever_the_stored_dtype(tmp_path: Path) -> None:
    """An hf_* student stored in bfloat16 (as many hub checkpoints are) trains with float32
    weights under precision fp32, not in pure bfloat16 (transformers 5 loads the stored dtype
    by default)."""
    from distill.train.students import StudentConfig

    rows = _sft(_problems(8))
    model, tok = get_student("scratch").build(
        StudentConfig(kind="scratch", architecture="qwen2", vocab_size=400), _texts(rows))
    model.to(torch.bfloat16).save_pretrained(tmp_path / "hub")
    tok.save_pretrained(tmp_path / "hub")
    assert _weight_dtypes(tmp_path / "hub") == {"bfloat16"}
    cfg = _config(epochs=1, student={"kind": "hf_causal", "name_or_path": str(tmp_path / "hub")})
    ctx = LocalContext(tmp_path / "run")
    train_loop(cfg, str(tmp_path / "hub"), rows, ctx)
    assert math.isfinite(ctx.reports[-1]["loss"])
    assert _weight_dtypes(tmp_path / "run" / "epoch_0001") == {"float32"}


@pytest.mark.slow
def test_deepspeed_zero_stages_in_one_process(tmp_path: Path, one_thread) -> None:
    """ZeRO 0 / 2 / 3 in one process (gloo group of one) give DDP-less training's losses."""
    from transformers import AutoModelForSeq2SeqLM

    rows = _sft(_problems(16))
    base = _config(epochs=1)
    init = get_student("scratch").prepare(base.student, _texts(rows), tmp_path / "init")
    plain = LocalContext()
    train_loop(base, init, rows, plain)
    for stage in (0, 2, 3):
        cfg = _config(epochs=1, deepspeed={"enabled": True, "zero_stage": stage})
        ctx = LocalContext(tmp_path / f"z{stage}")
        train_loop(cfg, init, rows, ctx)
        for a, b in zip(plain.reports, ctx.reports):
            assert math.isclose(a["loss"], b["loss"], rel_tol=2e-3), (stage, a, b)
        ckpt = tmp_path / f"z{stage}" / "epoch_0001"
        assert (ckpt / "deepspeed" / "latest").is_file()
        AutoModelForSeq2SeqLM.from_pretrained(ckpt)  # full weights, also after ZeRO-3


@pytest.mark.slow
def test_deepspeed_resume_after_kill_continues_exactly(tmp_path: Path, one_thread) -> None:
    """ZeRO-2 (gloo group of one): killed after epoch 1's checkpoint, the run resumes through
    ``engine.load_checkpoint`` (optimizer partitions, scheduler, fp32 weights) and repeats the
    uninterrupted run's epoch 2."""
    rows = _sft(_problems(16))
    cfg = _config(epochs=2, deepspeed={"enabled": True, "zero_stage": 2})
    init = get_student("scratch").prepare(cfg.student, _texts(rows), tmp_path / "init")
    whole = LocalContext(tmp_path / "whole")
    final = train_loop(cfg, init, rows, whole)
    with pytest.raises(Killed):
        train_loop(cfg, init, rows, KilledAfterFirstCheckpoint(tmp_path / "killed"))
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == ["epoch_0001"]
    assert (tmp_path / "killed" / "epoch_0001" / "deepspeed" / "state").is_dir()
    again = LocalContext(tmp_path / "killed")
    resumed = train_loop(cfg, init, rows, again)
    assert {r["epoch"] for r in again.reports} == {2}  # epoch 1 was not trained again
    assert resumed["step"] == final["step"] == 4
    epoch2 = [r for r in whole.reports if r["epoch"] == 2]
    assert len(epoch2) == len(again.reports)
    for a, b in zip(epoch2, again.reports):  # every step of epoch 2, and the learning rate
        assert a["step"] == b["step"] and math.isclose(a["lr"], b["lr"], rel_tol=1e-12)
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-5), (epoch2, again.reports)


@pytest.mark.parametrize("deepspeed, weights", [
    # torch autocast: the float32 weights are the master copy a resume continues from
    ({"enabled": False}, "float32"),
    # DeepSpeed bf16: the module's weights are bf16; the float32 master copy is in deepspeed/
    # (DeepSpeed's first engine in a process takes about a minute on 2 cores: the slow tier)
    pytest.param({"enabled": True, "zero_stage": 2}, "bfloat16", marks=pytest.mark.slow),
])
def test_bf16_training_on_cpu(tmp_path: Path, one_thread, deepspeed, weights) -> None:
    assert torch.amp.is_autocast_available("cpu")  # the pinned CPU torch has it
    rows = _sft(_problems(24))
    cfg = _config(epochs=3, precision="bf16", deepspeed=deepspeed)
    init = get_student("scratch").prepare(cfg.student, _texts(rows), tmp_path / "init")
    ctx = LocalContext(tmp_path / "run")
    train_loop(cfg, init, rows, ctx)
    epochs = [r["loss"] for r in ctx.reports if "epoch_time_s" in r]
    assert len(epochs) == 3 and all(math.isfinite(x) for x in epochs)
    assert epochs[0] > epochs[1] > epochs[2], epochs
    ckpt = tmp_path / "run" / "epoch_0003"
    assert _weight_dtypes(ckpt) == {weights}
    assert json.loads((ckpt / "config.json").read_text())["dtype"] == weights


# ---------------------------------------------------------------------- inference
@pytest.mark.parametrize("text, quantities, notation, expected", [
    ("* N0 + N1 N2", ["2", "3", "4"], "prefix", ("14", None)),
    ("/ N0 N1", ["1", "3"], "prefix", ("1/3", None)),
    ("- N0 neg N1", ["1.5", "2"], "prefix", ("3.5", None)),
    ("* N0 100", ["0.25"], "prefix", ("25", None)),
    ("= + * N0 x N1 N2", ["2", "1", "7"], "prefix", ("3", None)),
    ("N0 * (N1 + N2)", ["2", "3", "4"], "infix", ("14", None)),
    ("* N0", ["1"], "prefix", (None, "unparsable")),
    ("* N0 N5", ["1"], "prefix", (None, "unparsable")),
    ("+ x N0", ["1"], "prefix", (None, "unparsable")),
    ("", ["1"], "prefix", (None, "unparsable")),
    ("/ N0 - N1 N1", ["1", "2"], "prefix", (None, "runtime")),
])
def test_equation_answer(text, quantities, notation, expected) -> None:
    assert equation_answer(text, quantities, notation) == expected


def test_generate_greedy_and_sampled_and_prediction_rows(tmp_path: Path) -> None:
    from distill.evaluate import score_problems, summarize
    from distill.evaluate.infer import StudentPredictor

    problems = _problems(6)
    rows = _sft(problems)
    for arch in ("t5", "qwen2"):
        cfg = _config(student={"kind": "scratch", "architecture": arch, "vocab_size": 500})
        where = get_student("scratch").prepare(cfg.student, _texts(rows), tmp_path / arch)
        sources = [p["masked_question"] for p in problems]
        greedy = generate(where, sources, InferenceConfig(max_new_tokens=6, batch_size=4))
        assert len(greedy) == 6 and all(len(o) == 1 and isinstance(o[0], str) for o in greedy)
        assert greedy == generate(where, sources, InferenceConfig(max_new_tokens=6, batch_size=2))
        sampled = generate(where, sources, InferenceConfig(max_new_tokens=6, num_samples=3, seed=1))
        assert all(len(o) == 3 for o in sampled)
        assert sampled == generate(where, sources, InferenceConfig(max_new_tokens=6, num_samples=3, seed=1))
    preds = prediction_rows(problems, [["+ N0 N1", "+ N0 N1", "oops"]] * 6)
    assert len(preds) == 18 and {r["sample_idx"] for r in preds} == {0, 1, 2}
    assert preds[2]["error"] == "unparsable" and preds[0]["gold"] == problems[0]["answer_raw"]
    from distill.equations import operator_count

    assert preds[0]["n_ops"] == operator_count(problems[0]["equation"])
    report = summarize(score_problems(preds))
    from distill.grading import answers_match

    adds = sum(answers_match(equation_answer("+ N0 N1", p["quantities"])[0], p["answer"]) for p in problems)
    assert report["n"] == 6 and report["correct"] == adds and report["decoding"] == "maj@3"
    udf = StudentPredictor(str(tmp_path / "t5"), {"max_new_tokens": 4})
    out = udf({"masked_question": sources[:2], "id": ["a", "b"]})
    assert len(out["outputs"]) == 2 and out["id"] == ["a", "b"]


# ------------------------------------------------------------------ device and dtype
@pytest.mark.parametrize("inputs, expected", [
    (dict(cuda_available=False, in_ray_worker=False), "cpu"),
    (dict(cuda_available=True, in_ray_worker=False), "cuda:0"),
    # a Ray actor that reserved no GPU stays on the CPU even where CUDA is visible
    (dict(cuda_available=True, in_ray_worker=True, ray_gpu_ids=[]), "cpu"),
    (dict(cuda_available=False, in_ray_worker=True, ray_gpu_ids=[]), "cpu"),
    # Ray sets CUDA_VISIBLE_DEVICES to the assigned ids: torch numbers them from 0
    (dict(cuda_available=True, in_ray_worker=True, ray_gpu_ids=["3"],
          cuda_visible_devices="3"), "cuda:0"),
    (dict(cuda_available=True, in_ray_worker=True, ray_gpu_ids=["2"],
          cuda_visible_devices="0,1,2,3"), "cuda:2"),
    (dict(cuda_available=True, in_ray_worker=True, ray_gpu_ids=[1], cuda_visible_devices="3,1"),
     "cuda:1"),
    # RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES: the variable is unset, ids are physical
    (dict(cuda_available=True, in_ray_worker=True, ray_gpu_ids=["2"]), "cuda:2"),
])
def test_choose_device(inputs, expected) -> None:
    from distill.devices import choose_device

    assert choose_device(**inputs) == expected


def test_choose_device_refuses_a_gpu_torch_cannot_use() -> None:
    from distill.devices import choose_device

    with pytest.raises(RuntimeError, match=r"Ray assigned GPU\(s\) \['0'\].*CPU-only"):
        choose_device(cuda_available=False, in_ray_worker=True, ray_gpu_ids=["0"],
                      cuda_visible_devices="0")
    with pytest.raises(RuntimeError, match="CUDA_VISIBLE_DEVICES is '1'"):
        choose_device(cuda_available=True, in_ray_worker=True, ray_gpu_ids=["0"],
                      cuda_visible_devices="1")


@pytest.mark.parametrize("setting, device, bf16, expected", [
    ("auto", "cpu", None, "float32"),
    ("auto", "cuda:0", True, "bfloat16"),
    ("auto", "cuda:0", False, "float32"),
    ("float32", "cuda:0", True, "float32"),
    ("bfloat16", "cpu", None, "bfloat16"),
    ("float16", "cuda:1", True, "float16"),
])
def test_resolve_dtype(setting, device, bf16, expected) -> None:
    from distill.devices import resolve_dtype

    assert resolve_dtype(setting, device, bf16_supported=bf16) == expected


def test_student_predictor_places_the_model_on_its_device_and_dtype(tmp_path: Path,
                                                                    monkeypatch) -> None:
    """The evaluation actor's model is on the device the seam chose, in the configured dtype,
    and generate() sends its inputs there. On CPU the move shows as a dtype (bfloat16) and,
    for the device, as the ``meta`` device standing in for a GPU."""
    import distill.evaluate.infer as infer
    from distill.evaluate.infer import StudentPredictor

    problems = _problems(4)
    rows = _sft(problems)
    where = str(get_student("scratch").prepare(_config().student, _texts(rows), tmp_path / "s"))
    sources = [p["masked_question"] for p in problems]

    udf = StudentPredictor(where, {"dtype": "bfloat16", "max_new_tokens": 4})
    model = udf.student[0]
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    out = udf({"masked_question": sources})["outputs"]
    assert len(out) == 4 and all(len(o) == 1 and isinstance(o[0], str) for o in out)

    with pytest.raises(ValueError, match="float16 needs a CUDA device; this process decodes on cpu"):
        StudentPredictor(where, {"dtype": "float16"})

    monkeypatch.setattr(infer, "current_device", lambda: "meta")  # what choose_device said
    udf = StudentPredictor(where, {"max_new_tokens": 4})
    model = udf.student[0]
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # auto off CUDA
    seen = []

    def fake_generate(**kw):  # records where generate() put its inputs
        seen.append({k: kw[k].device.type for k in ("input_ids", "attention_mask")})
        return torch.zeros((kw["input_ids"].shape[0], 2), dtype=torch.long)

    monkeypatch.setattr(model, "generate", fake_generate)
    udf({"masked_question": sources})
    assert seen and all(s == {"input_ids": "meta", "attention_mask": "meta"} for s in seen)


@pytest.mark.gpu
def test_student_predictor_on_gpu(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from distill.evaluate.infer import StudentPredictor

    problems = _problems(4)
    where = str(get_student("scratch").prepare(_config().student, _texts(_sft(problems)),
                                               tmp_path / "s"))
    udf = StudentPredictor(where, {"max_new_tokens": 4})
    params = list(udf.student[0].parameters())
    assert {p.device.type for p in params} == {"cuda"}
    want = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert {p.dtype for p in params} == {want}
    out = udf({"masked_question": [p["masked_question"] for p in problems]})["outputs"]
    assert len(out) == 4 and all(len(o) == 1 for o in out)
    udf = StudentPredictor(where, {"max_new_tokens": 4, "dtype": "float16"})
    assert {p.dtype for p in udf.student[0].parameters()} == {torch.float16}


# ------------------------------------------------------------------ driver-side checks
def test_fit_checks_before_starting_ray(tmp_path: Path) -> None:
    from distill.train.stage import _phases, fit

    rows = _sft(_problems(8))
    with pytest.raises(ValueError, match="target_text"):
        fit(_config(), [{"problem_id": "a", "stage": "solve", "source_text": "x"}], storage_path=tmp_path)
    with pytest.raises(ValueError, match="no training examples"):
        fit(_config(), [], storage_path=tmp_path)
    done = tmp_path / "student" / "epoch_0001"
    done.mkdir(parents=True)
    (done / "trainer_state.json").write_text("{}")
    with pytest.raises(ValueError, match="resume is false"):
        fit(_config(checkpointing={"resume": False}), rows, storage_path=tmp_path)
    kp = [{"problem_id": "a", "stage": s, "source_text": "q", "target_text": "t"}
          for s in ("keypoints", "solve", "keypoints")]
    seq = _phases(_config(target="kpdd", kpdd_schedule="sequential"), kp)
    assert [(name, len(r)) for name, r in seq] == [("student-keypoints", 2), ("student-solve", 1)]
    assert [(n, len(r)) for n, r in _phases(_config(target="kpdd"), kp)] == [("student", 3)]


def test_initial_student_on_uri_storage(tmp_path: Path) -> None:
    """Storage given as a pyarrow URI (s3:// on a cluster; file:// here): the scratch student
    is uploaded once, and workers get a local copy."""
    from transformers import AutoTokenizer

    from distill.storage import local_copy
    from distill.train.stage import stage_initial_student

    rows = _sft(_problems(8))
    uri = f"file://{tmp_path}/store/run/student_init"
    assert stage_initial_student(_config(), _texts(rows), uri) == uri
    mtime = (tmp_path / "store/run/student_init/config.json").stat().st_mtime_ns
    assert stage_initial_student(_config(), _texts(rows), uri) == uri  # kept, not rebuilt
    assert (tmp_path / "store/run/student_init/config.json").stat().st_mtime_ns == mtime
    with local_copy(uri) as local:
        assert AutoTokenizer.from_pretrained(local)("* N0 N1")["input_ids"]
    with local_copy("google/flan-t5-small") as name:  # hub names pass through
        assert str(name) == "google/flan-t5-small"

"""Students: the models a teacher's reasoning is distilled into, behind one small interface.

A *student kind* (registry: :func:`register_student` / :func:`get_student`) turns a
:class:`~distill.train.config.StudentConfig` into the place the training workers load the
initial model from (:meth:`Student.prepare`), and into a live ``(model, tokenizer)`` pair
(:meth:`Student.build`). Kinds:

* ``hf_seq2seq`` -- an encoder-decoder from the hub or a local folder (T5, FlanT5, ...).
* ``hf_causal``  -- a decoder-only LM from the hub or a local folder (Qwen2, Llama, GPT-2, ...).
* ``scratch``    -- a randomly initialised model of a size preset (``tiny``: a few M
  parameters; ``small``: tens of M): a ``T5ForConditionalGeneration`` (default) or a
  ``Qwen2ForCausalLM`` with a byte-level BPE tokenizer trained on the training texts, or a
  tree-decoding equation student (``architecture: tree``, :mod:`distill.train.tree`) with a
  word-level tokenizer.

Whatever the kind, a student on disk is a folder ``save_pretrained`` wrote (model and
tokenizer), which :func:`load_student` -- and so ``AutoTokenizer`` /
``AutoModelForSeq2SeqLM`` / ``AutoModelForCausalLM`` -- reads back.

The trained tokenizer (:func:`train_tokenizer`) keeps every placeholder ``N0`` .. ``N39``, the
operators ``+ - * / ^ ( ) =`` and ``neg`` as single tokens (with and without a leading space,
so ``* N0 N1`` is three tokens), splits digits one by one, and isolates each CJK character
before BPE, so every Chinese character of the training text becomes one token and an unseen
one falls back to its bytes: nothing is ever unknown.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Protocol

from distill.registry import Registry
from distill.storage import is_uri, local_copy, run_location
from distill.train.config import StudentConfig

if TYPE_CHECKING:  # heavy imports stay out of module import
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "CJK_RANGES",
    "MAX_PLACEHOLDERS",
    "OPERATOR_TOKENS",
    "PRESETS",
    "Student",
    "UnknownStudentError",
    "get_student",
    "load_student",
    "register_student",
    "student_names",
    "train_tokenizer",
]

MAX_PLACEHOLDERS = 40
OPERATOR_TOKENS = ("+", "-", "*", "/", "^", "(", ")", "=")
SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>", "<s>")  # ids 0, 1, 2, 3 in a trained tokenizer
#: the CJK character ranges (a regex character-class body): each such character is one token
CJK_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK = f"[{CJK_RANGES}]"

# Model-config fields per (architecture, preset). Vocabulary sizes are the tokenizer's target;
# the model takes the size the trained tokenizer actually reached.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "t5": {
        "tiny": dict(d_model=128, d_kv=32, num_heads=4, d_ff=512, num_layers=3,
                     num_decoder_layers=3, dropout_rate=0.1),
        "small": dict(d_model=384, d_kv=64, num_heads=6, d_ff=1536, num_layers=6,
                      num_decoder_layers=6, dropout_rate=0.1),
    },
    "tree": {
        "tiny": dict(embedding_size=128, hidden_size=256, num_layers=2, dropout=0.5),
        "small": dict(embedding_size=256, hidden_size=512, num_layers=2, dropout=0.5),
    },
    "qwen2": {
        "tiny": dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024),
        "small": dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=8,
                      num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=2048),
    },
}
PRESET_VOCAB = {"tiny": 4000, "small": 16000}


class UnknownStudentError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Student(Protocol):
    """A student kind. ``prepare`` runs once on the driver; ``build`` anywhere."""

    name: ClassVar[str]

    def prepare(self, config: StudentConfig, texts: Callable[[], Iterable[str]], out_dir: Path,
                seed: int = 0) -> str:
        """Where the training workers load the initial student from: a local folder (written
        under ``out_dir`` when the kind builds one) or a hub name. ``texts`` yields the
        training texts (for kinds that train a tokenizer). Reuses ``out_dir`` when it already
        holds a student, so a resumed run keeps its tokenizer."""
        ...

    def build(self, config: StudentConfig, texts: Callable[[], Iterable[str]] | None = None,
              seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        """The initial model and tokenizer, in memory."""
        ...


_REGISTRY: Registry[Student] = Registry("student kind", UnknownStudentError)


def register_student(name: str) -> Callable[[type], type]:
    """Class decorator: register an instance of the class as student kind ``name`` (a
    duplicate name raises)."""
    return _REGISTRY.decorator(name, make=lambda cls: cls())


def get_student(name: str) -> Student:
    """The student kind registered as ``name``; an unknown name raises UnknownStudentError."""
    return _REGISTRY.get(name)


def student_names() -> list[str]:
    return _REGISTRY.names()


# ------------------------------------------------------------------------------- tokenizer
def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 4000,
    *,
    append_eos: bool = True,
    min_frequency: int = 2,
) -> PreTrainedTokenizerBase:
    """A byte-level BPE tokenizer trained on ``texts``, as a ``PreTrainedTokenizerFast``.

    Special tokens ``<pad>`` (0), ``</s>`` (1, eos), ``<unk>`` (2), ``<s>`` (3, bos).
    ``append_eos`` makes encoding add ``</s>`` at the end (what T5 encoders expect);
    decoder-only students leave it off.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CJK), behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Added after training (training would renumber them). Longest match wins, so N12 is one
    # token, and " N0" (with its space) is preferred where the space is there.
    symbols = [f"N{i}" for i in range(MAX_PLACEHOLDERS)] + list(OPERATOR_TOKENS)
    tok.add_tokens(
        [AddedToken(s, normalized=False) for s in symbols]
        + [AddedToken(" " + s, normalized=False) for s in symbols]
        # "neg" (unary minus in prefix notation) only as a word, never inside "negative"
        + [AddedToken("neg", single_word=True, normalized=False),
           AddedToken(" neg", single_word=True, normalized=False)]
    )
    if append_eos:
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        bos_token="<s>",
        model_max_length=1_000_000,
        clean_up_tokenization_spaces=False,
    )


# ------------------------------------------------------------------------------ loading
def load_student(
    location: str | os.PathLike,
    *,
    trust_remote_code: bool = False,
    dtype: Any = None,
    device: Any = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer from a folder ``save_pretrained`` wrote (local, or an object-store
    URI: downloaded first), or a hub name. The model class follows the config
    (encoder-decoder or decoder-only); a tokenizer without a pad token (GPT-2, Llama) gets its
    eos token as pad.

    ``dtype`` (a ``torch.dtype`` or its name) is the weights' dtype; None keeps the stored
    one (transformers' ``dtype="auto"``). ``device`` (None: where transformers loads, the
    CPU) is where the model is moved."""
    if is_uri(location):
        with local_copy(location) as folder:
            return load_student(folder, trust_remote_code=trust_remote_code, dtype=dtype,
                                device=device)
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    location = str(location)
    config = _auto_config(location, trust_remote_code)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if dtype is not None:
        import torch

        kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    model = auto.from_pretrained(location, **kwargs)
    if device is not None:
        model = model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
    _ensure_pad(model, tokenizer)
    return model, tokenizer


def _auto_config(location: str, trust_remote_code: bool) -> Any:
    """``AutoConfig.from_pretrained`` once the project's own model types (the tree student)
    are known to the Auto classes."""
    from transformers import AutoConfig

    from distill.train import tree

    tree.register()
    if is_uri(location):  # a student folder on an object store: its config.json alone
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "config.json").write_bytes((run_location(location) / "config.json")
                                                    .read_bytes())
            return AutoConfig.from_pretrained(tmp, trust_remote_code=trust_remote_code)
    return AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code)


def _ensure_pad(model: Any, tokenizer: Any) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id


def is_encoder_decoder(folder: str | os.PathLike) -> bool:
    """Whether a student folder holds an encoder-decoder model (its ``config.json``)."""
    import json

    config = json.loads((run_location(folder) / "config.json").read_text(encoding="utf-8"))
    return bool(config.get("is_encoder_decoder"))


def is_student_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "tokenizer_config.json").is_file()


# -------------------------------------------------------------------------------- kinds
class _HFStudent:
    name: ClassVar[str]
    encoder_decoder: ClassVar[bool]

    def prepare(self, config: StudentConfig, texts: Callable[[], Iterable[str]], out_dir: Path,
                seed: int = 0) -> str:
        self._check_config(config)
        return str(config.name_or_path)

    def build(self, config: StudentConfig, texts: Callable[[], Iterable[str]] | None = None,
              seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        self._check_config(config)
        return load_student(config.name_or_path, trust_remote_code=config.trust_remote_code)

    def _check_config(self, config: StudentConfig) -> None:
        mc = _auto_config(str(config.name_or_path), config.trust_remote_code)
        if bool(mc.is_encoder_decoder) != self.encoder_decoder:
            want = "an encoder-decoder" if self.encoder_decoder else "a decoder-only"
            other = "hf_causal" if self.encoder_decoder else "hf_seq2seq"
            raise ValueError(
                f"{config.name_or_path} ({mc.model_type}) is not {want} model; use kind {other!r}"
            )


@register_student("hf_seq2seq")
class HFSeq2SeqStudent(_HFStudent):
    encoder_decoder = True


@register_student("hf_causal")
class HFCausalStudent(_HFStudent):
    encoder_decoder = False


@register_student("scratch")
class ScratchStudent:
    """A model of a size preset, randomly initialised (seeded), with a trained tokenizer."""

    def prepare(self, config: StudentConfig, texts: Callable[[], Iterable[str]], out_dir: Path,
                seed: int = 0) -> str:
        out_dir = Path(out_dir)
        if not is_student_dir(out_dir):
            model, tokenizer = self.build(config, texts, seed)
            tmp = out_dir.with_name(out_dir.name + ".tmp")  # written whole, then renamed
            for partial in (tmp, out_dir):
                if partial.exists():
                    shutil.rmtree(partial)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            tmp.rename(out_dir)
        return str(out_dir)

    def build(self, config: StudentConfig, texts: Callable[[], Iterable[str]] | None = None,
              seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        import torch

        if texts is None:
            raise ValueError("a scratch student needs the training texts to train its tokenizer")
        vocab = config.vocab_size or PRESET_VOCAB[config.preset]
        if config.architecture == "tree":
            return _build_tree(config, list(texts()), vocab, seed)
        t5 = config.architecture == "t5"
        tokenizer = train_tokenizer(texts(), vocab, append_eos=t5)
        fields = {**PRESETS[config.architecture][config.preset], **config.model_overrides}
        ids = dict(pad_token_id=0, eos_token_id=1, bos_token_id=3)
        torch.manual_seed(seed)
        if t5:
            from transformers import T5Config, T5ForConditionalGeneration

            mc = T5Config(vocab_size=len(tokenizer), decoder_start_token_id=0, **ids, **fields)
            model = T5ForConditionalGeneration(mc)
        else:
            from transformers import Qwen2Config, Qwen2ForCausalLM

            mc = Qwen2Config(vocab_size=len(tokenizer), tie_word_embeddings=True, **ids, **fields)
            model = Qwen2ForCausalLM(mc)
        _ensure_pad(model, tokenizer)
        return model, tokenizer


def _build_tree(config: StudentConfig, texts: list[str], vocab: int, seed: int) -> tuple[Any, Any]:
    import torch

    from distill.train import tree

    constants = tree.symbols_of_targets(texts)
    tokenizer = tree.train_word_tokenizer(texts, max_placeholders=MAX_PLACEHOLDERS,
                                          special_tokens=SPECIAL_TOKENS, constants=constants,
                                          vocab_size=vocab)

    def ids(tokens: Iterable[str]) -> list[int]:
        return [tokenizer.convert_tokens_to_ids(t) for t in tokens]

    fields = {**PRESETS["tree"][config.preset], **config.model_overrides}
    torch.manual_seed(seed)
    model = tree.TreeModel(tree.TreeConfig(
        vocab_size=len(tokenizer), binary_operator_ids=ids(tree.BINARY_OPERATORS),
        unary_operator_ids=ids(tree.UNARY_OPERATORS), constant_ids=ids(constants),
        placeholder_ids=ids(f"N{i}" for i in range(MAX_PLACEHOLDERS)),
        equals_id=tokenizer.convert_tokens_to_ids("="),
        unknown_id=tokenizer.convert_tokens_to_ids("x") if "x" in constants else None,
        pad_token_id=0, eos_token_id=1, bos_token_id=3, **fields))
    return model, tokenizer


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())

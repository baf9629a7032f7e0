"""Token layout of a student's examples, shared by training and inference.

* encoder-decoder: encoder input = the tokenizer's encoding of the source (with its special
  tokens: T5 appends ``</s>``); labels = the target's encoding, ending with eos.
* decoder-only: prompt = source tokens + the tokens of :data:`CAUSAL_SEPARATOR`; the model
  reads prompt + target + eos and is trained on the target and eos only (prompt labels -100).

:func:`epoch_batches` is the data order: a seeded permutation per epoch, padded by wrapping so
every worker gets the same number of batches (collectives stay in step), split by stride.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

IGNORE_INDEX = -100
CAUSAL_SEPARATOR = "\n=> "


@dataclass(frozen=True)
class Encoded:
    """One example as token ids: ``prompt`` (encoder input, or the causal prompt) and
    ``target`` (labels; ends with eos)."""

    prompt: list[int]
    target: list[int]


def _eos(tokenizer: Any) -> int:
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token")
    return tokenizer.eos_token_id


def encode_prompts(tokenizer: Any, sources: Sequence[str], encoder_decoder: bool,
                   max_source_length: int) -> list[list[int]]:
    """Token ids the model reads before it writes (see the module docstring)."""
    ids = tokenizer(list(sources), add_special_tokens=True, truncation=True,
                    max_length=max_source_length)["input_ids"]
    if encoder_decoder:
        return [list(x) for x in ids]
    sep = tokenizer(CAUSAL_SEPARATOR, add_special_tokens=False)["input_ids"]
    return [list(x) + list(sep) for x in ids]


def encode_examples(tokenizer: Any, sources: Sequence[str], targets: Sequence[str],
                    encoder_decoder: bool, max_source_length: int,
                    max_target_length: int) -> list[Encoded]:
    """Prompt and target ids of each (source, target) pair; targets end with eos."""
    if len(sources) != len(targets):
        raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
    eos = _eos(tokenizer)
    prompts = encode_prompts(tokenizer, sources, encoder_decoder, max_source_length)
    tids = tokenizer(list(targets), add_special_tokens=encoder_decoder, truncation=True,
                     max_length=max_target_length - (0 if encoder_decoder else 1))["input_ids"]
    out = []
    for p, t in zip(prompts, tids):
        t = list(t)
        if not t or t[-1] != eos:
            t = t[: max_target_length - 1] + [eos]
        out.append(Encoded(p, t))
    return out


def collate(batch: Sequence[Encoded], pad_id: int, encoder_decoder: bool) -> dict[str, Any]:
    """Padded tensors for one batch (right padding), plus ``n_tokens``: the non-pad tokens
    the model reads and writes (for tokens/s)."""
    import torch

    if encoder_decoder:
        src_len = max(len(e.prompt) for e in batch)
        tgt_len = max(len(e.target) for e in batch)
        input_ids = torch.full((len(batch), src_len), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), src_len), dtype=torch.long)
        labels = torch.full((len(batch), tgt_len), IGNORE_INDEX, dtype=torch.long)
        for i, e in enumerate(batch):
            input_ids[i, : len(e.prompt)] = torch.tensor(e.prompt)
            mask[i, : len(e.prompt)] = 1
            labels[i, : len(e.target)] = torch.tensor(e.target)
        n_tokens = int(mask.sum()) + int((labels != IGNORE_INDEX).sum())
    else:
        length = max(len(e.prompt) + len(e.target) for e in batch)
        input_ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), length), dtype=torch.long)
        labels = torch.full((len(batch), length), IGNORE_INDEX, dtype=torch.long)
        for i, e in enumerate(batch):
            seq = e.prompt + e.target
            input_ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
            labels[i, len(e.prompt): len(seq)] = torch.tensor(e.target)
        n_tokens = int(mask.sum())
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels,
            "n_tokens": n_tokens}


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, rank: int = 0,
                  world_size: int = 1, shuffle: bool = True) -> list[list[int]]:
    """This worker's batches of example indices for ``epoch`` (the same on every run)."""
    import torch

    if n == 0:
        raise ValueError("no training examples")
    if shuffle:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=g).tolist()
    else:
        order = list(range(n))
    total = -(-n // world_size) * world_size
    order = (order * (total // n + 1))[:total]  # wrap around: equal shares
    mine = order[rank::world_size]
    return [mine[i: i + batch_size] for i in range(0, len(mine), batch_size)]

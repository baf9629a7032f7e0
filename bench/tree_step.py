"""Benchmark: one training step of the tree student, its encoder run on padded rows (as the
student does) against the packed ``nn.GRU`` it replaced, in one process.

The tree student at its ``tiny`` preset (GRU encoder 2 x 256 over 128-wide embeddings, the goal-
driven tree decoder), batches of 32 questions with the lengths of Math23K's training questions
(their character counts, when ``--data-dir`` has ``math23k/Math_23K.json``; else a fixed spread
of 20 to 90 tokens), prefix targets of 3 to 9 symbols. Each variant runs the same batches
(forward, loss, backward, one torch thread), alternating, ``--repeats`` times; the best time of
each is kept. Prints the milliseconds per step of each, the ratio packed / padded, and the
largest difference between the two encoders' states (they must agree).

    .venv/bin/python bench/tree_step.py [--data-dir ../shared/data] [--batches 12] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def question_lengths(data_dir: Path | None, n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    path = data_dir / "math23k" / "Math_23K.json" if data_dir else None
    if path is not None and path.is_file():
        text, decoder, pos, lengths = path.read_text(encoding="utf-8"), json.JSONDecoder(), 0, []
        while len(lengths) < 5000:
            start = text.find("{", pos)
            if start < 0:
                break
            record, pos = decoder.raw_decode(text, start)
            lengths.append(min(160, len(record["original_text"]) + 1))
        return [rng.choice(lengths) for _ in range(n)]
    return [rng.randint(20, 90) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bucketed", action="store_true", help="batches of similar lengths (the "
                    "questions sorted by length before batching), as a length-bucketing "
                    "sampler would make them")
    args = ap.parse_args()

    import torch
    from torch import nn

    from distill.train.tree import TreeConfig, TreeModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    ops, constants, placeholders = [4, 5, 6, 7, 8, 9, 10], [11, 12, 13, 14], list(range(15, 35))
    vocab = 3000
    config = TreeConfig(vocab_size=vocab, binary_operator_ids=ops[:6], unary_operator_ids=ops[6:],
                        constant_ids=constants, placeholder_ids=placeholders)
    model = TreeModel(config).train()
    batch_size = 32
    lengths = question_lengths(args.data_dir, batch_size * args.batches, seed=0)
    if args.bucketed:
        lengths.sort()
    rng = random.Random(1)
    batches = []
    for b in range(args.batches):
        rows = lengths[b * batch_size:(b + 1) * batch_size]
        width = max(rows)
        ids = torch.zeros(batch_size, width, dtype=torch.long)
        labels = torch.full((batch_size, 10), -100, dtype=torch.long)
        for i, n in enumerate(rows):
            ids[i, :n] = torch.randint(40, vocab, (n,))
            slots = rng.sample(range(n), k=min(n, 4))
            for k, pos in enumerate(slots):
                ids[i, pos] = placeholders[k]
            # a random full binary tree over the row's placeholders: ops then leaves (prefix)
            n_ops = rng.randint(1, 4)
            target = [rng.choice(ops[:4]) for _ in range(n_ops)]
            target += [placeholders[rng.randrange(len(slots))] for _ in range(n_ops + 1)]
            labels[i, :len(target)] = torch.tensor(target)
            labels[i, len(target)] = config.eos_token_id
        batches.append((ids, ids.ne(0).long(), labels))

    padded_states = TreeModel._bidirectional_states

    def packed_states(self, emb, lengths, mask):
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.encoder(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                total_length=emb.size(1))[0]

    def step_time(states) -> float:
        TreeModel._bidirectional_states = states
        t0 = time.perf_counter()
        for ids, mask, labels in batches:
            model.zero_grad()
            model(ids, mask, labels).loss.backward()
        return (time.perf_counter() - t0) / len(batches)

    best = {"packed": float("inf"), "padded": float("inf")}
    for _ in range(args.repeats):
        best["packed"] = min(best["packed"], step_time(packed_states))
        best["padded"] = min(best["padded"], step_time(padded_states))
    TreeModel._bidirectional_states = padded_states
    model.eval()
    with torch.no_grad():
        ids, mask, _ = batches[0]
        emb = model.embedding(ids)
        lens = mask.sum(1)
        diff = (padded_states(model, emb, lens, mask.bool())
                - packed_states(model, emb, lens, mask.bool())).abs().max().item()
    mean_len = sum(lengths) / len(lengths)
    print(f"tree student step (batch {batch_size}, mean question length {mean_len:.1f} tokens, "
          f"{'length-bucketed' if args.bucketed else 'random'} batches: {args.batches}, "
          f"best of {args.repeats}):")
    print(f"  packed nn.GRU encoder   {best['packed'] * 1000:7.1f} ms/step")
    print(f"  padded rows (the student) {best['padded'] * 1000:5.1f} ms/step")
    print(f"  ratio packed / padded   {best['packed'] / best['padded']:.2f}x   "
          f"(largest state difference {diff:.2e})")


if __name__ == "__main__":
    main()

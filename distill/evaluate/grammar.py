"""Grammar-constrained decoding of equation students: every output is a well-formed equation.

An equation student (target ``equation_prefix``) writes prefix expressions over its problem's
placeholders ``N0 … N{k-1}`` and the allowed constants: ``/ + N0 N1 N2``. Left alone, a small
student sometimes writes one that never closes (``/ + + + + …``), has an operand too many
(``- + N0 N2 N3 N1``) or names a quantity the problem does not have; each is an answer lost as
``unparsable``. Decoding under :class:`PrefixGrammar` removes those: at every step only the
tokens that keep the text a prefix of a well-formed expression are allowed, the end of the
sequence only once it is complete, and an operator only while the tokens left can still close
the expression. An output the unconstrained student would have written well-formed is
unchanged (greedy decoding picks the same token whenever that token is allowed).

Words (space separated): binary operators ``+ - * / ^ **`` (two operands), ``neg`` (one),
``=`` (first word only: an equation of two sides, in which the unknown ``x`` is an operand),
placeholders ``N<i>`` with ``i`` below the problem's quantity count, and numbers: the
constants given (as written: ``1``, ``3.14``, ``100``), or, with ``constants=None``, any
decimal number (a student trained on gold equations writes the constants its labels had).

The grammar works on text, so it is tokenizer-agnostic: :class:`TokenPieces` finds once per
tokenizer the text each token adds (with its leading space), keeps only the tokens made of the
grammar's characters, and keeps the state transitions and allowed tokens it has computed; the
logits processor (:func:`grammar_logits_processor`, torch) moves each row's state by its last
token and masks the rest. The pure part (:class:`PrefixGrammar`: :meth:`~PrefixGrammar.feed`,
:meth:`~PrefixGrammar.complete`, :meth:`~PrefixGrammar.allows`) imports nothing heavy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Sequence

__all__ = ["PrefixGrammar", "PrefixState", "TokenPieces", "grammar_logits_processor"]

BINARY = ("+", "-", "*", "/", "^", "**")
UNARY = ("neg",)
EQUALS = "="
UNKNOWN = "x"
#: Characters an equation word may contain (a token with any other is never allowed).
_ALPHABET = set("+-*/^=negxN0123456789.")
_NUMBER = re.compile(r"\d+(\.\d+)?")
_NUMBER_START = re.compile(r"\d+\.?\d*")


@dataclass(frozen=True)
class PrefixState:
    """Where a prefix expression's text stands: ``need`` operands still missing (0: complete),
    the ``partial`` word being written (no space after it yet), ``words``: 0 before the first
    word is complete, else 1 (only the first word may be ``=``);
    ``ok`` False once the text can no longer become well-formed; ``equation``: it began with
    ``=``, ``unknown``: ``x`` has appeared (an equation is complete only with it)."""

    need: int
    partial: str
    words: int
    ok: bool = True
    equation: bool = False
    unknown: bool = False


@dataclass(frozen=True)
class PrefixGrammar:
    """Well-formed prefix expressions over ``N0 … N{quantities-1}`` and ``constants`` (None:
    any decimal number)."""

    quantities: int
    constants: tuple[str, ...] | None = None

    def _number(self, word: str) -> bool:
        if self.constants is None:
            return _NUMBER.fullmatch(word) is not None
        return word in self.constants

    def _operand(self, word: str, equation: bool = False) -> bool:
        if self._number(word) or (equation and word == UNKNOWN):
            return True
        if len(word) > 1 and word[0] == "N" and word[1:].isdigit():
            i = word[1:]
            return (i == "0" or not i.startswith("0")) and int(i) < self.quantities
        return False

    def _could_start(self, partial: str, first: bool, equation: bool) -> bool:
        """Some allowed word starts with ``partial``."""
        if any(w.startswith(partial) for w in BINARY + UNARY):
            return True
        if (first and partial == EQUALS) or (equation and partial == UNKNOWN):
            return True
        if self.constants is None:
            if _NUMBER_START.fullmatch(partial):
                return True
        elif any(c.startswith(partial) for c in self.constants):
            return True
        if partial == "N":
            return self.quantities > 0
        if partial[:1] == "N" and partial[1:].isdigit():
            digits = partial[1:]
            if digits.startswith("0") and digits != "0":
                return False
            return int(digits) < self.quantities  # N1 may become N12 only if N1 < k anyway
        return False

    def _closed(self, state: PrefixState) -> PrefixState:
        """``state`` with its partial word completed (a space, or the end, after it)."""
        word, eq, x = state.partial, state.equation, state.unknown
        bad = PrefixState(state.need, "", state.words, False, eq, x)
        if not state.ok or state.need == 0:
            return bad
        if word == EQUALS and state.words == 0:
            return PrefixState(2, "", 1, True, True)
        if word in BINARY:
            return PrefixState(state.need + 1, "", 1, True, eq, x)
        if word in UNARY:
            return PrefixState(state.need, "", 1, True, eq, x)
        if self._operand(word, eq):
            x = x or word == UNKNOWN
            if eq and state.need == 1 and not x:  # an equation without its unknown
                return bad
            return PrefixState(state.need - 1, "", 1, True, eq, x)
        return bad

    def start(self) -> PrefixState:
        return PrefixState(1, "", 0)

    def feed(self, state: PrefixState, text: str) -> PrefixState:
        """``state`` after ``text`` (a space ends a word; no other whitespace is allowed)."""
        for ch in text:
            if not state.ok:
                break
            if ch == " ":
                if state.partial:
                    state = self._closed(state)
                elif state.need == 0:  # nothing may follow a complete expression
                    state = replace(state, ok=False)
                continue
            if state.need == 0 or ch not in _ALPHABET:
                return replace(state, ok=False)
            partial = state.partial + ch
            state = replace(state, partial=partial,
                            ok=self._could_start(partial, state.words == 0, state.equation))
        return state

    def state(self, text: str) -> PrefixState:
        """The state after ``text`` from the start (leading spaces ignored)."""
        return self.feed(self.start(), text.lstrip(" "))

    def complete(self, state: PrefixState) -> bool:
        """The text so far is a whole expression (the sequence may end here)."""
        if not state.ok:
            return False
        if state.partial:
            closed = self._closed(state)
            return closed.ok and closed.need == 0
        return state.need == 0

    def allows(self, state: PrefixState, piece: str, tokens_left: int) -> bool:
        """A token adding ``piece`` may come next, with ``tokens_left`` tokens after it.

        Budget: every missing operand takes at least one more token (and a word half written
        one more), so an operator is allowed only while what is missing after it fits in what
        is left; the text must stay a prefix."""
        if not piece:
            return False
        after = self.feed(state, piece)
        if not after.ok:
            return False
        need = after.need
        if after.partial:  # the word being written: complete as it stands, or one more token
            closed = self._closed(after)
            need = closed.need if closed.ok else after.need + 1
        return need <= max(tokens_left, 0)


class TokenPieces:
    """Per tokenizer: the text each vocabulary token adds after a word (with its leading
    space), for the tokens made only of the grammar's characters and spaces (a newline, a tab
    or any other whitespace is never allowed)."""

    def __init__(self, tokenizer: Any):
        self.eos_id = tokenizer.eos_token_id
        anchor_ids = tokenizer.encode("N0", add_special_tokens=False)
        anchor = tokenizer.decode(anchor_ids)
        special = set(tokenizer.all_special_ids)
        self.pieces: dict[int, str] = {}
        for token_id in range(len(tokenizer)):
            if token_id in special:
                continue
            text = tokenizer.decode(anchor_ids + [token_id])
            if not text.startswith(anchor):
                continue
            piece = text[len(anchor):]
            if piece and all(c in _ALPHABET or c == " " for c in piece):
                self.pieces[token_id] = piece

        self._allowed: dict[tuple, list[int]] = {}
        self._next: dict[tuple, PrefixState] = {}
        # a token adds at most this many operands to what is missing (one per word it holds)
        self._most_words = max((len(p.split()) for p in self.pieces.values()), default=1)

    def next_state(self, grammar: PrefixGrammar, state: PrefixState, token: int
                   ) -> PrefixState:
        """``state`` after ``token`` (a token outside the grammar, e.g. the end of sequence or
        padding after it: a dead state). Kept, like :meth:`allowed`."""
        key = (grammar, state, token)
        after = self._next.get(key)
        if after is None:
            piece = self.pieces.get(token)
            after = (grammar.feed(state, piece) if piece is not None
                     else PrefixState(0, "", state.words, False))
            if len(self._next) < 1_000_000:
                self._next[key] = after
        return after

    def key(self, grammar: PrefixGrammar, state: PrefixState, tokens_left: int) -> tuple:
        """What the allowed tokens depend on: past ``need`` + the most a token can add (+1 for
        a half-written word), more tokens left change nothing."""
        return grammar, state, min(tokens_left, state.need + self._most_words + 1)

    def allowed(self, grammar: PrefixGrammar, state: PrefixState, tokens_left: int) -> list[int]:
        """The token ids that may come next (the end of sequence when the expression is
        complete, or when nothing else can: a dead end ends rather than rambles). Kept for
        the tokenizer's lifetime: the same states recur in every batch."""
        key = self.key(grammar, state, tokens_left)
        ids = self._allowed.get(key)
        if ids is None:
            ids = [tid for tid, piece in self.pieces.items()
                   if grammar.allows(state, piece, tokens_left)]
            if grammar.complete(state) or not state.ok or not ids:
                ids.append(self.eos_id)
            if len(self._allowed) < 1_000_000:
                self._allowed[key] = ids
        return ids


def grammar_logits_processor(pieces: TokenPieces, grammars: Sequence[PrefixGrammar],
                             rows_per_source: int, prompt_width: int, max_new_tokens: int):
    """A ``transformers`` ``LogitsProcessor`` constraining each generated row to its source's
    grammar (row ``r`` decodes source ``r // rows_per_source``, as ``generate`` expands
    ``num_return_sequences``, or ``num_beams`` under beam search). ``prompt_width``: tokens in
    ``input_ids`` before the generated ones (a decoder-only model's padded prompt; 1 for an
    encoder-decoder model, its decoder start token). A row's state is found from its whole
    generated prefix, so greedy, sampled and beam decoding (which reorders rows) all work.

    The allowed tokens depend only on the grammar, the state and the tokens left (capped at
    what the state could need), so each such key's mask is computed once and reused."""
    import torch
    from transformers import LogitsProcessor

    mask_cache: dict[tuple, torch.Tensor] = {}

    def row_mask(grammar: PrefixGrammar, state: PrefixState, left: int, like: torch.Tensor
                 ) -> torch.Tensor:
        """0 where a token is allowed, -inf elsewhere (one row of scores)."""
        key = pieces.key(grammar, state, left)
        mask = mask_cache.get(key)
        if mask is None:
            mask = torch.full_like(like, float("-inf"))
            mask[pieces.allowed(grammar, state, left)] = 0.0
            mask_cache[key] = mask
        return mask

    class _Grammar(LogitsProcessor):
        def __init__(self) -> None:
            # (source, generated tokens) -> grammar state; keyed by the whole prefix, so a
            # beam search reordering rows between steps finds each row's state all the same
            self.states: dict[tuple[int, tuple[int, ...]], PrefixState] = {}

        def state(self, source: int, prefix: tuple[int, ...]) -> PrefixState:
            key = (source, prefix)
            if key not in self.states:
                grammar = grammars[source]
                self.states[key] = (grammar.start() if not prefix else pieces.next_state(
                    grammar, self.state(source, prefix[:-1]), prefix[-1]))
            return self.states[key]

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor):
            generated = max(input_ids.shape[1] - prompt_width, 0)
            prefixes = [tuple(row[input_ids.shape[1] - generated:]) for row in input_ids.tolist()]
            left = max_new_tokens - generated - 1
            masks = []
            for r, prefix in enumerate(prefixes):
                source = r // rows_per_source
                masks.append(row_mask(grammars[source], self.state(source, prefix), left,
                                      scores[r]))
            return scores + torch.stack(masks)

    return _Grammar()

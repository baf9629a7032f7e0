"""A tree-decoding student: a goal-driven tree decoder (GTS, Xie & Sun 2019) over a GRU encoder.

Where a seq2seq student writes a prefix equation token by token and can write a malformed one,
this student builds the expression tree top-down: each step takes the current *goal* (a node
still to be filled), predicts an operator or a leaf -- a constant or one of the problem's
quantities ``N<i>``, scored against the encoder's state at that quantity's position in the
question -- and an operator opens goals for its children (right pushed under left). A finished
subtree is merged into one vector that the next goal (its right sibling) sees. Every output is
a well-formed prefix equation over the quantities the question has, by construction.

It is an ordinary ``transformers`` model (:class:`TreeConfig` / :class:`TreeModel`, model type
``mathdistill_tree``, registered with ``AutoConfig`` / ``AutoModelForSeq2SeqLM`` by
:func:`register`), so the training loop, DDP / DeepSpeed, checkpoints (``save_pretrained``),
evaluation, refinement and serving treat it like the T5 student:

* ``forward(input_ids, attention_mask, labels)`` returns the teacher-forced loss; ``labels``
  are the tokenizer's ids of the prefix target (``* N0 N1`` then eos; ``-100`` padding), each
  token one symbol.
* ``generate(input_ids, attention_mask, max_new_tokens, num_return_sequences, do_sample,
  temperature, top_p, num_beams)`` returns token ids (symbols, then eos, then padding) that the
  tokenizer decodes to ``* N0 N1``. Greedy when ``do_sample`` is false and ``num_beams`` 1; a
  beam search over trees when ``num_beams > 1``. Other generation arguments
  (``logits_processor``: the equation grammar is redundant here) are accepted and ignored.

Its tokenizer (:func:`train_word_tokenizer`) is word-level: words, punctuation marks and numbers
of the training texts (each CJK character a word), ``<unk>`` for the rest; every placeholder
``N0`` .. ``N39``, operator and target constant is one token.

The decoder's symbols are fixed when the student is built (:func:`symbols_of_targets`): the
binary operators ``+ - * / ^ =``, the unary ``neg``, the constants the training targets use
(``1``, ``100``, ``3.14``, ``x`` ...) and the placeholders; ``=`` only at the root, with ``x``
under it. A target with any other token, or one that is not such a complete prefix expression,
contributes no loss (the tokenizer maps an unseen constant to ``<unk>``). A student is built on
its own training examples, so this happens only when a later round fine-tunes it (refinement's
``start: last``) on a label with a constant the first labels never used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import Seq2SeqLMOutput

from distill.train.students import CJK_RANGES

__all__ = [
    "BINARY_OPERATORS",
    "MODEL_TYPE",
    "TreeConfig",
    "TreeModel",
    "UNARY_OPERATORS",
    "register",
    "symbols_of_targets",
    "train_word_tokenizer",
]

MODEL_TYPE = "mathdistill_tree"
BINARY_OPERATORS = ("+", "-", "*", "/", "^", "=")
UNARY_OPERATORS = ("neg",)
# words: a placeholder or number (N12, 3.14, 25%), one CJK character, a run of other letters,
# or any other single non-space character (punctuation)
_WORD = rf"N\d+|\d+(?:\.\d+)?%?|[{CJK_RANGES}]|[^\W\d_{CJK_RANGES}]+|\S"


def symbols_of_targets(texts: Iterable[str]) -> list[str]:
    """The constants (sorted) used by the prefix targets among ``texts``: the texts that read
    as prefix equations (:func:`distill.equations.parse_prefix`; questions do not), their
    numbers that are one word of the tokenizer (``100``, ``3.14``, ``25%``) and ``x``."""
    from distill.equations import EquationError, literal_numbers, parse_prefix

    constants: set[str] = set()
    for text in texts:
        try:
            numbers = {n.text for n in literal_numbers(parse_prefix(text))}
        except EquationError:
            continue
        constants.update(t for t in text.split()
                         if t == "x" or (t in numbers and re.fullmatch(_WORD, t)))
    return sorted(constants)


def train_word_tokenizer(texts: Iterable[str], *, max_placeholders: int, special_tokens:
                         Sequence[str], constants: Sequence[str], vocab_size: int,
                         min_frequency: int = 2) -> Any:
    """A word-level ``PreTrainedTokenizerFast``: ``special_tokens`` first (pad, eos, unk, bos in
    that order), then the placeholders, operators and ``constants`` (always), then the most
    frequent other words of ``texts`` seen at least ``min_frequency`` times, up to
    ``vocab_size`` in all. Encoding appends eos; decoding joins tokens with spaces."""
    from collections import Counter

    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                   pre_tokenizers.Split(Regex(_WORD), behavior="isolated")])
    fixed = (list(special_tokens) + [f"N{i}" for i in range(max_placeholders)]
             + list(BINARY_OPERATORS) + list(UNARY_OPERATORS) + list(constants))
    vocab: dict[str, int] = {}
    for token in fixed:
        vocab.setdefault(token, len(vocab))
    counts = Counter(w for text in texts for w, _ in pre.pre_tokenize_str(text))
    for word, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size or n < min_frequency:
            break
        vocab.setdefault(word, len(vocab))
    pad, eos, unk, bos = special_tokens[:4]
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # tokens joined by spaces
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, vocab[eos])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, eos_token=eos,
                                   unk_token=unk, bos_token=bos, model_max_length=1_000_000,
                                   clean_up_tokenization_spaces=False)


class TreeConfig(PretrainedConfig):
    """Sizes of the tree student and the token ids of its decoder's symbols (operators,
    constants, placeholders ``N0`` .. in order). ``equals_id`` (``=``, among the binary
    operators) may only be the root; ``unknown_id`` (``x``, among the constants) only appears
    under an ``=`` root."""

    model_type = MODEL_TYPE

    def __init__(self, vocab_size: int = 0, embedding_size: int = 128, hidden_size: int = 256,
                 num_layers: int = 2, dropout: float = 0.5,
                 binary_operator_ids: Sequence[int] = (), unary_operator_ids: Sequence[int] = (),
                 constant_ids: Sequence[int] = (), placeholder_ids: Sequence[int] = (),
                 equals_id: int | None = None, unknown_id: int | None = None,
                 pad_token_id: int = 0, eos_token_id: int = 1, bos_token_id: int = 3,
                 **kwargs: Any):
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.binary_operator_ids = list(binary_operator_ids)
        self.unary_operator_ids = list(unary_operator_ids)
        self.constant_ids = list(constant_ids)
        self.placeholder_ids = list(placeholder_ids)
        self.equals_id = equals_id
        self.unknown_id = unknown_id
        kwargs["is_encoder_decoder"] = True
        super().__init__(pad_token_id=pad_token_id, eos_token_id=eos_token_id,
                         bos_token_id=bos_token_id, **kwargs)

    @property
    def operator_ids(self) -> list[int]:
        return self.binary_operator_ids + self.unary_operator_ids

    @property
    def symbol_ids(self) -> list[int]:
        """Token id of each decoder class: operators, constants, placeholders."""
        return self.operator_ids + self.constant_ids + self.placeholder_ids


@dataclass
class _Encoded:
    """A batch's encoding, fixed while its trees are decoded."""

    states: torch.Tensor          # [B, S, H]
    state_keys: torch.Tensor      # their attention projection
    mask: torch.Tensor            # [B, S] real tokens
    problem: torch.Tensor         # [B, H] the root goal
    candidates: torch.Tensor      # [B, C + P', H] constants, then the placeholders' states
    candidate_keys: torch.Tensor  # their scoring projection
    allowed: torch.Tensor         # [B, C + P'] which leaves each problem has


@dataclass
class _Open:
    """An entry of a row's tree stack: an operator (its class) waiting for its children, or a
    finished subtree (its vector) waiting for its right sibling."""

    op: int = -1
    arity: int = 0
    vector: torch.Tensor | None = None

    @property
    def done(self) -> bool:
        return self.vector is not None


class _Additive(nn.Module):
    """Additive scores ``v . tanh(W_q q + W_k k)`` of a query against many keys; the keys'
    projection is computed once per batch (:meth:`keys`), the query's at each step."""

    def __init__(self, query_size: int, key_size: int, hidden: int):
        super().__init__()
        self.query = nn.Linear(query_size, hidden)
        self.key = nn.Linear(key_size, hidden, bias=False)
        self.v = nn.Linear(hidden, 1, bias=False)

    def keys(self, keys: torch.Tensor) -> torch.Tensor:
        return self.key(keys)

    def forward(self, query: torch.Tensor, projected_keys: torch.Tensor) -> torch.Tensor:
        return self.v(torch.tanh(self.query(query).unsqueeze(1) + projected_keys)).squeeze(-1)


class TreeModel(PreTrainedModel):
    """See the module docstring."""

    config_class = TreeConfig
    base_model_prefix = "tree"
    main_input_name = "input_ids"
    #: infer.generate skips the equation grammar: every output is well-formed already
    decodes_well_formed_equations = True

    def __init__(self, config: TreeConfig):
        super().__init__(config)
        h, e = config.hidden_size, config.embedding_size
        self.n_ops = len(config.operator_ids)
        self.n_binary = len(config.binary_operator_ids)
        self.n_constants = len(config.constant_ids)
        self.n_placeholders = len(config.placeholder_ids)
        self.embedding = nn.Embedding(config.vocab_size, e, padding_idx=config.pad_token_id)
        self.encoder = nn.GRU(e, h, config.num_layers, batch_first=True, bidirectional=True,
                              dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(config.dropout)
        # goal -> node vector (no left sibling / with the left sibling's subtree)
        self.goal_l = nn.Linear(h, h)
        self.goal_lg = nn.Linear(h, h)
        self.goal_r = nn.Linear(2 * h, h)
        self.goal_rg = nn.Linear(2 * h, h)
        self.attention = _Additive(h, h, h)
        self.operator_scores = nn.Linear(2 * h, self.n_ops)
        self.constant_vectors = nn.Parameter(torch.randn(self.n_constants, h) * 0.1)
        self.leaf_scores = _Additive(2 * h, h, h)
        # operator -> child goals
        self.operator_embedding = nn.Embedding(self.n_ops, e)
        self.child_l = nn.Linear(2 * h + e, h)
        self.child_lg = nn.Linear(2 * h + e, h)
        self.child_r = nn.Linear(2 * h + e, h)
        self.child_rg = nn.Linear(2 * h + e, h)
        # (operator, left subtree, right subtree) -> subtree
        self.merge_w = nn.Linear(2 * h + e, h)
        self.merge_g = nn.Linear(2 * h + e, h)
        class_of = torch.full((config.vocab_size,), -1, dtype=torch.long)
        for cls, token_id in enumerate(config.symbol_ids):
            class_of[token_id] = cls
        # persistent: from_pretrained builds the model on the meta device and fills it from
        # the checkpoint, so a buffer left out of the checkpoint would hold garbage
        self.register_buffer("class_of_token", class_of)
        self.equals_class = (config.symbol_ids.index(config.equals_id)
                             if config.equals_id in config.symbol_ids else None)
        self.unknown_class = (config.symbol_ids.index(config.unknown_id)
                              if config.unknown_id in config.symbol_ids else None)
        self.register_buffer("token_of_class", torch.tensor(config.symbol_ids, dtype=torch.long))
        self.register_buffer("placeholder_token_ids",
                             torch.tensor(config.placeholder_ids, dtype=torch.long))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:  # PyTorch's own initialisation
        pass

    # ------------------------------------------------------------------ shared pieces
    def _encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> _Encoded:
        mask = (attention_mask if attention_mask is not None
                else input_ids.ne(self.config.pad_token_id)).bool()
        lengths = mask.sum(1).clamp(min=1)
        emb = self.dropout(self.embedding(input_ids))
        out = self._bidirectional_states(emb, lengths, mask)
        h = self.config.hidden_size
        states = out[..., :h] + out[..., h:]
        rows = torch.arange(states.size(0), device=states.device)
        problem = out[rows, lengths - 1, :h] + out[:, 0, h:]  # forward end + backward end
        hits = input_ids.unsqueeze(-1).eq(self.placeholder_token_ids)  # [B, S, P]
        present = hits.any(1)
        # placeholders past the last one any row has are never candidates: leave them out
        used = int(present.any(0).nonzero().max()) + 1 if present.any() else 0
        present = present[:, :used]
        position = hits[:, :, :used].float().argmax(1)  # first occurrence
        quantity_vectors = torch.gather(states, 1, position.unsqueeze(-1).expand(-1, -1, h))
        candidates = torch.cat([self.constant_vectors.unsqueeze(0).expand(states.size(0), -1, -1),
                                quantity_vectors], 1)
        allowed = torch.cat([present.new_ones(states.size(0), self.n_constants), present], 1)
        return _Encoded(states, self.attention.keys(states), mask, problem, candidates,
                        self.leaf_scores.keys(self.dropout(candidates)), allowed)

    def _bidirectional_states(self, emb: torch.Tensor, lengths: torch.Tensor,
                              mask: torch.Tensor) -> torch.Tensor:
        """The encoder GRU's outputs [B, S, 2H] over right-padded inputs: what running it on the
        packed sequences gives (each direction reads only a row's own tokens; zeros at the
        padding), computed without packing. The backward direction reads each row's tokens
        reversed in place (padding left where it is), so both directions run as one padded
        batch per layer -- several times faster on a CPU than the packed kernels, whose
        backward pass steps row by row. Same parameters as ``self.encoder`` (checkpoints are
        unchanged); dropout between layers as ``nn.GRU`` applies it."""
        gru = self.encoder
        steps = torch.arange(emb.size(1), device=emb.device).unsqueeze(0)
        last = lengths.unsqueeze(1) - 1
        # position t of a row reads position (length - 1 - t) while t < length, else itself
        reverse = torch.where(steps <= last, last - steps, steps).unsqueeze(-1)
        layer_input = emb
        for layer in range(gru.num_layers):
            directions = []
            for suffix in ("", "_reverse"):
                weights = [getattr(gru, f"{name}_l{layer}{suffix}") for name in
                           ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                x = layer_input
                if suffix:
                    x = x.gather(1, reverse.expand(-1, -1, x.size(-1)))
                h0 = x.new_zeros(1, x.size(0), gru.hidden_size)
                y, _ = torch.gru(x, h0, weights, True, 1, 0.0, self.training, False, True)
                if suffix:
                    y = y.gather(1, reverse.expand(-1, -1, y.size(-1)))
                directions.append(y)
            layer_input = torch.cat(directions, -1)
            if layer < gru.num_layers - 1 and gru.dropout > 0:
                layer_input = nn.functional.dropout(layer_input, gru.dropout, self.training)
        return layer_input * mask.unsqueeze(-1)

    def _predict(self, goals: torch.Tensor, lefts: torch.Tensor, has_left: torch.Tensor,
                 enc: _Encoded) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Class logits [B, O + C + P'] (P': the placeholders up to the batch's last; leaves a
        problem lacks at -inf), the node vectors and the attention contexts of the goals."""
        goals = self.dropout(goals)
        no_left = torch.tanh(self.goal_l(goals)) * torch.sigmoid(self.goal_lg(goals))
        both = torch.cat([self.dropout(lefts), goals], -1)
        with_left = torch.tanh(self.goal_r(both)) * torch.sigmoid(self.goal_rg(both))
        node = torch.where(has_left.unsqueeze(-1), with_left, no_left)
        energy = self.attention(node, enc.state_keys).masked_fill(~enc.mask, float("-inf"))
        context = torch.bmm(torch.softmax(energy, -1).unsqueeze(1), enc.states).squeeze(1)
        leaf_input = self.dropout(torch.cat([node, context], -1))
        op_logits = self.operator_scores(leaf_input)
        leaf_logits = self.leaf_scores(leaf_input, enc.candidate_keys)
        leaf_logits = leaf_logits.masked_fill(~enc.allowed, float("-inf"))
        return torch.cat([op_logits, leaf_logits], -1), node, context

    def _children(self, node: torch.Tensor, context: torch.Tensor, op: torch.Tensor):
        x = torch.cat([node, context, self.dropout(self.operator_embedding(op))], -1)
        left = torch.tanh(self.child_l(x)) * torch.sigmoid(self.child_lg(x))
        right = torch.tanh(self.child_r(x)) * torch.sigmoid(self.child_rg(x))
        return left, right

    def _merge(self, op: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.dropout(self.operator_embedding(op)), self.dropout(left),
                       self.dropout(right)], -1)
        return torch.tanh(self.merge_w(x)) * torch.sigmoid(self.merge_g(x))

    def _step(self, cls: list[int], goal_stacks: list[list[torch.Tensor]],
              open_stacks: list[list[_Open]], node: torch.Tensor, context: torch.Tensor,
              candidates: torch.Tensor) -> None:
        """Move every row's stacks by its chosen class (``-1``: the row is finished)."""
        op_rows = [b for b, c in enumerate(cls) if 0 <= c < self.n_ops]
        children: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if op_rows:
            idx = torch.tensor(op_rows, device=node.device)
            ops = torch.tensor([cls[b] for b in op_rows], device=node.device)
            left, right = self._children(node[idx], context[idx], ops)
            children = {b: (left[i], right[i]) for i, b in enumerate(op_rows)}
        finished: dict[int, torch.Tensor] = {}  # row -> the subtree it just completed
        for b, c in enumerate(cls):
            if c < 0 or not goal_stacks[b]:
                continue
            goal_stacks[b].pop()
            if c < self.n_ops:
                left, right = children[b]
                binary = c < self.n_binary
                if binary:
                    goal_stacks[b].append(right)
                goal_stacks[b].append(left)
                open_stacks[b].append(_Open(op=c, arity=2 if binary else 1))
                continue
            finished[b] = candidates[b, c - self.n_ops]
        # close every operator the leaves complete: one batched merge per level, each row's
        # subtree climbing while its stack says its parent is complete
        while finished:
            rows, ops, lefts, rights = [], [], [], []
            for b, vector in list(finished.items()):
                stack = open_stacks[b]
                if stack and stack[-1].done and len(stack) >= 2:  # right child of a binary op
                    lefts.append(stack.pop().vector)
                    rights.append(vector)
                elif stack and not stack[-1].done and stack[-1].arity == 1:  # a unary op's child
                    lefts.append(vector)
                    rights.append(torch.zeros_like(vector))
                else:  # a left subtree (or the whole tree): it waits on the stack
                    stack.append(_Open(vector=finished.pop(b)))
                    continue
                rows.append(b)
                ops.append(stack.pop().op)
            if rows:
                merged = self._merge(torch.tensor(ops, device=node.device), torch.stack(lefts),
                                     torch.stack(rights))
                finished.update(zip(rows, merged))

    def _equation_rules(self, logits: torch.Tensor, t: int, equations: torch.Tensor,
                        last_leaf_needs_x: torch.Tensor | None = None) -> torch.Tensor:
        """``=`` only as the root (step 0) and only when ``x`` is a symbol; ``x`` only in rows
        whose root is ``=``; where ``last_leaf_needs_x`` (an equation without ``x`` so far at
        its last open goal) the only leaf left is ``x``."""
        if self.equals_class is not None and (t > 0 or self.unknown_class is None):
            logits[:, self.equals_class] = float("-inf")
        if self.unknown_class is not None:
            logits[:, self.unknown_class] = logits[:, self.unknown_class].masked_fill(
                ~equations, float("-inf"))
            if last_leaf_needs_x is not None and bool(last_leaf_needs_x.any()):
                other_leaves = torch.zeros_like(logits[0], dtype=torch.bool)
                other_leaves[self.n_ops:] = True
                other_leaves[self.unknown_class] = False
                logits = logits.masked_fill(last_leaf_needs_x.unsqueeze(1) & other_leaves,
                                            float("-inf"))
        return logits

    @staticmethod
    def _lefts(open_stacks: list[list[_Open]], like: torch.Tensor):
        has = [bool(s) and s[-1].done for s in open_stacks]
        zero = like.new_zeros(like.size(-1))
        vectors = torch.stack([s[-1].vector if h else zero for s, h in zip(open_stacks, has)])
        return vectors, torch.tensor(has, device=like.device)

    # --------------------------------------------------------------------- training
    def _classes(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder classes of the labels [B, T] (``-1`` after the expression); a row that is
        not one complete expression over known symbols (``=`` only at the root, ``x`` only
        under it) is all ``-1`` (no loss)."""
        ids = labels.masked_fill(labels < 0, self.config.pad_token_id)
        classes = self.class_of_token[ids].tolist()
        out = []
        for row in classes:
            need, ok, symbols = 1, True, []
            for c in row:
                if need == 0:
                    break
                if c < 0:
                    ok = False
                    break
                symbols.append(c)
                need += (1 if c < self.n_binary else 0 if c < self.n_ops else -1)
            out.append(symbols if ok and need == 0 and self._decodable(symbols) else [])
        width = max(1, max(len(s) for s in out))
        return torch.tensor([s + [-1] * (width - len(s)) for s in out], device=labels.device)

    def _decodable(self, symbols: list[int]) -> bool:
        """Whether a complete tree keeps :meth:`_equation_rules` (``=`` only at the root, with
        ``x`` under it; ``x`` only under an ``=`` root), so decoding could write it."""
        equation = self.equals_class is not None and symbols[0] == self.equals_class
        if self.equals_class is not None and self.equals_class in symbols[1:]:
            return False
        has_x = self.unknown_class is not None and self.unknown_class in symbols
        return has_x == equation

    def target_nll(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                   labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced negative log-likelihood of each row's target tree: ``(nll [B],
        symbols [B])``, the sum over the row's symbols and how many there are. A row whose
        target is not one tree the decoder could write (:meth:`_classes`), or uses a leaf its
        question lacks (a truncated question), has 0 symbols and 0 nll."""
        enc = self._encode(input_ids, attention_mask)
        problem = enc.problem
        targets = self._classes(labels)
        n_leaves = self.n_ops + enc.allowed.size(1)
        leaf_ok = torch.cat([enc.allowed.new_ones(targets.size(0), self.n_ops), enc.allowed,
                             enc.allowed.new_zeros(targets.size(0), 1)], 1)
        leaf_index = targets.masked_fill(targets.lt(0), 0).clamp(max=n_leaves)
        fine = torch.gather(leaf_ok, 1, leaf_index).all(1)
        targets = targets.masked_fill(~fine.unsqueeze(1), -1)
        equations = (targets[:, 0].eq(self.equals_class) if self.equals_class is not None
                     else targets[:, 0].lt(-1))
        batch = input_ids.size(0)
        goal_stacks = [[problem[b]] for b in range(batch)]
        open_stacks: list[list[_Open]] = [[] for _ in range(batch)]
        nll = problem.new_zeros(batch)
        for t in range(targets.size(1)):
            goals = torch.stack([s[-1] if s else problem.new_zeros(problem.size(-1))
                                 for s in goal_stacks])
            lefts, has_left = self._lefts(open_stacks, problem)
            logits, node, context = self._predict(goals, lefts, has_left, enc)
            logits = self._equation_rules(logits, t, equations)
            step = targets[:, t]
            valid = step.ge(0)
            if valid.any():
                rows = valid.nonzero().squeeze(1)
                nll = nll.index_add(0, rows, nn.functional.cross_entropy(
                    logits[valid], step[valid], reduction="none"))
            self._step(step.tolist(), goal_stacks, open_stacks, node, context, enc.candidates)
        return nll, targets.ge(0).sum(1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **unused: Any) -> Seq2SeqLMOutput:
        """Teacher-forced cross-entropy of the target trees (mean over symbols)."""
        if labels is None:
            raise ValueError("the tree student's forward needs labels (use generate to decode)")
        nll, symbols = self.target_nll(input_ids, attention_mask, labels)
        loss = nll.sum() / symbols.sum().clamp(min=1)
        # every parameter takes part in every step's graph (DDP needs that even for a batch of
        # single-leaf targets, which never reach the child and merge layers)
        loss = loss + 0.0 * sum(p.sum() for p in self.parameters())
        return Seq2SeqLMOutput(loss=loss)

    # --------------------------------------------------------------------- decoding
    def _decoding_logits(self, enc: _Encoded, goal_stacks: list[list[torch.Tensor]],
                         open_stacks: list[list[_Open]], t: int, equations: torch.Tensor,
                         has_x: Sequence[bool], limit: int, arity: torch.Tensor):
        """Step ``t``'s class logits of rows being decoded (``-inf`` where a class would break
        the tree: an ``=`` below the root, ``x`` outside an equation, the last leaf of an
        equation without ``x`` that is not ``x``, or an operator whose goals could not all be
        filled within ``limit`` symbols), their node vectors and contexts, and which rows are
        *stuck* (no class at all: no quantity and no constant; their logits are 0)."""
        problem = enc.problem
        goals = torch.stack([s[-1] if s else problem.new_zeros(problem.size(-1))
                             for s in goal_stacks])
        lefts, has_left = self._lefts(open_stacks, problem)
        logits, node, context = self._predict(goals, lefts, has_left, enc)
        needs_x = torch.tensor([e and not x and len(g) == 1 for e, x, g in
                                zip(equations.tolist(), has_x, goal_stacks)],
                               device=logits.device)
        logits = self._equation_rules(logits, t, equations, needs_x)
        # after this step a row has (goals - 1 + arity) open goals; each needs a step
        goals_open = torch.tensor([len(s) for s in goal_stacks], device=logits.device)
        fits = (goals_open.unsqueeze(1) - 1 + arity.unsqueeze(0)) <= (limit - t - 1)
        logits = logits.masked_fill(~fits, float("-inf"))
        stuck = ~logits.isfinite().any(-1)
        return logits.masked_fill(stuck.unsqueeze(-1), 0.0), node, context, stuck

    def _arity(self, enc: _Encoded) -> torch.Tensor:
        return torch.tensor([2] * self.n_binary + [1] * (self.n_ops - self.n_binary)
                            + [0] * enc.allowed.size(1), device=enc.problem.device)

    def _token_rows(self, chosen: Sequence[Sequence[int]], device: Any) -> torch.Tensor:
        """Each row's classes as token ids, then eos, then padding."""
        pad, eos = self.config.pad_token_id, self.config.eos_token_id
        width = max(len(c) for c in chosen) + 1
        out = torch.full((len(chosen), width), pad, dtype=torch.long)
        for b, c in enumerate(chosen):
            ids = self.token_of_class[torch.tensor(c, dtype=torch.long)].tolist() if c else []
            out[b, : len(ids) + 1] = torch.tensor(ids + [eos])
        return out.to(device)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 max_new_tokens: int = 32, num_return_sequences: int = 1,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                 num_beams: int = 1, **unused: Any) -> torch.Tensor:
        """Token ids [B * k, L]: each row's prefix symbols, eos, then padding. ``k`` rows per
        input (``num_return_sequences``), consecutive; greedy unless ``do_sample`` or
        ``num_beams > 1`` (beam search: :meth:`_beam_search`, ``k <= num_beams``). An
        operator is chosen only while the steps left can still close the tree, so every row
        ends within ``max_new_tokens - 1`` symbols."""
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id)
        if num_beams > 1:
            if do_sample:
                raise ValueError("the tree student samples or searches a beam, not both")
            return self._beam_search(input_ids, attention_mask, max_new_tokens, num_beams,
                                     num_return_sequences)
        k = num_return_sequences
        input_ids = input_ids.repeat_interleave(k, 0)
        attention_mask = attention_mask.repeat_interleave(k, 0)
        enc = self._encode(input_ids, attention_mask)
        batch = input_ids.size(0)
        goal_stacks = [[enc.problem[b]] for b in range(batch)]
        open_stacks: list[list[_Open]] = [[] for _ in range(batch)]
        chosen: list[list[int]] = [[] for _ in range(batch)]
        limit = max(1, max_new_tokens - 1)
        equations = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        has_x = [False] * batch
        arity = self._arity(enc)
        for t in range(limit):
            active = [bool(s) for s in goal_stacks]
            if not any(active):
                break
            logits, node, context, stuck = self._decoding_logits(
                enc, goal_stacks, open_stacks, t, equations, has_x, limit, arity)
            if do_sample:
                cls = _sample(logits, temperature, top_p)
            else:
                cls = logits.argmax(-1)
            if t == 0 and self.equals_class is not None:
                equations = cls.eq(self.equals_class)
            cls_list = [c if a and not s else -1
                        for c, a, s in zip(cls.tolist(), active, stuck.tolist())]
            for b in range(batch):
                if cls_list[b] < 0:
                    goal_stacks[b].clear()
            for b, c in enumerate(cls_list):
                if c >= 0:
                    chosen[b].append(c)
                    has_x[b] = has_x[b] or c == self.unknown_class
            self._step(cls_list, goal_stacks, open_stacks, node, context, enc.candidates)
        return self._token_rows(chosen, input_ids.device)

    def _beam_search(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     max_new_tokens: int, num_beams: int, k: int) -> torch.Tensor:
        """Token rows of :meth:`_beam_trees`: ``k`` per input, best first; an input with fewer
        than ``k`` trees (no leaf at all) gets empty rows (eos only)."""
        if k > num_beams:
            raise ValueError(f"num_return_sequences ({k}) > num_beams ({num_beams})")
        chosen: list[list[int]] = []
        for trees in self._beam_trees(input_ids, attention_mask, max_new_tokens, num_beams):
            chosen.extend([classes for _, classes in trees[:k]] + [[]] * (k - len(trees[:k])))
        return self._token_rows(chosen, input_ids.device)

    def _beam_trees(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    max_new_tokens: int, num_beams: int) -> list[list[tuple[float, list[int]]]]:
        """Per input, the finished trees a beam of ``num_beams`` hypotheses keeps, most likely
        first: ``(score, classes)``, the score the sum of the symbols' log-probabilities
        under the decoding rules (the ones greedy decoding follows: :meth:`_decoding_logits`).
        At each step every live hypothesis is extended by its best classes; the
        ``num_beams`` best of those and of the finished trees are kept; an input is done when
        all it keeps are finished."""
        enc_all = self._encode(input_ids, attention_mask)
        n_inputs, device = input_ids.size(0), input_ids.device
        limit = max(1, max_new_tokens - 1)
        arity = self._arity(enc_all)
        # per input: live hypotheses and finished trees, each (score, classes, goals, opens)
        live: list[list[_Hypothesis]] = [[_Hypothesis(0.0, [], [enc_all.problem[i]], [])]
                                         for i in range(n_inputs)]
        done: list[list[_Hypothesis]] = [[] for _ in range(n_inputs)]
        for t in range(limit):
            rows = [(i, h) for i in range(n_inputs) for h in live[i]]
            if not rows:
                break
            source = torch.tensor([i for i, _ in rows], device=device)
            enc = _Encoded(*(field.index_select(0, source) for field in (
                enc_all.states, enc_all.state_keys, enc_all.mask, enc_all.problem,
                enc_all.candidates, enc_all.candidate_keys, enc_all.allowed)))
            equations = torch.tensor([h.equation(self.equals_class) for _, h in rows],
                                     dtype=torch.bool, device=device)
            logits, node, context, stuck = self._decoding_logits(
                enc, [h.goals for _, h in rows], [h.opens for _, h in rows], t, equations,
                [self.unknown_class in h.classes for _, h in rows], limit, arity)
            logp = torch.log_softmax(logits, -1).masked_fill(stuck.unsqueeze(-1), float("-inf"))
            best, best_cls = logp.topk(min(num_beams, logp.size(1)), -1)
            best, best_cls = best.tolist(), best_cls.tolist()
            pool: list[list[tuple[float, int, int]]] = [[] for _ in range(n_inputs)]
            for r, (i, h) in enumerate(rows):
                pool[i].extend((h.score + lp, r, c) for lp, c in zip(best[r], best_cls[r])
                               if lp > float("-inf"))
            grown_rows, grown_cls, grown = [], [], []
            for i in range(n_inputs):
                ranked = sorted([(h.score, -1, -1, h) for h in done[i]]
                                + [(score, r, c, None) for score, r, c in pool[i]],
                                key=lambda e: -e[0])[:num_beams]
                done[i] = [e[3] for e in ranked if e[3] is not None]
                live[i] = []
                for score, r, c, _ in (e for e in ranked if e[3] is None):
                    h = rows[r][1]
                    grown_rows.append(r)
                    grown_cls.append(c)
                    grown.append((i, _Hypothesis(score, h.classes + [c], list(h.goals),
                                                 list(h.opens))))
            if not grown:
                break
            parent = torch.tensor(grown_rows, device=device)
            self._step(grown_cls, [h.goals for _, h in grown], [h.opens for _, h in grown],
                       node[parent], context[parent], enc.candidates[parent])
            for i, h in grown:
                (live[i] if h.goals else done[i]).append(h)
        return [[(h.score, h.classes) for h in sorted(done[i], key=lambda h: -h.score)]
                for i in range(n_inputs)]


@dataclass
class _Hypothesis:
    """A tree being searched: its score (sum of log-probabilities), classes so far, goal stack
    and open stack (shallow copies per hypothesis: ``_step`` replaces entries, never edits
    them)."""

    score: float
    classes: list[int]
    goals: list[torch.Tensor]
    opens: list[_Open]

    def equation(self, equals_class: int | None) -> bool:
        return bool(self.classes) and self.classes[0] == equals_class


def _sample(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    probs = torch.softmax(logits / max(temperature, 1e-5), -1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(-1, descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < top_p
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1).squeeze(-1)


_registered = False


def register() -> None:
    """Make ``AutoConfig`` / ``AutoModelForSeq2SeqLM`` know the tree student (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    AutoConfig.register(MODEL_TYPE, TreeConfig, exist_ok=True)
    AutoModelForSeq2SeqLM.register(TreeConfig, TreeModel, exist_ok=True)
    _registered = True

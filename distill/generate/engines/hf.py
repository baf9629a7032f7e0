"""``hf``: a transformers model's ``generate``, batched, on CPU or GPU.

Loads ``config.model`` with ``from_pretrained`` (a hub name or a folder ``save_pretrained``
wrote; decoder-only or encoder-decoder, by the model's config). Prompts are rendered with the
tokenizer's chat template in chat mode, or sent as text in base mode; decoder-only models pad
on the left. Requests are sorted by length and generated ``hf.batch_size`` at a time; base
prompts stop at the template's stop strings (``stop_strings`` in ``generate``, and the text is
cut there). Sampling (temperature > 0) seeds torch once per generate() batch from the batch's
request seeds: a run repeats itself for the same batching, but a row's sample does not depend
on its seed alone (vLLM and OpenAI-compatible servers honour per-request seeds).
"""

from __future__ import annotations

import time
import zlib
from typing import TYPE_CHECKING, Any, Sequence

from distill.generate.engines import (
    GenRequest,
    GenResult,
    register_engine,
    sent_prompt,
    stop_strings,
    truncate_at_stop,
)

if TYPE_CHECKING:
    from distill.generate.config import GenerateConfig, SamplingConfig


@register_engine("hf")
class HFEngine:
    dataset_level = False

    def __init__(self, config: GenerateConfig) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        c = config.hf
        self.config = config
        from distill.devices import current_device, resolve_dtype

        # auto: the GPU Ray assigned this actor (never one it did not reserve), else the CPU
        device = current_device() if c.device == "auto" else c.device
        dtype = getattr(torch, resolve_dtype(c.dtype, device))
        mc = AutoConfig.from_pretrained(config.model, trust_remote_code=c.trust_remote_code)
        self.encoder_decoder = bool(getattr(mc, "is_encoder_decoder", False))
        auto = AutoModelForSeq2SeqLM if self.encoder_decoder else AutoModelForCausalLM
        self.model = auto.from_pretrained(config.model, dtype=dtype,
                                          trust_remote_code=c.trust_remote_code).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(config.model,
                                                       trust_remote_code=c.trust_remote_code)
        tok = self.tokenizer
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if not self.encoder_decoder:
            tok.padding_side = "left"
        tok.truncation_side = "left"
        has_template = bool(getattr(tok, "chat_template", None))
        self.chat = has_template if config.chat is None else config.chat
        if self.chat and not has_template:
            raise ValueError(f"{config.model}: the tokenizer has no chat template; set chat: false "
                             "to send plain prompts")
        self.device = device
        self._eos = set()
        for ids in (getattr(self.model.generation_config, "eos_token_id", None), tok.eos_token_id):
            if isinstance(ids, int):
                self._eos.add(ids)
            elif ids:
                self._eos.update(int(i) for i in ids)
        self._pad = tok.pad_token_id

    def _render(self, request: GenRequest) -> str:
        if self.chat:
            return self.tokenizer.apply_chat_template(
                list(request.prompt.messages), tokenize=False, add_generation_prompt=True)
        return request.prompt.text

    def generate(self, requests: Sequence[GenRequest], sampling: SamplingConfig) -> list[GenResult]:
        import torch

        texts = [self._render(r) for r in requests]
        groups: dict[tuple[str, ...], list[int]] = {}  # one generate() call never mixes stops
        for i, r in enumerate(requests):
            groups.setdefault(tuple(stop_strings(r.prompt, sampling, self.chat)), []).append(i)
        results: list[GenResult | None] = [None] * len(requests)
        size = self.config.hf.batch_size
        for stops, members in groups.items():
            members.sort(key=lambda i: -len(texts[i]))
            for start in range(0, len(members), size):
                idx = members[start:start + size]
                try:
                    out = self._generate_batch([texts[i] for i in idx], [requests[i] for i in idx],
                                               list(stops), sampling)
                except (RuntimeError, ValueError) as e:  # OOM, bad input: the batch's rows fail
                    out = [GenResult(None, error=f"generate failed ({type(e).__name__}): {e}"[:500])
                           for _ in idx]
                    if str(self.device).startswith("cuda"):
                        torch.cuda.empty_cache()
                for i, res in zip(idx, out):
                    res.sent = sent_prompt(requests[i].prompt, self.chat)
                    results[i] = res
        return results  # type: ignore[return-value]

    def _generate_batch(self, texts: list[str], requests: list[GenRequest], stops: list[str],
                        sampling: SamplingConfig) -> list[GenResult]:
        import torch

        tok = self.tokenizer
        c = self.config.hf
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not self.chat,
                  truncation=c.max_input_tokens is not None, max_length=c.max_input_tokens)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        kwargs: dict[str, Any] = dict(max_new_tokens=sampling.max_tokens, pad_token_id=self._pad)
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
            seed = zlib.crc32(",".join(str(r.seed) for r in requests).encode())
            torch.manual_seed(seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stops:
            kwargs.update(stop_strings=stops, tokenizer=tok)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        elapsed = time.perf_counter() - t0
        prompt_len = 0 if self.encoder_decoder else enc["input_ids"].shape[1]
        start = 1 if self.encoder_decoder else prompt_len  # skip the decoder start token
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        results = []
        for row in range(out.shape[0]):
            gen = out[row, start:].tolist()
            n, finish = len(gen), "length"
            eos_at = next((j for j, t in enumerate(gen) if t in self._eos), None)
            if eos_at is not None:
                n, finish = eos_at + 1, "stop"
            text = tok.decode(gen[:n], skip_special_tokens=True)
            text, cut = truncate_at_stop(text, stops)
            if cut:  # the row ended at a stop string: count the tokens up to it, not the padding
                n, finish = self._tokens_to_stop(gen[:n], stops), "stop"
            results.append(GenResult(text, None, int(lengths[row]), n, elapsed, finish))
        return results

    def _tokens_to_stop(self, gen: list[int], stops: list[str]) -> int:
        """The fewest leading tokens whose text holds a stop string (binary search)."""
        lo, hi = 1, len(gen)
        while lo < hi:
            mid = (lo + hi) // 2
            if truncate_at_stop(self.tokenizer.decode(gen[:mid], skip_special_tokens=True), stops)[1]:
                hi = mid
            else:
                lo = mid + 1
        return hi

    def close(self) -> None:
        self.model = None

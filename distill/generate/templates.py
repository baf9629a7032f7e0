"""Prompt templates: YAML files in ``distill/generate/prompts/`` rendered for chat or base models.

A template file holds ``description``, ``system``, ``instruction``, ``input`` (the user turn,
with ``{{name}}`` slots), ``output_prefix`` (what precedes the model's text in a base prompt),
``stop`` (stop strings for base prompts) and ``demos`` (few-shot demonstrations: ``vars`` for
the slots and the expected ``output``). Demonstrations come from training splits only.

Rendering (:meth:`Template.render`):

* chat: one system message (``system`` + ``instruction``), each demonstration as a user turn and
  an assistant turn, then the problem as the last user turn;
* base: ``instruction``, then each demonstration as ``input`` / ``output_prefix output``, then
  the problem's ``input`` and ``output_prefix`` for the model to continue; generation stops at
  the template's ``stop`` strings (the next ``Problem:``).

Slots the problem rows give: ``question``, ``masked_question``, ``quantity_list``. A demo that
sets ``question`` but not ``masked_question`` gets it from :func:`distill.quantities.mask_question`,
so demonstrations are masked exactly like inputs. A slot left unfilled is an error, never
silently empty.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

__all__ = ["PROMPTS_DIR", "Prompt", "Template", "TemplateError", "load_template", "template_names"]

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
_SLOT = re.compile(r"\{\{(\w+)\}\}")
_KEYS = {"description", "system", "instruction", "input", "output_prefix", "stop", "demos"}


class TemplateError(ValueError):
    """A template file that cannot be used, or a slot without a value."""


@dataclass(frozen=True)
class Prompt:
    """One call's prompt in both forms; an engine sends ``messages`` (chat) or ``text`` (base).
    ``stop`` holds the template's stop strings, meant for base prompts."""

    messages: tuple[dict[str, str], ...]
    text: str
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Demo:
    vars: Mapping[str, str]
    output: str


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    system: str
    instruction: str
    input: str
    output_prefix: str
    stop: tuple[str, ...]
    demos: tuple[Demo, ...]
    digest: str = field(default="", compare=False)

    def slots(self) -> list[str]:
        return sorted(set(_SLOT.findall(self.input)))

    def render(self, variables: Mapping[str, Any], *, num_demos: int | None = None) -> Prompt:
        """The prompt for one problem (``variables`` fill the slots of ``input``)."""
        demos = self.demos if num_demos is None else self.demos[:num_demos]
        shown = [(_fill(self.input, _demo_vars(d.vars), f"{self.name} demo"), d.output) for d in demos]
        query = _fill(self.input, variables, self.name)
        system = "\n\n".join(s for s in (self.system, self.instruction) if s)
        messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        for user, assistant in shown:
            messages.append({"role": "user", "content": user})
            messages.append({"role": "assistant", "content": assistant})
        messages.append({"role": "user", "content": query})
        prefix = self.output_prefix
        parts = [self.instruction] if self.instruction else []
        for user, assistant in shown:
            parts.append(f"{user}\n{prefix} {assistant}" if prefix else f"{user}\n{assistant}")
        parts.append(f"{query}\n{prefix}" if prefix else f"{query}\n")
        return Prompt(tuple(messages), "\n\n".join(parts), self.stop)


def _demo_vars(vars_: Mapping[str, str]) -> dict[str, str]:
    out = dict(vars_)
    if "question" in out and ("masked_question" not in out or "quantity_list" not in out):
        from distill.quantities import canonical, mask_question

        masked, quantities = mask_question(out["question"])
        out.setdefault("masked_question", masked)
        out.setdefault("quantity_list", quantity_list([canonical(q.value) for q in quantities]))
    return out


def quantity_list(quantities: Sequence[str]) -> str:
    """``N0 = 69, N1 = 16`` (empty string when there are none)."""
    return ", ".join(f"N{i} = {q}" for i, q in enumerate(quantities))


def _fill(text: str, variables: Mapping[str, Any], where: str) -> str:
    def sub(m: re.Match) -> str:
        key = m.group(1)
        value = variables.get(key)
        if value is None:
            raise TemplateError(f"{where}: no value for slot {{{{{key}}}}}")
        return str(value)

    return _SLOT.sub(sub, text)


def _as_text(data: Mapping[str, Any], key: str, path: Path, required: bool = True) -> str:
    value = data.get(key, "" if not required else None)
    if value is None or not isinstance(value, str):
        raise TemplateError(f"{path}: {key!r} must be a string")
    return value.strip()


def _parse(path: Path) -> Template:
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise TemplateError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: expected a mapping")
    unknown = set(data) - _KEYS
    if unknown:
        raise TemplateError(f"{path}: unknown key(s) {sorted(unknown)}; allowed {sorted(_KEYS)}")
    stop = data.get("stop") or []
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise TemplateError(f"{path}: 'stop' must be a list of non-empty strings")
    demos = []
    for i, d in enumerate(data.get("demos") or []):
        if not isinstance(d, dict) or not isinstance(d.get("vars"), dict) or not isinstance(d.get("output"), str):
            raise TemplateError(f"{path}: demos[{i}] needs 'vars' (mapping) and 'output' (string)")
        demos.append(Demo({str(k): str(v).strip() for k, v in d["vars"].items()}, d["output"].strip()))
    return Template(
        name=path.stem,
        description=_as_text(data, "description", path, required=False),
        system=_as_text(data, "system", path, required=False),
        instruction=_as_text(data, "instruction", path, required=False),
        input=_as_text(data, "input", path),
        output_prefix=_as_text(data, "output_prefix", path, required=False),
        stop=tuple(stop),
        demos=tuple(demos),
        digest=hashlib.sha256(text.encode()).hexdigest()[:16],
    )


@lru_cache(maxsize=128)
def _load(path: str, mtime_ns: int) -> Template:
    return _parse(Path(path))


def load_template(name: str, prompts_dir: str | Path | None = None) -> Template:
    """The template ``<prompts_dir>/<name>.yaml``; a user's folder falls back to the shipped
    template for names it does not hold."""
    for folder in ([Path(prompts_dir)] if prompts_dir else []) + [PROMPTS_DIR]:
        path = folder / f"{name}.yaml"
        if path.is_file():
            return _load(str(path), path.stat().st_mtime_ns)
    raise TemplateError(
        f"no prompt template {name!r} (looked in {prompts_dir or ''} {PROMPTS_DIR}); "
        f"shipped: {', '.join(template_names())}"
    )


def template_names() -> list[str]:
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml"))

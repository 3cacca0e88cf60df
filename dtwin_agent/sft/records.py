"""Seg-DT records (paper 3.4): the input (JSON(D), query) and the target reasoning path + final ids.

A record is versioned (``version``), validated by pydantic and stored one per line in JSONL.

- ``input.twin``: JSON(D^(0)) = ``{id: {"spatial": T_i, "semantic": S_i}}`` of the (filtered) twin
  (paper Eq. 5), exactly what the LLM sees; masks never appear.
- ``target.steps``: the reasoning path D^(1..K) (paper Eqs. 7-8). Step j decides every object kept
  at step j-1 (all of D^(0) for j = 1): ``kept`` with the updated semantic S_i^(j) and reasoning
  R_i^(j), or ``rejected`` with the reasoning R_i^(j) saying why. D^(j) is the kept objects, so
  I^(j) ⊆ I^(j-1) holds by construction.
- ``target.ids``: the final set I = I^(K) (the kept ids of the last step; validated).
- ``status``: ``skeleton`` for records written by ``tools/build_segdt.py`` (decisions suggested
  from the ground-truth overlap, reasoning left empty for annotators), ``annotated`` once an expert
  has written every reasoning note. Training refuses skeletons unless told otherwise.

:func:`render_target` turns a record into the model's output text and the character spans of the
decision words and of the final id list, which the loss of Eq. 10 weights (:mod:`.loss`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dtwin_agent.errors import InputError

SEGDT_VERSION = 1

#: System prompt of the SFTDT model (training and serving must use the same one).
SFTDT_SYSTEM = (
    "You are the reasoner of DTwinSeger. You never see the photo: you see its digital twin, a JSON object "
    '{id: {"spatial": where the object is and how it relates to others, "semantic": what it is}}. '
    "Bounding boxes are [x_min, y_min, x_max, y_max] in pixels, y grows downwards. "
    "Refine the twin step by step (paper Eqs. 7-9): at each step decide for every remaining object whether "
    "it is kept or rejected for the user's request, with an updated semantic and a reasoning note, until "
    "only the objects that satisfy the request remain. Then give their ids. "
    'Answer with JSON only: {"path": [{"step": 1, "objects": {"<id>": {"decision": "kept" | "rejected", '
    '"semantic": "...", "reasoning": "..."}}}, ...], "ids": [<id>, ...]}.'
)

#: User message of the SFTDT model: the same tags as the pipeline's single-shot prompt.
SFTDT_USER = "<query>{query}</query>\n<digital_twin>{twin_json}</digital_twin>"

Decision = Literal["kept", "rejected"]
Status = Literal["skeleton", "annotated"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TwinEntry(_Model):
    """One object of JSON(D): T_i and S_i (paper Eq. 5)."""

    spatial: str = ""
    semantic: str = ""


class ObjectDecision(_Model):
    """The decision C(i, x_txt, D^(j-1)) on one object at one step, with S_i^(j) and R_i^(j) (Eq. 8)."""

    decision: Decision
    semantic: str = Field(default="", description="S_i^(j), the updated semantic (kept objects)")
    reasoning: str = Field(default="", description="R_i^(j): why the object is kept or rejected")


class ReasoningStep(_Model):
    """One transition D^(j-1) -> D^(j) = F_refine(D^(j-1), x_txt) (paper Eq. 7)."""

    step: int = Field(ge=1)
    objects: dict[int, ObjectDecision] = Field(description="id -> decision, for every object of D^(j-1)")

    @property
    def kept(self) -> list[int]:
        """I^(j): the ids kept at this step, in id order."""
        return sorted(i for i, d in self.objects.items() if d.decision == "kept")


class SegDTInput(_Model):
    """The input of Eq. 9: JSON(D) and the text query x_txt."""

    query: str = Field(min_length=1)
    twin: dict[int, TwinEntry] = Field(description="JSON(D^(0)): id -> {spatial, semantic}")
    granularity: str = "object"

    @field_validator("twin")
    @classmethod
    def _ids_positive(cls, v: dict[int, TwinEntry]) -> dict[int, TwinEntry]:
        bad = [i for i in v if i < 1]
        if bad:
            raise ValueError(f"object ids must be >= 1, got {bad}")
        return v

    def twin_json(self) -> str:
        """JSON(D) exactly as the model sees it (compact, ids as keys in ascending order)."""
        return json.dumps(
            {str(i): self.twin[i].model_dump() for i in sorted(self.twin)},
            ensure_ascii=False,
            separators=(",", ":"),
        )


class SegDTTarget(_Model):
    """The output of Eq. 9: the reasoning path P = D^(1..K) and the final ids I."""

    steps: list[ReasoningStep] = Field(min_length=1)
    ids: list[int]


class SegDTRecord(_Model):
    """One Seg-DT training example (paper 3.4)."""

    version: Literal[1] = SEGDT_VERSION
    id: str = Field(min_length=1)
    status: Status = "annotated"
    input: SegDTInput
    target: SegDTTarget
    meta: dict[str, Any] = Field(default_factory=dict, description="image, annotator, overlaps, notes")

    @model_validator(mode="after")
    def _path_is_consistent(self) -> SegDTRecord:
        previous = set(self.input.twin)
        for k, step in enumerate(self.target.steps, 1):
            if step.step != k:
                raise ValueError(f"target.steps[{k - 1}].step: expected {k}, got {step.step}")
            decided = set(step.objects)
            if decided != previous:
                missing, extra = sorted(previous - decided), sorted(decided - previous)
                raise ValueError(
                    f"target.steps[{k - 1}].objects: must decide exactly the ids kept before "
                    f"(missing {missing}, not available {extra})"
                )
            if self.status == "annotated":
                empty = sorted(i for i, d in step.objects.items() if not d.reasoning.strip())
                if empty:
                    raise ValueError(f"target.steps[{k - 1}].objects: empty reasoning for ids {empty}")
            previous = set(step.kept)
        if sorted(self.target.ids) != sorted(previous):
            raise ValueError(
                f"target.ids: {sorted(self.target.ids)} must equal the last step's kept {sorted(previous)}"
            )
        return self


# ------------------------------------------------------------------------------------------ render


def render_messages(record_or_input: SegDTRecord | SegDTInput) -> list[dict[str, str]]:
    """Build the chat messages (system, user) of the SFTDT model: for training and for serving."""
    inp = record_or_input.input if isinstance(record_or_input, SegDTRecord) else record_or_input
    return [
        {"role": "system", "content": SFTDT_SYSTEM},
        {"role": "user", "content": SFTDT_USER.format(query=inp.query, twin_json=inp.twin_json())},
    ]


def render_target(record: SegDTRecord) -> tuple[str, list[tuple[int, int]], list[tuple[int, int]]]:
    """Render the target text and the character spans that Eq. 10 weights.

    The text is compact JSON: ``{"path":[{"step":1,"objects":{"3":{"decision":"kept","semantic":...,
    "reasoning":...}}}],"ids":[3]}``; ``json.loads`` of it gives back the path and the ids.

    Returns:
        ``(text, decision_spans, ids_spans)``: half-open ``[start, end)`` character ranges of each
        ``kept`` / ``rejected`` word and of the final id list (brackets included).

    """
    dumps = lambda v: json.dumps(v, ensure_ascii=False)  # noqa: E731
    parts: list[str] = []
    pos = 0
    decision_spans: list[tuple[int, int]] = []

    def emit(text: str) -> int:
        nonlocal pos
        start = pos
        parts.append(text)
        pos += len(text)
        return start

    emit('{"path":[')
    for k, step in enumerate(record.target.steps):
        emit(("," if k else "") + f'{{"step":{step.step},"objects":{{')
        for n, oid in enumerate(sorted(step.objects)):
            d = step.objects[oid]
            emit(("," if n else "") + f'{dumps(str(oid))}:{{"decision":"')
            start = emit(d.decision)
            decision_spans.append((start, start + len(d.decision)))
            tail = '"'
            if d.decision == "kept":
                tail += f',"semantic":{dumps(d.semantic)}'
            tail += f',"reasoning":{dumps(d.reasoning)}}}'
            emit(tail)
        emit("}}")
    emit('],"ids":')
    ids_text = json.dumps(sorted(record.target.ids), separators=(",", ":"))
    start = emit(ids_text)
    emit("}")
    return "".join(parts), decision_spans, [(start, start + len(ids_text))]


def parse_output(text: str) -> tuple[list[dict[str, Any]], list[int]]:
    """Parse an SFTDT model answer into ``(path, ids)``.

    Raises:
        InputError: if the text is not the expected JSON.

    """
    try:
        data = json.loads(text)
        return list(data.get("path", [])), [int(i) for i in data["ids"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"not an SFTDT answer: {exc}") from exc


# --------------------------------------------------------------------------------------------- IO


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "record"
    return f"{where}: {err['msg']}"


def parse_record(data: str | dict[str, Any]) -> SegDTRecord:
    """Validate one record (JSON text or dict).

    Raises:
        InputError: naming the field at fault.

    """
    try:
        if isinstance(data, str):
            return SegDTRecord.model_validate_json(data)
        return SegDTRecord.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"invalid Seg-DT record: {_describe(exc)}") from exc


def read_records(path: str | Path, *, require_annotated: bool = False) -> list[SegDTRecord]:
    """Read a Seg-DT JSONL file.

    Args:
        path: the file.
        require_annotated: refuse ``skeleton`` records (training data must be annotated).

    Raises:
        InputError: a missing file, or a bad line (named with its line number and field).

    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Seg-DT file not found: {path}")
    out: list[SegDTRecord] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = parse_record(line)
        except InputError as exc:
            raise InputError(f"{path}:{lineno}: {exc}") from exc
        if require_annotated and rec.status != "annotated":
            raise InputError(
                f"{path}:{lineno}: record {rec.id!r} is a skeleton; annotate its reasoning and set "
                '"status": "annotated" before training'
            )
        out.append(rec)
    return out


def write_records(path: str | Path, records: Iterable[SegDTRecord]) -> int:
    """Write records as JSONL atomically (temp file + rename); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(rec.model_dump_json() + "\n")
            n += 1
    os.replace(tmp, path)
    return n

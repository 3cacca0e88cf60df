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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dtwin_agent.errors import InputError, ParseError
from dtwin_agent.llm.parsing import ParseReport, coerce_id, extract_json
from dtwin_agent.twin import DigitalTwin, ObjectDecision, PromptTwin, ReasoningStep

SEGDT_VERSION = 1

#: User message of the SFTDT model: the twin first (the prefix a server can cache), then the query.
SFTDT_USER = "<digital_twin>{twin_json}</digital_twin>\n<query>{query}</query>"


def sftdt_system() -> str:
    """System prompt of the SFTDT model (``llm/prompts/sftdt.system.md``): training and serving share it."""
    from dtwin_agent.llm.prompts import system_prompt

    return system_prompt("sftdt.system.md").strip()


Status = Literal["skeleton", "annotated"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SegDTInput(_Model):
    """The input of Eq. 9: JSON(D) and the text query x_txt."""

    query: str = Field(min_length=1)
    twin: PromptTwin = Field(description="JSON(D^(0)): id -> {spatial, semantic}")
    granularity: str = "object"

    @field_validator("twin")
    @classmethod
    def _ids_positive(cls, v: PromptTwin) -> PromptTwin:
        bad = [i for i in v if i < 1]
        if bad:
            raise ValueError(f"object ids must be >= 1, got {bad}")
        return v

    @classmethod
    def from_twin(cls, twin: DigitalTwin, query: str, ids: list[int] | None = None) -> SegDTInput:
        """The input for ``twin`` (restricted to ``ids``, e.g. D_filtered) and ``query``.

        Training records (:func:`~dtwin_agent.sft.build.build_skeleton`) and SFTDT serving
        (``reasoning.mode = "sftdt"``) both build their input here.
        """
        step = None if ids is None else ReasoningStep(step=0, ids=ids)
        return cls(query=query, twin=twin.prompt_twin(step), granularity=twin.granularity)

    def twin_json(self) -> str:
        """JSON(D) exactly as the model sees it (:meth:`~dtwin_agent.twin.PromptTwin.to_prompt_json`)."""
        return self.twin.to_prompt_json()


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
        {"role": "system", "content": sftdt_system()},
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


class SFTDTAnswer(_Model):
    """An SFTDT model's answer, as :func:`render_target` writes it: the path D^(1..K) and the ids I."""

    path: list[ReasoningStep]
    ids: list[int]


def parse_answer(text: str, twin_ids: Sequence[int]) -> tuple[list[ReasoningStep], ParseReport]:
    """Parse an SFTDT answer ``{"path": [...], "ids": [...]}`` into the reasoning path (paper Eq. 9).

    Steps are numbered 1..K in answer order. Each step may decide only objects kept by the step
    before (all of D for step 1); other ids are dropped and reported, objects it leaves undecided
    are dropped too (``missing_ids``). When the final ``ids`` differ from the last step's kept ids, a
    last step with exactly those ids is added (noted): I is what the model answered.

    Args:
        text: the model's answer (JSON, possibly fenced or slightly broken; see
            :func:`~dtwin_agent.llm.parsing.extract_json`).
        twin_ids: the ids of D.

    Returns:
        ``(steps, report)``; ``steps[-1].ids`` is I.

    Raises:
        ParseError: when the text holds no such object or no list of ``ids``.

    """
    report = ParseReport()
    value = extract_json(text, report)
    if not isinstance(value, dict) or not isinstance(value.get("ids"), list):
        raise ParseError(
            'not an SFTDT answer; answer {"path": [{"step": 1, "objects": {...}}], "ids": [...]}'
        )
    known = list(twin_ids)
    previous = known
    steps: list[ReasoningStep] = []
    for entry in value.get("path") or []:
        objects = entry.get("objects") if isinstance(entry, dict) else None
        if not isinstance(objects, dict):
            report.note(f"path entry {entry!r:.60} has no objects; skipped")
            continue
        decisions: dict[int, ObjectDecision] = {}
        for key, fields in objects.items():
            object_id = coerce_id(key)
            if object_id is None or object_id not in previous:
                report.unknown_ids.append(object_id if object_id is not None else -1)
                continue
            fields = fields if isinstance(fields, dict) else {}
            rejected = str(fields.get("decision", "kept")).strip().lower() == "rejected"
            decisions[object_id] = ObjectDecision(
                decision="rejected" if rejected else "kept",
                semantic=str(fields.get("semantic") or ""),
                reasoning=str(fields.get("reasoning") or ""),
            )
        report.missing_ids.extend(i for i in previous if i not in decisions)
        step = ReasoningStep(step=len(steps) + 1, objects=decisions)
        steps.append(step)
        previous = step.ids
    ids: list[int] = []
    for raw in value["ids"]:
        object_id = coerce_id(raw)
        if object_id is None or object_id not in known:
            report.unknown_ids.append(object_id if object_id is not None else -1)
        elif object_id in ids:
            report.duplicate_ids.append(object_id)
        else:
            ids.append(object_id)
    report.unknown_ids = list(dict.fromkeys(report.unknown_ids))
    named_known = ids or any(step.objects for step in steps)
    if report.unknown_ids and not named_known:
        raise ParseError(
            f"none of the ids {sorted(set(report.unknown_ids))} is in the twin; choose from {known}",
            report=report,
        )
    if not steps or sorted(ids) != steps[-1].kept:
        if steps:
            report.note(
                f"the answer's ids {sorted(ids)} differ from its last step's {steps[-1].kept}; ids used"
            )
        steps.append(ReasoningStep(step=len(steps) + 1, ids=ids))
    return steps, report


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
    from dtwin_agent.outputs.files import write_text

    lines = [rec.model_dump_json() + "\n" for rec in records]
    write_text(path, "".join(lines))
    return len(lines)

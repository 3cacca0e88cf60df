"""Pure functions turning raw model text into the pydantic types of ``schemas.py``.

Models answer in many shapes: JSON in a Markdown fence, JSON between sentences, JSON cut off by a
token limit, Python-style dicts, ids as ``"#3"`` or ``"object 3"``, ids that do not exist. These
functions recover what they can and say what they changed in a :class:`ParseReport`; unknown and
duplicate ids are dropped and reported, never passed on. When nothing usable can be recovered
they raise :class:`ParseError`, whose message is quoted back to the model in one repair
round-trip (:func:`dtwin_agent.llm.call.invoke_structured`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, Field

from dtwin_agent.errors import ParseError
from dtwin_agent.llm.schemas import (
    MAX_CHARS,
    GranularityChoice,
    KeptObject,
    ObjectLabel,
    RefineStepOutput,
    Restatement,
    SemanticBatch,
    SingleShotOutput,
)


class ParseReport(BaseModel):
    """What parsing had to repair, drop or guess."""

    unknown_ids: list[int] = Field(default_factory=list, description="ids the model named that do not exist")
    duplicate_ids: list[int] = Field(default_factory=list, description="ids repeated (first one kept)")
    missing_ids: list[int] = Field(default_factory=list, description="ids asked for but not answered")
    repaired: bool = Field(default=False, description="the JSON had to be repaired (quotes, commas, cut off)")
    notes: list[str] = Field(default_factory=list)

    def note(self, message: str) -> None:
        """Add a note once."""
        if message not in self.notes:
            self.notes.append(message)


# --------------------------------------------------------------------------------------------------
# JSON extraction and cheap repairs

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_THINK = re.compile(r"<think(?:ing)?>.*?(?:</think(?:ing)?>|\Z)", re.S | re.I)
_SMART = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'", "\u00a0": " "})
_PY_WORDS = {"True": "true", "False": "false", "None": "null"}
_MAX_CUTS = 60
_MAX_STARTS = 200
_MAX_RECOVERIES = 3


def _decode_at(text: str, start: int) -> tuple[Any, int] | None:
    try:
        return json.JSONDecoder().raw_decode(text, start)
    except (json.JSONDecodeError, RecursionError):
        return None


def _starts(text: str) -> list[int]:
    return [i for i, ch in enumerate(text) if ch in "{["][:_MAX_STARTS]


def _decode_first(text: str) -> Any:
    """The first JSON object or array in ``text`` that decodes cleanly, or ``None``."""
    stripped = text.strip()
    if stripped[:1] in "{[":
        try:
            return json.loads(stripped)
        except (json.JSONDecodeError, RecursionError):
            pass
    for start in _starts(text):
        hit = _decode_at(text, start)
        if hit is not None:
            return hit[0]
    return None


def _repair(text: str, report: ParseReport | None) -> Any:
    """Decode ``text`` from its first bracket after cheap repairs, or as cut-off output; else ``None``.

    A value left open is recovered from where it starts: decoding a complete element nested in
    it instead would silently drop its siblings.
    """
    starts = _starts(text)
    if not starts:
        return None
    body = _normalize(text[starts[0] :])  # prose before the JSON may hold apostrophes
    recoveries = 0
    for start in _starts(body):
        hit = _decode_at(body, start)
        if hit is not None:
            _mark(report, "repaired quotes, literals or trailing commas")
            return hit[0]
        if recoveries < _MAX_RECOVERIES and _scan(body[start:])[0]:  # left open: cut off from here on
            recoveries += 1
            value = _recover_truncated(body[start:])
            if value is not None:
                _mark(report, "answer was cut off; kept its complete part")
                return value
    return None


def _last_char(pieces: list[str]) -> str:
    for piece in reversed(pieces):
        stripped = piece.rstrip()
        if stripped:
            return stripped[-1]
    return ""


def _normalize(text: str) -> str:
    """Fix Python-isms outside strings: single quotes, True/False/None, bare keys, trailing commas."""
    text = text.translate(_SMART)
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':  # copy a double-quoted string verbatim
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif ch == "'":  # single-quoted string -> double-quoted
            j = i + 1
            buf: list[str] = []
            while j < n and text[j] != "'":
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j : j + 2] if text[j + 1] != "'" else "'")
                    j += 2
                    continue
                buf.append('\\"' if text[j] == '"' else text[j])
                j += 1
            out.append('"' + "".join(buf) + ('"' if j < n else ""))
            i = j + 1
        elif ch.isalpha() or ch == "_":
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            k = j
            while k < n and text[k] in " \t":
                k += 1
            before = _last_char(out)
            if k < n and text[k] == ":" and word not in _PY_WORDS:
                out.append(f'"{word}"')  # bare key
            elif word in _PY_WORDS or word in ("true", "false", "null"):
                out.append(_PY_WORDS.get(word, word))
            elif before == ":":  # bare word value: "granularity": part
                while j < n and (text[j].isalnum() or text[j] in "_ -") and text[j : j + 2] != " }":
                    j += 1
                out.append(json.dumps(text[i:j].strip()))
            else:
                out.append(word)
            i = j
        elif ch == ",":
            k = i + 1
            while k < n and text[k].isspace():
                k += 1
            if k < n and text[k] in "}]":
                i += 1  # trailing comma
                continue
            out.append(ch)
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _scan(text: str) -> tuple[list[str], bool, list[tuple[int, bool, str]]]:
    """Open brackets at the end of ``text``, whether it ends inside a string, and the cut points.

    Cut points are ``(position, in_list, closers)``: just after a ``}`` or ``]`` that closes a
    nested value, whether that value was an element of a list, and the brackets that close
    everything still open there. Cutting there keeps every complete element before it.
    """
    stack: list[str] = []
    cuts: list[tuple[int, bool, str]] = []
    in_string = escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
            if stack:
                cuts.append((i + 1, stack[-1] == "]", "".join(reversed(stack))))
    return stack, in_string, cuts


def _loads_closed(prefix: str, closers: str) -> Any:
    """``prefix`` (normalized JSON cut short) with its open brackets closed, or ``None``."""
    for body in (prefix, re.sub(r',\s*"[^"]*"\s*:?\s*$', "", prefix)):  # drop a dangling key
        body = re.sub(r"[,:\s]+$", "", body)
        try:
            return json.loads(body + closers)
        except (json.JSONDecodeError, RecursionError):
            continue
    return None


def _recover_truncated(body: str) -> Any:
    """Close a cut-off JSON value (normalized), keeping the complete elements of its lists.

    Tried in order: closing the open brackets as they are (when the cut fell between values), then
    cutting after the last complete element of a list, after any complete nested value, and last
    closing the string the cut fell in.
    """
    stack, in_string, cuts = _scan(body)
    closers = "".join(reversed(stack))
    if not in_string:
        value = _loads_closed(body, closers)
        if value is not None:
            return value
    list_cuts = [c for c in cuts if c[1]][-_MAX_CUTS:]
    other_cuts = [c for c in cuts if not c[1]][-_MAX_CUTS // 3 :]
    for pos, _, cut_closers in [*reversed(list_cuts), *reversed(other_cuts)]:
        value = _loads_closed(body[:pos], cut_closers)
        if value is not None:
            return value
    return _loads_closed(body + '"', closers) if in_string else None


def _candidates(text: str) -> list[str]:
    text = _THINK.sub("", text)
    fenced = [m.group(2) for m in _FENCE.finditer(text) if m.group(2).strip()]
    return [*fenced, text]


def extract_json(text: str, report: ParseReport | None = None) -> Any:
    """The JSON value in a model's answer.

    Tries, in order: the contents of Markdown fences, then the whole text; for each, the first
    object or array that decodes as is (prose around it is ignored), then after cheap repairs
    (single quotes, ``True``/``None``, bare keys, trailing commas), then as cut-off output closed
    after its last complete element. ``<think>`` blocks are ignored.

    Args:
        text: the raw answer.
        report: if given, ``repaired`` is set and a note added when a repair was needed.

    Raises:
        ParseError: when the answer holds no recoverable JSON object or array.

    """
    if not isinstance(text, str) or not text.strip():
        raise ParseError("the answer was empty")
    candidates = _candidates(text)
    for candidate in candidates:
        starts = _starts(candidate)
        if starts and _scan(candidate[starts[0] :])[0]:  # the first value is left open: cut off
            break
        value = _decode_first(candidate)
        if value is not None:
            return value
    for candidate in candidates:
        value = _repair(candidate, report)
        if value is not None:
            return value
    raise ParseError("the answer contains no JSON object")


def _mark(report: ParseReport | None, note: str) -> None:
    if report is not None:
        report.repaired = True
        report.note(note)


# --------------------------------------------------------------------------------------------------
# ids and fields

_ID = re.compile(
    r"(?:(?:object|obj|region|mask|segment|item|id|no\.?|number|num)\s*[:=]?\s*)?(?:#|no\.?\s*)?\s*(\d+)\s*[.:)]?",
    re.I,
)
_SEMANTIC_KEYS = (
    "semantic",
    "semantics",
    "label",
    "description",
    "desc",
    "name",
    "caption",
    "category",
    "text",
)
_OBSERVATION_KEYS = ("observation", "observations", "brainstorm", "thinking", "thoughts", "analysis")
_REASONING_KEYS = ("reasoning", "reason", "rationale", "explanation", "why")
_ID_KEYS = ("id", "object_id", "obj_id", "mask_id", "region", "region_id", "index", "number", "object")
_LIST_KEYS = (
    "objects",
    "kept",
    "keep",
    "kept_objects",
    "selected",
    "selection",
    "regions",
    "results",
    "labels",
    "items",
    "masks",
    "answer",
    "output",
)
_IDS_KEYS = ("ids", "kept_ids", "selected_ids", "object_ids", "answer_ids", "indices")


def coerce_id(value: Any) -> int | None:
    """An object id from ``3``, ``3.0``, ``"3"``, ``"#3"``, ``"object 3"``; ``None`` if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    if isinstance(value, str):
        match = _ID.fullmatch(value.strip())
        return int(match.group(1)) if match else None
    return None


def _text_field(entry: dict[str, Any], keys: Iterable[str], report: ParseReport | None = None) -> str:
    """The first text under ``keys``; a copy of the prompt's template or a placeholder counts as missing.

    (:func:`~dtwin_agent.llm.prompts.is_template_text`: ``"updated description"``, ``"..."``,
    ``"<the label>"``.) A copy is noted in ``report``.
    """
    from dtwin_agent.llm.prompts import is_template_text

    lowered = {str(k).lower(): v for k, v in entry.items()}
    for key in keys:
        value = lowered.get(key)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            value = "; ".join(v.strip() for v in value)
        if not isinstance(value, str):
            continue
        if is_template_text(value, key):
            if report is not None and value.strip():
                report.note(f"ignored {key} {value.strip()[:40]!r}: a copy of the prompt's template")
            continue
        return value.strip()
    return ""


def _id_field(entry: dict[str, Any]) -> Any:
    lowered = {str(k).lower(): v for k, v in entry.items()}
    for key in _ID_KEYS:
        if key in lowered and coerce_id(lowered[key]) is not None:
            return lowered[key]
    value = lowered.get("id")
    return None if isinstance(value, dict | list) else value


def _entries(value: Any, report: ParseReport) -> list[tuple[Any, dict[str, Any]]]:
    """``(raw id, fields)`` pairs from the shapes models use for a list of objects.

    Accepted: ``{"objects": [...]}`` (or ``kept``, ``selected``, ...), a bare list, one object,
    ``{"ids": [...]}``, a list of ids, and a mapping ``{id: {...}}`` or ``{id: "text"}``.
    """
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        for key in _LIST_KEYS:
            if key in lowered and isinstance(lowered[key], list | dict):
                return _entries(lowered[key], report)
        for key in _IDS_KEYS:
            if key in lowered and isinstance(lowered[key], list):
                return _entries(lowered[key], report)
        if _id_field(value) is not None:
            return [(_id_field(value), value)]
        if value and all(coerce_id(k) is not None for k in value):  # {id: {...}} or {id: "text"}
            return [(k, v if isinstance(v, dict) else {"semantic": v}) for k, v in value.items()]
        return []
    if isinstance(value, list):
        out: list[tuple[Any, dict[str, Any]]] = []
        for item in value:
            if isinstance(item, dict):
                raw = _id_field(item)
                if raw is None and len(item) == 1 and coerce_id(next(iter(item))) is not None:
                    key, inner = next(iter(item.items()))  # [{"3": {...}}]
                    out.append((key, inner if isinstance(inner, dict) else {"semantic": inner}))
                elif raw is None:
                    report.note("dropped an entry without an id")
                else:
                    out.append((raw, item))
            elif isinstance(item, int | float | str):
                out.append((item, {}))
        return out
    if isinstance(value, int | float | str):
        return [(value, {})]
    return []


def _select(
    pairs: Sequence[tuple[Any, dict[str, Any]]], valid: Sequence[int], report: ParseReport
) -> list[tuple[int, dict[str, Any]]]:
    """Keep pairs whose id is valid, first occurrence only, in answer order; report the rest."""
    allowed = set(valid)
    seen: set[int] = set()
    out: list[tuple[int, dict[str, Any]]] = []
    for raw, fields in pairs:
        object_id = coerce_id(raw)
        if object_id is None:
            report.note(f"dropped an entry with an unreadable id {raw!r}")
        elif object_id not in allowed:
            if object_id not in report.unknown_ids:
                report.unknown_ids.append(object_id)
        elif object_id in seen:
            if object_id not in report.duplicate_ids:
                report.duplicate_ids.append(object_id)
        else:
            seen.add(object_id)
            out.append((object_id, fields))
    if report.unknown_ids:
        report.note(f"dropped unknown ids {report.unknown_ids}")
    if report.duplicate_ids:
        report.note(f"ignored repeated ids {report.duplicate_ids} (first kept)")
    return out


def _all_json(text: str, report: ParseReport) -> Any:
    """Like :func:`extract_json`, but consecutive objects with ids (JSON lines) become one list."""
    value = extract_json(text, report)
    if not isinstance(value, dict) or report.repaired or _id_field(value) is None:
        return value
    for candidate in _candidates(text):
        for start in _starts(candidate):
            hit = _decode_at(candidate, start)
            if hit is None or hit[0] != value:
                continue
            found, pos = [value], hit[1]
            while True:
                while pos < len(candidate) and (candidate[pos].isspace() or candidate[pos] == ","):
                    pos += 1
                nxt = _decode_at(candidate, pos) if candidate[pos : pos + 1] == "{" else None
                if nxt is None or not isinstance(nxt[0], dict) or _id_field(nxt[0]) is None:
                    break
                found.append(nxt[0])
                pos = nxt[1]
            if len(found) > 1:
                report.note("read several JSON objects as one list")
                return found
            return value
    return value


# --------------------------------------------------------------------------------------------------
# the answers of each stage

_GROUP_WORDS = ("group", "groups", "multiple objects", "several objects", "collection", "crowd", "set of")
_PART_WORDS = ("part", "parts", "component", "components", "subpart", "sub part", "piece", "portion")
_OBJECT_WORDS = ("object", "objects", "instance", "instances", "whole object", "single object", "entity")
_NUMERIC = {0: "group", 1: "object", 2: "part"}  # paper Eq. 1
_GRANULARITY_HELP = (
    'no granularity found; answer with an object with "granularity" (group, object or part) and "reason"'
)
_GRANULARITY_LINE = re.compile(
    r"granularity\W{0,5}(?:is\s+|=\s*|:\s*)?[\"'*`]*([a-z0-9][a-z0-9 _-]{0,20})", re.I
)
_REFINE_FORMAT = 'an object with "reasoning", the list "ids" of the kept ids and "objects" (id, semantic)'
_GRANULARITY_KEYS = (
    "granularity",
    "level",
    "l",
    "answer",
    "choice",
    "segmentation_level",
    "granularity_level",
)


def granularity_from_value(value: Any) -> str | None:
    """``group`` / ``object`` / ``part`` from a word, a synonym or a number (0, 1, 2 as in Eq. 1)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _NUMERIC.get(int(value)) if float(value).is_integer() else None
    if not isinstance(value, str):
        return None
    words = re.sub(r"[^a-z0-9]+", " ", value.lower())
    words = " ".join(re.sub(r"\b(level|granularity|segmentation|l)\b", " ", words).split())
    if words in {"0", "1", "2"}:
        return _NUMERIC[int(words)]
    words = f" {words} "
    for name, vocabulary in (("group", _GROUP_WORDS), ("part", _PART_WORDS), ("object", _OBJECT_WORDS)):
        if any(f" {w} " in words for w in vocabulary):
            return name
    return None


def parse_granularity_report(text: str) -> tuple[GranularityChoice, ParseReport]:
    """Parse the VLM's granularity choice (paper Eq. 1), with a report.

    Accepts ``{"granularity": "part", "reason": ...}`` and synonyms (``"object group"`` ->
    group, ``"object part"`` -> part, 0 / 1 / 2); without JSON, a line such as
    ``Granularity: part``, or prose naming exactly one of the three levels.

    Raises:
        ParseError: when no level can be read.

    """
    report = ParseReport()
    value: Any = None
    try:
        value = extract_json(text, report)
    except ParseError:
        pass
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        reason = _text_field(value, _REASONING_KEYS, report)
        for key in _GRANULARITY_KEYS:
            if key in lowered:
                level = granularity_from_value(lowered[key])
                if level is None:
                    raise ParseError(f"unknown granularity {lowered[key]!r}; use group, object or part")
                return GranularityChoice(granularity=level, reason=reason), report
    if isinstance(value, str | int) and granularity_from_value(value):
        return GranularityChoice(granularity=granularity_from_value(value)), report
    if not isinstance(text, str) or not text.strip():
        raise ParseError("the answer was empty")
    prose = _THINK.sub("", text)
    line = _GRANULARITY_LINE.search(prose)
    level = granularity_from_value(line.group(1)) if line else None
    if level:
        report.note("read the level from prose")
        return GranularityChoice(granularity=level, reason=prose.strip()[:300]), report
    named = {granularity_from_value(w) for w in re.findall(r"[a-z]+", prose.lower())} - {None}
    if len(named) == 1:
        report.note("read the level from prose")
        return GranularityChoice(granularity=named.pop(), reason=prose.strip()[:300]), report
    raise ParseError(_GRANULARITY_HELP)


PLAIN_WORDS = 12
"""The most words a restatement keeps (the prompt asks for at most twelve)."""


def parse_restatement(text: str) -> tuple[Restatement, ParseReport]:
    """Parse the request restated in plain words (``reasoning.restate``).

    Accepts ``{"plain": "blue shape", "thought": ...}``, a JSON string or list of strings, or one
    short plain-text line (noted in the report). Keeps at most :data:`PLAIN_WORDS` words and
    ``MAX_CHARS["plain"]`` characters (the bound a constrained local model writes under), cut at a
    word (noted).

    Raises:
        ParseError: when the answer holds no words, is other JSON (a number, ``null``, an object
            without the words), or is prose longer than a short phrase.

    """
    report = ParseReport()
    redo = 'answer with JSON only: {"thought": "...", "plain": "a few words"}'
    try:
        value, decoded = extract_json(text, report), True
    except ParseError:
        value, decoded = None, False
    if isinstance(value, dict):
        plain = _text_field(value, ("plain", "words"), report)
    elif isinstance(value, str):
        plain = value
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        plain = ", ".join(value)
    elif decoded:
        raise ParseError(f"no plain words in that JSON; {redo}")
    else:
        plain = _THINK.sub("", text if isinstance(text, str) else "").strip()
        try:
            scalar = json.loads(plain)  # a bare JSON value: "knife" is words, 42 or null is not
        except ValueError:
            report.note("read the plain words from a plain-text answer")
        else:
            if not isinstance(scalar, str):
                raise ParseError(f"no plain words in that JSON; {redo}")
            plain = scalar
        if len(plain.split()) > PLAIN_WORDS or "\n" in plain or "<think>" in plain:
            raise ParseError(redo)
    words = plain.split()
    if not words:
        raise ParseError(f"no words found; {redo}")
    plain = " ".join(words[:PLAIN_WORDS])
    limit = MAX_CHARS["plain"]
    if len(plain) > limit:
        plain = plain[: limit + 1].rsplit(" ", 1)[0]
    if plain != " ".join(words):
        report.note(f"kept the first {len(plain.split())} words of a longer restatement")
    return Restatement(plain=plain), report


def parse_granularity(text: str) -> GranularityChoice:
    """Parse the VLM's granularity choice (paper Eq. 1); see :func:`parse_granularity_report`.

    Raises:
        ParseError: when no level can be read.

    """
    return parse_granularity_report(text)[0]


def parse_semantics(text: str, expected_ids: Sequence[int]) -> tuple[SemanticBatch, ParseReport]:
    """Parse the labels S_i of the masks ``expected_ids`` (paper Eq. 4).

    Accepts ``{"objects": [{"id", "observation", "semantic"}]}``, a bare list, one object, or
    ``{"3": "a red car"}``. With a single expected id, an object without an id is taken as that
    one. Labels come back in ``expected_ids`` order; unknown and repeated ids are dropped and
    reported, ids without a label are listed in ``missing_ids``.

    Raises:
        ParseError: when no expected id gets a label.

    """
    report = ParseReport()
    expected = list(dict.fromkeys(expected_ids))
    value = _all_json(text, report)
    pairs = _entries(value, report)
    if (
        not pairs
        and len(expected) == 1
        and isinstance(value, dict)
        and _text_field(value, _SEMANTIC_KEYS, report)
    ):
        pairs = [(expected[0], value)]
        report.note(f"no id in the answer; taken as object {expected[0]}")
    labels: dict[int, ObjectLabel] = {}
    for object_id, fields in _select(pairs, expected, report):
        semantic = _text_field(fields, _SEMANTIC_KEYS, report)
        if not semantic:
            report.note(f"object {object_id} has no semantic")
            continue
        labels[object_id] = ObjectLabel(
            id=object_id, observation=_text_field(fields, _OBSERVATION_KEYS, report), semantic=semantic
        )
    report.missing_ids = [i for i in expected if i not in labels]
    if not labels:
        raise ParseError(
            f"no usable label for objects {expected}"
            + (f" (unknown ids {report.unknown_ids})" if report.unknown_ids else "")
            + '; answer with an object whose "objects" list has "id", "observation" and "semantic" per region'
        )
    return SemanticBatch(objects=[labels[i] for i in expected if i in labels]), report


def _ids_list(value: Any) -> list[Any] | None:
    """The list under an ``ids`` key (``ids``, ``kept_ids``...) of a dict answer, if any."""
    if not isinstance(value, dict):
        return None
    lowered = {str(k).lower(): v for k, v in value.items()}
    return next((lowered[k] for k in _IDS_KEYS if isinstance(lowered.get(k), list)), None)


def parse_refine_step(text: str, previous_ids: Sequence[int]) -> tuple[RefineStepOutput, ParseReport]:
    """Parse one refinement step D^(j) (paper Eqs. 7-8): the kept objects, in answer order.

    Accepts ``{"reasoning", "ids": [...], "objects": [{"id", "semantic", "reasoning"}]}`` (the
    kept set is ``ids``, unless it is empty beside filled ``objects``; ``objects`` adds the notes
    of kept objects) and, from models that answer
    otherwise, ``{"objects": [...]}`` alone, a bare list, ``{id: {...}}``... (see ``_entries``). Kept ids
    must be a subset of ``previous_ids``: unknown ones are dropped and reported, repeats are dropped.
    An explicit empty list is a valid answer (nothing matches). A kept object without its own
    reasoning gets the step's.

    Raises:
        ParseError: when no list of objects can be read, or every id named is unknown.

    """
    report = ParseReport()
    value = _all_json(text, report)
    listed = _ids_list(value)
    lowered = {str(k).lower(): v for k, v in value.items()} if isinstance(value, dict) else {}
    notes = next((lowered[k] for k in _LIST_KEYS if isinstance(lowered.get(k), list | dict)), None)
    if listed is not None and (listed or not notes):  # "ids" says what is kept (an empty one: nothing)
        fields_of = {coerce_id(raw): f for raw, f in _entries(notes or [], ParseReport())}
        pairs = [(raw, fields_of.get(coerce_id(raw), {})) for raw, _ in _entries(listed, report)]
    else:  # entries only (or an empty "ids" beside filled entries: the entries)
        pairs = _entries(value, report)
    step_reasoning = _text_field(value, _REASONING_KEYS, report) if isinstance(value, dict) else ""
    if not pairs and not _is_explicit_empty(value):
        raise ParseError(f"no kept objects found; answer {_REFINE_FORMAT}")
    kept = [
        KeptObject(
            id=object_id,
            semantic=_text_field(fields, _SEMANTIC_KEYS, report),
            reasoning=_text_field(fields, _REASONING_KEYS, report) or step_reasoning,
        )
        for object_id, fields in _select(pairs, previous_ids, report)
    ]
    if pairs and not kept:
        raise ParseError(
            f"none of the ids {report.unknown_ids or [p[0] for p in pairs]} is in the previous step; "
            f"choose from {list(previous_ids)}",
            report=report,
        )
    return RefineStepOutput(reasoning=step_reasoning, ids=[k.id for k in kept], objects=kept), report


def parse_single_shot(text: str, valid_ids: Sequence[int]) -> tuple[SingleShotOutput, ParseReport]:
    """Parse the zero-shot answer I = F_LLM(JSON(D), x_txt) (paper Eq. 6).

    Accepts ``{"ids": [...], "reason": "..."}``, ``{"objects": [...]}``, a list of ids or one id.
    Unknown and repeated ids are dropped and reported; an explicit empty list is valid.

    Raises:
        ParseError: when no ids can be read, or every id named is unknown.

    """
    report = ParseReport()
    try:
        value = _all_json(text, report)
    except ParseError:
        if not isinstance(text, str) or coerce_id(text.strip()) is None:
            raise
        value = [coerce_id(text.strip())]  # a bare "3" or "object 3"
        report.note("read one id from a plain-text answer")
    pairs = _entries(value, report)
    if not pairs and not _is_explicit_empty(value):
        raise ParseError('no ids found; answer with an object with "reason" and the list "ids"')
    ids = [object_id for object_id, _ in _select(pairs, valid_ids, report)]
    if pairs and not ids:
        raise ParseError(
            f"none of the ids {report.unknown_ids} exists; choose from {list(valid_ids)}", report=report
        )
    reason = _text_field(value, _REASONING_KEYS, report) if isinstance(value, dict) else ""
    return SingleShotOutput(ids=ids, reason=reason), report


def _is_explicit_empty(value: Any) -> bool:
    if value == []:
        return True
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        return any(lowered.get(k) in ([], {}) for k in (*_LIST_KEYS, *_IDS_KEYS))
    return False


def unusable_answer(raw: str, report: ParseReport | None = None) -> str:
    """What was wrong with an answer that could not be used, in a few words for a person.

    ``an empty answer``, ``an unfinished <think> block``, ``only a <think> block``, ``only ids that
    are not in question [7, 9]``, ``prose instead of JSON``, ``a cut-off JSON answer``, else
    ``JSON without the requested fields``.
    """
    text = raw if isinstance(raw, str) else ""
    if not text.strip():
        return "an empty answer"
    opened = re.search(r"<think(?:ing)?>", text, re.I)
    if opened and not re.search(r"</think(?:ing)?>", text[opened.end() :], re.I):
        return "an unfinished <think> block (it ran out before the answer)"
    body = _THINK.sub("", text)
    if not body.strip():
        return "only a <think> block, no answer after it"
    if report is not None and report.unknown_ids:
        return f"only ids that are not in question {report.unknown_ids}"
    starts = _starts(body)
    if not starts:
        return "prose instead of JSON"
    if _scan(body[starts[0] :])[0]:
        return "a cut-off JSON answer"
    return "JSON without the requested fields"

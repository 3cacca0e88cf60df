"""A deterministic pre-filter the LLM can override: words and ranks, no meaning.

Before each refinement step (and the single-shot call) :func:`suggest` reads the request and the
objects still in question and proposes candidates from what needs no understanding:

- words the request shares with an object's semantic S_i (stemmed, stop words left out, as the
  keyword reasoner :mod:`dtwin_agent.offline.lexical` matches them);
- closed vocabularies: colour words (``red`` ... ``grey``) and shape words (``round``,
  ``rectangular``) must appear in S_i; when no object has them the suggestion is empty and says so;
- superlatives and extremes (``largest``, ``smallest``, ``leftmost``, ``on the right``, ``at the
  top``...) pick the extreme candidate by area or centroid (the facts T_i states as ranks), unless
  the request asks for a group (``every``, ``all``, ``both``) or names a relation (``left of``);
  in a relation only the words before it name the target ("the mug left of the laptop": mugs).

The LLM sees the suggestion as a hint (:func:`hint_text`) and is told to override it whenever the
request means something else (an implicit request shares no words: "the fruit a monkey would
like"). ``reasoning.prefilter`` turns it off. Nothing here knows any benchmark or photo.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from dtwin_agent.offline.lexical import stem, terms
from dtwin_agent.twin import DigitalTwin, TwinObject

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey")
_COLOUR_ALIASES = {"gray": "grey", "violet": "purple"}
SHAPES = {"round": ("round", "circular", "circle"), "rectangular": ("rectangular", "rectangle", "square")}
_EXTREMES: dict[str, tuple[str, bool, str]] = {  # word -> (axis, pick the maximum?, what the pick is)
    "largest": ("size", True, "largest"),
    "biggest": ("size", True, "largest"),
    "smallest": ("size", False, "smallest"),
    "tiniest": ("size", False, "smallest"),
    "leftmost": ("x", False, "leftmost"),
    "left": ("x", False, "leftmost"),
    "rightmost": ("x", True, "rightmost"),
    "right": ("x", True, "rightmost"),
    "topmost": ("y", False, "topmost"),
    "top": ("y", False, "topmost"),
    "highest": ("y", False, "topmost"),
    "upper": ("y", False, "topmost"),
    "bottommost": ("y", True, "bottommost"),
    "bottom": ("y", True, "bottommost"),
    "lowest": ("y", True, "bottommost"),
    "lower": ("y", True, "bottommost"),
}
_GROUP = {"every", "all", "each", "both", "any"}
_RELATION = re.compile(r"\b(left|right) of\b|\b(above|below|under|beneath|over|next to|beside|behind|near)\b")
_SPECIAL = set(COLOURS) | set(_COLOUR_ALIASES) | {w for ws in SHAPES.values() for w in ws} | set(_EXTREMES)
_SPECIAL |= {"colour", "color", "shape", "size", "side", "corner", "middle", "centre", "center", "most"}


@dataclass(frozen=True)
class Suggestion:
    """What the pre-filter proposes.

    Attributes:
        ids: the candidate ids, best first (empty: the request's colour or shape matches none).
        why: per candidate, the words or the rank that put it there.
        note: one line on the whole suggestion (the extreme picked, or why it is empty).
    """

    ids: list[int]
    why: dict[int, str] = field(default_factory=dict)
    note: str = ""


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _value(obj: TwinObject, axis: str) -> float:
    return {"size": obj.area_pct, "x": obj.centroid[0], "y": obj.centroid[1]}[axis]


def suggest(
    twin: DigitalTwin, query: str, ids: Sequence[int], semantics: dict[int, str], plain: str = ""
) -> Suggestion | None:
    """Candidates among ``ids`` for ``query`` (see the module docstring); None when it has no opinion.

    Args:
        twin: the twin (areas and centroids for extremes).
        query: the request.
        ids: the objects still in question.
        semantics: their current semantics S_i^(j-1), by id.
        plain: the request restated in plain words (``reasoning.restate``): more names, colours
            and shapes to match; whether one object or a group is asked, extremes and relations
            still come from ``query`` alone.
    """
    words = _words(query)
    wanted = set(words)
    named = wanted | set(_words(plain))
    colours = sorted({_COLOUR_ALIASES.get(w, w) for w in named if w in COLOURS or w in _COLOUR_ALIASES})
    shapes = sorted(name for name, forms in SHAPES.items() if named & set(forms))
    relation = _RELATION.search(query.lower())
    target = query[: relation.start()] if relation else query  # "the mug left of the laptop": the mug
    special = {stem(w) for w in _SPECIAL}
    nouns = terms(target) - special
    plural = any(w.endswith("s") and not w.endswith("ss") and stem(w) in nouns for w in _words(target))
    nouns |= terms(plain) - special
    group = bool(wanted & _GROUP) or plural
    relational = relation is not None
    extremes = [] if group or relational else [w for w in words if w in _EXTREMES]

    cands = list(ids)
    why: dict[int, list[str]] = {i: [] for i in cands}
    opinion = False
    if nouns:
        shared = {i: sorted(nouns & terms(semantics.get(i, ""))) for i in cands}
        hits = [i for i in cands if shared[i]]
        if hits:
            opinion = True
            best = max(len(shared[i]) for i in hits)
            cands = sorted(hits, key=lambda i: -len(shared[i]))
            for i in cands:
                why[i].append("shares " + ", ".join(f'"{w}"' for w in shared[i]))
            if not group:
                cands = [i for i in cands if len(shared[i]) == best]
    for word in [*colours, *shapes]:  # closed vocabularies: S_i must say it
        opinion = True
        cands = [i for i in cands if word in _words(semantics.get(i, ""))]
        if not cands:
            return Suggestion([], {}, f"no object still in question is {word} (no semantic says so)")
        for i in cands:
            why[i].append(f"is {word}")
    note = ""
    if extremes and len(cands) > 1:
        axis, maximum, word = _EXTREMES[extremes[0]]
        objects = {o.id: o for o in twin.objects}
        values = {i: _value(objects[i], axis) for i in cands}
        pick = (max if maximum else min)(cands, key=values.__getitem__)
        note = f"#{pick} is the {word} of the {len(cands)} candidates"
        why[pick].append(f"the {word} of them")
        cands = [pick] + [i for i in cands if i != pick]
        opinion = True
    if not opinion:
        return None
    return Suggestion(cands, {i: "; ".join(why[i]) for i in cands if why[i]}, note)


def hint_text(suggestion: Suggestion | None) -> str:
    """The line the LLM reads (empty for no suggestion)."""
    if suggestion is None:
        return ""
    head = "\nKeyword pre-filter (matches words and ranks only, not meaning; override it when wrong): "
    if not suggestion.ids:
        return head + suggestion.note + "."
    listed = "; ".join(
        f"#{i} ({suggestion.why[i]})" if i in suggestion.why else f"#{i}" for i in suggestion.ids
    )
    return head + "candidates " + listed + (f"; {suggestion.note}" if suggestion.note else "") + "."

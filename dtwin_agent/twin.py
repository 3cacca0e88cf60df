"""The digital twin: the one validated type every stage reads and writes (paper 3.1-3.4).

``D = {(i, m_i, S_i) | i = 1..N'}`` plus the spatial layer (:class:`DigitalTwin`), and the
reasoning path ``D^(0..K)`` over it (:class:`ReasoningStep`), used alike by the graph, the
result, ``result.json`` and the Seg-DT records. The LLM sees only JSON(D) (paper Eq. 5), rendered
in one place, :meth:`PromptTwin.to_prompt_json` (reached as :meth:`DigitalTwin.to_prompt_json`):
never masks or pixels.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

Granularity = Literal["group", "object", "part"]
GRANULARITIES: tuple[Granularity, ...] = ("group", "object", "part")
#: What a twin holds: one level of paper Eq. 1, or ``hierarchy``: the objects and, beside them, their
#: parts, each part naming the object it belongs to (:attr:`TwinObject.parent`).
TwinLevel = Literal["group", "object", "part", "hierarchy"]
TWIN_LEVELS: tuple[TwinLevel, ...] = ("group", "object", "part", "hierarchy")

RelationKind = Literal[
    "left of",
    "right of",
    "above",
    "below",
    "inside",
    "surrounding",
    "overlapping",
    "touching",
    "near",
]

Decision = Literal["kept", "rejected"]

TWIN_VERSION = 3
"""2: T_i with ordinal facts and percent boxes, S_i without the labeller's name (issue 12).
3: hierarchy twins rank parts among their object's parts, and relations skip what ``part of`` says
(issue 10)."""


class RLE(BaseModel):
    """A COCO run-length encoded mask at the original image size (``size`` is ``[height, width]``)."""

    model_config = ConfigDict(frozen=True)

    size: tuple[int, int] = Field(description="[height, width] of the image the mask belongs to")
    counts: str = Field(description="compressed COCO RLE counts string")

    @field_validator("size")
    @classmethod
    def _positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 1 or v[1] < 1:
            raise ValueError(f"RLE size must be positive, got {v}")
        return v


class Relation(BaseModel):
    """One spatial relation R_i,j: this object is ``kind`` the object ``target`` (paper 3.2)."""

    model_config = ConfigDict(frozen=True)

    target: int = Field(ge=1, description="id of the other object")
    kind: RelationKind
    distance: float = Field(default=0.0, ge=0.0, description="boundary distance in original pixels")


class ImageInfo(BaseModel):
    """What the twin records about its image."""

    width: int = Field(ge=1)
    height: int = Field(ge=1)
    sha256: str = Field(min_length=64, max_length=64, description="sha256 of the decoded RGB pixels")
    source: str = Field(default="", description="file name or a short description of the source")


class TwinObject(BaseModel):
    """One object of the twin: mask, geometry, semantic S_i, relations R_i,j and text T_i."""

    id: int = Field(ge=1, description="stable id, 1..N'")
    mask: RLE
    bbox: tuple[int, int, int, int] = Field(description="x_min, y_min, x_max, y_max in original pixels")
    area_pct: float = Field(ge=0.0, le=100.0, description="mask area as a percentage of the image")
    centroid: tuple[float, float] = Field(description="x, y in original pixels")
    predicted_iou: float | None = None
    stability: float | None = None
    semantic: str = ""
    relations: list[Relation] = Field(default_factory=list)
    spatial: str = Field(default="", description="T_i: the spatial text shown to the LLM")
    parent: int | None = Field(
        default=None, ge=1, description="hierarchy twins: id of the object this part belongs to"
    )

    @model_validator(mode="after")
    def _bbox_order(self) -> TwinObject:
        x0, y0, x1, y1 = self.bbox
        if x0 > x1 or y0 > y1:
            raise ValueError(f"bbox must be (x_min, y_min, x_max, y_max), got {self.bbox}")
        return self

    def decode_mask(self) -> np.ndarray:
        """The object's boolean mask at the original image size."""
        from dtwin_agent import masks

        return masks.decode(self.mask)


class ObjectDecision(BaseModel):
    """The decision C(i, x_txt, D^(j-1)) on one object at one step, with S_i^(j) and R_i^(j) (paper Eq. 8)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Decision = "kept"
    semantic: str = Field(default="", description="S_i^(j), the updated semantic (kept objects)")
    reasoning: str = Field(default="", description="R_i^(j): why the object is kept or rejected")


def _kept_ids(objects: Any) -> list[int]:
    """The ids decided ``kept`` in a raw ``objects`` mapping (dicts or :class:`ObjectDecision`)."""
    kept = []
    for key, value in (objects or {}).items():
        decision = (
            value.decision if isinstance(value, ObjectDecision) else (value or {}).get("decision", "kept")
        )
        if decision == "kept":
            kept.append(int(key))
    return sorted(kept)


class ReasoningStep(BaseModel):
    """One state D^(j) of the reasoning path D^(0..K) (paper Eqs. 7-9).

    Step 0 is D^(0) = D: every object, no decisions. Step j >= 1 is the transition
    D^(j) = F_refine(D^(j-1), x_txt): ``objects`` holds the decision on each object of D^(j-1) that
    the reasoner decided (kept with S_i^(j) and R_i^(j), or rejected with R_i^(j)), ``ids`` is
    I^(j), the kept ids in the reasoner's order (derived from the decisions, in id order, when not
    given). A step whose answer could not be used keeps the previous ids and has no decisions.
    Seg-DT records (:mod:`dtwin_agent.sft.records`) hold the same steps from j = 1.

    Attributes:
        step: j.
        ids: I^(j).
        objects: id -> decision at this step (empty for D^(0) and for unusable answers).
        report: what parsing the model's answer repaired or dropped
            (:class:`~dtwin_agent.llm.parsing.ParseReport` as a dict: ``unknown_ids``, ``notes``...);
            None when the step was not parsed from a model answer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: int = Field(ge=0)
    ids: list[int] = Field(default_factory=list, description="I^(j): the kept ids")
    objects: dict[int, ObjectDecision] = Field(default_factory=dict)
    report: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _ids_from_decisions(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("ids") is None:
            data = {**data, "ids": _kept_ids(data.get("objects"))}
        return data

    @model_validator(mode="after")
    def _ids_match_decisions(self) -> ReasoningStep:
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f"ids: repeated ids in {self.ids}")
        if self.objects and sorted(self.ids) != _kept_ids(self.objects):
            raise ValueError(
                f"ids: {sorted(self.ids)} must be the ids decided kept {_kept_ids(self.objects)}"
            )
        return self

    @property
    def kept(self) -> list[int]:
        """I^(j) in id order."""
        return sorted(self.ids)


class PromptObject(BaseModel):
    """One object of JSON(D): T_i and S_i (paper Eq. 5), and R_i^(j) in refinement steps (paper 3.3)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spatial: str = ""
    semantic: str = ""
    reasoning: str | None = None


class PromptTwin(RootModel[dict[int, PromptObject]]):
    """JSON(D) as a value: id -> :class:`PromptObject`. What the reasoner sees; never masks or pixels.

    Built by :meth:`DigitalTwin.prompt_twin`; Seg-DT records store it as their input (paper 3.4).
    """

    def to_prompt_json(self) -> str:
        """JSON(D) as compact JSON text, ids ascending: ``{"1":{"spatial":T_1,"semantic":S_1},...}``.

        The one renderer of JSON(D): reasoning prompts, SFTDT serving and Seg-DT training use it.
        """
        data = {str(i): self.root[i].model_dump(exclude_none=True) for i in sorted(self.root)}
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    def __iter__(self) -> Iterator[int]:  # type: ignore[override]  # ids, like a dict
        return iter(self.root)

    def __getitem__(self, object_id: int) -> PromptObject:
        return self.root[object_id]

    def __len__(self) -> int:
        return len(self.root)


def misplaced_parents(ids: Sequence[int], parents: Sequence[int | None]) -> list[tuple[int, int]]:
    """The ``(id, parent)`` pairs of a hierarchy whose parent is not the id of a top-level object.

    A part belongs to an object (``parent`` None); a parent that is unknown, the part itself, or
    itself a part is misplaced. Empty when the hierarchy is valid.
    """
    top = {i for i, p in zip(ids, parents, strict=True) if p is None}
    return [(i, p) for i, p in zip(ids, parents, strict=True) if p is not None and p not in top]


class DigitalTwin(BaseModel):
    """The digital twin representation D of one image."""

    version: int = TWIN_VERSION
    image: ImageInfo
    granularity: TwinLevel = "object"
    objects: list[TwinObject] = Field(default_factory=list)
    components: dict[str, str] = Field(
        default_factory=dict, description="which proposer, labeller and models built this twin"
    )

    @model_validator(mode="after")
    def _consistent(self) -> DigitalTwin:
        ids = [o.id for o in self.objects]
        if len(set(ids)) != len(ids):
            raise ValueError(f"objects: duplicate ids in {ids}")
        known = set(ids)
        size = (self.image.height, self.image.width)
        for obj in self.objects:
            if tuple(obj.mask.size) != size:
                raise ValueError(
                    f"objects[id={obj.id}].mask: size {tuple(obj.mask.size)} is not the image size {size}"
                )
            x0, y0, x1, y1 = obj.bbox
            if x0 < 0 or y0 < 0 or x1 >= self.image.width or y1 >= self.image.height:
                raise ValueError(f"objects[id={obj.id}].bbox: {obj.bbox} lies outside the image")
            for rel in obj.relations:
                if rel.target not in known or rel.target == obj.id:
                    raise ValueError(f"objects[id={obj.id}].relations: bad target id {rel.target}")
        bad = misplaced_parents(ids, [o.parent for o in self.objects])
        if bad:
            object_id, parent = bad[0]
            raise ValueError(f"objects[id={object_id}].parent: {parent} is not the id of a top-level object")
        return self

    @property
    def summary(self) -> str:
        """How many objects the twin holds, in words.

        ``12 objects (object level)``, or for a hierarchy twin ``8 objects with 30 parts``.
        """
        parts = sum(o.parent is not None for o in self.objects)
        objects = len(self.objects) - parts
        if self.granularity == "hierarchy":
            return f"{objects} object{'s' * (objects != 1)} with {parts} part{'s' * (parts != 1)}"
        return f"{objects} object{'s' * (objects != 1)} ({self.granularity} level)"

    @property
    def ids(self) -> list[int]:
        """The object ids in order."""
        return [o.id for o in self.objects]

    def get(self, object_id: int) -> TwinObject:
        """The object with this id.

        Raises:
            KeyError: if there is none.
        """
        for obj in self.objects:
            if obj.id == object_id:
                return obj
        raise KeyError(f"no object with id {object_id}; ids are {self.ids}")

    def union_mask(self, ids: list[int] | set[int]) -> np.ndarray:
        """Boolean union of the chosen objects' masks at the original size (empty ids: all False)."""
        from dtwin_agent import masks

        wanted = set(ids)
        return masks.union(
            [o.mask for o in self.objects if o.id in wanted], (self.image.height, self.image.width)
        )

    def prompt_twin(self, step: ReasoningStep | None = None) -> PromptTwin:
        """JSON(D^(j)) as a value (paper Eq. 5 and 3.3).

        Args:
            step: None for D itself (every object, T_i and S_i); else the objects of ``step.ids``,
                each with the step's updated semantic S_i^(j) (the twin's S_i when it gave none)
                and, when the step decided it, the reasoning R_i^(j).
        """
        keep = None if step is None else set(step.ids)
        decisions = {} if step is None else step.objects
        out: dict[int, PromptObject] = {}
        for obj in self.objects:
            if keep is not None and obj.id not in keep:
                continue
            decided = decisions.get(obj.id)
            out[obj.id] = PromptObject(
                spatial=obj.spatial,
                semantic=(decided.semantic if decided is not None and decided.semantic else obj.semantic),
                reasoning=None if decided is None else decided.reasoning,
            )
        return PromptTwin(out)

    def to_prompt_json(self, step: ReasoningStep | None = None) -> str:
        """JSON(D) = ``{i: {"spatial": T_i, "semantic": S_i}}`` (paper Eq. 5) as compact JSON text.

        ``step`` renders JSON(D^(j)) of a refinement step instead, with ``"reasoning"`` (paper 3.3);
        see :meth:`prompt_twin`. Masks and pixels are never included.
        """
        return self.prompt_twin(step).to_prompt_json()

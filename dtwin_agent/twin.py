"""The digital twin: the one validated type every stage reads and writes (paper 3.1-3.3).

``D = {(i, m_i, S_i) | i = 1..N'}`` plus the spatial layer. The LLM sees only
:meth:`DigitalTwin.to_prompt_json` (paper Eq. 5): never masks or pixels.
"""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Granularity = Literal["group", "object", "part"]
GRANULARITIES: tuple[Granularity, ...] = ("group", "object", "part")

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

TWIN_VERSION = 1


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


class DigitalTwin(BaseModel):
    """The digital twin representation D of one image."""

    version: int = TWIN_VERSION
    image: ImageInfo
    granularity: Granularity = "object"
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
        return self

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

    def prompt_dict(
        self,
        ids: list[int] | None = None,
        semantics: dict[int, str] | None = None,
        reasoning: dict[int, str] | None = None,
    ) -> dict[str, dict[str, str]]:
        """JSON(D) as a dict: ``{i: {"spatial": T_i, "semantic": S_i[, "reasoning": R_i]}}``.

        Args:
            ids: restrict to these objects (D^(j) keeps a subset); default all.
            semantics: updated semantics S_i^(j) replacing the twin's own.
            reasoning: per-object reasoning notes R_i^(j) (paper 3.3); added when given.
        """
        keep = None if ids is None else set(ids)
        out: dict[str, dict[str, str]] = {}
        for obj in self.objects:
            if keep is not None and obj.id not in keep:
                continue
            entry = {
                "spatial": obj.spatial,
                "semantic": (semantics or {}).get(obj.id, obj.semantic),
            }
            if reasoning and obj.id in reasoning:
                entry["reasoning"] = reasoning[obj.id]
            out[str(obj.id)] = entry
        return out

    def to_prompt_json(
        self,
        ids: list[int] | None = None,
        semantics: dict[int, str] | None = None,
        reasoning: dict[int, str] | None = None,
    ) -> str:
        """JSON(D) = ``{i: {"spatial": T_i, "semantic": S_i}}`` (paper Eq. 5) as compact JSON text.

        Refinement steps pass ``reasoning`` to render JSON(D^(j)) of paper 3.3. Masks and pixels are
        never included.
        """
        return json.dumps(self.prompt_dict(ids, semantics, reasoning), ensure_ascii=False)

"""Pydantic types of what the models answer; parsed by the pure functions in ``parsing.py``."""

from __future__ import annotations

from pydantic import BaseModel, Field

from dtwin_agent.twin import Granularity


class GranularityChoice(BaseModel):
    """The VLM's choice of segmentation granularity L (paper Eq. 1)."""

    granularity: Granularity = Field(description="group, object or part")
    reason: str = Field(default="", description="one line saying why")


class ObjectLabel(BaseModel):
    """The semantic S_i of one mask (paper Eq. 4)."""

    id: int = Field(description="the mask's number")
    observation: str = Field(default="", description="what the model sees before committing (brainstorm)")
    semantic: str = Field(description="what the object is, with attributes relevant to the query")


class SemanticBatch(BaseModel):
    """Labels for one or more masks, as one VLM answer."""

    objects: list[ObjectLabel]


class KeptObject(BaseModel):
    """One object kept in D^(j), with its updated semantic S_i^(j) and reasoning R_i^(j).

    ``reasoning`` comes first on purpose: models that write fields in schema order (JSON-schema
    constrained decoding) then reason before they commit to an id (a local 1.5B model went from
    4/20 to 11/20 right answers, see benchmarks/local_llm.py).
    """

    reasoning: str = ""
    id: int
    semantic: str = ""


class RefineStepOutput(BaseModel):
    """D^(j) = F_refine(D^(j-1), x_txt) (paper Eqs. 7-8): the kept objects."""

    objects: list[KeptObject] = Field(default_factory=list, description="objects kept at this step")


class SingleShotOutput(BaseModel):
    """I = F_LLM(JSON(D), x_txt) (paper Eq. 6): the chosen ids directly, the reason first (as KeptObject)."""

    reason: str = ""
    ids: list[int] = Field(default_factory=list)

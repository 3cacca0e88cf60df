"""Pydantic types of what the models answer; parsed by the pure functions in ``parsing.py``."""

from __future__ import annotations

from typing import Any

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
    """One object kept in D^(j): its updated semantic S_i^(j) and, when given, its own reasoning R_i^(j)."""

    id: int
    semantic: str = ""
    reasoning: str = Field(default="", description="R_i^(j); the step's reasoning when empty")


class RefineStepOutput(BaseModel):
    """D^(j) = F_refine(D^(j-1), x_txt) (paper Eqs. 7-8): the kept ids, then notes per kept object.

    The order is deliberate, for models that write fields in schema order (JSON-schema constrained
    decoding): first ``reasoning`` on the request, so the model reasons before it commits to ids;
    then ``ids``, one list holding every kept object (with one entry per object first, a 1.5B model
    kept the first of three pizzas and closed the list); then ``objects``, the updated semantic
    (and, optionally, the reasoning) of each kept object. ``benchmarks/local_llm.py`` measures it.
    """

    reasoning: str = Field(default="", description="what the request asks for and which objects satisfy it")
    ids: list[int] = Field(default_factory=list, description="the ids kept at this step")
    objects: list[KeptObject] = Field(default_factory=list, description="kept objects, updated")


class SingleShotOutput(BaseModel):
    """I = F_LLM(JSON(D), x_txt) (paper Eq. 6): the chosen ids directly, the reason first (as KeptObject)."""

    reason: str = ""
    ids: list[int] = Field(default_factory=list)


class Restatement(BaseModel):
    """The request in plain words: what kind of object, or which colour or shape it has.

    Asked only when the request's own words give the keyword pre-filter nothing to match
    ("the shape with the colour of the sky" -> "blue shape"); the pre-filter then reads these words.
    """

    thought: str = Field(default="", description="one short sentence: what the request means")
    plain: str = Field(default="", description="a few plain words naming what the request asks for")


MAX_CHARS = {
    "reasoning": 400,
    "reason": 400,
    "semantic": 160,
    "observation": 200,
    "plain": 120,
    "thought": 200,
}
"""The longest text field a constrained local model may write, by field name (other strings: 400)."""


def bounded_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema, every field required, a ``maxLength`` on each text field, for a grammar.

    llama.cpp turns the schema into a grammar, so the bound holds while the model writes: a 1.5B
    model copying an object's T_i into ``"semantic"`` repeated its relations until the token limit
    (1024 tokens, ~7 minutes on a loaded CPU) and the whole answer was lost. Only the local server
    gets these bounds (:class:`~dtwin_agent.llm.llamacpp.LlamaCppChatOpenAI`); validation does not
    check them, and strict providers that refuse ``maxLength`` never see it.
    """
    schema = model.model_json_schema()

    def bound(node: Any) -> None:
        if isinstance(node, dict):
            properties = node.get("properties") or {}
            if properties:  # every field written, as strict structured output asks (a 1.5B model given
                node["required"] = list(properties)  # optional fields closed the answer before "ids")
            for name, prop in properties.items():
                if isinstance(prop, dict) and prop.get("type") == "string" and "maxLength" not in prop:
                    prop["maxLength"] = MAX_CHARS.get(name, 400)
            for value in node.values():
                bound(value)
        elif isinstance(node, list):
            for value in node:
                bound(value)

    bound(schema)
    return schema

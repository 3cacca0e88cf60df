"""Reasoners over JSON(D) behind one interface, chosen by ``models.llm`` (paper Eqs. 1, 6-9).

``get_reasoner(settings)`` resolves the setting:

- ``"offline:lexical"``: the keyword reasoner (:class:`~dtwin_agent.offline.lexical.LexicalReasoner`),
  not an LLM;
- ``"offline"`` (the default) or empty: the offline profile's local LLM when it is fetched
  (:mod:`dtwin_agent.offline.profile`), else the keyword reasoner;
- a ``"provider:model"`` or ``"local:NAME"`` string, or a LangChain chat model instance: the
  :class:`~dtwin_agent.reasoning.llm.LLMReasoner` over that model.

``reasoning.mode`` picks the method the graph calls: ``refine`` (one step per call),
``single_shot`` (Eq. 6) or ``sftdt`` (the whole path in one answer, as Seg-DT records train it).
"""

from __future__ import annotations

from dtwin_agent.config import LEXICAL, OFFLINE, Settings, model_name
from dtwin_agent.reasoning.base import Reasoner, Reply, step_from_kept

__all__ = ["Reasoner", "Reply", "get_reasoner", "step_from_kept"]


def get_reasoner(settings: Settings) -> Reasoner:
    """The reasoner ``models.llm`` names (see the module docstring).

    Raises:
        ConfigError: as :func:`~dtwin_agent.llm.models.chat_model` for a model that cannot be built.
    """
    spec = settings.models.llm
    name = spec.strip().lower() if isinstance(spec, str) else None
    if spec is None or name in ("", OFFLINE, LEXICAL):
        from dtwin_agent.offline.profile import offline_llm_name

        if name == LEXICAL or offline_llm_name(settings) is None:
            from dtwin_agent.offline.lexical import LexicalReasoner

            return LexicalReasoner(settings)
    from dtwin_agent.llm.models import chat_model
    from dtwin_agent.reasoning.llm import LLMReasoner

    return LLMReasoner(chat_model("llm", settings), settings, model_name(spec, settings))

"""SFTDT: Seg-DT records, the token-weighted loss of Eq. 10 and LoRA training (paper 3.3-3.4).

``records`` and ``build`` need only pydantic / numpy; ``loss`` needs torch; ``train`` also needs the
optional ``transformers`` and ``peft`` packages (imported when training starts).
"""

from dtwin_agent.sft.records import (
    SEGDT_VERSION,
    SegDTInput,
    SegDTRecord,
    SegDTTarget,
    SFTDTAnswer,
    parse_answer,
    parse_record,
    read_records,
    render_messages,
    render_target,
    write_records,
)

__all__ = [
    "SEGDT_VERSION",
    "SegDTInput",
    "SegDTRecord",
    "SegDTTarget",
    "SFTDTAnswer",
    "parse_answer",
    "parse_record",
    "read_records",
    "render_messages",
    "render_target",
    "write_records",
]

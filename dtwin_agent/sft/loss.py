"""The token-weighted next-token loss of SFTDT (paper Eq. 10).

    L = - sum_t w_t log P(y_t | JSON(D), x_txt, y_<t)                                   (Eq. 10)

Only target tokens are supervised (prompt tokens have label ``-100`` and weight 0). Tokens of the
reasoning decisions (``kept`` / ``rejected``) and of the final id list get weight ``w > 1``, every
other target token weight 1. The weights come from character spans of the target text
(:func:`dtwin_agent.sft.records.render_target`) mapped onto tokens through the tokenizer's offset
mapping (:func:`span_weights`): a token is weighted when its characters overlap a span.

Reductions: ``sum`` is Eq. 10 as written (summed over the batch); ``token_mean`` divides it by the
number of supervised tokens (the default: the scale of ordinary cross-entropy, and the weighted
tokens still count ``w`` times as much); ``weight_mean`` divides by the sum of the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from dtwin_agent.errors import InputError

IGNORE_INDEX = -100
Reduction = Literal["sum", "token_mean", "weight_mean"]


def span_weights(
    offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]], weight: float, base: float = 1.0
) -> list[float]:
    """Per-token weights: ``weight`` for tokens whose characters overlap a span, ``base`` otherwise.

    Args:
        offsets: ``(start, end)`` character range of each token in the text (a fast tokenizer's
            ``offset_mapping``); empty ranges (special tokens) never overlap.
        spans: half-open character ranges to up-weight.
        weight: w of Eq. 10 for those tokens.
        base: the weight of every other token.

    """
    out = []
    for start, end in offsets:
        hit = end > start and any(start < s_end and end > s_start for s_start, s_end in spans)
        out.append(float(weight) if hit else float(base))
    return out


def weighted_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    reduction: Reduction = "token_mean",
) -> torch.Tensor:
    """Eq. 10 for a batch of causal-LM outputs.

    Position t of ``labels`` / ``weights`` is the token predicted from ``logits`` at position t-1
    (the usual causal shift is done here, as in ``transformers``).

    Args:
        logits: ``B x T x V``.
        labels: ``B x T`` token ids, ``-100`` where not supervised (prompt, padding).
        weights: ``B x T`` w_t; ignored where the label is ``-100``.
        reduction: ``sum`` | ``token_mean`` | ``weight_mean`` (see the module docstring).

    Raises:
        InputError: shape mismatch or unknown reduction.

    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2] or weights.shape != labels.shape:
        raise InputError(
            f"expected logits B x T x V and labels / weights B x T, got {tuple(logits.shape)}, "
            f"{tuple(labels.shape)}, {tuple(weights.shape)}"
        )
    if reduction not in ("sum", "token_mean", "weight_mean"):
        raise InputError(f"unknown reduction {reduction!r}")
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    shift_w = weights[:, 1:].float()
    mask = shift_labels != IGNORE_INDEX
    nll = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.masked_fill(~mask, 0).reshape(-1),
        reduction="none",
    ).view_as(shift_w)
    w = shift_w * mask
    total = (w * nll).sum()
    if reduction == "sum":
        return total
    if reduction == "token_mean":
        return total / mask.sum().clamp(min=1)
    return total / w.sum().clamp(min=1e-12)

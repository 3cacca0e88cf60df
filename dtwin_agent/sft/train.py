"""SFTDT training: LoRA fine-tuning of a causal LM on Seg-DT records with the loss of Eq. 10.

Defaults follow paper 4.1: 5 epochs, learning rate 2e-5, cosine schedule, gradient accumulation 8.
The paper does not give w (the weight of decision and id tokens) or the LoRA shape; the defaults
here (w = 2, r = 16, alpha = 32, dropout 0.05, attention projections) are this project's choice.

``transformers`` and ``peft`` are optional dependencies (the ``sft`` extra), imported only when a
model is loaded or LoRA is applied.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field

from dtwin_agent.errors import ConfigError, InputError
from dtwin_agent.outputs.files import write_text
from dtwin_agent.sft.loss import IGNORE_INDEX, Reduction, span_weights, weighted_lm_loss
from dtwin_agent.sft.records import SegDTRecord, render_messages, render_target


class TrainConfig(BaseModel):
    """Hyper-parameters of an SFTDT run (paper 4.1 defaults where the paper gives them)."""

    epochs: int = Field(default=5, ge=1)
    lr: float = Field(default=2e-5, gt=0)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    grad_accum: int = Field(default=8, ge=1, description="micro-batches per optimizer step")
    batch_size: int = Field(default=1, ge=1)
    decision_weight: float = Field(default=2.0, gt=0, description="w of Eq. 10 for kept / rejected tokens")
    ids_weight: float | None = Field(
        default=None, gt=0, description="w for the final id tokens (default: decision_weight)"
    )
    reduction: Reduction = "token_mean"
    max_length: int = Field(default=8192, ge=8, description="longer examples are skipped and counted")
    lora: bool = True
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    lora_target_modules: list[str] | str = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description='module names, or "all-linear"',
    )
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1, description="stop after this many optimizer steps")
    seed: int = 0
    allow_skeleton: bool = Field(default=False, description="train on skeleton records (smoke tests only)")


class Features(BaseModel):
    """One tokenized example: prompt tokens unsupervised, target tokens weighted (Eq. 10)."""

    input_ids: list[int]
    labels: list[int]
    weights: list[float]
    record_id: str = ""


class TrainResult(BaseModel):
    """Loss curve and counts of a run."""

    step_losses: list[float] = Field(description="mean micro-batch loss of each optimizer step")
    learning_rates: list[float]
    epoch_losses: list[float] = Field(description="mean micro-batch loss of each epoch")
    steps: int
    n_examples: int
    n_skipped: int = Field(description="examples longer than max_length")


# -------------------------------------------------------------------------------------- tokenize


def prompt_text(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, bool]:
    """Render the prompt as text; also say whether the tokenizer should add its special tokens to it.

    With a chat template the template renders the messages (it adds BOS itself); without one a plain
    ``System: / User: / Assistant:`` layout is used.
    """
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text, False
    parts = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(parts) + "\n\nAssistant: ", True


def encode_record(record: SegDTRecord, tokenizer: Any, config: TrainConfig | None = None) -> Features:
    """Tokenize one record: prompt (labels -100, weight 0) + target (+ EOS) with Eq. 10 weights.

    The target's decision words and final id list are located as character spans
    (:func:`~dtwin_agent.sft.records.render_target`) and mapped onto tokens with the tokenizer's
    offset mapping, so the tokenizer must be a fast (Rust) tokenizer.

    Raises:
        ConfigError: if the tokenizer cannot return offsets.

    """
    cfg = config or TrainConfig()
    text, add_special = prompt_text(tokenizer, render_messages(record))
    p_ids = list(tokenizer(text, add_special_tokens=add_special)["input_ids"])
    target, decision_spans, ids_spans = render_target(record)
    try:
        enc = tokenizer(target, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError as exc:
        raise ConfigError("SFTDT needs a fast tokenizer (offset mapping) to weight tokens") from exc
    t_ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    w_dec = span_weights(offsets, decision_spans, cfg.decision_weight)
    w_ids = span_weights(offsets, ids_spans, cfg.ids_weight or cfg.decision_weight)
    t_w = [max(a, b) for a, b in zip(w_dec, w_ids, strict=True)]
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None:
        t_ids.append(int(eos))
        t_w.append(1.0)
    return Features(
        input_ids=p_ids + t_ids,
        labels=[IGNORE_INDEX] * len(p_ids) + t_ids,
        weights=[0.0] * len(p_ids) + t_w,
        record_id=record.id,
    )


def collate(batch: Sequence[Features], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: ``input_ids``, ``attention_mask``, ``labels`` (-100 on padding), ``weights``."""
    n = max(len(f.input_ids) for f in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), IGNORE_INDEX, dtype=torch.long)
    weights = torch.zeros((len(batch), n), dtype=torch.float32)
    att = torch.zeros((len(batch), n), dtype=torch.long)
    for row, f in enumerate(batch):
        k = len(f.input_ids)
        ids[row, :k] = torch.tensor(f.input_ids)
        labels[row, :k] = torch.tensor(f.labels)
        weights[row, :k] = torch.tensor(f.weights)
        att[row, :k] = 1
    return {"input_ids": ids, "attention_mask": att, "labels": labels, "weights": weights}


# ----------------------------------------------------------------------------------------- model


def load_base(name_or_path: str, *, dtype: str = "auto", device: str = "auto") -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer with ``transformers`` (a local folder or a hub name).

    Raises:
        ConfigError: if ``transformers`` is not installed.

    """
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ConfigError("SFTDT training needs the sft extra: pip install 'dtwin-agent[sft]'") from exc
    torch_dtype = {"auto": "auto", "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
        dtype
    ]
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype)
    model.to(_device(device))
    return model, tokenizer


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def apply_lora(model: Any, config: TrainConfig) -> Any:
    """Wrap ``model`` with LoRA adapters (peft); only the adapters are trained.

    Raises:
        ConfigError: if ``peft`` is not installed.

    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ConfigError("LoRA needs the sft extra: pip install 'dtwin-agent[sft]'") from exc
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total: int) -> Any:
    warmup = int(config.warmup_ratio * total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        if config.scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if config.scheduler == "linear":
            return max(0.0, 1.0 - progress)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def evaluate_loss(
    model: Any, features: Sequence[Features], pad_id: int, reduction: Reduction = "token_mean"
) -> float:
    """Mean Eq. 10 loss over examples (one at a time, eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    losses = []
    for f in features:
        batch = {k: v.to(device) for k, v in collate([f], pad_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        losses.append(float(weighted_lm_loss(logits, batch["labels"], batch["weights"], reduction)))
    model.train(was_training)
    return sum(losses) / max(1, len(losses))


def train(
    model: Any,
    tokenizer: Any,
    records: Sequence[SegDTRecord],
    config: TrainConfig | None = None,
    *,
    on_step: Callable[[int, float, float], None] | None = None,
) -> tuple[Any, TrainResult]:
    """Fine-tune ``model`` on Seg-DT records with the weighted loss of Eq. 10 (LoRA unless disabled).

    Args:
        model: a ``transformers`` causal LM (or anything returning ``.logits`` for ``input_ids``).
        tokenizer: its fast tokenizer.
        records: annotated Seg-DT records.
        config: hyper-parameters (paper defaults).
        on_step: called as ``on_step(step, loss, lr)`` after each optimizer step.

    Returns:
        ``(model, result)``: the trained model (the peft wrapper when LoRA is on) and the loss curve.

    Raises:
        InputError: no records, skeleton records without ``allow_skeleton``, or none short enough.

    """
    cfg = config or TrainConfig()
    if not records:
        raise InputError("no Seg-DT records to train on")
    skeletons = [r.id for r in records if r.status != "annotated"]
    if skeletons and not cfg.allow_skeleton:
        raise InputError(f"{len(skeletons)} skeleton record(s) (e.g. {skeletons[0]!r}): annotate them first")
    torch.manual_seed(cfg.seed)
    features = [encode_record(r, tokenizer, cfg) for r in records]
    kept = [f for f in features if len(f.input_ids) <= cfg.max_length]
    if not kept:
        raise InputError(f"every record is longer than max_length={cfg.max_length} tokens")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if cfg.lora:
        model = apply_lora(model, cfg)
    model.train()
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    micro_per_epoch = math.ceil(len(kept) / cfg.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / cfg.grad_accum)
    total = min(cfg.max_steps or steps_per_epoch * cfg.epochs, steps_per_epoch * cfg.epochs)
    scheduler = _scheduler(optimizer, cfg, total)
    gen = torch.Generator().manual_seed(cfg.seed)
    step_losses: list[float] = []
    lrs: list[float] = []
    epoch_losses: list[float] = []
    step = 0
    for _epoch in range(cfg.epochs):
        order = torch.randperm(len(kept), generator=gen).tolist()
        micro = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        epoch_sum, epoch_n = 0.0, 0
        for g in range(0, len(micro), cfg.grad_accum):
            group = micro[g : g + cfg.grad_accum]
            group_sum = 0.0
            for idx in group:
                batch = {k: v.to(device) for k, v in collate([kept[i] for i in idx], pad_id).items()}
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                loss = weighted_lm_loss(logits, batch["labels"], batch["weights"], cfg.reduction)
                (loss / len(group)).backward()
                group_sum += float(loss.detach())
            if cfg.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            step_losses.append(group_sum / len(group))
            lrs.append(lr)
            epoch_sum += group_sum
            epoch_n += len(group)
            if on_step is not None:
                on_step(step, step_losses[-1], lr)
            if step >= total:
                break
        epoch_losses.append(epoch_sum / max(1, epoch_n))
        if step >= total:
            break
    return model, TrainResult(
        step_losses=step_losses,
        learning_rates=lrs,
        epoch_losses=epoch_losses,
        steps=step,
        n_examples=len(kept),
        n_skipped=len(features) - len(kept),
    )


def save_adapter(
    model: Any, tokenizer: Any, out_dir: str | Path, config: TrainConfig, result: TrainResult
) -> Path:
    """Save the adapter (or full model), the tokenizer, ``train_config.json`` and ``train_log.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for name, payload in (
        ("train_config.json", config.model_dump()),
        ("train_log.json", result.model_dump()),
    ):
        write_text(out / name, json.dumps(payload, indent=2) + "\n")
    return out

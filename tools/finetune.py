"""SFTDT fine-tuning (paper 3.3, Eq. 10) of a causal LM on annotated Seg-DT records, with LoRA.

Defaults are the paper's (4.1): 5 epochs, lr 2e-5, cosine schedule, gradient accumulation 8.
Decision tokens (kept / rejected) and the final id list get weight --weight (w > 1).

    pip install 'dtwin-agent[sft]'
    python tools/finetune.py --records segdt.jsonl --base-model meta-llama/Llama-3.3-70B-Instruct \
        --out runs/sftdt-lora --dtype bf16

Writes the LoRA adapter (adapter_config.json, adapter_model.safetensors), the tokenizer,
train_config.json and train_log.json (the loss curve) to --out; --merge also writes a merged full
model to OUT/merged. docs/evaluation.md shows how to serve it with vLLM and point dtwin at it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dtwin_agent.errors import DTwinError, InputError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=Path, required=True, help="Seg-DT JSONL (annotated)")
    p.add_argument("--base-model", required=True, help="local folder or hub name of a causal LM")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--scheduler", default="cosine", choices=["cosine", "linear", "constant"])
    p.add_argument("--warmup-ratio", type=float, default=0.0)
    p.add_argument("--grad-accum", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--weight", type=float, default=2.0, help="w of Eq. 10 for decision tokens")
    p.add_argument(
        "--ids-weight", type=float, default=None, help="w for the final id tokens (default --weight)"
    )
    p.add_argument("--reduction", default="token_mean", choices=["sum", "token_mean", "weight_mean"])
    p.add_argument("--max-length", type=int, default=8192)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--no-lora", action="store_true", help="full fine-tuning instead of LoRA")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=int, default=32)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument(
        "--lora-target-modules",
        default="q_proj,k_proj,v_proj,o_proj",
        help="comma-separated module names, or all-linear",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    p.add_argument(
        "--allow-skeleton", action="store_true", help="train on skeleton records (smoke tests only)"
    )
    p.add_argument("--merge", action="store_true", help="also save the LoRA-merged full model to OUT/merged")
    args = p.parse_args(argv)
    try:
        from dtwin_agent.outputs.files import check_out_dir

        check_out_dir(args.out)
        from pydantic import ValidationError

        from dtwin_agent.sft.records import read_records
        from dtwin_agent.sft.train import TrainConfig, load_base, save_adapter, train

        records = read_records(args.records, require_annotated=not args.allow_skeleton)
        targets = args.lora_target_modules
        try:
            cfg = TrainConfig(
                epochs=args.epochs,
                lr=args.lr,
                scheduler=args.scheduler,
                warmup_ratio=args.warmup_ratio,
                grad_accum=args.grad_accum,
                batch_size=args.batch_size,
                decision_weight=args.weight,
                ids_weight=args.ids_weight,
                reduction=args.reduction,
                max_length=args.max_length,
                max_steps=args.max_steps,
                lora=not args.no_lora,
                lora_r=args.lora_r,
                lora_alpha=args.lora_alpha,
                lora_dropout=args.lora_dropout,
                lora_target_modules=targets
                if targets == "all-linear"
                else [t for t in targets.split(",") if t],
                seed=args.seed,
                allow_skeleton=args.allow_skeleton,
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InputError(f"invalid option {'.'.join(map(str, err['loc']))}: {err['msg']}") from exc
        model, tokenizer = load_base(args.base_model, dtype=args.dtype, device=args.device)
        total_hint = []

        def on_step(step: int, loss: float, lr: float) -> None:
            total_hint.append(step)
            print(f"step {step}/{expected} loss {loss:.4f} lr {lr:.3g}", flush=True)

        import math

        expected = math.ceil(math.ceil(len(records) / cfg.batch_size) / cfg.grad_accum) * cfg.epochs
        if cfg.max_steps:
            expected = min(expected, cfg.max_steps)
        model, result = train(model, tokenizer, records, cfg, on_step=on_step)
        out = save_adapter(model, tokenizer, args.out, cfg, result)
        if args.merge and cfg.lora:
            merged = model.merge_and_unload()
            merged.save_pretrained(out / "merged")
            tokenizer.save_pretrained(out / "merged")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DTwinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("epoch losses: " + ", ".join(f"{x:.4f}" for x in result.epoch_losses))
    print(f"saved to {out} ({result.steps} steps, {result.n_examples} examples, {result.n_skipped} skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

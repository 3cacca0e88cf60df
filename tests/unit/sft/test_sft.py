"""Seg-DT records, the skeleton builder, the Eq. 10 loss and a toy LoRA run on a tiny random LM."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.twins import box as square
from helpers.twins import twin_from_masks

from dtwin_agent.errors import InputError
from dtwin_agent.sft import (
    SegDTRecord,
    parse_answer,
    parse_record,
    read_records,
    render_messages,
    render_target,
    write_records,
)
from dtwin_agent.sft.build import build_skeleton, object_overlaps
from dtwin_agent.sft.loss import span_weights, weighted_lm_loss

TOOLS = Path(__file__).resolve().parents[3] / "tools"


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tools_{name}", TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------------------- records

COLOURS = ["red", "blue", "green", "yellow"]
THINGS = ["cup", "plate", "knife", "chair"]


def make_record(k: int = 0, status: str = "annotated") -> dict:
    """Toy record: 4 objects, the query asks for one colour; two steps (colour, then kind)."""
    objs = {i + 1: (COLOURS[(i + k) % 4], THINGS[(i + 2 * k) % 4]) for i in range(4)}
    want = COLOURS[k % 4]
    twin = {
        str(i): {"spatial": f"box [{i},{i},{i + 5},{i + 5}]", "semantic": f"a {c} {t}"}
        for i, (c, t) in objs.items()
    }
    step1 = {
        str(i): {"decision": "kept", "semantic": f"{c} {t}, matches colour", "reasoning": f"it is {c}"}
        if c == want
        else {"decision": "rejected", "reasoning": f"it is {c}, not {want}"}
        for i, (c, t) in objs.items()
    }
    kept = [int(i) for i, d in step1.items() if d["decision"] == "kept"]
    step2 = {
        str(i): {"decision": "kept", "semantic": "the answer", "reasoning": "the only one left"} for i in kept
    }
    return {
        "version": 1,
        "id": f"toy-{k}",
        "status": status,
        "input": {"query": f"the {want} thing", "twin": twin, "granularity": "object"},
        "target": {"steps": [{"step": 1, "objects": step1}, {"step": 2, "objects": step2}], "ids": kept},
        "meta": {},
    }


def test_record_round_trip_and_render(tmp_path):
    rec = parse_record(make_record(1))
    assert rec.target.steps[0].kept == rec.target.ids
    path = tmp_path / "segdt.jsonl"
    assert write_records(path, [rec, parse_record(make_record(2))]) == 2
    back = read_records(path, require_annotated=True)
    assert back[0] == rec and back[0].model_dump_json() == rec.model_dump_json()
    text, dspans, ispans = render_target(rec)
    path_out, report = parse_answer(text, list(rec.input.twin))
    ids = path_out[-1].ids
    assert ids == rec.target.ids and len(path_out) == 2
    assert path_out == rec.target.steps and not report.unknown_ids and not report.notes
    expected = [d.decision for st in rec.target.steps for _, d in sorted(st.objects.items())]
    assert [text[s:e] for s, e in dspans] == expected == ["kept", "rejected", "rejected", "rejected", "kept"]
    assert [text[s:e] for s, e in ispans] == [json.dumps(rec.target.ids, separators=(",", ":"))]
    msgs = render_messages(rec)
    assert (
        msgs[0]["role"] == "system"
        and "<digital_twin>" in msgs[1]["content"]
        and rec.input.query in msgs[1]["content"]
    )
    assert "mask" not in msgs[1]["content"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: r["target"]["steps"][1]["objects"].update(
                {"3": {"decision": "kept", "reasoning": "x"}}
            ),
            "must decide exactly",
        ),
        (lambda r: r["target"].update(ids=[1, 2, 3]), "target.ids"),
        (lambda r: r["target"]["steps"][0].update(step=2), "expected 1"),
        (
            lambda r: next(iter(r["target"]["steps"][0]["objects"].values())).update(reasoning=" "),
            "empty reasoning",
        ),
        (lambda r: r.update(version=2), "version"),
        (lambda r: r["input"].update(query=""), "input.query"),
        (lambda r: r["target"]["steps"][0]["objects"]["1"].update(decision="maybe"), "decision"),
    ],
)
def test_record_validation_names_the_field(mutate, message):
    data = make_record(1)
    mutate(data)
    with pytest.raises(InputError, match=message):
        parse_record(data)


def test_skeletons_need_no_reasoning_but_training_refuses_them(tmp_path):
    data = make_record(0, status="skeleton")
    for step in data["target"]["steps"]:
        for d in step["objects"].values():
            d["reasoning"] = ""
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(data) + "\n\n" + "{not json\n")
    with pytest.raises(InputError, match=r"s\.jsonl:3"):
        read_records(path)
    path.write_text(json.dumps(data) + "\n")
    assert read_records(path)[0].status == "skeleton"
    with pytest.raises(InputError, match="skeleton"):
        read_records(path, require_annotated=True)
    with pytest.raises(InputError, match="not found"):
        read_records(tmp_path / "none.jsonl")


# ------------------------------------------------------------------------------------ builder


def make_twin(h=20, w=30):
    return twin_from_masks(
        [
            (square(h, w, 0, 0, 10, 10), "a mug", "object 1", 0.95),
            (square(h, w, 8, 0, 20, 10), "a table", "object 2", 0.9),
            (square(h, w, 22, 12, 28, 18), "a blurry blob", "object 3", 0.5),
        ]
    )


def test_build_skeleton_marks_overlapping_objects_and_writes_no_reasoning():
    twin = make_twin()
    gt = square(20, 30, 0, 0, 10, 10)  # exactly object 1; object 2 overlaps it by 2 columns
    rec = build_skeleton(twin, "what would you drink from?", gt, record_id="r1")
    assert rec.status == "skeleton" and rec.target.ids == [1]
    step = rec.target.steps[0]
    assert {i: d.decision for i, d in step.objects.items()} == {1: "kept", 2: "rejected", 3: "rejected"}
    assert all(d.reasoning == "" for d in step.objects.values())
    assert rec.meta["overlaps"]["2"]["inside"] == pytest.approx(20 / 120, abs=1e-4)
    assert rec.meta["suggested_iou"] == 1.0
    assert set(rec.input.twin) == {1, 2, 3} and rec.input.twin[1].semantic == "a mug"
    filtered = build_skeleton(twin, "q", gt, record_id="r2", iou_threshold=0.88)
    assert set(filtered.input.twin) == {1, 2}
    ignore = square(20, 30, 0, 0, 10, 10)
    ov = object_overlaps(twin, gt, ignore)
    assert ov[1]["iou"] == 0.0 and ov[2]["inside"] == 0.0
    with pytest.raises(InputError, match="image size"):
        build_skeleton(twin, "q", np.zeros((3, 3), bool), record_id="bad")
    with pytest.raises(InputError, match="no object left"):
        build_skeleton(twin, "q", gt, record_id="r3", iou_threshold=0.99)


def test_build_segdt_tool_on_reasonseg_fixture(tmp_path):
    from PIL import Image

    root = tmp_path / "ReasonSeg" / "train"
    root.mkdir(parents=True)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(root / "img.jpg")
    (root / "img.json").write_text(
        json.dumps(
            {
                "text": ["what would you drink from?"],
                "is_sentence": True,
                "shapes": [{"label": "target", "points": [[0, 0], [9, 0], [9, 9], [0, 9]]}],
            }
        )
    )
    fake = tmp_path / "fake_twin.py"
    fake.write_text(
        f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nfrom test_sft import make_twin\n"
        "def build_twin(image, query=None, **kw):\n    return make_twin()\n"
    )
    tool = load_tool("build_segdt")
    out = tmp_path / "segdt.jsonl"
    code = tool.main(
        [
            "--dataset",
            "reasonseg",
            "--root",
            str(tmp_path / "ReasonSeg"),
            "--split",
            "train",
            "--out",
            str(out),
            "--build-twin-fn",
            f"{fake}:build_twin",
        ]
    )
    assert code == 0
    (rec,) = read_records(out)
    assert rec.status == "skeleton" and rec.target.ids == [1] and rec.id == "train/img"
    assert rec.meta["image_path"].endswith("img.jpg")
    assert (
        tool.main(
            [
                "--dataset",
                "reasonseg",
                "--root",
                str(tmp_path / "nope"),
                "--out",
                str(out),
                "--build-twin-fn",
                f"{fake}:build_twin",
            ]
        )
        == 2
    )


# --------------------------------------------------------------------------------------- Eq. 10


def test_weighted_loss_equals_hand_computation_on_fixed_logits():
    # B = 1, T = 4, V = 3. Position 0 is the prompt (label -100); targets at t = 1, 2, 3.
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 3.0], [9.0, 9.0, 9.0]]])
    labels = torch.tensor([[-100, 0, 1, 2]])
    weights = torch.tensor([[0.0, 1.0, 3.0, 1.0]])

    def nll(row, y):
        return -(row[y] - math.log(sum(math.exp(v) for v in row)))

    rows = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 3.0]]
    terms = [1.0 * nll(rows[0], 0), 3.0 * nll(rows[1], 1), 1.0 * nll(rows[2], 2)]
    total = sum(terms)
    assert float(weighted_lm_loss(logits, labels, weights, "sum")) == pytest.approx(total, rel=1e-6)
    assert float(weighted_lm_loss(logits, labels, weights, "token_mean")) == pytest.approx(
        total / 3, rel=1e-6
    )
    assert float(weighted_lm_loss(logits, labels, weights, "weight_mean")) == pytest.approx(
        total / 5, rel=1e-6
    )
    # w = 1 everywhere is plain cross-entropy
    plain = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:])
    assert float(weighted_lm_loss(logits, labels, torch.ones_like(weights))) == pytest.approx(
        float(plain), rel=1e-6
    )
    with pytest.raises(InputError):
        weighted_lm_loss(logits, labels[:, :2], weights)
    with pytest.raises(InputError):
        weighted_lm_loss(logits, labels, weights, "mean")


def test_span_weights_overlap_rule():
    offsets = [(0, 2), (2, 6), (6, 6), (6, 9), (9, 12)]
    assert span_weights(offsets, [(3, 7)], 5.0) == [1.0, 5.0, 1.0, 5.0, 1.0]  # (6, 6) is a special token
    assert span_weights(offsets, [], 5.0) == [1.0] * 5


# ------------------------------------------------------------------------- tiny LM (transformers)


def toy_records(n=6):
    return [parse_record(make_record(k)) for k in range(n)]


@pytest.fixture(scope="module")
def tiny_lm():
    pytest.importorskip("transformers")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest on a shared machine
    yield build_tiny_lm()
    torch.set_num_threads(threads)


def build_tiny_lm():
    """A byte-level BPE tokenizer trained on toy records and a randomly initialised 2-layer Llama."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from dtwin_agent.sft.train import prompt_text

    corpus = []
    for rec in toy_records(8):
        corpus.append(prompt_text(object(), render_messages(rec))[0])
        corpus.append(render_target(rec)[0])
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    return model, tokenizer


@pytest.mark.slow
def test_encode_record_weights_decision_and_id_tokens(tiny_lm):
    from dtwin_agent.sft.train import TrainConfig, encode_record

    _, tokenizer = tiny_lm
    rec = toy_records(1)[0]
    f = encode_record(rec, tokenizer, TrainConfig(decision_weight=4.0))
    n_prompt = sum(1 for y in f.labels if y == -100)
    assert n_prompt > 0 and all(w == 0.0 for w in f.weights[:n_prompt])
    assert f.labels[n_prompt:] == f.input_ids[n_prompt:] and f.labels[-1] == tokenizer.eos_token_id
    heavy = [tokenizer.decode([t]) for t, w in zip(f.input_ids, f.weights, strict=True) if w == 4.0]
    joined = "".join(heavy)
    assert "kept" in joined and "rejected" in joined and str(rec.target.ids[0]) in joined
    light = [w for w in f.weights[n_prompt:] if w == 1.0]
    assert len(light) > len(heavy)  # the reasoning text is ordinary weight


@pytest.mark.slow
def test_weighted_loss_on_tiny_lm_equals_hand_loop(tiny_lm):
    from dtwin_agent.sft.train import TrainConfig, collate, encode_record

    model, tokenizer = tiny_lm
    feats = [encode_record(r, tokenizer, TrainConfig(decision_weight=3.0)) for r in toy_records(2)]
    batch = collate(feats, tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    got = float(weighted_lm_loss(logits, batch["labels"], batch["weights"], "sum"))
    got_mean = float(weighted_lm_loss(logits, batch["labels"], batch["weights"], "token_mean"))
    logp = torch.log_softmax(logits.double(), dim=-1)
    hand, count = 0.0, 0
    for b, f in enumerate(feats):
        for t in range(1, len(f.input_ids)):
            if f.labels[t] == -100:
                continue
            hand -= f.weights[t] * float(logp[b, t - 1, f.labels[t]])
            count += 1
    assert got == pytest.approx(hand, rel=1e-5)
    assert got_mean == pytest.approx(hand / count, rel=1e-5)


@pytest.mark.slow
def test_toy_lora_run_lowers_the_loss(tiny_lm):
    pytest.importorskip("peft")
    import copy

    from dtwin_agent.sft.train import TrainConfig, encode_record, evaluate_loss, train

    model, tokenizer = tiny_lm
    model = copy.deepcopy(model)
    records = toy_records(6)
    cfg = TrainConfig(
        epochs=4,
        lr=2e-2,
        grad_accum=2,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        lora_target_modules="all-linear",
        decision_weight=2.0,
        seed=0,
    )
    feats = [encode_record(r, tokenizer, cfg) for r in records]
    before = evaluate_loss(model, feats, tokenizer.pad_token_id)
    trained, result = train(model, tokenizer, records, cfg)
    after = evaluate_loss(trained, feats, tokenizer.pad_token_id)
    assert result.steps == 12 and len(result.step_losses) == 12 and result.n_skipped == 0
    assert (
        result.learning_rates[0] == pytest.approx(2e-2)
        and result.learning_rates[-1] < result.learning_rates[0]
    )
    assert after < before - 0.1, (before, after, result.step_losses)
    assert result.step_losses[-1] < result.step_losses[0]
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trained.parameters())
    assert 0 < trainable < total  # only the LoRA adapters train


@pytest.mark.slow
def test_train_refuses_skeletons(tiny_lm):
    from dtwin_agent.sft.train import train

    model, tokenizer = tiny_lm
    data = make_record(0, status="skeleton")
    with pytest.raises(InputError, match="skeleton"):
        train(model, tokenizer, [SegDTRecord.model_validate(data)])
    with pytest.raises(InputError, match="no Seg-DT records"):
        train(model, tokenizer, [])


@pytest.mark.slow
def test_finetune_tool_end_to_end(tiny_lm, tmp_path, capsys):
    pytest.importorskip("peft")
    model, tokenizer = tiny_lm
    base = tmp_path / "tiny-base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    records = tmp_path / "segdt.jsonl"
    write_records(records, toy_records(4))
    tool = load_tool("finetune")
    code = tool.main(
        [
            "--records",
            str(records),
            "--base-model",
            str(base),
            "--out",
            str(tmp_path / "adapter"),
            "--epochs",
            "1",
            "--grad-accum",
            "2",
            "--lr",
            "1e-3",
            "--lora-target-modules",
            "q_proj,v_proj",
            "--device",
            "cpu",
            "--dtype",
            "fp32",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "step 2/2" in out
    adapter = tmp_path / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "train_log.json").is_file()
    assert json.loads((adapter / "train_config.json").read_text())["grad_accum"] == 2
    assert (
        tool.main(
            [
                "--records",
                str(tmp_path / "none.jsonl"),
                "--base-model",
                str(base),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )

"""Local LLMs for the offline profile: speed, memory and JSON validity on the refinement prompt.

For each GGUF model from the store it starts the xllamacpp server (dtwin_agent.offline.local_llm), then:
- decode / prompt speed from llama.cpp's own timings (one 128-token answer);
- peak RSS of the server process (VmHWM);
- the real refinement prompt (prompts/refine.*.md) on N synthetic digital twins with one known
  answer each, through ChatOpenAI: once constrained by JSON schema (with_structured_output,
  method="json_schema") and once unconstrained (JSON asked in the prompt only). "valid" = the
  answer parses as RefineStepOutput and keeps only given ids; "right" = the kept ids are exactly
  the expected ones.

Usage: python benchmarks/local_llm.py [--models a,b] [--n 20] [--threads 2] [--modes json_schema,prompt]
Needs: dtwin models fetch qwen2.5-coder-0.5b-instruct-q4_k_m qwen2.5-coder-1.5b-instruct-q4_k_m
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import time
import urllib.request
from pathlib import Path

from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from dtwin_agent.llm.prompts import load_prompt, render_prompt
from dtwin_agent.llm.schemas import RefineStepOutput
from dtwin_agent.offline import local_llm
from dtwin_agent.weights import store

MAX_TOKENS = 1024
N_CTX = 8192  # the same key for ensure_server and local_chat_model: one server per model
MODELS = ["qwen2.5-coder-0.5b-instruct-q4_k_m", "qwen2.5-coder-1.5b-instruct-q4_k_m"]

# (ImageNet-style labels, colour, query that should pick exactly this object)
CATALOGUE = [
    ("coffee mug 0.62, cup 0.21", "white", "something I could drink hot coffee from"),
    ("golden retriever 0.71, Labrador retriever 0.12", "brown", "the animal that could fetch a ball"),
    ("pickup truck 0.55, tow truck 0.10", "red", "the vehicle that can carry cargo in an open bed"),
    ("banana 0.80, lemon 0.05", "yellow", "the fruit a monkey would like"),
    ("laptop 0.66, notebook computer 0.20", "grey", "the device someone would type an email on"),
    ("umbrella 0.58, parachute 0.07", "blue", "what keeps you dry when it rains"),
    ("teddy bear 0.74, toy poodle 0.03", "brown", "the toy a child would hug at night"),
    ("wall clock 0.69, analog clock 0.22", "white", "what tells the time"),
    ("running shoe 0.61, sandal 0.09", "black", "what you wear on your foot to go jogging"),
    ("pizza 0.83, potpie 0.04", "orange", "the food that was baked with cheese on top"),
    ("bicycle 0.57, mountain bike 0.25", "green", "what you pedal to ride"),
    ("table lamp 0.48, lampshade 0.30", "yellow", "the thing that lights the desk"),
    ("water bottle 0.64, pop bottle 0.12", "blue", "the container for drinking water on a hike"),
    ("broccoli 0.77, cauliflower 0.09", "green", "the vegetable on the plate"),
    ("acoustic guitar 0.70, banjo 0.08", "brown", "the instrument with six strings"),
    ("tabby cat 0.52, Egyptian Mau 0.21", "grey", "the pet that purrs"),
    ("backpack 0.60, mailbag 0.12", "black", "what a student carries books in"),
    ("potted plant 0.45, vase 0.20", "green", "what needs watering"),
    ("remote control 0.58, cellular telephone 0.10", "black", "what changes the TV channel"),
    ("traffic light 0.81, street sign 0.05", "red", "what tells cars to stop"),
    ("sunglasses 0.66, loupe 0.05", "black", "what protects the eyes from the sun"),
    ("sofa 0.63, studio couch 0.20", "blue", "where you would sit to watch TV"),
]
POSITIONS = ["upper left", "upper centre", "upper right", "middle left", "centre", "middle right",
             "lower left", "lower centre", "lower right"]  # fmt: skip


def synthetic_case(index: int, n_objects: int = 5) -> tuple[str, dict[str, dict[str, str]], set[int]]:
    """A query, the twin JSON the refinement prompt sees, and the expected kept ids."""
    rng = random.Random(index)
    target = CATALOGUE[index % len(CATALOGUE)]
    others = rng.sample([c for c in CATALOGUE if c is not target], n_objects - 1)
    objects = others[:]
    where = rng.randrange(n_objects)
    objects.insert(where, target)
    twin: dict[str, dict[str, str]] = {}
    for i, (labels, colour, _) in enumerate(objects, start=1):
        x0, y0 = rng.randrange(0, 700), rng.randrange(0, 500)
        w, h = rng.randrange(40, 300), rng.randrange(40, 300)
        pos = POSITIONS[rng.randrange(len(POSITIONS))]
        j = rng.choice([k for k in range(1, n_objects + 1) if k != i])
        spatial = (f"bbox [{x0}, {y0}, {x0 + w}, {y0 + h}], {100 * w * h / (1024 * 768):.1f}% of the image, "
                   f"{pos}; {rng.choice(['left of', 'above', 'near', 'below'])} #{j}")  # fmt: skip
        semantic = (f"offline labeller: ImageNet classifier top labels {labels}; medium-sized {colour} region, "
                    f"in the {pos} of the image")  # fmt: skip
        twin[str(i)] = {"spatial": spatial, "semantic": semantic}
    return target[2], twin, {where + 1}


class ReasonFirstObject(BaseModel):
    """KeptObject with the reasoning before the id: the model explains before it commits to an id."""

    reasoning: str
    id: int
    semantic: str = ""


class ReasonFirstOutput(BaseModel):
    """RefineStepOutput with reasoning-first objects (same fields, same parse)."""

    objects: list[ReasonFirstObject] = Field(default_factory=list)


SCHEMAS = {"repo": RefineStepOutput, "reasoning-first": ReasonFirstOutput}
SCHEMA = "repo"
NEUTRAL_FORMAT = '{"objects": [{"id": <an id from the twin>, "semantic": "...", "reasoning": "..."}]}'
ANSWER_FORMAT = "repo"  # "neutral": the example answer names no concrete id (see --answer-format)


def messages(query: str, twin: dict[str, dict[str, str]]) -> list:
    user = render_prompt(
        "refine.user.md",
        query=query,
        step=1,
        previous_step=0,
        twin_json=json.dumps(twin),
        dialogue_block="",  # single-turn
    )
    if ANSWER_FORMAT == "neutral":
        user = re.sub(r"<answer_format>.*?</answer_format>", f"<answer_format>{NEUTRAL_FORMAT}</answer_format>",
                      user, flags=re.S)  # fmt: skip
    return [SystemMessage(load_prompt("refine.system.md")), HumanMessage(user)]


def judge(text: str, given: set[int], expected: set[int]) -> tuple[bool, bool, bool]:
    """(valid, right, hit) for a raw answer: hit = the answer is among the kept ids."""
    try:
        out = RefineStepOutput.model_validate(json.loads(text))
    except (ValueError, TypeError):
        return False, False, False
    ids = {o.id for o in out.objects}
    valid = ids <= given
    return valid, valid and ids == expected, valid and expected <= ids


def raw_speed(server: local_llm.LocalServer, repeats: int = 3) -> dict[str, float]:
    """Median llama.cpp timings over ``repeats`` uncached requests: a ~700-token refinement prompt
    (prompt tok/s) and 128 tokens of free prose (decode tok/s; prose, because counting or copying
    text would flatter any speculative decoding)."""
    speeds: dict[str, list[float]] = {"decode_tps": [], "prompt_tps": []}
    for r in range(repeats):
        query, twin, _ = synthetic_case(100 + r)
        prompt = messages(query, twin)
        body = {
            "messages": [{"role": "system", "content": f"Session {r}. " + prompt[0].content},
                         {"role": "user", "content": prompt[1].content
                          + "\nIgnore the format: write a short story about the scene instead."}],
            "max_tokens": 128, "temperature": 0, "cache_prompt": False,
        }  # fmt: skip
        request = urllib.request.Request(server.openai_base_url + "/chat/completions",
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=900) as response:  # noqa: S310 - loopback
            timings = json.loads(response.read())["timings"]
        speeds["decode_tps"].append(timings["predicted_per_second"])
        speeds["prompt_tps"].append(timings["prompt_per_second"])
    return {k: statistics.median(v) for k, v in speeds.items()}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_model(name: str, n: int, threads: int, modes: list[str], dump: str | None) -> list[dict[str, object]]:
    path = store.resolve_model(name)
    start = time.perf_counter()
    server = local_llm.ensure_server(path, threads=threads, n_ctx=N_CTX)  # reused by local_chat_model
    load_s = time.perf_counter() - start
    rows = []
    try:
        speed = raw_speed(server)
        llm = local_llm.local_chat_model(name, threads=threads, n_ctx=N_CTX, max_tokens=MAX_TOKENS)
        for mode in modes:
            valid = right = hit = 0
            seconds: list[float] = []
            out_tokens = 0
            for i in range(n):
                query, twin, expected = synthetic_case(i)
                given = {int(k) for k in twin}
                t0 = time.perf_counter()
                try:
                    if mode == "json_schema":
                        raw = llm.with_structured_output(
                            SCHEMAS[SCHEMA], method="json_schema", include_raw=True
                        ).invoke(messages(query, twin))["raw"]
                    else:
                        raw = llm.invoke(messages(query, twin))
                    text = raw.text
                    out_tokens += (raw.usage_metadata or {}).get("output_tokens", 0)
                except Exception as exc:  # noqa: BLE001 - e.g. openai.LengthFinishReasonError: counted invalid
                    text = f"<error {type(exc).__name__}>"
                    out_tokens += MAX_TOKENS if "Length" in type(exc).__name__ else 0
                seconds.append(time.perf_counter() - t0)
                ok, good, near = judge(text, given, expected)
                valid += ok
                right += good
                hit += near
                if dump:
                    with open(dump, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps({"model": name, "mode": mode, "schema": SCHEMA, "format": ANSWER_FORMAT, "query": query, "expected": sorted(expected),
                                             "answer": text}) + "\n")  # fmt: skip
            rows.append({
                "model": name, "mode": mode, "format": ANSWER_FORMAT, "schema": SCHEMA, "n": n, "valid": valid, "right": right, "hit": hit,
                "s_per_query": statistics.median(seconds), "out_tok": out_tokens / n,
                "decode_tps": speed["decode_tps"], "prompt_tps": speed["prompt_tps"],
                "load_s": load_s, "rss_mb": peak_rss_mb(server.process.pid),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
        if not modes:  # --modes none: speed and memory only
            rows.append({"model": name, "mode": "none", "n": 0, "valid": 0, "right": 0, "hit": 0,
                         "s_per_query": float("nan"), "out_tok": float("nan"), **speed,
                         "load_s": load_s, "rss_mb": peak_rss_mb(server.process.pid)})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    finally:
        server.stop()
        local_llm.stop_all()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--n", type=int, default=20, help="synthetic refinement queries per model and mode")
    parser.add_argument("--threads", type=int, default=local_llm.default_threads())
    parser.add_argument("--modes", default="json_schema,prompt")
    parser.add_argument("--dump", default=None, help="append every raw answer to this JSONL file")
    parser.add_argument("--schema", choices=sorted(SCHEMAS), default="repo",
                        help="json_schema mode: RefineStepOutput as is, or with reasoning before id")  # fmt: skip
    parser.add_argument("--answer-format", choices=["repo", "neutral"], default="repo",
                        help="repo: prompts/refine.user.md as is (its example answer says id 3); "
                             "neutral: the example names no concrete id")  # fmt: skip
    args = parser.parse_args()
    global ANSWER_FORMAT, NEUTRAL_FORMAT, SCHEMA
    ANSWER_FORMAT = args.answer_format
    SCHEMA = args.schema
    if SCHEMA == "reasoning-first":
        NEUTRAL_FORMAT = '{"objects": [{"reasoning": "...", "id": <an id from the twin>, "semantic": "..."}]}'
    rows = []
    for name in args.models.split(","):
        rows += run_model(
            name, args.n, args.threads, [m for m in args.modes.split(",") if m not in ("", "none")], args.dump
        )
    print()
    print(
        f"threads={args.threads}; refine prompt (step 1) on {args.n} synthetic twins of 5 objects, one answer each"
    )
    head = ("model", "output", "valid JSON", "exact ids", "answer kept", "s/query (median)", "out tok", "decode tok/s",
            "prompt tok/s", "load s", "peak RSS MB")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        mode = {"json_schema": f"json_schema ({SCHEMA} schema)", "prompt": "prompt only"}.get(
            r["mode"], "speed only"
        )
        print(f"| {r['model']} | {mode} | {r['valid']}/{r['n']} | {r['right']}/{r['n']} | {r['hit']}/{r['n']} | {r['s_per_query']:.1f} "
              f"| {r['out_tok']:.0f} | {r['decode_tps']:.1f} | {r['prompt_tps']:.1f} | {r['load_s']:.1f} "
              f"| {r['rss_mb']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()

"""Pure parsers of model output: tables of raw strings, one named case per row."""

from __future__ import annotations

import json

import pytest

from dtwin_agent.llm.parsing import (
    ParseError,
    coerce_id,
    extract_json,
    granularity_from_value,
    parse_granularity,
    parse_granularity_report,
    parse_refine_step,
    parse_semantics,
    parse_single_shot,
)


def labels(batch) -> dict[int, str]:
    return {o.id: o.semantic for o in batch.objects}


# -- extract_json -----------------------------------------------------------------------------------

EXTRACT_CASES = {
    "plain": ('{"a": 1}', {"a": 1}, False),
    "fenced_json": ('```json\n{"a": 1}\n```', {"a": 1}, False),
    "fenced_no_language": ("```\n[1, 2]\n```", [1, 2], False),
    "leading_and_trailing_prose": ('Sure! Here it is: {"a": [1, 2]} Hope this helps.', {"a": [1, 2]}, False),
    "prose_brackets_before_json": ('[note] the answer: {"a": 1}', {"a": 1}, False),
    "think_block_ignored": ('<think>maybe {"a": 0}</think>{"a": 2}', {"a": 2}, False),
    "single_quotes": ("{'a': 'it\\'s', 'b': True, 'c': None}", {"a": "it's", "b": True, "c": None}, True),
    "trailing_commas": ('{"a": [1, 2,], "b": 3,}', {"a": [1, 2], "b": 3}, True),
    "bare_keys": ('{a: 1, b: "x"}', {"a": 1, "b": "x"}, True),
    "smart_quotes": ("{\u201ca\u201d: \u201cx\u201d}", {"a": "x"}, True),
    "apostrophe_in_prose_before_single_quotes": ("Here's it: {'a': 1}", {"a": 1}, True),
    "truncated_list_keeps_complete_objects": (
        '{"o": [{"id": 1}, {"id": 2}, {"id": 3, "s": "ha',
        {"o": [{"id": 1}, {"id": 2}]},
        True,
    ),
    "truncated_between_values": ('{"o": [{"id": 1}, {"id": 2}], ', {"o": [{"id": 1}, {"id": 2}]}, True),
    "truncated_inside_last_string": (
        '{"g": "part", "reason": "the handle of',
        {"g": "part", "reason": "the handle of"},
        True,
    ),
    "truncated_dangling_key": ('{"g": "part", "rea', {"g": "part"}, True),
    "truncated_in_fence": ('```json\n[{"id": 1}, {"id": 2, "s": "ab', [{"id": 1}], True),
}


@pytest.mark.parametrize(("text", "expected", "repaired"), EXTRACT_CASES.values(), ids=EXTRACT_CASES.keys())
def test_extract_json(text, expected, repaired):
    from dtwin_agent.llm.parsing import ParseReport

    report = ParseReport()
    assert extract_json(text, report) == expected
    assert report.repaired is repaired


GARBAGE = {
    "empty": "",
    "whitespace": "   \n ",
    "prose_only": "I cannot help with that request.",
    "lone_brace": "}",
    "not_a_string": None,
}


@pytest.mark.parametrize("text", GARBAGE.values(), ids=GARBAGE.keys())
def test_extract_json_garbage_raises(text):
    with pytest.raises(ParseError):
        extract_json(text)


@pytest.mark.parametrize(
    "text",
    ["{" * 5000, '{"o": [' + '{"id": 1, "s": "x"}, ' * 3000 + '{"id": 2, "s', "x'" * 5000 + "{}", "[" * 3000],
    ids=["deep_open_braces", "long_truncated_list", "many_apostrophes", "deep_open_lists"],
)
@pytest.mark.timeout(
    120
)  # a guard against catastrophic backtracking (it takes well under a second), not a speed claim
def test_extract_json_pathological_input_ends_with_an_answer_or_a_parse_error(text):
    try:
        value = extract_json(text)
    except ParseError:
        return
    assert isinstance(value, (dict, list))


# -- ids --------------------------------------------------------------------------------------------

ID_CASES = {
    "int": (3, 3),
    "float_integral": (3.0, 3),
    "string": ("3", 3),
    "hash": ("#3", 3),
    "object_word": ("object 3", 3),
    "region_hash": ("Region #12", 12),
    "id_colon": ("id: 7", 7),
    "negative": (-1, None),
    "bool": (True, None),
    "word": ("car", None),
    "two_numbers": ("3 and 4", None),
    "fraction": (2.5, None),
}


@pytest.mark.parametrize(("value", "expected"), ID_CASES.values(), ids=ID_CASES.keys())
def test_coerce_id(value, expected):
    assert coerce_id(value) == expected


# -- granularity ------------------------------------------------------------------------------------

GRANULARITY_CASES = {
    "json_object": ('{"granularity": "object", "reason": "one cup"}', "object"),
    "json_part": ('{"granularity": "part"}', "part"),
    "synonym_object_group": ('{"granularity": "object group"}', "group"),
    "synonym_groups": ('{"granularity": "groups"}', "group"),
    "synonym_parts": ('{"granularity": "parts"}', "part"),
    "synonym_object_part": ('{"granularity": "object part"}', "part"),
    "synonym_part_level": ('{"granularity": "Part-level"}', "part"),
    "synonym_instance": ('{"granularity": "instance"}', "object"),
    "eq1_zero_is_group": ('{"granularity": 0}', "group"),
    "eq1_one_is_object": ('{"granularity": 1}', "object"),
    "eq1_two_is_part": ('{"granularity": "2"}', "part"),
    "key_level": ('{"level": "GROUP"}', "group"),
    "fenced": ('```json\n{"granularity": "part", "reason": "asks for the handle"}\n```', "part"),
    "trailing_prose": ('{"granularity": "group"}\nThe query asks for all of them.', "group"),
    "truncated": ('{"granularity": "part", "reason": "the user asks ab', "part"),
    "bare_word_value": ("{granularity: part}", "part"),
    "prose_line": ("Granularity: **parts**", "part"),
    "prose_single_level": ("I would segment each object separately.", "object"),
}


@pytest.mark.parametrize(("text", "expected"), GRANULARITY_CASES.values(), ids=GRANULARITY_CASES.keys())
def test_parse_granularity(text, expected):
    assert parse_granularity(text).granularity == expected


def test_parse_granularity_keeps_reason_and_reports_repair():
    choice, report = parse_granularity_report('{"granularity": "part", "reason": "the handle", }')
    assert (choice.granularity, choice.reason) == ("part", "the handle")
    assert report.repaired


GRANULARITY_BAD = {
    "garbage": "I don't know.",
    "empty": "",
    "out_of_range_number": '{"granularity": 7}',
    "unknown_word": '{"granularity": "pixel"}',
    "ambiguous_prose": "Either a part or the whole object.",
}


@pytest.mark.parametrize("text", GRANULARITY_BAD.values(), ids=GRANULARITY_BAD.keys())
def test_parse_granularity_raises(text):
    with pytest.raises(ParseError):
        parse_granularity(text)


@pytest.mark.parametrize(("value", "expected"), [("object-level", "object"), ("L=2", "part"), (None, None)])
def test_granularity_from_value(value, expected):
    assert granularity_from_value(value) == expected


# -- semantics --------------------------------------------------------------------------------------

SEMANTIC_CASES = {
    "objects_list": (
        '{"objects": [{"id": 1, "semantic": "a red car"}, {"id": 2, "semantic": "a tree"}]}',
        {1: "a red car", 2: "a tree"},
    ),
    "bare_list": (
        '[{"id": 2, "semantic": "a tree"}, {"id": 1, "semantic": "a red car"}]',
        {1: "a red car", 2: "a tree"},
    ),
    "ids_as_strings": (
        '{"objects": [{"id": "#1", "semantic": "car"}, {"id": "object 2", "semantic": "tr"}]}',
        {1: "car", 2: "tr"},
    ),
    "mapping_id_to_text": ('{"1": "car", "2": {"semantic": "tree"}}', {1: "car", 2: "tree"}),
    "json_lines": ('{"id": 1, "semantic": "car"}\n{"id": 2, "semantic": "tree"}', {1: "car", 2: "tree"}),
    "synonym_keys": (
        '[{"region": 1, "label": "car"}, {"object_id": 2, "description": "tree"}]',
        {1: "car", 2: "tree"},
    ),
    "fenced_with_prose": (
        'Labels:\n```json\n{"objects": [{"id": 1, "semantic": "car"}]}\n```\nOK',
        {1: "car"},
    ),
    "truncated": ('{"objects": [{"id": 1, "semantic": "car"}, {"id": 2, "semantic": "tre', {1: "car"}),
}


@pytest.mark.parametrize(("text", "expected"), SEMANTIC_CASES.values(), ids=SEMANTIC_CASES.keys())
def test_parse_semantics(text, expected):
    batch, _ = parse_semantics(text, [1, 2])
    assert labels(batch) == expected
    assert [o.id for o in batch.objects] == sorted(expected)  # expected-id order


def test_parse_semantics_unknown_and_duplicate_ids_are_dropped_and_reported():
    text = json.dumps(
        {
            "objects": [
                {"id": 1, "semantic": "car"},
                {"id": 9, "semantic": "ghost"},
                {"id": "1", "semantic": "again"},
                {"id": 2, "observation": "green, round", "semantic": "tree"},
            ]
        }
    )
    batch, report = parse_semantics(text, [1, 2])
    assert labels(batch) == {1: "car", 2: "tree"}
    assert batch.objects[1].observation == "green, round"
    assert report.unknown_ids == [9]
    assert report.duplicate_ids == [1]


def test_parse_semantics_reports_missing_ids_and_truncation():
    batch, report = parse_semantics('[{"id": 1, "semantic": "car"}, {"id": 2, "sem', [1, 2, 3])
    assert labels(batch) == {1: "car"}
    assert report.missing_ids == [2, 3]
    assert report.repaired


def test_parse_semantics_single_expected_id_without_id_field():
    batch, report = parse_semantics('{"observation": "red", "semantic": "a red car"}', [7])
    assert labels(batch) == {7: "a red car"}
    assert report.notes


SEMANTIC_BAD = {
    "garbage": "I cannot see the image.",
    "only_unknown_ids": '{"objects": [{"id": 9, "semantic": "ghost"}]}',
    "no_semantic": '{"objects": [{"id": 1}]}',
    "empty_object": "{}",
}


@pytest.mark.parametrize("text", SEMANTIC_BAD.values(), ids=SEMANTIC_BAD.keys())
def test_parse_semantics_raises(text):
    with pytest.raises(ParseError):
        parse_semantics(text, [1, 2])


# -- refinement -------------------------------------------------------------------------------------

REFINE_CASES = {
    "objects": ('{"objects": [{"id": 5, "semantic": "mug", "reasoning": "holds coffee"}]}', [5]),
    "order_preserved": ('{"objects": [{"id": 7}, {"id": 3}, {"id": 5}]}', [7, 3, 5]),
    "ids_as_strings": ('{"objects": [{"id": "#7"}, {"id": "object 3"}]}', [7, 3]),
    "kept_key": ('{"kept": [{"id": 3}]}', [3]),
    "ids_only": ('{"ids": [5, 3]}', [5, 3]),
    "bare_list_of_ints": ("[3, 7]", [3, 7]),
    "mapping": ('{"3": {"semantic": "cup", "reasoning": "r"}}', [3]),
    "explicit_empty": ('{"objects": []}', []),
    "explicit_empty_list": ("[]", []),
    "fenced_trailing_prose": ('```json\n{"objects": [{"id": 3}]}\n```\nI kept the cup.', [3]),
    "truncated": ('{"objects": [{"id": 3, "reasoning": "a"}, {"id": 5, "reasoning": "cut of', [3]),
}


@pytest.mark.parametrize(("text", "expected"), REFINE_CASES.values(), ids=REFINE_CASES.keys())
def test_parse_refine_step(text, expected):
    out, _ = parse_refine_step(text, [3, 5, 7])
    assert [o.id for o in out.objects] == expected


def test_parse_refine_step_fields_and_reports():
    text = (
        '{"objects": [{"id": 5, "semantic": "mug", "rationale": "holds coffee"}, {"id": 42}, '
        '{"id": "5", "reasoning": "again"}]}'
    )
    out, report = parse_refine_step(text, [3, 5, 7])
    assert [(o.id, o.semantic, o.reasoning) for o in out.objects] == [(5, "mug", "holds coffee")]
    assert report.unknown_ids == [42]
    assert report.duplicate_ids == [5]
    assert any("unknown" in n for n in report.notes)


def test_parse_refine_step_ids_list_with_notes_per_kept_object():
    """The schema's shape: every kept id in one list, then notes; the step's reasoning fills the gaps."""
    text = (
        '{"reasoning": "every pizza", "ids": [3, 5, "6", 9], '
        '"objects": [{"id": 5, "semantic": "a pizza", "reasoning": "cheese on top"}, {"id": 2}]}'
    )
    out, report = parse_refine_step(text, [1, 2, 3, 5, 6])
    assert out.ids == [3, 5, 6] and out.reasoning == "every pizza"
    assert [(o.id, o.semantic, o.reasoning) for o in out.objects] == [
        (3, "", "every pizza"),
        (5, "a pizza", "cheese on top"),
        (6, "", "every pizza"),
    ]  # notes on ids outside "ids" (2) are not a selection
    assert report.unknown_ids == [9]
    empty, _ = parse_refine_step('{"reasoning": "nothing purple", "ids": []}', [1, 2])
    assert empty.ids == [] and empty.objects == []
    native, _ = parse_refine_step(
        '{"reasoning": "", "ids": [], "objects": [{"id": 2, "semantic": "s"}]}', [1, 2]
    )
    assert native.ids == [2]  # an empty "ids" beside filled entries: the entries (a schema default)


REFINE_BAD = {
    "garbage": "The cup, probably.",
    "only_unknown_ids": '{"objects": [{"id": 42}, {"id": 43}]}',
    "no_list": '{"answer": "the cup"}',
}


@pytest.mark.parametrize("text", REFINE_BAD.values(), ids=REFINE_BAD.keys())
def test_parse_refine_step_raises(text):
    with pytest.raises(ParseError):
        parse_refine_step(text, [3, 5, 7])


# -- single shot ------------------------------------------------------------------------------------

SINGLE_SHOT_CASES = {
    "ids_and_reason": ('{"ids": [3, 5], "reason": "both mugs"}', [3, 5]),
    "ids_as_strings": ('{"ids": ["#3", "object 5"]}', [3, 5]),
    "unknown_dropped": ('{"ids": [3, 99]}', [3]),
    "duplicates_dropped": ('{"ids": [5, 5, 3]}', [5, 3]),
    "bare_list": ("[7]", [7]),
    "bare_number_text": ("object 3", [3]),
    "objects_form": ('{"objects": [{"id": 5}]}', [5]),
    "explicit_empty": ('{"ids": [], "reason": "nothing matches"}', []),
}


@pytest.mark.parametrize(("text", "expected"), SINGLE_SHOT_CASES.values(), ids=SINGLE_SHOT_CASES.keys())
def test_parse_single_shot(text, expected):
    out, _ = parse_single_shot(text, [3, 5, 7])
    assert out.ids == expected


def test_parse_single_shot_reason_and_report():
    out, report = parse_single_shot('{"ids": [3, 99, 3], "reason": "the mug"}', [3, 5, 7])
    assert (out.ids, out.reason) == ([3], "the mug")
    assert (report.unknown_ids, report.duplicate_ids) == ([99], [3])


@pytest.mark.parametrize(
    "text", ["no idea", '{"ids": [99]}', '{"reason": "x"}'], ids=["garbage", "only_unknown", "no_ids"]
)
def test_parse_single_shot_raises(text):
    with pytest.raises(ParseError):
        parse_single_shot(text, [3, 5, 7])

"""The block-YAML reader builds exactly what PyYAML builds, or leaves the text to libyaml."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams._block_yaml import Unsupported, read_block_yaml
from streams._limits import MAX_DEPTH

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _pyyaml(text: str) -> tuple[bool, Any]:
    try:
        return True, yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return False, None


def _agrees(text: str) -> bool:
    """Whether the reader read ``text`` (False: it left it to libyaml); fails the test if
    it read something PyYAML refuses or builds differently."""
    try:
        data = read_block_yaml(text)
    except Unsupported:
        return False
    ok, expected = _pyyaml(text)
    assert ok, f"read what PyYAML refuses: {text!r}"
    assert data == expected, text
    assert repr(data) == repr(expected), text  # same types: 1 vs 1.0 vs True
    return True


PLAN = """\
version: 1
plan: block
caps:
  cpu: 2
  light: null
# a comment line
agents:
  a:
    class: light
    can:
    - sleep
streams:
- id: one
  team: &team
  - a
  steps:
  - id: s1
    agent: a
    action: sleep
    with:
      seconds: 0.5
      note: 'it is: quoted # not a comment'
      other: "double"
      empty: []
      map: {}
    needs: []

- id: two
  team: *team
  steps:
    -   id: s1
        agent: a
        action: sleep
        with: {}
"""


def test_a_plan_in_plain_block_style_is_read_as_pyyaml_reads_it() -> None:
    assert _agrees(PLAN)
    data = read_block_yaml(PLAN)
    assert data["streams"][1]["team"] == ["a"]
    assert data["streams"][0]["steps"][0]["with"]["seconds"] == 0.5


@pytest.mark.parametrize(
    "text",
    [
        "a: yes\nb: ~\nc: 0x1f\nd: 1_000\ne: .inf\nf: -1\ng: 2001-12-14\nh: 1:30\ni: +.5\n",
        "a: 'yes'\nb: \"null\"\nc: a#b\nd: http://x/y\ne: -rf\nf: a - b\ng: x, y\n",
        "a:\n- 1\n- b: 2\n  c: 3\n-   d: 4\nz: 5\n",
        "- a\n- b\n",
        "a:   \nb: c   \n",
        "a: &x 1\nb: *x\n",
        "key.with/odd-chars_1: v\n",
        "a: \u00e9t\u00e9 \U0001f600\n",
    ],
)
def test_what_it_reads_agrees_with_pyyaml(text: str) -> None:
    assert _agrees(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",  # duplicate key
        "a: b\n  c\n",  # a continued scalar
        "a: [1, 2]\n",  # flow collection
        "a: |\n  x\n",  # block scalar
        "a: 1 # comment\n",
        "a: !!str 1\n",
        "a:\tb\n",
        "a: 'it''s'\n",
        'a: "\\n"\n',
        "yes: 1\n",  # a key that is not a string
        "<<: {a: 1}\n",
        "a: *nowhere\n",
        "a: &x 1\nb: &x 2\n",
        "a: &x *y\n",
        "---\na: 1\n",
        "  a: 1\n",
        "a:\n  - x\n  b: 1\n",
        "a: 1\n- b\n",
        "- a\n  b: 1\n",
        "-\n  a: 1\n",
        "a: b: c\n",
        "a:b\n",
        "a: \x07\n",
        "\ufeffa: 1\n",
        "a: 1\r\nb: 2\r\n",
        "",
        "just a scalar\n",
    ],
)
def test_what_it_leaves_to_libyaml(text: str) -> None:
    with pytest.raises(Unsupported):
        read_block_yaml(text)


def test_nesting_near_the_depth_bound_is_left_to_libyaml() -> None:
    deep = (
        "".join(f"{'  ' * i}k:\n" for i in range(MAX_DEPTH + 1)) + f"{'  ' * (MAX_DEPTH + 1)}k: 1\n"
    )
    with pytest.raises(Unsupported):
        read_block_yaml(deep)


def test_aliases_past_the_bound_are_left_to_libyaml() -> None:
    lines = ["a: &a\n"] + [f"- {i}\n" for i in range(1000)]
    lines += [f"b{i}: *a\n" for i in range(101)]
    with pytest.raises(Unsupported):
        read_block_yaml("".join(lines))


_TRICKY = [
    "yes",
    "no",
    "on",
    "null",
    "~",
    "1",
    "-1",
    "0.5",
    ".5",
    "1e3",
    "1_0",
    "0x1f",
    "0o7",
    "017",
    "1:30",
    "2001-12-14",
    ".nan",
    "#x",
    "-x",
    "'q'",
    '"d"',
    "it's",
    "a\\b",
    "[x]",
    "{x}",
    "*x",
    "&x",
    "!x",
    "|",
    ">",
    "%x",
    "@x",
    "`x",
    "?x",
    ":x",
    "x:",
    "é",
    "<<",
    "=",
    "a,b",
    "true",
    "False",
    "0",
    "+1",
    "3.0",
    "a: b",
    "a #b",
    "- x",
    "",
    " x",
    "x ",
]
_scalars = st.one_of(
    st.sampled_from(_TRICKY),
    st.text(alphabet="ab -:#'\"\\,[]{}&*!|>.0123456789é", max_size=8),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)
_keys = st.one_of(
    st.sampled_from(["id", "a", "b-c", "d.e", "yes", "1", "x y"]),
    st.text("abc_", min_size=1, max_size=4),
)
_data = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.dictionaries(_keys, _data, min_size=1, max_size=5),
    indent=st.sampled_from([2, 4]),
    shared=st.booleans(),
)
def test_dumped_data_is_read_as_pyyaml_reads_it(
    data: dict[Any, Any], indent: int, shared: bool
) -> None:
    if shared:  # the same object twice: the dump has an anchor and an alias
        data = {"first": data, "second": data}
    text = yaml.safe_dump(data, default_flow_style=False, indent=indent, allow_unicode=True)
    _agrees(text)


_EDITS = st.sampled_from(
    [" ", "  ", "-", "- ", ":", ": ", "#", " #", "'", '"', "&a ", "*a", "\n", "[", "{}", "x"]
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    position=st.integers(0, len(PLAN) - 1),
    cut=st.integers(0, 3),
    insert=_EDITS,
)
def test_a_damaged_plan_is_read_as_pyyaml_reads_it_or_left_to_libyaml(
    position: int, cut: int, insert: str
) -> None:
    _agrees(PLAN[:position] + insert + PLAN[position + cut :])


_WORDS = st.sampled_from(
    ["a: b", "#x", "x #y", "x#y", "'q'", '"d"', "-1", "0x1F", "1_000", "~", "yes", "on",
     "2001-01-01", ".inf", "a:b", "- x", "[x]", "{x}", "&x", "*x", "|", "x,y", "? x", "null",
     "1:20", "<<", "it's", "http://x:1/y", ":x", "x:", "", " "]
)  # fmt: skip
_KEYS = st.one_of(_WORDS, st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,6}", fullmatch=True))
_VALUES = st.one_of(
    st.just(""),
    _WORDS.map(lambda word: " " + word),
    st.sampled_from([" &a", " *a", " &a x", " *b", " # c", " []", " {}", " 'x'", ' "y"']),
)
_LINES = st.lists(
    st.tuples(
        st.integers(0, 6),
        st.sampled_from(["", "- "]),
        st.one_of(st.just(""), _KEYS.map(lambda key: key + ":")),
        _VALUES,
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(_LINES)
def test_lines_put_together_at_random_are_read_as_pyyaml_reads_them_or_left_to_libyaml(
    lines: list[tuple[int, str, str, str]],
) -> None:
    # Found this way: an anchor reused inside its own value (`a: &x` / ` b: &x`), which
    # PyYAML refuses as a duplicate, was read.
    _agrees("\n".join(" " * indent + dash + key + value for indent, dash, key, value in lines))


def test_an_anchor_reused_inside_its_own_value_is_left_to_libyaml() -> None:
    assert not _agrees("a: &x\n b: &x\n")

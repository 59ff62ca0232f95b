"""The generic converter and the registry, on dataclasses made up for the test."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pytest

from modernbert.train.registry import Registry, did_you_mean
from modernbert.train.typed_yaml import Keyed, Named, RecipeError, TimeString, convert


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Leaf:
    size: int
    ratio: float = 0.5
    label: str | None = None

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {self.size}")


@dataclass
class Tree:
    leaves: dict[str, Leaf]
    sizes: list[int] = field(default_factory=list)
    pair: tuple[float, str] = (1.0, "a")
    many: tuple[int, ...] = ()
    mode: Literal["a", "b", 3] = "a"
    micro: int | str = 1
    color: Color = Color.RED
    extra: Any = None
    when: Annotated[str, TimeString(units=("ba",))] = "1ba"
    nested: list[Leaf] = field(default_factory=list)


def test_converts_nested_types():
    tree = convert(
        Tree,
        {
            "leaves": {"x": {"size": 2}, "y": {"size": 3, "ratio": 1, "label": "L"}},
            "sizes": [1, 2],
            "pair": [2, "b"],
            "many": [1, 2, 3],
            "mode": 3,
            "micro": "auto",
            "color": "blue",
            "extra": {"anything": [1]},
            "when": "1_000ba",
            "nested": [{"size": 1}],
        },
    )
    assert tree.leaves == {"x": Leaf(2), "y": Leaf(3, 1.0, "L")}
    assert isinstance(tree.leaves["y"].ratio, float)
    assert tree.pair == (2.0, "b") and tree.many == (1, 2, 3) and tree.mode == 3
    assert tree.micro == "auto" and tree.color is Color.BLUE and tree.extra == {"anything": [1]}
    assert convert(Tree, {"leaves": {}, "micro": 4}).micro == 4


def test_collects_every_problem_with_paths():
    with pytest.raises(RecipeError) as info:
        convert(
            Tree,
            {
                "leaves": {"x": {"sise": 1}, "y": {"size": -1}},
                "sizes": [1, "two"],
                "mode": "c",
                "color": "green",
                "micro": 1.5,
                "when": "3ep",
                "nested": [{"size": 1}, {"size": "x"}],
                "leafs": {},
            },
        )
    problems = info.value.problems
    text = str(info.value)
    assert "leaves.x.sise: unknown key (did you mean 'size'?)" in text
    assert "leaves.x.size: missing required value (int)" in text
    assert "leaves.y: size must be >= 0, got -1" in text  # __post_init__, with its path
    assert "sizes[1]: expected int, got str 'two'" in text
    assert "mode: invalid value 'c'" in text
    assert "color: invalid value 'green'" in text
    assert "micro: expected int | str, got float 1.5" in text
    assert "when: time '3ep' must use one of the units ['ba']" in text
    assert "nested[1].size: expected int, got str 'x'" in text
    assert "leafs: unknown key (did you mean 'leaves'?)" in text
    assert len(problems) == 10


def test_rejects_non_mapping_for_dataclass_and_non_list():
    with pytest.raises(RecipeError, match="leaves: expected a mapping, got list"):
        convert(Tree, {"leaves": [1]})
    with pytest.raises(RecipeError, match="sizes: expected a list, got int 3"):
        convert(Tree, {"leaves": {}, "sizes": 3})
    with pytest.raises(RecipeError, match="<recipe>: expected a mapping for Tree, got str"):
        convert(Tree, "tree")


REG: Registry = Registry("widget")


@dataclass
class KnobOptions:
    name: str = "knob"
    turns: int = 1


@REG.register("knob", options=KnobOptions)
def _knob(opts: KnobOptions) -> str:
    return f"knob{opts.turns}"


@REG.register("lever", options=KnobOptions)
def _lever(opts: KnobOptions) -> str:
    return "lever"


@dataclass
class Panel:
    main: Annotated[KnobOptions, Named(REG)] = field(default_factory=KnobOptions)
    extras: Annotated[dict[str, object], Keyed(REG)] = field(default_factory=dict)


def test_named_and_keyed_sections():
    panel = convert(Panel, {"main": {"turns": 3}, "extras": {"knob": {}, "lever": None}})
    assert panel.main == KnobOptions("knob", 3)  # the name defaults to the dataclass default
    assert panel.extras == {"knob": KnobOptions()}  # null drops an entry
    assert REG.get(panel.main.name)(panel.main) == "knob3"
    with pytest.raises(RecipeError) as info:
        convert(Panel, {"main": {"name": "nob"}, "extras": {"levr": {}, "knob": {"turn": 1}}})
    text = str(info.value)
    assert (
        "main.name: unknown widget 'nob' (did you mean 'knob'?); valid names: knob, lever" in text
    )
    assert "extras.levr: unknown widget 'levr' (did you mean 'lever'?)" in text
    assert "extras.knob.turn: unknown key (did you mean 'turns'?)" in text


def test_registry_basics():
    reg: Registry = Registry("thing")

    @reg.register("alpha")
    def alpha() -> int:
        return 1

    assert reg.get("alpha") is alpha and "alpha" in reg and list(reg) == ["alpha"]
    assert reg.options("alpha") is None and len(reg) == 1
    with pytest.raises(ValueError, match="unknown thing 'alpah' \\(did you mean 'alpha'\\?\\)"):
        reg.get("alpah")
    with pytest.raises(ValueError, match="valid names: alpha"):
        reg.get("zzz")
    with pytest.raises(ValueError, match="already registered"):
        reg.add("alpha", alpha)
    assert did_you_mean("proportoin", ["proportion", "repeat"]) == " (did you mean 'proportion'?)"
    assert did_you_mean("xyz", ["proportion"]) == ""

"""Plain YAML data -> typed dataclasses, with every problem reported by its key path.

The converter is generic: it reads the type hints of any dataclass (ours, the model's
`ModernBertConfig`, the data layer's `MLMLoaderConfig`, ...) and walks the data, so a recipe
fails at the door with `train_loader.streams.code.proportoin: unknown key (did you mean
'proportion'?)` instead of deep inside a build. It collects all problems before raising.

Supported hints: dataclasses, `dict[str, X]`, `list[X]`, `tuple[X, Y]` / `tuple[X, ...]`,
`X | None`, unions (`int | str`: first member that fits), `Literal[...]`, `Enum`, `bool`,
`int`, `float` (ints accepted), `str`, `Any`, plus two `Annotated` markers:

- `Annotated[object, Named(REGISTRY)]`: a section `{name: ..., **options}` typed by the options
  dataclass that `REGISTRY` holds for that name (optimizer, scheduler); keys set to null that
  the named component does not have are dropped, so overrides can switch components.
- `Annotated[dict[str, object], Keyed(REGISTRY)]`: a mapping whose keys are registry names and
  whose values are that entry's options (callbacks, loggers); `null` drops an entry, so an
  override `callbacks.memory_monitor=null` switches a component off.
- `Annotated[str, TimeString()]`: a Composer time string (`1000ba`, `3_000tok`, `0.1dur`).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from composer.core import Time

from modernbert.suggest import did_you_mean
from modernbert.train.registry import Registry

T = TypeVar("T")


class RecipeError(ValueError):
    """A recipe that cannot run; the message lists every problem found, one per line."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid recipe ({len(self.problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class Named:
    """Marker: the section's `name` picks the options dataclass from `registry`."""

    registry: Registry


@dataclass(frozen=True)
class Keyed:
    """Marker: a mapping of registry name -> options of that entry (null = disabled)."""

    registry: Registry


@dataclass(frozen=True)
class TimeString:
    """Marker: a Composer time string, parsed with `Time.from_timestring` to check it."""

    units: tuple[str, ...] | None = None  # allowed unit suffixes, None = any


#: Training length / intervals: Composer time strings (`dur` is meaningless for these).
Interval = Annotated[str, TimeString(units=("tok", "ba", "sp", "ep"))]
#: A scheduler duration: any unit but wall-clock seconds, `dur` = fraction of the run.
Duration = Annotated[str, TimeString(units=("tok", "ba", "sp", "ep", "dur"))]


class _Fail:
    """Sentinel for a value that failed to convert (its problem is already recorded)."""


_FAIL = _Fail()


def convert(tp: Any, value: Any, path: str = "") -> Any:
    """Convert `value` to type `tp`; raise RecipeError listing every problem found."""
    problems: list[str] = []
    out = _Converter(problems).convert(tp, value, path)
    if problems:
        raise RecipeError(problems)
    return out


def parse_time(value: str) -> Time:
    """`Time.from_timestring`, accepting `_` separators like YAML ints do."""
    return Time.from_timestring(value.replace("_", "").strip())


def _default_name(tp: Any) -> str | None:
    """The default of a dataclass's `name` field (the component used when none is named)."""
    if dataclasses.is_dataclass(tp):
        for f in dataclasses.fields(tp):
            if f.name == "name" and isinstance(f.default, str):
                return f.default
    return None


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is typing.Annotated:
        return _type_name(get_args(tp)[0])
    if origin is not None:
        return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


class _Converter:
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def fail(self, path: str, message: str) -> _Fail:
        self.problems.append(f"{path or '<recipe>'}: {message}")
        return _FAIL

    def convert(self, tp: Any, value: Any, path: str) -> Any:
        origin = get_origin(tp)
        if tp is Any or tp is object:
            return value
        if origin is typing.Annotated:
            return self._annotated(tp, value, path)
        if origin in (Union, types.UnionType):
            return self._union(tp, value, path)
        if tp is type(None):
            return (
                None if value is None else self.fail(path, f"expected null, got {_describe(value)}")
            )
        if value is None:
            return self.fail(path, f"missing value (expected {_type_name(tp)})")
        if origin is Literal:
            return self._literal(tp, value, path)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self._dataclass(tp, value, path)
        if origin in (list, tuple, dict) or tp in (list, tuple, dict):
            return self._container(tp, value, path)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._enum(tp, value, path)
        return self._scalar(tp, value, path)

    # -- scalars -------------------------------------------------------------------------
    def _scalar(self, tp: type, value: Any, path: str) -> Any:
        if tp is bool:
            if isinstance(value, bool):
                return value
        elif tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif tp is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif tp is str:
            if isinstance(value, str):
                return value
        elif isinstance(tp, type):
            if isinstance(value, tp):
                return value
        else:
            return self.fail(path, f"unsupported type hint {tp!r}")
        return self.fail(path, f"expected {_type_name(tp)}, got {_describe(value)}")

    def _literal(self, tp: Any, value: Any, path: str) -> Any:
        choices = get_args(tp)
        for choice in choices:
            if value == choice and type(value) is type(choice):
                return choice
        hint = did_you_mean(str(value), [str(c) for c in choices])
        valid = ", ".join(repr(c) for c in choices)
        return self.fail(path, f"invalid value {value!r}{hint}; expected one of {valid}")

    def _enum(self, tp: type[enum.Enum], value: Any, path: str) -> Any:
        for member in tp:
            if value in (member, member.value) or value == member.name:
                return member
        names = [m.name for m in tp]
        return self.fail(
            path,
            f"invalid value {value!r}{did_you_mean(str(value), names)}; expected one of {names}",
        )

    # -- unions and markers --------------------------------------------------------------
    def _union(self, tp: Any, value: Any, path: str) -> Any:
        members = get_args(tp)
        if value is None:
            if type(None) in members:
                return None
            return self.fail(path, f"missing value (expected {_type_name(tp)})")
        candidates = [m for m in members if m is not type(None)]
        if len(candidates) == 1:
            return self.convert(candidates[0], value, path)
        for member in candidates:  # first member that converts cleanly wins
            trial: list[str] = []
            out = _Converter(trial).convert(member, value, path)
            if not trial:
                return out
        return self.fail(path, f"expected {_type_name(tp)}, got {_describe(value)}")

    def _annotated(self, tp: Any, value: Any, path: str) -> Any:
        base, *marks = get_args(tp)
        for mark in marks:
            if isinstance(mark, Named):
                return self._named(mark.registry, value, path, _default_name(base))
            if isinstance(mark, Keyed):
                return self._keyed(mark.registry, value, path)
            if isinstance(mark, TimeString):
                return self._time(mark, value, path)
        return self.convert(base, value, path)

    def _time(self, mark: TimeString, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            return self.fail(
                path, f"expected a time string such as '1000ba' or '0.1dur', got {_describe(value)}"
            )
        try:
            unit = parse_time(value).unit.value
        except ValueError:
            return self.fail(
                path,
                f"unparsable time string {value!r}; expected NUMBER+UNIT with unit "
                "tok, ba, sp, ep or dur (e.g. '1000ba', '3_000_000tok', '0.1dur')",
            )
        if mark.units is not None and unit not in mark.units:
            return self.fail(path, f"time {value!r} must use one of the units {list(mark.units)}")
        return value

    def _named(self, registry: Registry, value: Any, path: str, default: str | None) -> Any:
        if not isinstance(value, dict):
            return self.fail(path, f"expected a mapping with a 'name' key, got {_describe(value)}")
        name = value.get("name", default)
        if name is not None and "name" not in value:
            value = {"name": name, **value}
        if name is None:
            return self.fail(_join(path, "name"), f"missing; one of {', '.join(registry.names())}")
        if name not in registry:
            return self.fail(_join(path, "name"), registry.unknown_message(name))
        options = registry.options(name)
        if options is None:
            extra = sorted(set(value) - {"name"})
            if extra:
                return self.fail(path, f"{registry.kind} '{name}' takes no options, got {extra}")
            return name
        # Keys of another component set to null are dropped, so that an override can switch
        # components (`scheduler.name=cosine_with_warmup scheduler.t_decay=null`).
        own = {f.name for f in dataclasses.fields(options)}
        value = {k: v for k, v in value.items() if k in own or v is not None}
        return self.convert(options, value, path)

    def _keyed(self, registry: Registry, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            return self.fail(
                path, f"expected a mapping of {registry.kind} names, got {_describe(value)}"
            )
        out: dict[str, Any] = {}
        for name, options in value.items():
            key_path = _join(path, name)
            if name not in registry:
                self.fail(key_path, registry.unknown_message(name))
                continue
            if options is None:  # null switches the component off
                continue
            cls = registry.options(name)
            if cls is None:
                if options != {}:
                    self.fail(key_path, f"{registry.kind} '{name}' takes no options")
                out[name] = {}
            else:
                converted = self.convert(cls, options, key_path)
                if converted is not _FAIL:
                    out[name] = converted
        return out

    # -- containers ----------------------------------------------------------------------
    def _container(self, tp: Any, value: Any, path: str) -> Any:
        origin = get_origin(tp) or tp
        args = get_args(tp)
        if origin is dict:
            if not isinstance(value, dict):
                return self.fail(path, f"expected a mapping, got {_describe(value)}")
            key_tp, val_tp = args if args else (Any, Any)
            out = {}
            for k, v in value.items():
                key = self.convert(key_tp, k, _join(path, k))
                out[key] = self.convert(val_tp, v, _join(path, k))
            return _FAIL if any(v is _FAIL for v in out.values()) else out
        if not isinstance(value, (list, tuple)):
            return self.fail(path, f"expected a list, got {_describe(value)}")
        if origin is list:
            item_tp = args[0] if args else Any
            items = [self.convert(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
            return _FAIL if any(v is _FAIL for v in items) else items
        # tuple
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            item_tp = args[0] if args else Any
            types_ = [item_tp] * len(value)
        else:
            types_ = list(args)
            if len(value) != len(types_):
                return self.fail(path, f"expected {len(types_)} items, got {len(value)}")
        items = [self.convert(t, v, f"{path}[{i}]") for i, (t, v) in enumerate(zip(types_, value))]
        return _FAIL if any(v is _FAIL for v in items) else tuple(items)

    # -- dataclasses ---------------------------------------------------------------------
    def _dataclass(self, cls: type[T], value: Any, path: str) -> T | _Fail:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            return self.fail(path, f"expected a mapping for {cls.__name__}, got {_describe(value)}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        hints = get_type_hints(cls, include_extras=True)
        before = len(self.problems)
        for key in value:
            if key not in fields:
                self.fail(
                    _join(path, key),
                    f"unknown key{did_you_mean(str(key), list(fields))}; "
                    f"valid keys of {cls.__name__}: {', '.join(fields)}",
                )
        kwargs: dict[str, Any] = {}
        for name, field in fields.items():
            if name in value:
                kwargs[name] = self.convert(hints.get(name, Any), value[name], _join(path, name))
            elif (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                self.fail(
                    _join(path, name), f"missing required value ({_type_name(hints.get(name))})"
                )
        if len(self.problems) > before:
            return _FAIL
        try:
            return cls(**kwargs)
        except (ValueError, TypeError) as err:  # the dataclass's own __post_init__ checks
            return self.fail(path, str(err))

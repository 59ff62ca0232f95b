"""A tiny name -> builder registry.

Recipes pick components (optimizer, scheduler, callbacks, loggers, ...) by name. A registry
keeps those names in one table so that an unknown name fails with the list of valid ones
(and a did-you-mean hint), instead of falling through an if/elif chain.

Each entry may also carry an *options* dataclass: the typed shape of that component's YAML
section. The recipe converter (`modernbert.train.typed_yaml`) uses it to type-check the section
before anything is built, and the dataclass is the single home of the component's defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from modernbert.suggest import did_you_mean

B = TypeVar("B", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[B]):
    """One registered component: how to build it and the dataclass of its options."""

    name: str
    builder: B
    options: type | None = None


class Registry(Generic[B]):
    """Maps names to builders; `.get(name)` raises a KeyError-free ValueError listing names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[B]] = {}

    def register(self, name: str, options: type | None = None) -> Callable[[B], B]:
        """Decorator: `@REG.register("name", options=OptionsDataclass)`."""

        def decorate(builder: B) -> B:
            self.add(name, builder, options)
            return builder

        return decorate

    def add(self, name: str, builder: B, options: type | None = None) -> None:
        """Register `builder` under `name`; a second registration of a name is a bug."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = Entry(name, builder, options)

    def entry(self, name: str) -> Entry[B]:
        """The entry of `name`, or a ValueError that lists the valid names."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(self.unknown_message(name)) from None

    def get(self, name: str) -> B:
        """The builder registered under `name`."""
        return self.entry(name).builder

    def options(self, name: str) -> type | None:
        """The options dataclass registered with `name` (None when it takes no options)."""
        return self.entry(name).options

    def unknown_message(self, name: object) -> str:
        """Error text for an unknown name: the valid names and the closest one."""
        names = self.names()
        return (
            f"unknown {self.kind} '{name}'{did_you_mean(str(name), names)}; "
            f"valid names: {', '.join(names)}"
        )

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"

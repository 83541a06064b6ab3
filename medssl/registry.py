"""Name -> factory look-ups with a "did you mean" on a typo."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from medssl.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of factories: ``ENCODERS.register("swin")(build_swin)``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._items[name] = fn
            return fn

        return deco

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(unknown_name_message(self.kind, name, self._items)) from None

    def build(self, name: str, **kwargs) -> T:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def unknown_name_message(kind: str, name: str, valid) -> str:
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else f"; choose one of {', '.join(valid)}"
    return f"unknown {kind} '{name}'{hint}"

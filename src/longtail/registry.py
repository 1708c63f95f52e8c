"""A tiny name -> factory registry (timm style): components register with a decorator, the CLI
creates them by name, and an unknown name is an error that lists the known ones."""

from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: Dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory
        return decorator

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._factories:
            close = difflib.get_close_matches(name, self._factories, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._factories))}")
        return self._factories[name]

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def non_bool_flags(factory: Callable[..., Any], options: dict) -> list[str]:
    """The options that a ``bool`` parameter of ``factory`` gets as something other than true / false.

    YAML reads ``batched: flase`` or ``batched: maybe`` as a string, which Python would take as true;
    such a value is an error to report, not a flag to switch on."""
    import inspect

    params = inspect.signature(factory).parameters
    flags = {k for k, p in params.items() if str(p.annotation).replace("Optional[bool]", "bool").split(" |")[0] == "bool"}
    return [f"{k}: {v!r}" for k, v in options.items() if k in flags and v is not None and not isinstance(v, bool)]

"""A name -> class registry: what verbalizer types, strategies and model kinds are each built on."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T", bound=type)

__all__ = ["Registry"]


class Registry(dict, Generic[T]):
    """``@registry.register("name")`` on a subclass of ``base`` stores it under ``name`` and sets
    ``cls.<attr> = name``; ``registry.get_class(name)`` returns it or raises ``error`` listing the names."""

    def __init__(self, family: str, base: type, attr: str, error: type[Exception] = ConfigError):
        super().__init__()
        self.family, self.base, self.attr, self.error = family, base, attr, error

    def register(self, name: str) -> Callable[[T], T]:
        def deco(cls: T) -> T:
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(f"a {self.family} must subclass {self.base.__name__}, got {cls!r}")
            if name in self and self[name] is not cls:
                raise ValueError(f"a {self.family} {name!r} is already registered ({self[name].__module__})")
            setattr(cls, self.attr, name)
            self[name] = cls
            return cls

        return deco

    def get_class(self, name: str) -> T:
        try:
            return self[name]
        except KeyError:
            raise self.error(f"unknown {self.family} {name!r}; registered: {sorted(self)} (a plugin module that "
                             "registers it can be loaded with plugins=[module])") from None

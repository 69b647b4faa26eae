"""Name -> class registries for the trainer's extension points (task sampling strategies, loss balancers).

A registry maps names (what `MultiTaskTrainingArguments`, recipes, checkpoints and cards carry) to classes.
Arguments may also name a class that was never registered: as a class object (it is then recorded under
its import path `module:QualName`, and registered under that path for this process) or as that path (it is
imported). Either way the arguments keep a plain string, so they stay serialisable.
"""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes of one kind (subclasses of `base`) by name.

    Args:
        what: how errors and messages call the kind, e.g. "task sampling strategy".
        base: the class every registered class must subclass.
        register_with: the public registration function, named in errors.
    """

    def __init__(self, what: str, base: type, register_with: str):
        self.what = what
        self.base = base
        self.register_with = register_with
        self._classes: dict[str, type] = {}

    def register(self, name: str, cls: type) -> type:
        """Register `cls` under `name`; re-registering the same class is a no-op, another class is an error."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"A {self.what} needs a non-empty name without surrounding spaces, got {name!r}.")
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{self.register_with}({name!r}, ...) needs a subclass of {self.base.__name__}, got {cls!r}.")
        known = self._classes.get(name)
        if known is not None and known is not cls:
            raise ValueError(
                f"The {self.what} name {name!r} is already registered for {_path(known)}; pick another name for "
                f"{_path(cls)}."
            )
        self._classes[name] = cls
        return cls

    def names(self) -> list[str]:
        """The registered names, in registration order (built-ins first)."""
        return list(self._classes)

    def name_of(self, cls: type) -> str:
        """The name `cls` is recorded under: its registered name, else its import path `module:QualName`
        (registered under that path for this process, so a class defined in a function resolves too)."""
        for name, known in self._classes.items():
            if known is cls:
                return name
        path = _path(cls)
        self.register(path, cls)
        return path

    def resolve(self, value: str | type, field: str) -> type:
        """The class a registered name, an import path `module:QualName` or a class stands for.

        `field` names the argument in errors (e.g. "task_sampling_strategy")."""
        if isinstance(value, type):
            if not issubclass(value, self.base):
                raise ValueError(f"{field}={value.__qualname__} is not a subclass of {self.base.__name__}.")
            return value
        if isinstance(value, str) and value in self._classes:
            return self._classes[value]
        if isinstance(value, str) and ":" in value:
            cls = _import(value, field)
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise ValueError(f"{field}={value!r} is {cls!r}, not a subclass of {self.base.__name__}.")
            return cls
        raise ValueError(
            f"{field}={value!r} is not one of {self.names()} (registered with {self.register_with}), nor an "
            f"import path 'module:ClassName' of a {self.base.__name__} subclass."
        )


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _import(path: str, field: str) -> object:
    module_name, _, qualname = path.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"{field}={path!r}: cannot import it ({type(err).__name__}: {err}).") from None
    return obj


__all__ = ["Registry"]

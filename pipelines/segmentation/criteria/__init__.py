"""Criterion types: one class per type, one file per class, found by looking in this folder.

Every module of this package is imported here, and each `Criterion` subclass with a `key`
registers itself (`base.Criterion.__pydantic_init_subclass__`). The tagged union that the
definition files are validated against (`CriterionType`) is rebuilt from the registry, so
adding a criterion type is adding one file: its schema, compilation into the patient model,
description and explain evidence (see the README, "Adding a criterion type").
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Union

from pydantic import BaseModel, Discriminator, Tag

from pipelines.segmentation.criteria.base import REGISTRY, Criterion, CriterionType

__all__ = ["Criterion", "CriterionType", "add_dependent", "codelist_refs", "criterion_union", "rebuild",
           "register_type", "types", "walk"]

_DEPENDENTS: list[type[BaseModel]] = []
_state: dict[str, Any] = {"union": None, "loading": True}


def _tag(value: Any) -> str | None:
    # The criterion's type is its one key; several keys are reported as an unknown type.
    if isinstance(value, Criterion):
        return value.key
    if isinstance(value, Mapping):
        return "+".join(str(k) for k in value) if value else None
    return None


def _build_union() -> Any:
    members = tuple(Annotated[cls, Tag(key)] for key, cls in REGISTRY.items())
    return Annotated[Union[members], Discriminator(_tag)]  # type: ignore[valid-type]


def rebuild() -> None:
    """Rebuild the union and every model holding a criterion (after a type registers or leaves)."""
    _state["union"] = _build_union()
    models = [*REGISTRY.values(), *_DEPENDENTS]
    # A model embeds the schemas of the models it holds: forget every one first, so that no
    # rebuilt schema keeps a stale copy of another (e.g. all_of holding a `not` that predates
    # a new type).
    for model in models:
        if "__pydantic_core_schema__" in model.__dict__:
            delattr(model, "__pydantic_core_schema__")
        model.__pydantic_complete__ = False
    for model in models:
        model.model_rebuild(force=True)


def register_type(cls: type[Criterion]) -> None:
    """Register a criterion class under its key (called by `Criterion` subclasses themselves)."""
    if cls.key in REGISTRY and REGISTRY[cls.key] is not cls and REGISTRY[cls.key].__qualname__ != cls.__qualname__:
        raise ValueError(f"criterion type '{cls.key}' is defined twice ({REGISTRY[cls.key].__module__}, {cls.__module__})")
    REGISTRY[cls.key] = cls
    if not _state["loading"]:
        rebuild()


def add_dependent(model: type[BaseModel]) -> None:
    """Have `model` (e.g. a cohort definition) rebuilt whenever the criterion union changes."""
    _DEPENDENTS.append(model)
    model.model_rebuild(force=True)


def criterion_union() -> Any:
    """Return the current tagged union of every registered criterion type."""
    return _state["union"]


def types() -> dict[str, type[Criterion]]:
    """Return key -> class of every registered criterion type."""
    return dict(REGISTRY)


def walk(criterion: Criterion, path: str) -> Iterator[tuple[str, Criterion]]:
    """Yield (path, criterion) for a criterion and everything nested in it, depth first."""
    yield path, criterion
    for sub, child in criterion.children():
        yield from walk(child, f"{path}.{sub}")


def codelist_refs(criterion: Criterion, path: str) -> Iterator[tuple[str, str]]:
    """Yield (field path, codelist id) for every codelist a single criterion names."""
    for field, codelist_id in criterion.codelists():
        yield f"{path}.{criterion.key}.{field}", codelist_id


for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")
_state["loading"] = False
rebuild()

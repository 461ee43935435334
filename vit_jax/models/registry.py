"""Name -> model factory registry shared by every model family.

Each family module (vit.py, swin.py) calls `register` at import time; `create` is the one
public constructor the rest of the codebase uses.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, factory: Callable[..., nn.Module]) -> None:
  """Registers `factory(num_classes=..., **overrides) -> nn.Module` under `name`."""
  if name in _FACTORIES:
    raise ValueError(f'model name {name!r} is registered twice')
  _FACTORIES[name] = factory


def names() -> list[str]:
  """All registered variant names, in registration order."""
  return list(_FACTORIES)


def create(name: str, num_classes: int, **overrides) -> nn.Module:
  """Builds the registered variant `name` with `num_classes` outputs.

  Overrides are dataclass fields of the family's module (e.g. `classifier='gap'`,
  `dtype=jnp.bfloat16`, `image_size=(384, 384)`); unknown ones are rejected by name.
  """
  if name not in _FACTORIES:
    raise ValueError(
        f'unknown model {name!r}; valid names are: {", ".join(names())}')
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f'num_classes must be a positive int, got {num_classes!r}')
  return _FACTORIES[name](num_classes=num_classes, **overrides)


def check_overrides(module_cls: type, overrides: dict) -> None:
  """Raises a clear error for override names the module class does not have."""
  fields = {f.name for f in dataclasses.fields(module_cls)} - {'parent', 'name'}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(
        f'unknown override(s) {unknown} for {module_cls.__name__}; '
        f'valid overrides are: {", ".join(sorted(fields))}')


def as_pair(value, what: str) -> tuple[int, int]:
  """An int or (height, width) size field of a model -> (height, width)."""
  if isinstance(value, int):
    return (value, value)
  pair = tuple(int(v) for v in value)
  if len(pair) != 2:
    raise ValueError(f'{what} must be an int or (height, width), got {value!r}')
  return pair

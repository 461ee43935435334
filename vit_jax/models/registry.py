"""Name -> model factory registry shared by every model family, and each family's hooks.

Each family module (vit.py, swin/) calls `register` for its variants and
`register_family` for its module class at import time. `create` is the one public
constructor the rest of the codebase uses; `family(model)` gives the hooks where the
families differ (checkpoint adaptation, trained image size, patch drop, analyses), so no
code outside a family's own module asks which family a model is.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
_FAMILIES: dict[type, 'Family'] = {}


@dataclasses.dataclass(frozen=True)
class Family:
  """What differs between model families; each family's module fills it in.

  adapt_checkpoint(flat, flat_init, model, source_image_size, method, *,
                   patch_resize_method, source_model) -> (flat, notes):
    checkpoint params (flat 'a/b' keys) resampled to `model`'s grids; source_image_size
    is (H, W) the checkpoint was trained at, or None (read it from the params);
    patch_resize_method: how a patch embedding of another patch size is resized
    (ViT: 'pi' | 'bilinear'; families that do not resize it accept and ignore it);
    source_model: the model the checkpoint was trained as, or None where unrecorded.
  trained_image_size(flat, model, explicit) -> ((H, W) or None, how): the resolution a
    published file was trained at (explicit wins), None where its params do not say.
  file_fields(flat) -> dict: model fields a published file fixes (e.g. the ViT
    classifier token), beyond the head and pre_logits sizes.
  patch_drop(model) -> str: how patches are dropped; ValueError where it cannot be.
  check_analysis(what, model) -> None: ValueError saying why `analyze <what>` does not
    apply to `model`.
  """
  name: str
  adapt_checkpoint: Callable[..., tuple[dict, list[str]]]
  trained_image_size: Callable[..., tuple[tuple[int, int] | None, str]]
  file_fields: Callable[[dict], dict]
  patch_drop: Callable[[nn.Module], str]
  check_analysis: Callable[[str, nn.Module], None]


def register_family(module_cls: type, hooks: Family) -> None:
  if module_cls in _FAMILIES:
    raise ValueError(f'model family {module_cls.__name__} is registered twice')
  _FAMILIES[module_cls] = hooks


def family(model: nn.Module) -> Family:
  """The hooks of `model`'s family."""
  hooks = _FAMILIES.get(type(model))
  if hooks is None:
    raise ValueError(f'{type(model).__name__} is not a registered model family; '
                     f'registered: {", ".join(c.__name__ for c in _FAMILIES)}')
  return hooks


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

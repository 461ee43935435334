"""tfds split strings ('train[:98%]', 'train[98%:]', 'train[:5000]+val') for image folders.

tfds's own parser and rounding (`tfds.core.ReadInstruction`) decide which positions a
slice covers, so a slice means the same for a folder as for a tfds dataset of that size.
Only the order the positions index is ours: `folder.py` ranks a split's files by a hash
of their path, so a percent slice of a class-sorted listing is not a block of whole
classes, and a file's membership does not depend on where the tree is mounted.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Mapping

import tensorflow_datasets as tfds

from vit_jax.data import DatasetError

# One term of a split string: a name, optionally followed by a [slice].
_TERM = re.compile(r'\s*([A-Za-z0-9_\-.]+)\s*(\[[^\]]*\])?\s*')


@dataclasses.dataclass(frozen=True)
class _SplitSize:
  """What tfds's slice arithmetic reads of a split (a duck-typed tfds SplitInfo)."""
  num_examples: int

  @property
  def shard_lengths(self) -> list[int]:
    return [self.num_examples]  # a folder is one "shard": 'train[:1shard]' = all of it.


@dataclasses.dataclass(frozen=True)
class Slice:
  """Positions [start, stop) of split `name`'s ranked examples."""
  name: str
  start: int
  stop: int


def split_names(spec: str) -> list[str]:
  """'train[:98%]+val' -> ['train', 'val'], or DatasetError naming the bad term."""
  names = []
  for term in spec.split('+'):
    match = _TERM.fullmatch(term)
    if not match:
      raise DatasetError(
          f'split {spec!r}: cannot read {term!r}; expected tfds syntax such as '
          "'train', 'train[:98%]', 'train[98%:]', 'train[:5000]' or 'train[:90%]+val'")
    names.append(match.group(1))
  return names


def resolve(spec: str, sizes: Mapping[str, int]) -> list[Slice]:
  """Absolute positions of each term of `spec`, given each named split's size."""
  try:
    instruction = tfds.core.ReadInstruction.from_spec(spec)
    absolute = instruction.to_absolute({k: _SplitSize(n) for k, n in sizes.items()})
  except (ValueError, AssertionError) as e:
    raise DatasetError(
        f'split {spec!r} does not fit the folder splits {dict(sizes)} ({e}); use a '
        "slice inside them, e.g. 'train[:98%]' / 'train[98%:]'") from None
  out = []
  for a in absolute:
    n = sizes[a.splitname]
    out.append(Slice(a.splitname, a.from_ or 0, n if a.to is None else a.to))
  return out


def select(spec: str, count: Callable[[str], int]) -> list[Slice]:
  """resolve() with each split's size asked of `count`; refuses a term that is empty."""
  sizes = {name: count(name) for name in split_names(spec)}
  slices = resolve(spec, sizes)
  for s in slices:
    if s.stop <= s.start:
      raise DatasetError(
          f'split {spec!r} selects no examples of {s.name!r} ({sizes[s.name]} examples; '
          f'positions {s.start}:{s.stop}); widen the slice, e.g. '
          f"'{s.name}[90%:]', or add images")
  return slices

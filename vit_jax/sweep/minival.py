"""Minival: a held-out slice of the training split, for choosing the learning rate.

The ViT paper (Appendix B.1.1) picks each fine-tuning learning rate on a development
split held out of the training set: 2% of CIFAR's training images, 1% of ImageNet's, 10%
of the smaller sets' (Pets, Flowers). A recipe names its slice in
config.data.minival_split (configs/finetune.py: 'train[98%:]' next to 'train[:98%]').

Which positions a slice covers is decided by tfds's own slice arithmetic
(data/split_slices.py), the same rounding the input pipeline then reads with, so the
checks here are on the examples the runs will see: minival must be non-empty, inside the
training split's base split, and share no example with the training slice or with the
test split. The slice is a fixed range of positions, hence the same on every run and
every host (the order within it is the pipeline's; it does not change membership).
"""
from __future__ import annotations

import dataclasses

from vit_jax.data import sources
from vit_jax.data import split_slices
from vit_jax.sweep import SweepError


@dataclasses.dataclass(frozen=True)
class Plan:
  """The three splits of a sweep, as position ranges of their base splits."""
  train: tuple[split_slices.Slice, ...]
  minival: tuple[split_slices.Slice, ...]
  test: tuple[split_slices.Slice, ...]

  @property
  def minival_examples(self) -> int:
    return sum(s.stop - s.start for s in self.minival)

  def describe(self) -> str:
    def show(slices):
      return ' + '.join(f'{s.name}[{s.start}:{s.stop}]' for s in slices)
    return (f'train {show(self.train)}, minival {show(self.minival)} '
            f'({self.minival_examples} examples), test {show(self.test)}')


def overlap(a: split_slices.Slice, b: split_slices.Slice) -> int:
  """Examples the two ranges share (0 unless they index the same base split)."""
  if a.name != b.name:
    return 0
  return max(0, min(a.stop, b.stop) - max(a.start, b.start))


def resolve(spec: str, sizes: dict[str, int]) -> tuple[split_slices.Slice, ...]:
  return tuple(split_slices.resolve(spec, {n: sizes[n] for n in split_slices.split_names(spec)}))


def check(train_spec: str, minival_spec: str | None, test_spec: str,
          sizes: dict[str, int]) -> Plan:
  """The plan for these split strings given each base split's size, or SweepError."""
  if not minival_spec:
    raise SweepError(
        f'config.data.minival_split is not set (training split {train_spec!r}); the '
        'learning rate is chosen on a slice held out of the training split: e.g. '
        "--config.data.train_split='train[:90%]' --config.data.minival_split='train[90%:]' "
        '(ViT paper Appendix B.1.1 holds out 2% of CIFAR, 1% of ImageNet, 10% of Pets '
        'and Flowers)')
  plan = Plan(resolve(train_spec, sizes), resolve(minival_spec, sizes),
              resolve(test_spec, sizes))
  train_bases = {s.name for s in plan.train}
  for m in plan.minival:
    if m.stop <= m.start:
      raise SweepError(
          f'config.data.minival_split={minival_spec!r} selects no examples of {m.name!r} '
          f'({sizes[m.name]} examples, positions {m.start}:{m.stop}); hold out a larger '
          f"slice, e.g. '{m.name}[90%:]' with train_split '{m.name}[:90%]'")
    if m.name not in train_bases:
      raise SweepError(
          f'config.data.minival_split={minival_spec!r} is not a slice of the training '
          f'split {train_spec!r}; minival is held out of the training data (e.g. '
          f"'{sorted(train_bases)[0]}[90%:]'), so that the test split stays unseen")
    _refuse_shared('training', train_spec, plan.train, minival_spec, m,
                   'shrink the training slice to leave minival out, e.g. '
                   f"train_split='{m.name}[:{m.start}]'")
    _refuse_shared('test', test_spec, plan.test, minival_spec, m,
                   'evaluate on a split minival is not part of (the recipe\'s test split)')
  return plan


def _refuse_shared(role: str, spec: str, slices, minival_spec: str,
                   m: split_slices.Slice, fix: str) -> None:
  for s in slices:
    shared = overlap(s, m)
    if shared:
      raise SweepError(
          f'config.data.minival_split={minival_spec!r} ({m.name}[{m.start}:{m.stop}]) '
          f'shares {shared} examples with the {role} split {spec!r} '
          f'({s.name}[{s.start}:{s.stop}]); {fix}')


def plan_for(config) -> Plan:
  """check() with the base splits' sizes read from the dataset's metadata (no images)."""
  specs = (config.data.train_split, config.data.minival_split or '', config.data.eval_split)
  names = {n for spec in specs if spec for n in split_slices.split_names(spec)}
  sizes = {n: sum(sources.split_sizes(config, n, 1)) for n in sorted(names)}
  return check(config.data.train_split, config.data.minival_split,
               config.data.eval_split, sizes)

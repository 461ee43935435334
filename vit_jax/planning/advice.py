"""What would fit when a step does not: each option compiled and measured, not guessed.

Options, in the order a user would try them:
  batch per device  the largest per-device batch the b and b/2 compiles predict to fit
                    (a power of two); changes the global batch, so the recipe's lr and
                    schedule no longer are the paper's.
  accum_steps=k     the same global batch in k sequential micro-batches: the same
                    update up to float rounding, k times the sequential steps; costs a
                    gradient accumulator.
  remat             the model's rematerialisation (models/remat.py policy): the block's
                    activations recomputed in the backward pass, about one more forward.
                    XLA:CPU's schedule does not free them: ViT-S/16, 16 images, temp
                    1968 MiB without remat, 1943 MiB with 'nothing_saveable' (measured
                    2026-12-02), so on the CPU compile this option is an upper bound;
                    JAX's saved activations, printed beside it, fall from 1483 to 48
                    MiB there (experiments/planner/).
  fsdp              parameters and optimiser state split over the devices
                    (sharding.py); adds all-gathers, frees (N-1)/N of the state.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import ml_collections

from vit_jax.planning import memory

REMAT_POLICY = 'nothing_saveable'  # the most memory saved (models/remat.py).


@dataclasses.dataclass(frozen=True)
class Option:
  flags: str  # the --config overrides that make it.
  what: str
  total: int | None  # bytes per device, measured; None: the compile failed.
  error: str = ''  # why the compile failed (first line).
  saved_activations: int | None = None  # JAX's residuals per device (planning/memory.py).


def changed(config: ml_collections.ConfigDict, **changes) -> ml_collections.ConfigDict:
  """A copy of `config` with `changes`; a nested field is spelled with '__'
  (model_overrides__remat=True sets config.model_overrides.remat)."""
  copy = config.copy_and_resolve_references()
  with copy.unlocked():
    for key, value in changes.items():
      *parents, leaf = key.split('__')
      node = copy
      for parent in parents:
        node = node[parent]
      node[leaf] = value
  return copy


def options(config: ml_collections.ConfigDict, *, devices: int, limit: int,
            base: memory.Compile, half: memory.Compile | None,
            compile_fn: Callable[[ml_collections.ConfigDict], memory.Compile],
            has_remat: bool) -> list[Option]:
  """The measured options for a step of `base.memory.total` bytes over `limit`."""
  per_device = config.batch_size // devices
  slope = _per_example(base, half, per_device)
  fixed = base.memory.total - slope * per_device

  def first_fitting(candidates, make):  # the first that measures under the limit.
    option = None
    for candidate in candidates:
      option = make(candidate)
      if _fits(option, limit):
        break
    return [option] if option else []

  found = first_fitting(  # a predicted fit that measures over: halve (at most twice).
      _halvings(_largest_fitting_batch(fixed, slope, limit, per_device), tries=2),
      lambda b: _measure(changed(config, batch_size=b * devices), compile_fn,
                         f'--config.batch_size={b * devices}',
                         f'{b} per device instead of {per_device}: another recipe (lr '
                         'and schedule were set for the original batch)'))
  found += first_fitting(
      _doublings(_accum_steps(fixed, slope, limit, per_device, config.accum_steps),
                 per_device, tries=3),
      lambda k: _measure(changed(config, accum_steps=k), compile_fn,
                         f'--config.accum_steps={k}',
                         f'{per_device // k} per device per micro-batch, same global '
                         'batch, the same update up to rounding'))
  if has_remat and not config.model_overrides.get('remat'):
    found.append(_measure(
        changed(config, model_overrides__remat=True,
                model_overrides__remat_policy=REMAT_POLICY), compile_fn,
        f'--config.model_overrides.remat=True (policy {REMAT_POLICY!r})',
        'activations recomputed in the backward pass (about 1/3 more FLOPs); XLA:CPU '
        'does not free them, so this total is an upper bound '
        '(vit_jax/planning/advice.py)'))
  if devices > 1 and not config.fsdp:
    found.append(_measure(changed(config, fsdp=True), compile_fn, '--config.fsdp=True',
                          f'parameters and optimiser state split over {devices} devices'))
  return found


def _fits(option: Option, limit: int) -> bool:
  return option.total is not None and option.total <= limit


def _halvings(start: int | None, tries: int) -> list[int]:
  return [start // 2**i for i in range(tries) if start and start // 2**i >= 1]


def _doublings(start: int | None, per_device: int, tries: int) -> list[int]:
  return [start * 2**i for i in range(tries)
          if start and per_device % (start * 2**i) == 0]


def _per_example(base: memory.Compile, half: memory.Compile | None,
                 per_device: int) -> float:
  """Bytes per device one more example costs, from the b and b/2 compiles."""
  if half is None or per_device < 2:
    return base.memory.temp / max(per_device, 1)  # all temp as batch-proportional.
  return (base.memory.total - half.memory.total) / (per_device - per_device // 2)


def _largest_fitting_batch(fixed: float, slope: float, limit: int,
                           per_device: int) -> int | None:
  if slope <= 0 or limit <= fixed:
    return None
  fit = min(per_device - 1, int((limit - fixed) // slope))
  return 2 ** int(math.log2(fit)) if fit >= 1 else None


def _accum_steps(fixed: float, slope: float, limit: int, per_device: int,
                 current: int) -> int | None:
  """The fewest micro-batches (a divisor of the per-device batch) predicted to fit."""
  for steps in range(max(2, 2 * current), per_device + 1):
    # The activations follow the micro-batch, per_device / steps (now / current).
    if per_device % steps == 0 and fixed + slope * per_device * current / steps <= limit:
      return steps
  return None


def _measure(config, compile_fn, flags: str, what: str) -> Option:
  try:
    compiled = compile_fn(config)
    return Option(flags=flags, what=what, total=compiled.memory.total,
                  saved_activations=compiled.saved_activations)
  except Exception as error:  # pylint: disable=broad-except  (reported, not raised)
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return Option(flags=flags, what=what, total=None, error=first)

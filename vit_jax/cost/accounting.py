"""Training-run compute accounting: core-hours, TPU-core-days, achieved FLOP/s, MFU.

  core_seconds   = sum over train segments of (devices x cores_per_device x seconds);
                   compile time, eval time and checkpoint waits are excluded.
  core_days      = core_seconds / 86400, also per device kind: core_days/<kind>.
  flops          = steps x flops_per_step (XLA cost analysis of the compiled step).
  achieved FLOP/s = flops / train_seconds;  MFU = achieved / (peak per device x devices).
  TPUv3-core-day equivalent = flops / (TPU_V3_CORE_PEAK x MFU) / 86400: the TPUv3 core
                   days the same work needs at the utilisation this run achieved.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Callable, Iterator

import jax

from vit_jax.cost.devices import TPU_V3_CORE_PEAK

SECONDS_PER_DAY = 86_400.0

@dataclasses.dataclass
class CostTotals:
  """Accumulators saved in every checkpoint, so totals survive restarts."""
  train_seconds: float = 0.0  # wall time of training segments (no compile / eval).
  steps: int = 0  # optimiser updates timed.
  flops: float = 0.0  # executed FLOPs (global).
  peak_flop_seconds: float = 0.0  # sum of peak FLOP/s x seconds (MFU denominator).
  core_seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # per kind.
  device_seconds: dict[str, float] = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, data: dict) -> 'CostTotals':
    return cls(**data)


def add_segment(totals: CostTotals, *, seconds: float, steps: int, flops_per_step: float,
                kinds: dict[str, tuple[int, float]], peak_total: float | None) -> CostTotals:
  """Adds one timed training segment (`steps` updates in `seconds` of wall time)."""
  core_seconds, device_seconds = dict(totals.core_seconds), dict(totals.device_seconds)
  for kind, (count, cores) in kinds.items():
    core_seconds[kind] = core_seconds.get(kind, 0.0) + count * cores * seconds
    device_seconds[kind] = device_seconds.get(kind, 0.0) + count * seconds
  return CostTotals(
      train_seconds=totals.train_seconds + seconds, steps=totals.steps + steps,
      flops=totals.flops + steps * flops_per_step,
      peak_flop_seconds=totals.peak_flop_seconds + (peak_total or 0.0) * seconds,
      core_seconds=core_seconds, device_seconds=device_seconds)


def summarize(totals: CostTotals) -> dict[str, float | None]:
  """The numbers a run reports (see the formulas at the top of this section)."""
  core_seconds = sum(totals.core_seconds.values())
  achieved = totals.flops / totals.train_seconds if totals.train_seconds else None
  mfu = (totals.flops / totals.peak_flop_seconds) if totals.peak_flop_seconds else None
  summary = {
      'train_seconds': totals.train_seconds,
      'steps_timed': totals.steps,
      'core_hours': core_seconds / 3600.0,
      'core_days': core_seconds / SECONDS_PER_DAY,
      'total_flops': totals.flops,
      'achieved_flops_per_second': achieved,
      'mfu': mfu,
      'tpu_v3_core_days_equivalent': (
          totals.flops / (TPU_V3_CORE_PEAK * mfu) / SECONDS_PER_DAY if mfu else None),
  }
  for kind, seconds in sorted(totals.core_seconds.items()):
    summary[f'core_days/{kind}'] = seconds / SECONDS_PER_DAY
  return summary


class CostMeter:
  """A run's cost totals and the timer of its current training segment.

  Only training is timed: the loop pauses the meter around evaluation and checkpoint
  waits and resumes it after. `pause` blocks until `state` is computed, so a segment
  ends when its last update has run, not when it was dispatched.
  """

  def __init__(self, totals: CostTotals | None = None, *, flops_per_step: float,
               kinds: dict[str, tuple[int, float]], peak_total: float | None,
               clock: Callable[[], float] = time.perf_counter):
    self._totals = totals or CostTotals()
    self._rates = dict(flops_per_step=flops_per_step, kinds=kinds, peak_total=peak_total)
    self._clock = clock  # seconds; the tests give a fake one.
    self._start, self._steps = clock(), 0

  @property
  def totals(self) -> CostTotals:
    """Everything up to the last pause."""
    return self._totals

  def count_step(self) -> None:
    """One more update dispatched in this segment."""
    self._steps += 1

  def pause(self, state: Any) -> CostTotals:
    """Adds the segment since the last pause or resume to the totals (returned)."""
    jax.block_until_ready(state)
    now = self._clock()
    self._totals = add_segment(self._totals, seconds=now - self._start, steps=self._steps,
                               **self._rates)
    self._start, self._steps = now, 0
    return self._totals

  def resume(self) -> None:
    """Starts a new segment now (what ran since the last pause is not counted)."""
    self._start, self._steps = self._clock(), 0

  @contextlib.contextmanager
  def paused(self, state: Any) -> Iterator[CostTotals]:
    """Pauses for the block (evaluation, a checkpoint save), then resumes."""
    yield self.pause(state)
    self.resume()

  def to_json(self) -> dict:
    """The totals as a checkpoint's meta stores them."""
    return self._totals.to_json()

  @classmethod
  def from_json(cls, data: dict, **rates) -> 'CostMeter':
    """A meter continuing from `data` (to_json's); `rates`: as for the constructor."""
    return cls(CostTotals.from_json(data), **rates)

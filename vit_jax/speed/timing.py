"""Warm-up and interleaved timing of prepared steps (benchmark.Prepared)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

import jax

from vit_jax.cost import peaks
from vit_jax.speed import options

if TYPE_CHECKING:
  from vit_jax import benchmark

try:
  import resource  # POSIX only: page faults per step.
except ImportError:  # Windows.
  resource = None

COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'
MAX_EXTRA_WARMUP = 10  # calls after --warmup that may still compile before we give up.


class CompileCounter:
  """Counts XLA backend compilations (jax.monitoring events) while active."""

  def __init__(self):
    self.count = 0

  def _listener(self, event: str, duration: float, **kwargs) -> None:
    del duration, kwargs
    if event == COMPILE_EVENT:
      self.count += 1

  def __enter__(self):
    jax.monitoring.register_event_duration_secs_listener(self._listener)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._listener)


def warm_up(prepared: benchmark.Prepared, min_calls: int) -> int:
  """Calls the step until a call compiles nothing (at least `min_calls` calls)."""
  for calls in range(1, min_calls + MAX_EXTRA_WARMUP + 1):
    with CompileCounter() as counter:
      jax.block_until_ready(prepared.call())
    if calls >= min_calls and counter.count == 0:
      return calls
  raise RuntimeError(
      f'{options.describe(prepared.opts)} still compiled on warm-up call {calls}; the step is '
      'not stable (run with JAX_LOG_COMPILES=1 to see what recompiles)')


def time_call(prepared: benchmark.Prepared) -> float:
  """Seconds of one step; also notes the process's minor page faults during it
  (vit_jax/platform/host_malloc.py: XLA:CPU's temp buffer faulted in afresh every step)."""
  before = _minor_page_faults()
  start = time.perf_counter()
  jax.block_until_ready(prepared.call())
  seconds = time.perf_counter() - start
  if resource is not None:  # Windows: time only.
    prepared.page_faults.append(_minor_page_faults() - before)
  return seconds


def _minor_page_faults() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource else 0


def interleaved_times(timers: list[Callable[[], float]], rounds: int,
                      on_cpu: bool) -> tuple[list[list[float]], dict[str, float]]:
  """Per timer (one step -> seconds), `rounds` times, one of each per round; plus the
  best CPU matmul peaks seen over the rounds (FLOP/s; empty off CPU)."""
  times = [[] for _ in timers]
  best: dict[str, float] = {}
  for _ in range(rounds):
    for i, timer in enumerate(timers):
      times[i].append(timer())
    if on_cpu:
      for dtype in ('float32', 'bf16_matmul'):
        peak = peaks.measure_cpu_peak_flops(dtype, repeats=1)
        best[dtype] = max(best.get(dtype, 0.0), peak)
  return times, best

"""The OOM preflight: the compiled train step against the device's memory, before step 1.

On a GPU or TPU the limit is what the runtime lets XLA allocate (cost/devices.py:
usable_memory_bytes); config.memory_limit_gib sets it by hand (and makes a CPU run
check too: CPU devices share the host's RAM and are not checked otherwise). A step that
needs more stops the run with the planner's measured options (planning/advice.py,
compiled on this run's own mesh) instead of an out-of-memory error at the first step.
Nothing is written or removed: a resumed workdir keeps its checkpoints.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import jax
import ml_collections
from absl import logging

from vit_jax import build
from vit_jax.checkpoints import errors
from vit_jax.cost import devices as device_facts
from vit_jax.planning import advice
from vit_jax.planning import memory
from vit_jax.planning import printout
from vit_jax.planning import topology

# What XLA's out-of-memory errors say: TPU compiles ("RESOURCE_EXHAUSTED: ... Ran out of
# memory in memory space hbm"), GPU allocations ("RESOURCE_EXHAUSTED: Out of memory
# while trying to allocate").
OOM_MARKERS = ('RESOURCE_EXHAUSTED', 'out of memory')

GIB = 2**30


def memory_limit(config: ml_collections.ConfigDict, mesh) -> int | None:
  """Bytes per device the step may use; None: not checked (CPU without a limit set)."""
  if config.memory_limit_gib > 0:
    return int(config.memory_limit_gib * GIB)
  limits = [device_facts.usable_memory_bytes(d) for d in mesh.devices.flat
            if d.process_index == jax.process_index()]  # only local devices report.
  known = [limit for limit in limits if limit is not None]
  return min(known) if known else None


def is_out_of_memory(error: BaseException) -> bool:
  text = str(error)
  return any(marker.lower() in text.lower() for marker in OOM_MARKERS)


def plan_command() -> str:
  name = topology.name_of(jax.devices())
  return ('python -m vit_jax.plan --config=<this config> --topology='
          f'{name or "<topology>"} (on any machine, no accelerator needed)')


@contextlib.contextmanager
def out_of_memory_stops(workdir: str) -> Iterator[None]:
  """XLA running out of device memory inside the block (a TPU compile that cannot fit)
  becomes errors.OutOfMemory: one line with the way on, not XLA's trace."""
  try:
    yield
  except errors.RunStopped:
    raise
  except Exception as error:  # pylint: disable=broad-except  (only OOMs are caught)
    if not is_out_of_memory(error):
      raise
    first = (str(error).strip().splitlines() or [''])[0][:300]
    raise errors.OutOfMemory(
        f'XLA ran out of device memory building the run ({first}). Nothing was trained; '
        f'{workdir} keeps what it had. The planner measures what would fit: '
        f'{plan_command()}') from None


def check_fits(run: build.Run) -> None:
  """Raises errors.OutOfMemory when run's compiled step needs more than the limit."""
  setup = run.setup
  limit = memory_limit(setup.config, setup.mesh)
  if limit is None:
    return
  needed = memory.breakdown(setup, run.compiled.train_step)
  logging.info('Memory preflight: the train step needs %s per device of %s.',
               printout.size(needed.total), printout.size(limit))
  if needed.total <= limit:
    return
  raise errors.OutOfMemory(message(run, needed, limit))


def message(run: build.Run, needed: memory.Breakdown, limit: int) -> str:
  """What does not fit, by how much, and the measured options."""
  setup = run.setup
  config, devices = setup.config, setup.mesh.size
  base = memory.Compile(config=config, memory=needed,
                        flops_per_step=run.compiled.flops_per_step,
                        flops_source=run.compiled.flops_source,
                        compile_seconds=run.compiled.compile_seconds,
                        saved_activations=None)

  def compile_fn(variant):
    return memory.compile_step(variant, setup.num_classes, setup.mesh,
                               target_cpu=setup.mesh.devices.flat[0].platform == 'cpu')

  per_device = config.batch_size // devices
  half = None
  if per_device % 2 == 0 and (per_device // 2) % config.accum_steps == 0:
    half = compile_fn(advice.changed(config, batch_size=config.batch_size // 2))
  found = advice.options(config, devices=devices, limit=limit, base=base, half=half,
                         compile_fn=compile_fn,
                         has_remat=hasattr(setup.model, 'remat'))
  lines = [f'{printout.size(o.total)} per device with {o.flags} '
           f'({"fits" if o.total is not None and o.total <= limit else "still over"}: '
           f'{o.what})' if o.total is not None else f'{o.flags}: compile failed ({o.error})'
           for o in found]
  source = (f'config.memory_limit_gib={config.memory_limit_gib}'
            if config.memory_limit_gib > 0 else 'what the runtime lets XLA allocate')
  return (f'the train step needs {printout.size(needed.total)} per device '
          f'(parameters {printout.size(needed.parameters)}, optimiser state '
          f'{printout.size(needed.optimizer)}, temporaries {printout.size(needed.temp)} at '
          f'{per_device} examples per device) and a device has {printout.size(limit)} '
          f'({source}): it would run out of memory at the first step. Nothing was '
          f'trained; {run.workdir} keeps what it had. Measured on this mesh: ' +
          '; '.join(lines or ['no option applies']) + f'. To plan without running: '
          f'{plan_command()}')

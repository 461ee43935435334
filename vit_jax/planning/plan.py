"""A recipe on a topology, before launch: memory per device, FLOPs, time, core-days.

The step is the training loop's own (build.setup + build.compile_steps), compiled on as
many simulated CPU devices as the topology has, so every per-device shape (batch rows,
FSDP shards) is the one the real mesh implies; nothing is allocated. The memory is
XLA:CPU's buffer assignment for that program, which an accelerator's compiler does not
reproduce byte for byte (it fuses and lays out differently).
"""
from __future__ import annotations

import dataclasses

import jax
import ml_collections

from vit_jax import run_config
from vit_jax import sharding
from vit_jax.cost import default_mfu
from vit_jax.cost import forecast
from vit_jax.cost import peaks
from vit_jax.planning import advice
from vit_jax.planning import memory
from vit_jax.planning import topology as topology_lib


@dataclasses.dataclass(frozen=True)
class Forecast:
  mfu: float
  mfu_source: str
  peak_per_device: float  # FLOP/s for the config's matmul dtype.
  flops_per_step: float
  flops_per_example: float
  step_seconds: float
  total_steps: int
  wall_seconds: float
  core_days: float  # of the topology's device, counted as the ViT paper counts cores.
  tpu_v3_core_days: float
  per_host_batch: int
  per_host_images_per_second: float


@dataclasses.dataclass(frozen=True)
class Plan:
  topology: topology_lib.Topology
  num_classes: int
  per_device_batch: int
  base: memory.Compile
  activations: int | None  # bytes per device; None: not split (batch 1 per device).
  options: tuple[advice.Option, ...]  # measured alternatives; empty when it fits.
  forecast: Forecast

  @property
  def fits(self) -> bool:
    return self.base.memory.total <= self.topology.usable_memory


def for_target(config: ml_collections.ConfigDict,
               topology: topology_lib.Topology) -> ml_collections.ConfigDict:
  """The config as the target creates its model: on GPU / TPU attention runs as one
  batched kernel (models/attention_chunks.py), which XLA:CPU would otherwise chunk."""
  if topology.platform == 'cpu' or 'attention_chunks' in config.model_overrides:
    return config
  return advice.changed(config, model_overrides__attention_chunks=1)


def make_plan(config: ml_collections.ConfigDict, topology: topology_lib.Topology, *,
              num_classes: int, mfu: float | None = None,
              with_options: bool = True) -> Plan:
  """Checks the batch and --mfu, compiles the step (and at half the batch), and, when
  it does not fit, the options of planning/advice.py."""
  sharding.check_batch_sizes(config, data_shards=topology.devices,
                             process_count=topology.hosts)
  if mfu is not None:
    forecast.check_mfu(mfu)
  config = for_target(config, topology)
  mesh = simulated_mesh(topology.devices)

  def compile_fn(variant):
    return memory.compile_step(variant, num_classes, mesh,
                               target_cpu=topology.platform == 'cpu')

  per_device = config.batch_size // topology.devices
  base = compile_fn(config)
  half = None
  if per_device % 2 == 0 and (per_device // 2) % config.accum_steps == 0:
    half = compile_fn(advice.changed(config, batch_size=config.batch_size // 2))
  options = ()
  if base.memory.total > topology.usable_memory and with_options:
    model = run_config.create_model(config, num_classes)
    options = tuple(advice.options(
        config, devices=topology.devices, limit=topology.usable_memory, base=base,
        half=half, compile_fn=compile_fn, has_remat=hasattr(model, 'remat')))
  return Plan(topology=topology, num_classes=num_classes, per_device_batch=per_device,
              base=base,
              activations=memory.activations(base.memory, half.memory, per_device)
              if half else None,
              options=options,
              forecast=make_forecast(config, topology, base, half, mfu))


def simulated_mesh(count: int) -> jax.sharding.Mesh:
  cpus = jax.devices('cpu')
  if len(cpus) < count:
    raise RuntimeError(
        f'the planner needs {count} CPU devices and this process has {len(cpus)}: run '
        'it as python -m vit_jax.plan, which sets them before JAX starts')
  return sharding.make_mesh(cpus[:count])


def make_forecast(config, topology, base: memory.Compile, half: memory.Compile | None,
                  mfu: float | None) -> Forecast:
  """Time and cost at `mfu` (default: cost/default_mfu.py for the device)."""
  figure = (default_mfu.MfuFigure(mfu, '--mfu') if mfu is not None
            else default_mfu.default_mfu(topology.device_name))
  per_example = base.flops_per_step / config.batch_size
  if half is not None:  # the per-step constant (optimiser update) left out.
    per_example = (base.flops_per_step - half.flops_per_step) / (config.batch_size // 2)
  peak = topology.peak(bf16=peaks.uses_bf16_matmuls(config.dtype))
  step = forecast.step_seconds(base.flops_per_step, topology.devices, peak, figure.mfu)
  wall = step * config.total_steps
  total_flops = base.flops_per_step * config.total_steps
  per_host_batch = config.batch_size // topology.hosts
  return Forecast(
      mfu=figure.mfu, mfu_source=figure.source, peak_per_device=peak,
      flops_per_step=base.flops_per_step, flops_per_example=per_example,
      step_seconds=step, total_steps=config.total_steps, wall_seconds=wall,
      core_days=wall * topology.devices * topology.cores_per_device
      / forecast.SECONDS_PER_DAY,
      tpu_v3_core_days=forecast.tpu_v3_core_days(total_flops, figure.mfu),
      per_host_batch=per_host_batch, per_host_images_per_second=per_host_batch / step)

"""Per-device memory of a compiled train step, split the way a user reasons about it.

XLA's memory analysis of the compiled step gives, per device: arguments (the state and
the batch), outputs, the outputs aliased to donated arguments (the updated state lives
in the old state's buffers) and the temp buffer. The peak is
  total = arguments + outputs - aliased + temp.
The arguments are split exactly from the state's shapes and shardings (each leaf's
per-device shard, NamedSharding.shard_shape): parameters, optimiser state, EMA, batch,
the rest (step counter, RNG key). The temp buffer holds what the backward pass needs
from the forward pass (activations), the gradients and the compiler's scratch; its
batch-proportional part is measured by compiling the step again at half the batch per
device: activations = (temp(b) - temp(b/2)) / (b/2) x b.

A second, compiler-independent figure: what JAX's autodiff saves from the forward for
the backward (its residuals, in the model's dtypes, before any XLA fusion), for one
device's micro-batch. Measured on ViT-S/16, 16 images (experiments/planner/):
  - XLA:CPU computes a bfloat16 model's activations in float32: temp 1968 MiB for
    bfloat16, 1931 MiB for float32, while JAX saves 1483 MiB and 2373 MiB;
  - XLA:CPU's schedule does not free rematerialised activations: temp 1943 MiB with
    remat 'nothing_saveable', while JAX saves 48 MiB.
So for bfloat16 models and for remat the CPU compile overstates what XLA keeps on an
accelerator, which computes bfloat16 natively; by how much was not measured (no
accelerator was lent).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vit_jax import build
from vit_jax import sharding


@dataclasses.dataclass(frozen=True)
class Compile:
  """One compiled train step of the planner, and the numbers read off it."""
  config: ml_collections.ConfigDict
  memory: 'Breakdown'
  flops_per_step: float  # global, as the training loop logs it.
  flops_source: str
  compile_seconds: float
  saved_activations: int | None  # JAX's residuals per device (module docstring).


@dataclasses.dataclass(frozen=True)
class Breakdown:
  """Bytes per device."""
  parameters: int
  optimizer: int
  ema: int
  batch: int
  other_arguments: int  # step counter, RNG key.
  temp: int  # XLA's temp buffer: activations + gradients + scratch.
  outputs_not_aliased: int  # outputs beyond the donated state (the step's metrics).
  total: int  # arguments + outputs - aliased + temp: XLA's peak for the step.
  argument_bytes: int  # what XLA reported for the arguments (the split sums to it).

  @property
  def state(self) -> int:
    return self.parameters + self.optimizer + self.ema


def shard_bytes(tree: Any, shardings: Any) -> int:
  """Bytes one device holds of `tree` (ShapeDtypeStructs) under `shardings`."""
  total = 0
  for leaf, leaf_sharding in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
    shape = leaf_sharding.shard_shape(tuple(leaf.shape))
    total += math.prod(shape) * np.dtype(leaf.dtype).itemsize
  return total


def abstract_state(setup: build.Setup) -> Any:
  """The state as ShapeDtypeStructs carrying their shardings: compiled, never allocated."""
  return jax.tree.map(lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                                           sharding=s),
                      setup.abstract_state, setup.state_sharding)


def compile_step(config: ml_collections.ConfigDict, num_classes: int,
                 mesh: jax.sharding.Mesh, *, target_cpu: bool) -> Compile:
  """The training loop's own step (build.setup + build.compile_steps) for `config` on
  `mesh`, with its memory and FLOPs."""
  setup = build.setup(config, num_classes, mesh)
  compiled = build.compile_steps(setup, abstract_state(setup), check_cpu_dots=target_cpu)
  micro_batch = config.batch_size // mesh.size // config.accum_steps
  return Compile(config=config, memory=breakdown(setup, compiled.train_step),
                 flops_per_step=compiled.flops_per_step,
                 flops_source=compiled.flops_source,
                 compile_seconds=compiled.compile_seconds,
                 saved_activations=saved_activations(setup, micro_batch))


def breakdown(setup: build.Setup, train_step: jax.stages.Compiled) -> Breakdown:
  """`train_step`'s memory analysis with its arguments split by what they hold."""
  analysis = train_step.memory_analysis()
  state, shardings = setup.abstract_state, setup.state_sharding
  parts = {name: shard_bytes(getattr(state, name), getattr(shardings, name))
           for name in ('params', 'opt_state', 'ema_params', 'step', 'rng')}
  batch = batch_bytes_per_device(setup)
  arguments = int(analysis.argument_size_in_bytes)
  outputs = int(analysis.output_size_in_bytes)
  aliased = int(analysis.alias_size_in_bytes)
  temp = int(analysis.temp_size_in_bytes)
  return Breakdown(parameters=parts['params'], optimizer=parts['opt_state'],
                   ema=parts['ema_params'], batch=batch,
                   other_arguments=parts['step'] + parts['rng'], temp=temp,
                   outputs_not_aliased=outputs - aliased,
                   total=arguments + outputs - aliased + temp, argument_bytes=arguments)


def batch_bytes_per_device(setup: build.Setup) -> int:
  """image (float32) + one-hot label (float32) + weight (float32) rows of one device."""
  h, w = setup.image_size
  rows = setup.config.batch_size // sharding.data_shards(setup.batch_sharding)
  per_row = (h * w * 3 + setup.num_classes + 1) * jnp.dtype(jnp.float32).itemsize
  return rows * per_row


def activations(full: Breakdown, half: Breakdown, per_device_batch: int) -> int:
  """The batch-proportional part of the temp buffer at `per_device_batch`, from the
  compiles at b and b/2 (module docstring); never negative, never above temp."""
  per_example = (full.temp - half.temp) / (per_device_batch - per_device_batch // 2)
  return int(min(full.temp, max(0.0, per_example * per_device_batch)))


def saved_activations(setup: build.Setup, micro_batch: int) -> int | None:
  """Bytes JAX's autodiff keeps from the train-mode forward of `micro_batch` images for
  the backward, inputs and parameters excluded (traced, nothing compiled or allocated).

  jax._src.ad_checkpoint.saved_residuals is private: the public API only prints the list
  (jax.ad_checkpoint.print_saved_residuals). None if a JAX release removes it.
  """
  try:
    from jax._src import ad_checkpoint  # pylint: disable=import-outside-toplevel
    residuals_of = ad_checkpoint.saved_residuals
  except (ImportError, AttributeError):
    return None
  h, w = setup.image_size
  images = jax.ShapeDtypeStruct((micro_batch, h, w, 3), jnp.float32)

  def forward(params, x):
    logits = setup.model.apply({'params': params}, x, train=True,
                               rngs={'dropout': jax.random.PRNGKey(0)})
    return jnp.sum(logits.astype(jnp.float32))

  residuals = residuals_of(forward, setup.abstract_state.params, images)
  return sum(math.prod(aval.shape) * np.dtype(aval.dtype).itemsize
             for aval, why in residuals if not why.startswith('from the argument'))

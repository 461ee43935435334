"""Global batches: each host's local batches made into jax.Arrays sharded over the mesh,
with a few kept in flight to the devices."""
from __future__ import annotations

import collections
import threading
from typing import Iterator

import jax

from vit_jax import sharding as sharding_lib
from vit_jax.data import pipeline


def _to_global(batch: dict, sharding, global_batch: int) -> dict:
  return {k: jax.make_array_from_process_local_data(
              sharding, v, (global_batch,) + v.shape[1:]) for k, v in batch.items()}


def _prefetch_to_device(iterator: Iterator[dict], size: int) -> Iterator[dict]:
  # Hand-written because flax.jax_utils.prefetch_to_device targets pmap's leading device
  # axis. make_array_from_process_local_data starts the host->device copies
  # asynchronously, so holding `size` global batches keeps them in flight.
  queue = collections.deque()
  for item in iterator:
    queue.append(item)
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def train_iterator(config, sharding: jax.sharding.NamedSharding, *,
                   start_step: int = 0) -> Iterator[dict]:
  """Infinite global train batches from `start_step` on (the checkpointed step)."""
  sharding_lib.per_host_batch('batch_size', config.batch_size,
                              data_shards=sharding_lib.data_shards(sharding),
                              process_count=jax.process_count())
  ds = pipeline.host_train_dataset(config, start_step=start_step)
  batches = (_to_global(b, sharding, config.batch_size) for b in ds.as_numpy_iterator())
  return _prefetch_to_device(batches, config.data.device_prefetch)


def eval_iterator(config, sharding: jax.sharding.NamedSharding) -> Iterator[dict]:
  """One pass over the eval split; every example once, padding rows have mask 0."""
  sharding_lib.per_host_batch('eval_batch_size', config.eval_batch_size,
                              data_shards=sharding_lib.data_shards(sharding),
                              process_count=jax.process_count())
  ds = pipeline.host_eval_dataset(config)
  batches = (_to_global(b, sharding, config.eval_batch_size) for b in ds.as_numpy_iterator())
  return _prefetch_to_device(batches, config.data.device_prefetch)


def close_in_background(iterator: Iterator[dict]) -> None:
  """Closes a finished run's train iterator on a daemon thread, so the run goes on.

  Deleting the tf.data iterator behind it waits for the pipeline's threads: at the end of
  the demo's phases that took 15-40 s in about half the runs (2-core AMD EPYC, measured
  2026-12-02 between a run's last evaluation and its cost line), time the run then spent
  doing nothing."""
  threading.Thread(target=iterator.close, name='close_train_iterator', daemon=True).start()

"""Per-host tf.data pipelines: which stream a run reads, and this host's batches of it.

The training loop uses three functions, of three modules:

  info = preflight.preflight(config)                 # before any model is built
  for batch in global_batches.train_iterator(config, sharding, start_step=step): ...
  for batch in global_batches.eval_iterator(config, sharding): ...   # one exact pass

Two streams (`stream_mode` decides, once, for every caller):

  global    global_stream.py: global batch s is a pure function of (config.seed, s),
            whatever the number of hosts; each host reads its rows by index. Folders
            and tfds datasets in ArrayRecord format (records.py).
  per_host  per_host.py: each host shuffles its own share; not host-count invariant.
            tfds datasets stored only as TFRecord, or config.data.stream='per_host'.

Train batches: `image` float32 (local, H, W, 3) in [-1, 1], `label` float32 (local,
classes) (one-hot with config.label_smoothing, or multi-hot), `weight` float32 (local,)
(0 for a record that could not be read). Eval batches: `image`, `label` (no smoothing),
`mask` (0 = padding or unreadable) and `unreadable` (1 = a real example not read).

`host_train_dataset` / `host_eval_dataset` take the process index and count as
arguments, so tests can play several hosts in one process.
"""
from __future__ import annotations

import tensorflow as tf

from vit_jax import sharding
from vit_jax.data import DatasetError
from vit_jax.data import global_stream
from vit_jax.data import per_host
from vit_jax.data import records
from vit_jax.data import sources

STREAMS = ('auto', 'global', 'per_host')
GLOBAL, PER_HOST = 'global', 'per_host'


def stream_mode(config) -> tuple[str, str]:
  """(GLOBAL or PER_HOST, why): config.data.stream 'auto' takes the global stream
  wherever the train split has random access."""
  wanted = config.data.get('stream', 'auto')
  if wanted not in STREAMS:
    raise DatasetError(f'config.data.stream={wanted!r} is not one of {STREAMS}; auto '
                       '(the default) reads the global stream wherever it can')
  if wanted == PER_HOST:
    missing = records.sequential_missing(config)
    if missing:
      raise DatasetError(f"config.data.stream='per_host', but {missing}")
    return PER_HOST, "config.data.stream='per_host'"
  missing = records.random_access_missing(config)
  if missing is None:
    return GLOBAL, 'random access to the split'
  if wanted == GLOBAL:
    raise DatasetError(f"config.data.stream='global', but {missing}; or set "
                       "config.data.stream='auto' to fall back to the per-host stream")
  return PER_HOST, missing


def description(config, num_train_examples: int, process_count: int) -> dict:
  """What the stream depends on; stored with every checkpoint and compared on resume."""
  mode, _ = stream_mode(config)
  described = {'mode': mode, 'dataset': config.data.dataset,
               'train_split': config.data.train_split, 'seed': config.seed,
               'batch_size': config.batch_size, 'num_train_examples': num_train_examples}
  if mode == PER_HOST:  # its stream also depends on the number of hosts.
    described['process_count'] = process_count
  return described


def check_resume(saved: dict | None, current: dict, checkpoint: str) -> None:
  """Refuses a resume whose stream would not continue the checkpointed one (before any
  compile; nothing in the workdir is touched). `saved` None: a checkpoint written before
  streams were described, which cannot be checked."""
  if saved is None:
    return
  changed = {k: (saved.get(k), current.get(k)) for k in sorted(set(saved) | set(current))
             if saved.get(k) != current.get(k)}
  if not changed:
    return
  what = '; '.join(f'{k}: {old!r} -> {new!r}' for k, (old, new) in changed.items())
  fixes = []
  if 'num_train_examples' in changed:
    fixes.append('the train split changed size since the checkpoint: restore the data '
                 'the run started with')
  if 'process_count' in changed:
    fixes.append(f'the per-host stream depends on the number of processes: resume on '
                 f'{saved["process_count"]}, or give the dataset random access (see the '
                 'start table) before starting a run')
  fixes.append('to train on the new data or settings, start a new workdir with '
               'config.init=<this workdir> to fine-tune from its checkpoint')
  raise DatasetError(f'cannot resume {checkpoint}: its input stream was {saved}, and '
                     f'this config changes {what}; ' + '; '.join(fixes))


def summary(config) -> str:
  """The start table's row: which stream, and what a resume needs."""
  mode, why = stream_mode(config)
  if mode == GLOBAL:
    return ('global: host-count invariant; the step is all the resume state, so a '
            'checkpoint resumes on any number of processes that divides the batch')
  return (f'per-host: NOT host-count invariant ({why}); resume on the same number of '
          'processes')


def options(data) -> tf.data.Options:
  result = tf.data.Options()
  result.deterministic = True  # parallel maps keep input order: reproducible batches
  # No private threadpool: with one (as many threads as num_parallel_calls, or twice
  # that), deleting the train iterator at the end of a run waited 19 s for it (demo
  # downstream phase on 2 CPU cores; 5 s for configs/testing.py on 8 CPU devices); on
  # tf.data's shared pool 0.0-0.4 s in the same runs (measured 2026-12-02; whole demos
  # still saw some long waits, which global_batches.close_in_background takes off the
  # run's path). The threads that work at once stay bounded by each map's
  # num_parallel_calls, as on a small host they must be.
  result.threading.max_intra_op_parallelism = 1
  return result


def _local(config, field: str, process_count: int) -> int:
  return sharding.per_host_batch(field, config[field], data_shards=process_count,
                                 process_count=process_count)


def host_train_dataset(config, *, start_step: int = 0, process_index: int | None = None,
                       process_count: int | None = None) -> tf.data.Dataset:
  """This host's infinite stream of local train batches, from global step `start_step`."""
  process_index, process_count = sources.process(process_index, process_count)
  if stream_mode(config)[0] == GLOBAL:
    num_classes, _ = sources.classes(config)
    ds = global_stream.train_dataset(config, process_index,
                                     _local(config, 'batch_size', process_count),
                                     num_classes, start_step)
  else:
    ds = per_host.host_train_dataset(config, start_step=start_step,
                                     process_index=process_index,
                                     process_count=process_count)
  return ds.prefetch(config.data.prefetch).with_options(options(config.data))


def num_eval_batches(config, *, process_count: int | None = None) -> int:
  """Batches every host runs for one exact pass of the eval split."""
  _, process_count = sources.process(None, process_count)
  if stream_mode(config)[0] == GLOBAL:
    size = sum(sources.split_sizes(config, config.data.eval_split, 1))
    return global_stream.num_eval_batches(size, config.eval_batch_size)
  return per_host.num_eval_batches(config, process_count=process_count)


def host_eval_dataset(config, *, process_index: int | None = None,
                      process_count: int | None = None) -> tf.data.Dataset:
  """This host's rows of one pass over the eval split, padded to the same number of
  batches on every host."""
  process_index, process_count = sources.process(process_index, process_count)
  if stream_mode(config)[0] == GLOBAL:
    num_classes, _ = sources.classes(config)
    ds = global_stream.eval_dataset(config, process_index,
                                    _local(config, 'eval_batch_size', process_count),
                                    num_classes)
  else:
    ds = per_host.host_eval_dataset(config, process_index=process_index,
                                    process_count=process_count)
  return ds.prefetch(config.data.prefetch).with_options(options(config.data))

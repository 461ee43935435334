"""Entry point: flags, multi-process start-up, dispatch to the training loop.

  python -m vit_jax.main --config=configs/<file>.py[:args] --workdir=DIR \\
      [--config.<field>=<value> ...]

The recipes are installed with the package: from any directory, a --config that is not
an existing file, `configs/<name>.py` or `<name>`, names the shipped recipe (rule in
vit_jax/recipes.py); an existing file, e.g. your own recipe, is loaded as it is.

How this process joins a run is decided by vit_jax/platform/startup.py and logged in one line
('Start-up: ...'). --coordinator_address=HOST:PORT --num_processes=N --process_id=I
(all three or none, on every process) always win. Otherwise a launcher that
jax.distributed.initialize() detects by itself (Open MPI's mpirun, Slurm's srun with
more than one task, Kubernetes) or a TPU VM (a TPU chip's PCI id, /dev/accel<N>, GKE's
TPU worker list) starts through JAX's detection: the same command on every worker, no
flags. Anything else (laptop, one GPU, a GPU or CPU VM with Google's gVNIC) is one
process. Restarting the same command resumes from the last complete checkpoint in DIR.
"""
from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging
from etils import epath

from vit_jax import recipes
from vit_jax.platform import log_filters
from vit_jax.platform import startup

_CONFIG = recipes.define_config_flag(
    'config', 'Training config: a file, or a shipped recipe from any directory '
    f'(configs/<name>.py or <name>; {", ".join(recipes.names())}), [:args].')
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Directory for checkpoints, TensorBoard events and cost summary.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'HOST:PORT of process 0, for multi-process runs.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process, 0..N-1.')
_CPU_DEVICES = flags.DEFINE_string(
    'cpu_devices', None, "CPU only: expose N CPU devices ('auto' = one per core) and "
    'train data-parallel over them; vit_jax/platform/cpu_devices.py says when it helps.')
_CPU_MALLOC = flags.DEFINE_bool(
    'cpu_malloc', False, 'CPU: restart with glibc malloc settings that keep XLA from '
    'page-faulting its temp buffer every step (vit_jax/platform/host_malloc.py).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  start_process()
  from vit_jax import train  # pylint: disable=import-outside-toplevel  (after start-up)
  run_or_stop(train.train_and_evaluate, _CONFIG.value, _WORKDIR.value)


def start_process() -> None:
  """Everything before the first device use: malloc, log filters, CPU devices, joining
  the run's processes (also vit_jax.finetune_sweep's start, which shares these flags)."""
  if _CPU_MALLOC.value:
    from vit_jax.platform import host_malloc  # pylint: disable=import-outside-toplevel
    host_malloc.reexec()  # returns only once the settings are in place.
    logging.info('glibc malloc settings: %s', host_malloc.describe())
  log_filters.install()
  if _CPU_DEVICES.value is not None:
    from vit_jax.platform import cpu_devices  # pylint: disable=import-outside-toplevel
    try:
      cpu_devices.configure(_CPU_DEVICES.value)  # before any backend exists.
    except ValueError as e:
      raise app.UsageError(str(e)) from None
  try:
    decision = startup.decide(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  startup.start(decision)  # before any device use.
  import jax  # pylint: disable=import-outside-toplevel
  logging.info('Process %d of %d, %d local / %d global devices.', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def run_or_stop(job, *args):
  """job(*args); a RunStopped fault (NaN loss, full disk, an incompatible or unreadable
  checkpoint) is logged as one 'Stopped: ...' line, no traceback, and exits 1."""
  from vit_jax.checkpoints import errors  # pylint: disable=import-outside-toplevel
  epath.Path(_WORKDIR.value).mkdir(parents=True, exist_ok=True)  # local or gs://
  try:
    return job(*args)
  except errors.RunStopped as error:  # the message is the whole story: no traceback.
    logging.error('Stopped: %s', error)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)

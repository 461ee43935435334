"""What stops a run early, and how: preemption (SIGTERM), a non-finite loss, and the
debug signals the resume tests send themselves (config.debug)."""
from __future__ import annotations

import os
import signal

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from vit_jax.checkpoints import training


class Preemption:
  """SIGTERM (what a TPU VM gets before preemption) -> checkpoint and a clean exit.

  One process: a Python signal handler sets a flag (the previous handler is restored on
  exit). Several processes: JAX's preemption sync manager (started by
  jax.distributed.initialize) catches the signal on any host and makes every host agree
  on the step at which to save.
  """

  def __init__(self):
    self.flag = False
    self.multi = jax.process_count() > 1
    self.previous_handler = None

  def __enter__(self):
    if not self.multi:
      self.previous_handler = signal.signal(signal.SIGTERM, self._handler)
    return self

  def __exit__(self, *exc):
    if self.previous_handler is not None:
      signal.signal(signal.SIGTERM, self.previous_handler)

  def _handler(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint after this step, then exiting.')
    self.flag = True

  def reached(self, step: int) -> bool:
    """Whether to save and stop after update `step` (the same answer on every host)."""
    if self.multi:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.flag


class NonFiniteLoss(FloatingPointError):
  pass


def check_finite(step: int, loss: float, manager: ocp.CheckpointManager,
                 workdir: str) -> None:
  """Stops the run when the loss of update `step` is NaN or infinite, naming the last
  good checkpoint (waited for, so it is complete) and what to change."""
  if np.isfinite(loss):
    return
  training.wait(manager)
  last = training.latest_step(manager)
  where = (f'{training.checkpoint_dir(workdir)}/{last}' if last is not None
           else 'none (no checkpoint was written yet)')
  raise NonFiniteLoss(
      f'loss is {loss} at step {step}; stopping. The last good checkpoint is step '
      f'{last}: {where}. Nothing after it was saved. Lower config.lr or raise '
      f'config.warmup_steps (or check the data), then re-run to resume from it.')


def debug_after_step(debug, step: int) -> None:
  """config.debug.sigterm_at_step: a real SIGTERM to this process (preemption test)."""
  if step == debug.sigterm_at_step:
    os.kill(os.getpid(), signal.SIGTERM)


def debug_after_save(debug, step: int) -> None:
  """config.debug.sigkill_after_save_at_step: killed with the save perhaps in flight
  (resume test)."""
  if step == debug.sigkill_after_save_at_step:
    os.kill(os.getpid(), signal.SIGKILL)

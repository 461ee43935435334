"""What stops a run early, and how: preemption (SIGTERM), a non-finite loss, and the
debug signals the resume tests send themselves (config.debug)."""
from __future__ import annotations

import os
import signal
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from vit_jax.checkpoints import errors
from vit_jax.checkpoints import training


_JAX_NOTICE_POLL_SECONDS = 1.0  # xla/tsl preemption_notifier.cc kListenInterval.


class Preemption:
  """SIGTERM (what a TPU VM gets before preemption) -> checkpoint and a clean exit.

  One process: a Python signal handler sets a flag (the previous handler is restored on
  exit). Several processes: JAX's preemption sync manager (started by
  jax.distributed.initialize) catches the signal on any host and makes every host agree
  on the point at which to stop.

  `reached()` is asked after every update, every evaluation batch and every save. One
  process acts on a notice at the next of those. Several processes act on it at the
  first call after JAX has seen it: its listener polls once a second
  (xla/tsl preemption_notifier.cc), then the hosts agree on the fastest host's call count
  + 1; so within about a second plus one call (a TPU notice gives ~30 s). The sync point
  is counted in those calls, not in steps: every host makes the same calls in the same
  order, so the count is a monotonically increasing id they all share.
  """

  def __init__(self):
    self.flag = False
    self.multi = jax.process_count() > 1
    self.previous_handler = None
    self.calls = 0

  def __enter__(self):
    if not self.multi:
      self.previous_handler = signal.signal(signal.SIGTERM, self._handler)
    return self

  def __exit__(self, *exc):
    if self.previous_handler is not None:
      signal.signal(signal.SIGTERM, self.previous_handler)

  def _handler(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint after this step (or this '
                    'evaluation batch), then exiting.')
    self.flag = True

  def reached(self) -> bool:
    """Whether to stop here, the same answer on every host; once True, stays True."""
    self.calls += 1
    if self.multi and not self.flag:
      self.flag = multihost_utils.reached_preemption_sync_point(self.calls)
    return self.flag


class NonFiniteLoss(errors.RunStopped, FloatingPointError):
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


def _signals_here(debug) -> bool:
  """config.debug.signal_process: -1 = every process sends its debug signals, else only
  that one (the multi-host tests preempt one host)."""
  return debug.signal_process in (-1, jax.process_index())


def debug_after_step(debug, step: int) -> None:
  """config.debug.sigterm_at_step: a real SIGTERM to this process (preemption test)."""
  if step == debug.sigterm_at_step and _signals_here(debug):
    os.kill(os.getpid(), signal.SIGTERM)


def debug_in_eval(debug, step: int) -> None:
  """config.debug.sigterm_during_eval_at_step: SIGTERM after the first eval batch. With
  several processes this one then waits out JAX's 1 s listener poll (see Preemption), so
  the hosts agree to stop inside this evaluation, not after its last tiny batch."""
  if step == debug.sigterm_during_eval_at_step and _signals_here(debug):
    os.kill(os.getpid(), signal.SIGTERM)
    if jax.process_count() > 1:
      time.sleep(_JAX_NOTICE_POLL_SECONDS + 0.5)


def debug_after_save(debug, step: int) -> None:
  """config.debug: SIGTERM or SIGKILL right after save `step` started, with its arrays
  perhaps still being written (fault tests)."""
  if step == debug.sigterm_during_save_at_step and _signals_here(debug):
    os.kill(os.getpid(), signal.SIGTERM)
  if step == debug.sigkill_after_save_at_step and _signals_here(debug):
    os.kill(os.getpid(), signal.SIGKILL)

"""The faults a run stops for with a message written for the user.

`vit_jax.main` logs a `RunStopped` as one error line (no traceback: the message says what
happened, what survived and what to do) and exits with status 1. Every subclass is raised
after whatever was already written is safe: no checkpoint, log or config is deleted.
"""
from __future__ import annotations


class RunStopped(RuntimeError):
  """The run cannot go on; str(error) is the whole message for the user."""


class IncompatibleCheckpoint(RunStopped):
  """The workdir's checkpoints were written by a config this one cannot resume."""


class NoReadableCheckpoint(RunStopped):
  """Every complete checkpoint of the workdir failed to read."""


class DiskFull(RunStopped):
  """A checkpoint save ran out of space."""


class OutOfMemory(RunStopped):
  """The compiled train step needs more memory per device than the device has."""

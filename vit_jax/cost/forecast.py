"""Compute cost before a run: step time, wall time and core-days at an assumed MFU.

The same definitions as the accounting after a run (cost/accounting.py), solved for
time instead of utilisation:
  step seconds     = FLOPs per step / (devices x peak per device x MFU)
  wall seconds     = total steps x step seconds (training only: no eval, no compile)
  core-days        = wall seconds x devices x cores per device / 86400
  TPUv3-core-days  = total FLOPs / (TPUv3 core peak x MFU) / 86400, the ViT paper's
                     unit (Table 2): one TPUv3 core, 61.5e12 bf16 FLOP/s.
"""
from __future__ import annotations

from vit_jax.cost import devices

SECONDS_PER_DAY = 86_400.0


def check_mfu(mfu: float) -> None:
  if not 0.0 < mfu <= 1.0:
    raise ValueError(f'--mfu={mfu} must be in (0, 1]: a fraction of the peak, e.g. '
                     '--mfu=0.4 for 40%')


def step_seconds(flops_per_step: float, devices: int, peak_per_device: float,
                 mfu: float) -> float:
  check_mfu(mfu)
  return flops_per_step / (devices * peak_per_device * mfu)


def core_days(total_flops: float, peak_per_core: float, mfu: float) -> float:
  """Core-days of cores with `peak_per_core` FLOP/s doing `total_flops` at `mfu`."""
  check_mfu(mfu)
  return total_flops / (peak_per_core * mfu) / SECONDS_PER_DAY


def implied_mfu(total_flops: float, peak_per_core: float, days: float) -> float:
  """The utilisation at which `days` core-days do `total_flops` (core_days inverted)."""
  return total_flops / (peak_per_core * days * SECONDS_PER_DAY)


def tpu_v3_core_days(total_flops: float, mfu: float) -> float:
  """The ViT paper's unit: core_days on TPUv3 cores (61.5e12 bf16 FLOP/s each)."""
  return core_days(total_flops, devices.TPU_V3_CORE_PEAK, mfu)

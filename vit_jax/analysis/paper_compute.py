"""The ViT paper's Table 2 compute column, recomputed: TPUv3-core-days and implied MFU.

  core-days = FLOPs per image x images per epoch x epochs / (TPUv3 core peak x MFU)
              / 86400                                        (cost/forecast.py)
so each published row implies the MFU at which its work fits its core-days.

Sources:
  [T2]  Dosovitskiy et al., ICLR 2021 (arXiv 2010.11929), Table 2, row "TPUv3-core-days":
        ViT-H/14 (JFT) 2.5k, ViT-L/16 (JFT) 0.68k, ViT-L/16 (I21k) 0.23k.
  [S41] ibid., Section 4.1: "ImageNet-21k with 21k classes and 14M images", "JFT with 18k
        classes and 303M high-resolution images"; pre-training resolution 224 (Table 3
        caption "Training resolution is 224").
  [T3]  ibid., Table 3, epochs: JFT-300M ViT-L/16 7 or 14, ViT-H/14 14; ImageNet-21k
        ViT-L/{16,32} 30 or 90. Table 2 does not say which of 7/14 or 30/90 its L/16
        rows used, so both are computed (experiments/paper_compute).
  [JFT] Sun et al., ICCV 2017: JFT-300M's 18,291 classes (the head size; it moves the
        FLOPs by under 0.1%).
FLOPs per image come from XLA's cost analysis of our compiled train step (forward and
backward, the number the training loop logs), measured by the experiment.
"""
from __future__ import annotations

import dataclasses

from vit_jax.cost import devices
from vit_jax.cost import forecast

JFT_IMAGES = 303e6  # [S41]
JFT_CLASSES = 18_291  # [JFT]
I21K_IMAGES = 14e6  # [S41]
I21K_CLASSES = 21_843  # the released ImageNet-21k (fall 2011): [S41]'s "21k classes".


@dataclasses.dataclass(frozen=True)
class PaperRow:
  model: str  # registry name.
  data: str
  images: float  # per epoch.
  classes: int
  epochs: int
  core_days: float  # published, TPUv3-core-days.
  alternative: bool = False  # the other epoch count of [T3] for the same row.


TABLE_2 = (
    PaperRow('ViT-H/14', 'JFT-300M', JFT_IMAGES, JFT_CLASSES, 14, 2500.0),
    PaperRow('ViT-L/16', 'JFT-300M', JFT_IMAGES, JFT_CLASSES, 14, 680.0),
    PaperRow('ViT-L/16', 'JFT-300M', JFT_IMAGES, JFT_CLASSES, 7, 680.0, alternative=True),
    PaperRow('ViT-L/16', 'ImageNet-21k', I21K_IMAGES, I21K_CLASSES, 90, 230.0),
    PaperRow('ViT-L/16', 'ImageNet-21k', I21K_IMAGES, I21K_CLASSES, 30, 230.0,
             alternative=True),
)


def total_flops(row: PaperRow, flops_per_image: float) -> float:
  return flops_per_image * row.images * row.epochs


def implied_mfu(row: PaperRow, flops_per_image: float) -> float:
  """The MFU at which the row's work takes its published TPUv3-core-days."""
  return forecast.implied_mfu(total_flops(row, flops_per_image),
                              devices.TPU_V3_CORE_PEAK, row.core_days)


def core_days_at(row: PaperRow, flops_per_image: float, mfu: float) -> float:
  """TPUv3-core-days of the row's work at `mfu`."""
  return forecast.tpu_v3_core_days(total_flops(row, flops_per_image), mfu)

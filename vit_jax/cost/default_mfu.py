"""Default MFU per device kind for the planner's forecasts (--mfu overrides it).

Published utilisation is mostly for large language models, whose matmuls are larger than
a ViT-B's: treat these as what a well-tuned large run reaches, and measure your own
(python -m vit_jax.benchmark, or train_mfu of a short run) for a smaller model.
  [ViT]    The ViT paper's own Table 2 on TPUv3, recomputed from our FLOP counts:
           experiments/paper_compute (median of its three rows' implied MFU).
  [PaLM]   Chowdhery et al. 2022 (arXiv 2204.02311), Table 3: PaLM 540B on TPU v4,
           46.2% MFU.
  [MaxText] google/maxtext, MaxText/configs/v5e/README.md: a 16B model on one
           v5e-256, 61.10% MFU.
  [Megatron] Narayanan et al., SC 2021 (arXiv 2104.04473), abstract: 502 petaFLOP/s on
           3072 A100 GPUs, 52% of the peak.
  [MCore]  NVIDIA Megatron-LM README (Megatron-Core): "up to 47% MFU on H100 clusters".
  [CPU]    experiments/training_loop/README.md: our testing recipe on a 2-core AVX2 host,
           train_mfu 3.0% against the measured matmul peak (tiny model: a floor).
No figure was at hand for v2, v5p, v6e and H200: each takes its nearest relative's
figure, said in its row.
"""
from __future__ import annotations

import dataclasses

from vit_jax.cost import forecast


@dataclasses.dataclass(frozen=True)
class MfuFigure:
  mfu: float
  source: str


PAPER_V3_MFU = 0.386  # [ViT]: median of Table 2's three ViT rows (32.4, 38.6, 43.9%).
DEFAULT_MFU = {
    'TPU v2': MfuFigure(PAPER_V3_MFU, '[ViT] (the v3 figure: same generation of MXUs)'),
    'TPU v3': MfuFigure(PAPER_V3_MFU, '[ViT] ViT paper Table 2, implied'),
    'TPU v4': MfuFigure(0.462, '[PaLM] PaLM 540B on TPU v4'),
    'TPU v5p': MfuFigure(0.462, '[PaLM] (the v4 figure: v5p is its successor)'),
    'TPU v5e': MfuFigure(0.611, '[MaxText] 16B model on v5e-256'),
    'TPU v6e': MfuFigure(0.611, '[MaxText] (the v5e figure: v6e is its successor)'),
    'A100 40GB': MfuFigure(0.52, '[Megatron] GPT on 3072 A100'),
    'A100 80GB': MfuFigure(0.52, '[Megatron] GPT on 3072 A100'),
    'H100 SXM': MfuFigure(0.47, '[MCore] H100 clusters'),
    'H100 PCIe': MfuFigure(0.47, '[MCore] (the H100 SXM figure)'),
    'H200': MfuFigure(0.47, '[MCore] (the H100 figure: same tensor cores)'),
    'CPU': MfuFigure(0.03, '[CPU] measured, testing recipe'),
}


def default_mfu(device_name: str) -> MfuFigure:
  """The row for a cost/devices.py name (or 'CPU')."""
  figure = DEFAULT_MFU[device_name]
  forecast.check_mfu(figure.mfu)
  return figure

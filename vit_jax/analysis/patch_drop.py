"""Random patch drop: accuracy when a fraction of the patches is hidden from the model.

The robustness curve of Naseer et al. 2021 ("Intriguing properties of vision
transformers", random patch drop): accuracy on an eval split with 0%, 10%, ..., 90% of
the patch tokens dropped at random.

  ViT        the dropped tokens are removed from the sequence after the patch and
             position embeddings; the class token stays; classifier='gap' averages the
             kept tokens (`VisionTransformer(..., patch_keep=...)`).
  hybrids    the same, but the tokens are cells of the ResNet stem's feature map, and
             the stem saw the whole image: a kept cell still carries what its receptive
             field saw of the dropped ones. The curve measures robustness to missing
             feature cells, not to missing pixels; the results say so.
  Swin       shifted windows need the full grid, so dropped patches are masked: their
             embeddings are zeroed after patch_embed (`SwinTransformer(...,
             patch_keep=...)`). The zero tokens still take part in window attention and
             the final average pool, so this is masking, not removal.

The kept set of image i under seed s is the first K entries of a permutation of the
N patches drawn from (s, i) alone: every model with the same grid sees the same patches
of the same image, and the sets are nested (what 10% drops, 20% drops too).
"""
from __future__ import annotations

import math
from typing import Iterable

import jax
import ml_collections
import numpy as np

from vit_jax import steps
from vit_jax.models import registry

HYBRID_NOTE = ('hybrid: tokens are ResNet feature cells whose receptive fields '
               'overlap the dropped patches; this measures missing feature cells, not '
               'missing pixels')


def method(model) -> str:
  """How patches are dropped for `model`'s family; raises where it does not apply."""
  try:
    hooks = registry.family(model)
  except ValueError:
    raise ValueError(f'patch drop is implemented for ViT, hybrids and Swin; '
                     f'{type(model).__name__} has no patch_keep argument') from None
  return hooks.patch_drop(model)


def num_patches(model) -> int:
  """Patch tokens of the grid (no class token): ViT/hybrid token grid, Swin patch grid."""
  return model.grid[0] * model.grid[1]


def kept_count(num: int, fraction: float) -> int:
  """round((1 - fraction) * num), halves rounded up; at least one token must remain."""
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f'drop fraction {fraction} is outside [0, 1); use e.g. '
                     '0,0.1,...,0.9')
  kept = math.floor((1.0 - fraction) * num + 0.5)
  if kept < 1:
    raise ValueError(f'dropping {fraction:.0%} of {num} patches keeps none; use a '
                     f'fraction below {1 - 0.5 / num:.3f}')
  return kept


def patch_orders(num: int, seed: int, image_ids: np.ndarray) -> np.ndarray:
  """(len(image_ids), num) int32: a random permutation of the patches per image,
  a function of (seed, image id) only."""
  return np.stack([np.random.default_rng([seed, int(i)]).permutation(num)
                   for i in image_ids]).astype(np.int32)


def keep_indices(num: int, fraction: float, seed: int,
                 image_ids: np.ndarray) -> np.ndarray:
  """(len(image_ids), K) int32 sorted indices of the kept patches, K = kept_count."""
  orders = patch_orders(num, seed, image_ids)
  return np.sort(orders[:, :kept_count(num, fraction)], axis=1)


def accuracy_curve(model, params, batches: Iterable[dict], fractions: list[float],
                   seeds: list[int]) -> dict:
  """Top-1 accuracy per (seed, fraction) over `batches` of {'image', 'label', 'mask'}
  (input_pipeline's eval batches: one-hot labels, mask 0 on padding rows).

  Returns {'accuracy_per_seed': (seeds, fractions) list, 'accuracy': mean over seeds,
  'num_images', 'kept_patches', 'num_patches'}.
  """
  method(model)
  num = num_patches(model)
  counts = [kept_count(num, f) for f in fractions]  # checks every fraction first.

  @jax.jit
  def correct(params, images, labels, mask, keep):
    logits = model.apply({'params': params}, images, train=False, patch_keep=keep)
    return (steps.correct_predictions(logits.astype('float32'), labels) * mask).sum()

  hits = np.zeros((len(seeds), len(fractions)))
  seen, images_total = 0, 0.0
  for batch in batches:
    _check_labels(batch['label'], model.num_classes)
    ids = seen + np.arange(len(batch['mask']))  # position in the split.
    seen += len(ids)
    images_total += float(np.sum(batch['mask']))
    for s, seed in enumerate(seeds):
      orders = patch_orders(num, seed, ids)
      for f, k in enumerate(counts):
        keep = np.sort(orders[:, :k], axis=1)
        hits[s, f] += float(correct(params, batch['image'], batch['label'],
                                    batch['mask'], keep))
  if images_total == 0:
    raise ValueError('the eval split gave no images')
  per_seed = hits / images_total
  return {'accuracy': per_seed.mean(0).tolist(), 'accuracy_per_seed': per_seed.tolist(),
          'num_images': int(images_total), 'kept_patches': counts, 'num_patches': num}


def _check_labels(labels: np.ndarray, num_classes: int) -> None:
  if labels.shape[-1] != num_classes:
    raise ValueError(f'the dataset has {labels.shape[-1]} classes but the checkpoint '
                     f'head has {num_classes}; evaluate on the dataset the model was '
                     'trained or fine-tuned on (--dataset)')


def eval_config(*, dataset: str, split: str, data_dir: str | None,
                image_size: tuple[int, int], batch_size: int, eval_resize: str,
                eval_crop_ratio: float, multi_label: bool = False):
  """The fields of a training config that input_pipeline.host_eval_dataset reads."""
  return ml_collections.ConfigDict({
      'image_size': f'{image_size[0]}x{image_size[1]}',
      'eval_batch_size': batch_size,
      'data': {'dataset': dataset, 'eval_split': split, 'data_dir': data_dir,
               'manual_dir': None, 'multi_label': multi_label,
               'eval_resize': eval_resize, 'eval_crop_ratio': eval_crop_ratio,
               'num_parallel_calls': 2, 'prefetch': 2}})

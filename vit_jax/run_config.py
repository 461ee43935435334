"""The one place a config becomes a model, its dtypes, its image sizes and its eval
preprocessing.

A config is either a training `ml_collections.ConfigDict` or the dict a run directory's
`config.json` holds (what training wrote). Training, evaluation, fine-tuning,
`predict`, `analyze` and `benchmark` all call these functions, so a value such as
`dtype='bf16_matmul'` means one thing everywhere. Nothing here imports TensorFlow:
reading a checkpoint's config costs no TF image ops.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from vit_jax import models
from vit_jax.platform import cpu_devices

# config.dtype: 'float32' and 'bfloat16' compute every layer in that dtype;
# 'bf16_matmul' computes in float32 with bf16 x bf16 -> float32 matmuls in the
# transformer blocks (fastest on CPUs with AVX512-BF16; logits move ~1% relative, so it
# is a choice, never a default; models/matmul.py).
COMPUTE_DTYPES = ('float32', 'bfloat16', 'bf16_matmul')
TRAIN_CROPS = ('inception', 'resize')  # config.data.train_crop
EVAL_RESIZES = ('resize_crop', 'resize')  # config.data.eval_resize


def parse_size(size) -> tuple[int, int]:
  """224 -> (224, 224); '384x256' -> (384, 256) as (height, width); (H, W) as it is."""
  if isinstance(size, (tuple, list)) and len(size) == 2 and all(
      isinstance(s, int) and s > 0 for s in size):
    return int(size[0]), int(size[1])
  if isinstance(size, int) and not isinstance(size, bool) and size > 0:
    return size, size
  if isinstance(size, str):
    parts = size.lower().split('x')
    if len(parts) == 2 and all(p.strip().isdigit() and int(p) > 0 for p in parts):
      return int(parts[0]), int(parts[1])
    if size.strip().isdigit() and int(size) > 0:
      return int(size), int(size)
  raise ValueError(f'image_size {size!r} is not a positive int or an "HxW" string; '
                   'use e.g. 224 or "384x256"')


def optional_size(size) -> tuple[int, int] | None:
  """None / 0 / '' -> None (not given); otherwise parse_size."""
  return parse_size(size) if size else None


def image_size(config: Mapping[str, Any]) -> tuple[int, int]:
  """config.image_size (an int or 'HxW') as (height, width)."""
  return parse_size(config['image_size'])


def check_dtype(dtype: str) -> None:
  if dtype not in COMPUTE_DTYPES:
    raise ValueError(f'dtype={dtype!r}; use one of {COMPUTE_DTYPES}')


def model_dtypes(dtype: str) -> dict[str, Any]:
  """config.dtype -> the models' compute dtype fields (see COMPUTE_DTYPES)."""
  check_dtype(dtype)
  if dtype == 'bf16_matmul':
    return dict(dtype=jnp.float32, matmul_dtype=jnp.bfloat16)
  return dict(dtype=jnp.dtype(dtype))


def check_preprocessing(data: Mapping[str, Any]) -> None:
  """The crop and resize names of config.data, checked once for every consumer."""
  for field, valid in (('train_crop', TRAIN_CROPS), ('eval_resize', EVAL_RESIZES)):
    if field in data and data[field] not in valid:
      raise ValueError(f'config.data.{field}={data[field]!r}; expected one of {valid}')


def model_fields(config: Mapping[str, Any], *, mesh: jax.sharding.Mesh | None = None,
                 image_size_override=None, patch_size_override=None) -> dict[str, Any]:
  """The keyword fields `models.create` gets for this config.

  mesh: the one the model will run on, if known. image_size_override: run at another
  resolution than the config's (predict / analyze at a new size).
  patch_size_override: int, run at another patch size (predict / analyze --patch_size;
  the checkpoint's patch embedding is resized by checkpoints.fit.fit_params).
  """
  overrides = dict(config.get('model_overrides') or {})
  if mesh is not None and cpu_devices.step_compiler_options(mesh):
    # One XLA thread per CPU device: no idle core for attention chunks to fill
    # (models/attention_chunks.py measured them at 0.75-0.88x there).
    overrides.setdefault('attention_chunks', 1)
  if patch_size_override:
    overrides['patch_size'] = (int(patch_size_override), int(patch_size_override))
  size = optional_size(image_size_override) or image_size(config)
  return dict(image_size=size, param_dtype=jnp.dtype(config['param_dtype']),
              **model_dtypes(config['dtype']), **overrides)


def create_model(config: Mapping[str, Any], num_classes: int, *,
                 mesh: jax.sharding.Mesh | None = None, image_size_override=None,
                 patch_size_override=None):
  """The configured model (a training ConfigDict or a run's config.json)."""
  return models.create(config['model'], num_classes=num_classes,
                       **model_fields(config, mesh=mesh,
                                      image_size_override=image_size_override,
                                      patch_size_override=patch_size_override))


@dataclasses.dataclass(frozen=True)
class EvalPreprocessing:
  """How evaluation turns a decoded image into the model's input."""
  image_size: tuple[int, int]  # (height, width) of the model input.
  resize: str = 'resize'  # an EVAL_RESIZES value.
  crop_ratio: float = 1.0  # resize_crop: resized short side / crop side.

  def __post_init__(self):
    if self.resize not in EVAL_RESIZES:
      raise ValueError(f'eval resize {self.resize!r}; expected one of {EVAL_RESIZES}')

  def describe(self) -> str:
    h, w = self.image_size
    if self.resize == 'resize_crop':
      return (f'resize the short side to {self.crop_ratio} x {h}x{w} (aspect kept), '
              f'central {h}x{w} crop')
    return f'resize to {h}x{w} (aspect not kept), no crop'


def eval_preprocessing(config: Mapping[str, Any],
                       image_size_override=None) -> EvalPreprocessing:
  """The eval preprocessing of a training config or a run's config.json."""
  data = config['data']
  return EvalPreprocessing(
      image_size=optional_size(image_size_override) or image_size(config),
      resize=data['eval_resize'], crop_ratio=float(data['eval_crop_ratio']))


def published_preprocessing(size: tuple[int, int]) -> EvalPreprocessing:
  """Published weights: the ViT fine-tuning code's eval, resize to the model resolution
  (aspect not kept), no crop."""
  return EvalPreprocessing(image_size=tuple(size), resize='resize', crop_ratio=1.0)

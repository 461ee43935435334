"""The one fit of checkpoint params into a model: grids adapted by the model's family,
every key and shape matched, dtypes cast (`fit_params`).

Two callers: fine-tuning (`load_pretrained`: a new head, pre_logits kept or dropped, then
the fit) and inference (`vit_jax.inference`: the checkpoint's head kept, the fit alone).
The readers below (training.py: our run directories; published.py: published files)
never import this module.
"""
from __future__ import annotations

from typing import Any, Mapping

from absl import logging
from etils import epath
import jax.numpy as jnp
import numpy as np

from vit_jax import run_config
from vit_jax.checkpoints import published
from vit_jax.checkpoints import training
from vit_jax.cost import flops
from vit_jax.models import registry

_HEAD_PREFIX = 'head/'
_PRE_LOGITS_PREFIX = 'pre_logits/'


def fit_params(flat: Mapping[str, Any], model, *,
               flat_template: Mapping[str, Any] | None = None, source_image_size=None,
               method: str = 'bilinear', patch_size=None,
               patch_resize_method: str = 'pi',
               source_model=None) -> tuple[dict, list[str]]:
  """Checkpoint params (flat 'a/b' keys) as `model`'s nested params, and report lines.

  flat_template: `model`'s params, flat (arrays or ShapeDtypeStructs: target shapes and
    dtypes); default: `jax.eval_shape` of its init, nothing allocated.
  source_image_size: int or (H, W) the checkpoint was trained at, or None: the family
    reads it from the params where it matters (ViT: the position-embedding grid).
  method: the ViT position-embedding resampling (vit_posemb.resample_posemb).
  patch_size: None (the model's own) or int / (p, p): the patch the caller expects the
    model to have; checked against it (create the model with that patch size).
  patch_resize_method: how the family resizes a checkpoint patch embedding whose patch
    differs from the model's (ViT: 'pi', FlexiViT's pseudo-inverse, or 'bilinear';
    vit_patch_resize.py). Passed to the family hook as a keyword.
  source_model: the model the checkpoint was trained as, where its run recorded it
    (our run directories), else None; the family checks what it must agree on
    (Swin V2: the windows its bias coordinates are measured in).
  Raises CheckpointMismatchError naming every key that still does not fit.
  """
  check_patch_size(model, patch_size)
  if flat_template is None:
    flat_template = published.flatten(flops.abstract_params(model))
  flat, notes = registry.family(model).adapt_checkpoint(
      dict(flat), flat_template, model, source_image_size, method,
      patch_resize_method=patch_resize_method, source_model=source_model)
  published.match_flat(flat, flat_template)
  params = published.unflatten({k: jnp.asarray(v, dtype=flat_template[k].dtype)
                                for k, v in flat.items()})
  return params, list(notes)


def check_patch_size(model, patch_size) -> None:
  """ValueError unless `patch_size` is None or the model's own patch size: the model
  must be created with the patch it runs at (the checkpoint's is resized to it)."""
  if patch_size is None:
    return
  want = registry.as_pair(patch_size, 'patch_size')
  have = registry.as_pair(model.patch_size, 'model patch_size')
  if want != have:
    raise ValueError(
        f'patch_size {want} but the model was created with patch_size {have}; create '
        f'the model with patch_size={want} (in a config: model_overrides.patch_size) '
        'or leave patch_size out')


def _read_any(path: str) -> tuple[dict, tuple[int, int] | None, Any]:
  """(params, resolution if recorded, the model it was trained as if recorded) of one
  of our runs or a published file (which records neither)."""
  if not epath.Path(path).is_dir():
    return published.load_params(path), None, None
  params, size, config = training.read_params_for_finetune(path)
  try:  # the head size does not matter: the hooks read the source's geometry only.
    source_model = run_config.create_model(config, num_classes=1)
  except ValueError as e:  # a config of an older version: fit without the source.
    logging.warning('load_pretrained(%s): the run\'s model is not re-created (%s)',
                    path, e)
    source_model = None
  return params, size, source_model


def _take_head_and_pre_logits(flat: dict, flat_init: dict) -> tuple[dict, list[str]]:
  """New task head always fresh; pre_logits kept or dropped per the new model."""
  out, report = {}, []
  for key, value in flat.items():
    if key.startswith(_HEAD_PREFIX):
      report.append(f're-initialised {key} {tuple(flat_init[key].shape)} '
                    f'(was {tuple(np.shape(value))}: new task head)'
                    if key in flat_init else f'dropped {key} (new task head)')
    elif key.startswith(_PRE_LOGITS_PREFIX) and key not in flat_init:
      report.append(f'dropped {key} (model has representation_size=None)')
    else:
      out[key] = value
  for key in flat_init:
    if key.startswith(_HEAD_PREFIX) or (key.startswith(_PRE_LOGITS_PREFIX)
                                        and key not in flat):
      out[key] = flat_init[key]
      if key.startswith(_PRE_LOGITS_PREFIX):
        report.append(f're-initialised {key} (not in checkpoint)')
  return out, report


def load_pretrained(path: str, *, model, init_params, source_image_size=None,
                    posemb_method: str = 'bilinear', patch_size=None,
                    patch_resize_method: str = 'pi', return_report: bool = False):
  """Fine-tuning initialisation from `path` for `model` (ViT paper protocol).

  path: one of our run directories (its latest checkpoint), a published Google ViT /
    hybrid `.npz`, or official / timm Swin weights.
  init_params: the freshly initialised params of `model` (gives the new head and the
    target shapes and dtypes).
  source_image_size: int or (H, W) the checkpoint was trained at; wins over
    everything. Without it: our own runs record it; for published ViT / hybrid files
    the grid is read from the position embedding (`vit_posemb.source_grid`: a square
    count of grid tokens, after the class token when the file has 'cls'), and a
    non-square count is refused naming this argument. Swin ignores it (the bias
    tables' shapes give the old window).
  patch_size, patch_resize_method: as for `fit_params` (a ViT / hybrid checkpoint
    whose patch differs from the model's is resized to it, FlexiViT's pseudo-inverse
    resize by default; the position embedding follows the new token grid).
  Logs a report (loaded / re-initialised / resampled / dropped, per key) and raises
  CheckpointMismatchError listing every other key that does not fit.
  """
  check_patch_size(model, patch_size)  # before reading a large file.
  params, recorded_size, source_model = _read_any(path)
  if source_image_size is None:
    source_image_size = recorded_size
  flat_init = published.flatten(init_params)
  flat, report = _take_head_and_pre_logits(published.flatten(params), flat_init)
  tree, fit_report = fit_params(flat, model, flat_template=flat_init,
                                source_image_size=source_image_size,
                                method=posemb_method, patch_size=patch_size,
                                patch_resize_method=patch_resize_method,
                                source_model=source_model)
  report += fit_report
  changed = {line.split()[1].rstrip(':') for line in report}
  report += [f'loaded {k} {tuple(flat_init[k].shape)}' for k in sorted(flat_init)
             if k not in changed]
  for line in report:
    logging.info('load_pretrained(%s): %s', path, line)
  return (tree, report) if return_report else tree

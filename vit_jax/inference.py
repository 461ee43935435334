"""A trained classifier from a checkpoint, for `predict` and `analyze`.

`load(checkpoint, ...)` takes one of our run directories or a published weights file
and returns the model, its params (head included) and the eval preprocessing that goes
with them:

  run directory   (orbax checkpoints + the config.json the training loop writes) model
                  name, overrides, dtypes and image size from config.json; params from
                  the latest checkpoint, the EMA params when the run kept them (as its
                  evaluation did); eval preprocessing as configured (data.eval_resize,
                  data.eval_crop_ratio).
  published file  (`.npz` ViT / hybrid, Swin `.pth` / `.safetensors`) the model name
                  must be given; head and pre_logits sizes come from the file; the
                  resolution it was trained at from source_image_size, else the square
                  grid of its learned position embedding (vit_posemb.source_grid, the rule
                  load_pretrained uses), else the model's default; eval preprocessing of
                  the ViT fine-tuning code: resize to the model resolution (aspect not
                  kept), no crop.

Asking for another image size than the checkpoint's resamples the position embedding
(ViT) or, when the window changes, the bias tables (Swin), as for fine-tuning.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from etils import epath
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from vit_jax import checkpoint
from vit_jax import cost
# Imported for its side effect: TF must not take the GPU / TPU memory JAX needs.
from vit_jax import input_pipeline  # noqa: F401
from vit_jax import models
from vit_jax import preprocess
from vit_jax import train_checkpoint
from vit_jax.models import swin
from vit_jax.models import vit
from vit_jax.models import vit_posemb

CONFIG_FILE = 'config.json'
_HEAD_BIAS = 'head/bias'


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A model, its params and how its evaluation prepared images."""
  model: Any  # flax Module (VisionTransformer or SwinTransformer).
  params: Any
  eval_resize: str  # 'resize_crop' | 'resize' (input_pipeline._eval_image).
  eval_crop_ratio: float  # resize_crop: resized side / crop side.
  run_config: dict | None  # config.json of a run directory; None for published files.
  notes: tuple[str, ...] = ()  # what was inferred or resampled, for the user.

  @property
  def image_size(self) -> tuple[int, int]:
    return self.model.image_size

  @property
  def preprocessing(self) -> str:
    h, w = self.image_size
    if self.eval_resize == 'resize_crop':
      return (f'resize the short side to {self.eval_crop_ratio} x {h}x{w} (aspect '
              f'kept), central {h}x{w} crop')
    return f'resize to {h}x{w} (aspect not kept), no crop'


def load(path: str, *, model_name: str | None = None, image_size=None,
         source_image_size=None) -> Classifier:
  """The classifier stored at `path` (run directory or published file).

  model_name: registered name; defaults to the run's config, required for files.
  image_size: int or (H, W) to run at; defaults to the checkpoint's resolution.
  source_image_size: resolution a published file was trained at; wins over the one
    read from its position-embedding grid (needed for non-square grids).
  """
  if not epath.Path(path).exists():  # epath: local or gs://
    raise FileNotFoundError(f'checkpoint {path!r} does not exist; give one of our run '
                            'directories or a published .npz / Swin weights file')
  if epath.Path(path).is_dir():
    return _load_run(path, model_name, image_size)
  return _load_file(path, model_name, image_size, source_image_size)


def _load_run(workdir: str, model_name, image_size) -> Classifier:
  config = read_run_config(workdir)
  item = 'ema_params' if config.get('ema_decay') else 'params'
  flat = checkpoint.flatten(train_checkpoint.read_arrays(workdir, item=item))
  source = preprocess.parse_size(config['image_size'])
  if model_name and model_name != config['model']:
    raise ValueError(f'--model {model_name} but the run trained {config["model"]}; '
                     'leave --model out for run directories')
  model = models.create(
      config['model'], num_classes=_head_size(flat, workdir),
      image_size=_size(image_size) or source, dtype=jnp.dtype(config['dtype']),
      param_dtype=jnp.dtype(config['param_dtype']), **config.get('model_overrides', {}))
  params, notes = fit_params(flat, model, source)
  data = config['data']
  return Classifier(model, params, data['eval_resize'], data['eval_crop_ratio'], config,
                    (f'{item} of the latest checkpoint in {workdir}', *notes))


def read_run_config(workdir: str) -> dict:
  """<workdir>/config.json as a dict (the training config of the run)."""
  path = epath.Path(workdir) / CONFIG_FILE
  if not path.is_file():
    raise FileNotFoundError(
        f'{workdir!r} has no {CONFIG_FILE}: not a run directory of vit_jax.main; give '
        'the directory given as --workdir to training, or a published weights file')
  return json.loads(path.read_text())


def _load_file(path: str, model_name, image_size, source_image_size) -> Classifier:
  if not model_name:
    raise ValueError(f'--model is required for the published file {path!r} (e.g. '
                     f'ViT-B/16); valid names: {", ".join(models.names())}')
  flat = checkpoint.flatten(checkpoint.load_params(path))
  num_classes, fields = _head_size(flat, path), _file_fields(flat, model_name, path)
  run_size = _size(image_size)
  # At the size asked for: a non-square file made for exactly that grid is known.
  probe = models.create(model_name, num_classes=num_classes, **fields,
                        **({'image_size': run_size} if run_size else {}))
  source, how = _trained_size(flat, probe, _size(source_image_size))
  model = models.create(model_name, num_classes=num_classes,
                        image_size=run_size or source, **fields)
  params, fit_notes = fit_params(flat, model, source)
  notes = (f'checkpoint resolution {source[0]}x{source[1]} ({how})', *fit_notes)
  return Classifier(model, params, 'resize', 1.0, None, notes)


def _file_fields(flat: dict, model_name: str, path: str) -> dict:
  """Model fields a published file fixes: pre_logits width; ViT class token."""
  fields = {}
  if 'pre_logits/bias' in flat:
    fields['representation_size'] = int(flat['pre_logits/bias'].shape[0])
  probe = models.create(model_name, num_classes=_head_size(flat, path), **fields)
  if isinstance(probe, vit.VisionTransformer):
    fields['classifier'] = 'token' if 'cls' in flat else 'gap'
  return fields


def _size(size) -> tuple[int, int] | None:
  """None / 0 -> None; 224 or '384x256' or (H, W) -> (H, W)."""
  if not size:
    return None
  return tuple(size) if isinstance(size, (tuple, list)) else preprocess.parse_size(size)


def _head_size(flat: dict, where: str) -> int:
  if _HEAD_BIAS not in flat:
    raise ValueError(f'{where} has no {_HEAD_BIAS}: a classifier head is needed to '
                     'predict (feature extractors without a head are not supported)')
  return int(np.shape(flat[_HEAD_BIAS])[0])


def _trained_size(flat: dict, model, explicit) -> tuple[tuple[int, int], str]:
  """Resolution of a published file. ViT / hybrid: the family's rule, the one
  load_pretrained uses (vit_posemb.trained_image_size: explicit wins, else the grid of the
  position embedding). Swin: nothing in its weights depends on the resolution (the
  bias tables follow the window), so the explicit size or the model's default."""
  if isinstance(model, vit.VisionTransformer):
    size, how = vit_posemb.trained_image_size(flat, model, explicit)
    if size is not None:
      return size, how
  if explicit:
    return explicit, 'given as source_image_size'
  return model.image_size, f'the default of {type(model).__name__}'


def fit_params(flat: dict, model, source_size) -> tuple[Any, list[str]]:
  """Checkpoint params (flat, head included) for `model`: grids resampled from
  `source_size` where the model's differ, every key and shape checked."""
  template = cost.abstract_params(model)
  flat_template = checkpoint.flatten(template)
  if isinstance(model, vit.VisionTransformer):
    flat, notes = vit_posemb.adapt_pretrained(flat, flat_template, model, source_size)
  else:
    flat, notes = swin.adapt_pretrained(flat, flat_template, model)
  checkpoint.match_tree(checkpoint.unflatten(flat), template)
  params = checkpoint.unflatten({k: jnp.asarray(v, flat_template[k].dtype)
                                 for k, v in flat.items()})
  return params, notes


def image_preprocessor(classifier: Classifier):
  """encoded JPEG/PNG/GIF/BMP bytes -> float32 (H, W, 3) in [-1, 1], as the classifier's
  evaluation prepared images (the ops of input_pipeline._eval_image).

  Raises ValueError naming the problem for bytes that are not a decodable image.
  """
  size, ratio = classifier.image_size, classifier.eval_crop_ratio
  crop = classifier.eval_resize == 'resize_crop'

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  def resize(image):  # traced once for every image size.
    image = (preprocess.resize_and_central_crop(image, size, ratio) if crop
             else preprocess.resize(image, size))
    return preprocess.value_range(image)

  def prepare(encoded: bytes) -> np.ndarray:
    try:  # eagerly: the error then says what is wrong, not 'Graph execution error'.
      image = preprocess.decode(tf.constant(encoded))
    except tf.errors.OpError as e:
      raise ValueError(f'cannot decode image: {_tf_message(e)}') from None
    return resize(image).numpy()

  return prepare


def _tf_message(error: tf.errors.OpError) -> str:
  """'{{function_node ...}} Unknown image file format. ... [Op:DecodeImage] name: '
  -> 'Unknown image file format. ...'."""
  text = re.sub(r'\{\{[^}]*\}\}\s*', '', error.message)
  return text.split(' [Op:')[0].strip()

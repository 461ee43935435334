"""A trained classifier from a checkpoint, for `predict` and `analyze`.

`load(checkpoint, ...)` takes one of our run directories or a published weights file
and returns the model, its params (head included) and the eval preprocessing that goes
with them:

  run directory   (orbax checkpoints, each storing the config that wrote it) the
                  model as training built it (run_config.create_model: name,
                  overrides, dtypes, image size); params from the latest checkpoint,
                  the EMA params when the run kept them (as its evaluation did); eval
                  preprocessing as configured (run_config.eval_preprocessing).
  published file  (`.npz` ViT / hybrid, Swin `.pth` / `.safetensors`) the model name
                  must be given; head and pre_logits sizes come from the file, other
                  fields the file fixes from its family (`file_fields`); the resolution
                  it was trained at from source_image_size, else the family's rule
                  (`trained_image_size`; ViT: the square grid of its learned position
                  embedding, the rule fine-tuning uses), else the model's default; eval
                  preprocessing of the ViT fine-tuning code
                  (run_config.published_preprocessing).

Asking for another image size than the checkpoint's resamples the position embedding
(ViT) or, when the window changes, the bias tables (Swin), as for fine-tuning: both
go through checkpoints.fit.fit_params. Asking for another patch size (ViT and hybrids
only) creates the model with it and resizes the checkpoint's patch embedding
(FlexiViT's pseudo-inverse resize by default, models/vit_patch_resize.py); the
position embedding follows the new token grid.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from etils import epath
import numpy as np
import tensorflow as tf

from vit_jax import models
from vit_jax import run_config
from vit_jax.checkpoints import fit
from vit_jax.checkpoints import published
from vit_jax.checkpoints import training
from vit_jax.data import images
from vit_jax.data import preprocess
from vit_jax.models import registry

_HEAD_BIAS = 'head/bias'


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A model, its params and how its evaluation prepared images."""
  model: Any  # flax Module of a registered family (ViT, hybrid, Swin).
  params: Any
  preprocessing: run_config.EvalPreprocessing  # .describe(): the text for users.
  run_config: dict | None  # config.json of a run directory; None for published files.
  notes: tuple[str, ...] = ()  # what was inferred or resampled, for the user.

  @property
  def image_size(self) -> tuple[int, int]:
    return self.model.image_size


@dataclasses.dataclass(frozen=True)
class PatchResize:
  """Run at another patch size than the checkpoint's: size None keeps its own."""
  size: int | None = None
  method: str = 'pi'  # vit_patch_resize.METHODS: 'pi' (FlexiViT) or 'bilinear'.

  def fields(self, probe, model_name: str) -> dict:
    """{} or {'patch_size': (p, p)} for a model like `probe`; refused (ValueError
    naming the fix) for a family that cannot resize its patch embedding."""
    if not self.size:
      return {}
    if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
      raise ValueError(f'--patch_size {self.size!r} is not a positive int; give e.g. 8')
    hooks = registry.family(probe)
    try:
      hooks.check_analysis('patch-resize', probe)
    except ValueError as e:
      raise ValueError(
          f'--patch_size {self.size}: resizing the patch embedding (FlexiViT '
          f'pseudo-inverse resize) is implemented for ViT and hybrids, and {model_name} '
          f'is a {hooks.name} model ({e}); leave --patch_size out') from None
    return {'patch_size': (self.size, self.size)}


def load(path: str, *, model_name: str | None = None, image_size=None,
         source_image_size=None, patch_size: int | None = None,
         patch_resize_method: str = 'pi') -> Classifier:
  """The classifier stored at `path` (run directory or published file).

  model_name: registered name; defaults to the run's config, required for files.
  image_size: int, 'HxW' or (H, W) to run at; defaults to the checkpoint's resolution.
  source_image_size: resolution a published file was trained at; wins over the one
    read from its position-embedding grid (needed for non-square grids).
  patch_size: int p to run at p x p patches (ViT / hybrid; None: the checkpoint's);
    patch_resize_method: 'pi' (FlexiViT §3.4) or 'bilinear' (vit_patch_resize.py).
  """
  if not epath.Path(path).exists():  # epath: local or gs://
    raise FileNotFoundError(f'checkpoint {path!r} does not exist; give one of our run '
                            'directories or a published .npz / Swin weights file')
  patch = PatchResize(patch_size, patch_resize_method)
  if epath.Path(path).is_dir():
    return _load_run(path, model_name, image_size, patch)
  return _load_file(path, model_name, image_size, source_image_size, patch)


def _load_run(workdir: str, model_name, image_size, patch: PatchResize) -> Classifier:
  config = read_run_config(workdir)
  if model_name and model_name != config['model']:
    raise ValueError(f'--model {model_name} but the run trained {config["model"]}; '
                     'leave --model out for run directories')
  item = 'ema_params' if config.get('ema_decay') else 'params'
  flat = published.flatten(training.read_arrays(workdir, item=item))
  num_classes = _head_size(flat, workdir)
  model = run_config.create_model(config, num_classes, image_size_override=image_size)
  if patch.fields(model, config['model']):
    model = _at_patch(patch, lambda: run_config.create_model(
        config, num_classes, image_size_override=image_size,
        patch_size_override=patch.size))
  params, notes = fit.fit_params(flat, model,
                                 source_image_size=run_config.image_size(config),
                                 patch_size=patch.size,
                                 patch_resize_method=patch.method)
  return Classifier(model, params, run_config.eval_preprocessing(config, image_size),
                    config, (f'{item} of the latest checkpoint in {workdir}', *notes))


def _at_patch(patch: PatchResize, create):
  """create() of a model at --patch_size, its size errors saying which flag to change."""
  if not patch.size:
    return create()
  try:
    return create()
  except ValueError as e:
    raise ValueError(f'--patch_size {patch.size}: {e} (--image_size), or give a '
                     '--patch_size whose token stride divides the image size') from None


def read_run_config(workdir: str) -> dict:
  """The training config of a run directory: the one stored with its newest complete
  checkpoint (what trained those weights), else its config.json."""
  stored = (training.stored_config(workdir)
            if epath.Path(training.checkpoint_dir(workdir)).is_dir() else None)
  if stored is not None:
    return stored
  path = epath.Path(workdir) / training.CONFIG_FILE
  if not path.is_file():
    raise FileNotFoundError(
        f'{workdir!r} has no {training.CONFIG_FILE}: not a run directory of '
        'vit_jax.main; give the directory given as --workdir to training, or a published weights file')
  return json.loads(path.read_text())


def _load_file(path: str, model_name, image_size, source_image_size,
               patch: PatchResize) -> Classifier:
  if not model_name:
    raise ValueError(f'--model is required for the published file {path!r} (e.g. '
                     f'ViT-B/16); valid names: {", ".join(models.names())}')
  flat = published.flatten(published.load_params(path))
  num_classes = _head_size(flat, path)
  fields = _file_fields(flat, model_name, num_classes)
  run_size = run_config.optional_size(image_size)
  # At the size asked for: a non-square file made for exactly that grid is known.
  probe = models.create(model_name, num_classes=num_classes, **fields,
                        **({'image_size': run_size} if run_size else {}))
  patch_fields = patch.fields(probe, model_name)
  source, how = _trained_size(flat, probe, run_config.optional_size(source_image_size))
  model = _at_patch(patch, lambda: models.create(
      model_name, num_classes=num_classes, image_size=run_size or source, **fields,
      **patch_fields))
  params, fit_notes = fit.fit_params(flat, model, source_image_size=source,
                                     patch_size=patch.size,
                                     patch_resize_method=patch.method)
  notes = (f'checkpoint resolution {source[0]}x{source[1]} ({how})', *fit_notes)
  return Classifier(model, params, run_config.published_preprocessing(model.image_size),
                    None, notes)


def _file_fields(flat: dict, model_name: str, num_classes: int) -> dict:
  """Model fields a published file fixes: pre_logits width, and its family's
  (`file_fields`; ViT: the class token)."""
  fields = {}
  if 'pre_logits/bias' in flat:
    fields['representation_size'] = int(flat['pre_logits/bias'].shape[0])
  probe = models.create(model_name, num_classes=num_classes, **fields)
  return {**fields, **registry.family(probe).file_fields(flat)}


def _head_size(flat: dict, where: str) -> int:
  if _HEAD_BIAS not in flat:
    raise ValueError(f'{where} has no {_HEAD_BIAS}: a classifier head is needed to '
                     'predict (feature extractors without a head are not supported)')
  return int(np.shape(flat[_HEAD_BIAS])[0])


def _trained_size(flat: dict, model, explicit) -> tuple[tuple[int, int], str]:
  """Resolution of a published file: the family's rule (`trained_image_size`, the one
  fine-tuning uses; explicit wins), else the explicit size, else the model's default
  (nothing in the file depends on the resolution, e.g. Swin: the bias tables follow
  the window)."""
  size, how = registry.family(model).trained_image_size(flat, model, explicit)
  if size is not None:
    return size, how
  if explicit:
    return explicit, 'given as source_image_size'
  return model.image_size, f'the default of {type(model).__name__}'


def image_preprocessor(classifier: Classifier):
  """encoded JPEG/PNG/GIF/BMP bytes -> float32 (H, W, 3) in [-1, 1], as the classifier's
  evaluation prepared images (data.images.eval_image, the pipeline's own op).

  Raises ValueError naming the problem for bytes that are not a decodable image.
  """
  prep = classifier.preprocessing

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  def resize(image):  # traced once for every image size.
    return images.eval_image(image, prep)

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

"""Per-example ops of the pipelines: labels, the training augmentation and the one eval
preprocessing (which `inference` uses too, so predictions see what evaluation saw)."""
from __future__ import annotations

import tensorflow as tf

from vit_jax import run_config
from vit_jax.data import preprocess
from vit_jax.data import randaugment


def label(label: tf.Tensor, num_classes: int, multi_label: bool,
           smoothing: float) -> tf.Tensor:
  if multi_label:
    return preprocess.multi_hot(label, num_classes)
  return preprocess.one_hot(label, num_classes, smoothing)


def train_image(example: dict, seed: tf.Tensor, data, size) -> tf.Tensor:
  """Decoded or encoded image -> augmented uint8 (H, W, 3); value range is set per batch.

  Sub-seeds are folded in only for the ops that run (each op costs ~5 us per image, which
  matters at the demo's 16 px).
  """
  if data.train_crop == 'inception':
    crop_seed = preprocess.fold_seed(seed, 0)
    if 'image' in example:  # already decoded (folder source)
      image = preprocess.inception_crop(example['image'], size, crop_seed, data.crop_area_min)
    else:
      image = preprocess.decode_and_inception_crop(example['encoded'], size, crop_seed,
                                                   data.crop_area_min)
  else:  # 'resize' (run_config.check_preprocessing checked the name)
    image = example['resized'] if 'resized' in example else preprocess.resize(
        decoded(example), size)
  if data.flip:
    image = preprocess.flip(image, preprocess.fold_seed(seed, 1))
  if data.randaug_layers > 0:
    image = randaugment.randaugment(image, data.randaug_layers, data.randaug_magnitude,
                                   preprocess.fold_seed(seed, 2))
  return image


def eval_image(image: tf.Tensor, prep: run_config.EvalPreprocessing) -> tf.Tensor:
  """Decoded uint8 (h, w, 3) -> float32 (H, W, 3) in [-1, 1], deterministic: the eval
  preprocessing of training's evaluation and of `inference` alike."""
  if prep.resize == 'resize_crop':
    image = preprocess.resize_and_central_crop(image, prep.image_size, prep.crop_ratio)
  else:
    image = preprocess.resize(image, prep.image_size)
  return preprocess.value_range(image)


def decoded(example: dict) -> tf.Tensor:
  return example['image'] if 'image' in example else preprocess.decode(example['encoded'])

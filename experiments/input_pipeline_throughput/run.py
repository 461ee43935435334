"""Input-pipeline throughput (images/s) on this machine: a benchmark, not a test.

  PYTHONPATH=. python experiments/input_pipeline_throughput/run.py [--data_dir=/tmp/tfds_demo]

1. ImageNet-like: 224 px training preprocessing (inception crop + flip, then also with
   RandAugment(2, 15)) of synthetic 500x375 JPEGs held in memory, through the same
   per-example function and tf.data options the tfds source uses.
2. The demo: the real `host_train_dataset` on vit_demo/upstream at 16 px and
   vit_demo/downstream at 32 px (the demo's resize + flip recipe).
3. What a tiny ViT train step (width 64, depth 4, patch 4, batch 128) consumes at 16 and
   32 px on the same cores, alone (constant batch) and fed by the real train_iterator.

Prints one line per measurement; README.md records a run.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time

import numpy as np
import PIL.Image
import tensorflow as tf

from vit_jax.configs import common
from vit_jax.data import pipeline
from vit_jax.data import images
from vit_jax.data import global_batches
from vit_jax.data import preflight

BATCH = 128


def synthetic_jpegs(n: int, seed: int = 0) -> list[bytes]:
  """500x375 JPEGs (ImageNet's typical size) with photo-like detail: ~60-120 KB each."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    coarse = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
    image = np.asarray(PIL.Image.fromarray(coarse).resize((500, 375), PIL.Image.BICUBIC))
    image = np.clip(image + rng.normal(0, 18, image.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format='JPEG', quality=90)
    out.append(buffer.getvalue())
  return out


def images_per_second(ds, batches: int, warmup: int = 3) -> float:
  it = iter(ds)
  for _ in range(warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * BATCH / (time.perf_counter() - start)


def imagenet_like(config, jpegs: list[bytes], batches: int) -> float:
  size = (224, 224)
  ds = tf.data.Dataset.from_tensor_slices(jpegs).repeat().enumerate()
  ds = ds.map(lambda i, e: images.train_image(  # pylint: disable=protected-access
      {'encoded': e}, tf.stack([tf.constant(0, tf.int64), i]), config.data, size),
              num_parallel_calls=config.data.num_parallel_calls, deterministic=True)
  ds = ds.batch(BATCH).prefetch(config.data.prefetch)
  ds = ds.with_options(pipeline.options(config.data))
  return images_per_second(ds, batches)


def demo_config(data_dir: str, name: str, res: int, cache_decoded: bool):
  config = common.get_config()
  config.data.update(dataset=name, data_dir=data_dir, train_crop='resize', flip=True,
                     cache_decoded=cache_decoded)
  config.image_size, config.batch_size = res, BATCH
  return config


def skip_first_epoch(iterator, config):
  """With cache_decoded, the first epoch fills the cache; measure the steady state."""
  if config is not None and config.data.cache_decoded:
    examples = preflight.preflight(config, data_shards=1).num_train_examples
    for _ in range(examples // BATCH + 1):
      next(iterator)
  return iterator


def demo_pipeline(config, batches: int) -> float:
  return images_per_second(
      skip_first_epoch(iter(pipeline.host_train_dataset(config)), config), batches)


def tiny_vit_step(res: int, num_classes: int, config=None, steps: int = 40) -> float:
  """Images/s of a jit-compiled Adam step of the probe's tiny ViT (width 64, depth 4).

  With `config`, batches come from the real `train_iterator` (pipeline and step share
  the cores, as in training); otherwise one constant batch is reused (the step alone).
  Timed after 5 warm-up steps (compilation, shuffle buffer, and a filled decoded cache).
  """
  import jax
  import jax.numpy as jnp
  import optax
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'demo_dataset'))
  from probe import TinyViT  # the demo_dataset probe's ~60-line model
  model = TinyViT(num_classes=num_classes, width=64, depth=4)
  params = model.init(jax.random.key(0), jnp.zeros((1, res, res, 3)))['params']
  tx = optax.adam(1e-3)

  @jax.jit
  def step(params, opt, x, y):
    loss = lambda p: optax.softmax_cross_entropy(model.apply({'params': p}, x), y).mean()
    updates, opt = tx.update(jax.grad(loss)(params), opt, params)
    return optax.apply_updates(params, updates), opt
  opt = tx.init(params)
  if config is not None:
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
    batches = global_batches.train_iterator(
        config, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data')))
  else:
    batch = {'image': jnp.zeros((BATCH, res, res, 3)), 'label': jnp.zeros((BATCH, num_classes))}
    batches = iter(lambda: batch, None)
  batches = skip_first_epoch(batches, config)
  for _ in range(5):
    b = next(batches)
    params, opt = step(params, opt, b['image'], b['label'])
  jax.block_until_ready(params)
  start = time.perf_counter()
  for _ in range(steps):
    b = next(batches)
    params, opt = step(params, opt, b['image'], b['label'])
  jax.block_until_ready(params)
  return steps * BATCH / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--data_dir', default='/tmp/tfds_demo')
  parser.add_argument('--batches', type=int, default=8)
  args = parser.parse_args()
  print(f'cores: {os.cpu_count()}, load average: {os.getloadavg()}')
  jpegs = synthetic_jpegs(64)
  print(f'synthetic JPEGs: {np.mean([len(j) for j in jpegs]) / 1e3:.0f} KB mean, 500x375')
  config = common.get_config()  # num_parallel_calls=2, inception crop, flip
  rate = imagenet_like(config, jpegs, args.batches)
  print(f'224 px inception crop + flip:                 {rate:7.1f} img/s')
  config.data.update(randaug_layers=2, randaug_magnitude=15)
  rate = imagenet_like(config, jpegs, args.batches)
  print(f'224 px inception crop + flip + RandAugment(2,15): {rate:7.1f} img/s')
  demos = (('vit_demo/upstream', 16, 100), ('vit_demo/downstream', 32, 10))
  for name, res, _ in demos:
    for cached in (False, True):
      rate = demo_pipeline(demo_config(args.data_dir, name, res, cached), 4 * args.batches)
      print(f'{name} at {res} px (resize + flip), full pipeline, cache_decoded={cached}: '
            f'{rate:7.1f} img/s')
  for name, res, classes in demos:
    alone = tiny_vit_step(res, classes)
    fed = {cached: tiny_vit_step(res, classes, demo_config(args.data_dir, name, res, cached))
           for cached in (False, True)}
    print(f'tiny ViT (w64, d4, p4) step at {res} px: {alone:7.1f} img/s on a constant '
          f'batch; fed by the pipeline ({name}): {fed[False]:7.1f} img/s, '
          f'{fed[True]:7.1f} img/s with cache_decoded')
  print(f'load average after: {os.getloadavg()}')


if __name__ == '__main__':
  main()

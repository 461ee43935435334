"""Quick check that the demo dataset is learnable and that upstream pretraining transfers.

Not the project's model or training loop (those live in vit_jax/): a ~60-line tiny ViT
(width 64, depth 4, 4 heads, patch 4, class token, learned position embeddings), plain
AdamW, images resized with the pipeline's own `preprocess.resize`, no augmentation but
random horizontal flips (label-preserving by design). Three runs:

  1. pretrain on vit_demo/upstream at --pretrain_res,
  2. fine-tune that model on vit_demo/downstream at --finetune_res (position embeddings
     resized bilinearly, new zero head),
  3. the same model from scratch on downstream with the same step budget.

  PYTHONPATH=. python experiments/demo_dataset/probe.py --data_dir=/tmp/tfds_demo \
      --pretrain_res=16 --finetune_res=32 --width=64 --pretrain_steps=2000 \
      --finetune_steps=300

Prints accuracies and wall times; README.md in this folder records what it printed.
"""
from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tensorflow_datasets as tfds

from vit_jax.data import preprocess
from vit_jax.data import to_array_record
import vit_jax.datasets  # noqa: F401  (registers vit_demo)


def load(name: str, split: str, res: int, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
  """All of a split as (N, res, res, 3) float32 in [-1, 1] and (N,) int labels."""
  builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
  builder.download_and_prepare()  # as vit_jax prepares it, if missing
  source = to_array_record.random_access_builder(builder).as_data_source(split=split)
  images = [preprocess.value_range(preprocess.resize(ex['image'], (res, res))).numpy()
            for ex in source]  # the input pipeline's own resize
  return np.stack(images), np.array([ex['label'] for ex in source])


class Block(nn.Module):
  width: int
  heads: int

  @nn.compact
  def __call__(self, x):
    y = nn.LayerNorm()(x)
    x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads)(y, y)
    y = nn.LayerNorm()(x)
    y = nn.Dense(self.width)(nn.gelu(nn.Dense(2 * self.width)(y)))
    return x + y


class TinyViT(nn.Module):
  num_classes: int
  width: int = 96
  depth: int = 4
  heads: int = 4
  patch: int = 4

  @nn.compact
  def __call__(self, images):
    x = nn.Conv(self.width, (self.patch,) * 2, strides=(self.patch,) * 2,
                name='embedding')(images)
    n, h, w, d = x.shape
    x = x.reshape(n, h * w, d)
    cls = self.param('cls', nn.initializers.zeros, (1, 1, d))
    x = jnp.concatenate([jnp.tile(cls, (n, 1, 1)), x], axis=1)
    x = x + self.param('pos_embedding', nn.initializers.normal(0.02), (1, h * w + 1, d))
    for _ in range(self.depth):
      x = Block(self.width, self.heads)(x)
    x = nn.LayerNorm()(x[:, 0])
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name='head')(x)


def train(model, params, data, steps, lr, batch, seed):
  images, labels = data
  tx = optax.adamw(optax.warmup_cosine_decay_schedule(0, lr, steps // 10, steps),
                   weight_decay=1e-4)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, x, y):
    def loss_fn(p):
      logits = model.apply({'params': p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  rng = np.random.default_rng(seed)
  start = time.time()
  for i in range(steps):
    idx = rng.integers(0, len(images), batch)
    x = images[idx]
    flip = rng.random(batch) < 0.5
    x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
    params, opt, loss = step(params, opt, x, labels[idx])
    if i % max(1, steps // 5) == 0 or i == steps - 1:
      print(f'  step {i:5d} loss {float(loss):.3f} ({time.time() - start:.0f}s)', flush=True)
  return params, time.time() - start


def accuracy(model, params, data, batch=500):
  apply = jax.jit(lambda p, x: model.apply({'params': p}, x).argmax(-1))
  images, labels = data
  correct = sum(int((apply(params, images[i:i + batch]) == labels[i:i + batch]).sum())
                for i in range(0, len(images), batch))
  return correct / len(images)


def resize_posemb(posemb, old: int, new: int):
  """(1, 1 + old^2, D) -> (1, 1 + new^2, D): class token kept, grid resized bilinearly."""
  cls, grid = posemb[:, :1], posemb[0, 1:].reshape(old, old, -1)
  grid = jax.image.resize(grid, (new, new, grid.shape[-1]), 'bilinear')
  return jnp.concatenate([cls, grid.reshape(1, new * new, -1)], axis=1)


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--data_dir', default='/tmp/tfds_demo')
  p.add_argument('--pretrain_res', type=int, default=16)
  p.add_argument('--finetune_res', type=int, default=32)
  p.add_argument('--pretrain_steps', type=int, default=2000)
  p.add_argument('--finetune_steps', type=int, default=300)
  p.add_argument('--width', type=int, default=64)
  p.add_argument('--depth', type=int, default=4)
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--seed', type=int, default=0)
  args = p.parse_args()

  up_train = load('vit_demo/upstream', 'train', args.pretrain_res, args.data_dir)
  up_test = load('vit_demo/upstream', 'test', args.pretrain_res, args.data_dir)
  down_train = load('vit_demo/downstream', 'train', args.finetune_res, args.data_dir)
  down_test = load('vit_demo/downstream', 'test', args.finetune_res, args.data_dir)
  kw = dict(width=args.width, depth=args.depth)

  up_classes = tfds.builder('vit_demo/upstream', data_dir=args.data_dir).info.features[
      'label'].num_classes
  up_model = TinyViT(num_classes=up_classes, **kw)
  init = lambda m, res: m.init(jax.random.key(args.seed),
                               jnp.zeros((1, res, res, 3)))['params']
  print('pretrain upstream')
  up_params, up_time = train(up_model, init(up_model, args.pretrain_res), up_train,
                             args.pretrain_steps, 1e-3, args.batch, seed=args.seed)
  up_acc = accuracy(up_model, up_params, up_test)

  down_model = TinyViT(num_classes=10, **kw)
  fresh = init(down_model, args.finetune_res)
  ft = dict(up_params, head=fresh['head'])
  ft['pos_embedding'] = resize_posemb(up_params['pos_embedding'], args.pretrain_res // 4,
                                      args.finetune_res // 4)
  print('fine-tune downstream from upstream')
  ft_params, ft_time = train(down_model, ft, down_train, args.finetune_steps, 3e-4,
                             args.batch, seed=args.seed + 1)
  print('downstream from scratch')
  sc_params, sc_time = train(down_model, fresh, down_train, args.finetune_steps, 1e-3,
                             args.batch, seed=args.seed + 1)
  print(f'upstream test accuracy        {up_acc:.3f}  ({up_time:.0f}s train)')
  print(f'downstream after pretraining  {accuracy(down_model, ft_params, down_test):.3f}'
        f'  ({ft_time:.0f}s)')
  print(f'downstream from scratch       {accuracy(down_model, sc_params, down_test):.3f}'
        f'  ({sc_time:.0f}s)')


if __name__ == '__main__':
  main()

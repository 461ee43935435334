"""The ViT paper's Fig. 6/7 analyses for the demo's models, written to experiments/demo/figures.

  python experiments/demo/figures.py --workdir=/tmp/vit_demo   # after python -m vit_jax.demo

Exports 32 downstream test images as PNG (the inputs for the attention analyses), then
runs `python -m vit_jax.analyze` on the pretrained model (16 px, 4x4 tokens) and on the
fine-tuned one (32 px, 8x8 tokens, position embeddings resampled from 4x4 then trained).
"""
from __future__ import annotations

import os
import subprocess
import sys

from absl import app
from absl import flags
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from vit_jax.data import to_array_record

import vit_jax.datasets  # noqa: F401  (registers vit_demo)

_WORKDIR = flags.DEFINE_string('workdir', None, 'The demo workdir (pretrain/, finetune/).')
_OUT = flags.DEFINE_string('out', os.path.join(os.path.dirname(__file__), 'figures'),
                           'Where the PNGs and numbers go.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'tfds data_dir of vit_demo.')
_IMAGES = flags.DEFINE_integer('images', 32, 'Test images for the attention analyses.')
flags.mark_flag_as_required('workdir')


def export_images(out: str, count: int) -> list[str]:
  """The first `count` downstream test images (64 px) as PNG files."""
  os.makedirs(out, exist_ok=True)
  # Random access: works for vit_demo prepared as ArrayRecord and for a converted one.
  builder = to_array_record.random_access_builder(
      tfds.builder('vit_demo/downstream', data_dir=_DATA_DIR.value))
  paths = []
  for i, example in enumerate(builder.as_data_source(split=f'test[:{count}]')):
    paths.append(os.path.join(out, f'{i:02d}_label{example["label"]}.png'))
    Image.fromarray(np.asarray(example['image'])).save(paths[-1])
  return paths


def analyze(what: str, run: str, out: str, images: list[str], *extra: str) -> None:
  command = [sys.executable, '-m', 'vit_jax.analyze', what, f'--checkpoint={run}',
             f'--out={out}', *extra, *images]
  print(' '.join(command[1:6]), flush=True)
  subprocess.run(command, check=True)


def main(argv) -> None:
  del argv
  images = export_images(os.path.join(_OUT.value, 'inputs'), _IMAGES.value)
  for phase in ('pretrain', 'finetune'):
    run, out = os.path.join(_WORKDIR.value, phase), os.path.join(_OUT.value, phase)
    analyze('posemb', run, out, [])
    analyze('filters', run, out, [], '--components=16')
    analyze('attention-distance', run, out, images)
    analyze('attention', run, out, images[:4], '--layers=0,1,2,3')


if __name__ == '__main__':
  app.run(main)

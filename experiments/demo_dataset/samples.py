"""Writes samples.png: 8 upstream scenes (rows 1-2: at 16 and 64 px) and 8 downstream
scenes (rows 3-4: at 32 and 64 px), each upscaled to 96 px with nearest neighbours.

  PYTHONPATH=. python experiments/demo_dataset/samples.py
"""
import os

import numpy as np
import PIL.Image

from vit_jax.datasets import demo


def tile(task: str, res: int) -> np.ndarray:
  row = []
  for i in range(8):
    scene, _ = demo.example(task, 'train', i)
    image = PIL.Image.fromarray(demo.render(scene, res)).resize((96, 96), PIL.Image.NEAREST)
    row.append(np.pad(np.asarray(image), ((2, 2), (2, 2), (0, 0)), constant_values=255))
  return np.concatenate(row, axis=1)


if __name__ == '__main__':
  for task in ('upstream', 'downstream'):
    print(task, [demo.label_names(task)[demo.example(task, 'train', i)[1]] for i in range(8)])
  grid = np.concatenate([tile('upstream', 16), tile('upstream', 64),
                         tile('downstream', 32), tile('downstream', 64)])
  PIL.Image.fromarray(grid).save(os.path.join(os.path.dirname(__file__), 'samples.png'))

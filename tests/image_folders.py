"""Image folders in the layouts people download, written tiny and deterministic for tests.

  write_one_tree(root)       root/<wnid>/<wnid>_<k>.JPEG       the full ImageNet-21k release
  write_split_folders(root)  root/{train,val}/<wnid>/*.JPEG    ImageNet-21K-P (Ridnik et al.)

Each class is a colour with a class-dependent stripe pattern plus per-image noise, so a
tiny model can learn the classes and decoded images can be told apart.
"""
from __future__ import annotations

import os

import numpy as np
import PIL.Image

# WordNet ids of ImageNet-21k synsets (the first one is also ImageNet-1k's first class).
WNIDS = ('n00004475', 'n00005787', 'n00006024', 'n00006484', 'n00007846', 'n00015388',
         'n00017222', 'n00021265', 'n00021939', 'n00120010', 'n00141669', 'n00288000')


def class_image(label: int, index: int, size: tuple[int, int] = (36, 44)) -> np.ndarray:
  """uint8 (H, W, 3): colour and stripe period from the label, noise from the index."""
  h, w = size
  rng = np.random.default_rng(1000 * label + index)
  hue = np.array([(53 * label) % 256, (97 * label + 80) % 256, (151 * label + 160) % 256])
  stripes = ((np.arange(w) // (2 + label % 5)) % 2)[None, :, None] * 60
  image = hue[None, None, :] + stripes + rng.integers(-20, 20, (h, w, 3))
  return np.clip(image, 0, 255).astype(np.uint8)


def write_jpeg(path: str, image: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  PIL.Image.fromarray(image).save(path, format='JPEG', quality=90)


def write_one_tree(root: str, classes: int = 4, per_class: int = 25) -> list[str]:
  """root/<wnid>/<wnid>_<k>.JPEG; returns the class names (sorted wnids)."""
  names = list(WNIDS[:classes])
  for label, wnid in enumerate(names):
    for k in range(per_class):
      write_jpeg(os.path.join(root, wnid, f'{wnid}_{k}.JPEG'), class_image(label, k))
  return names


def write_split_folders(root: str, classes: int = 4, per_class: dict | None = None
                        ) -> list[str]:
  """root/<split>/<wnid>/*.JPEG for each split in `per_class` (default train 20, val 5)."""
  per_class = per_class or {'train': 20, 'val': 5}
  names = list(WNIDS[:classes])
  offset = 0
  for split, count in per_class.items():
    for label, wnid in enumerate(names):
      for k in range(count):
        write_jpeg(os.path.join(root, split, wnid, f'{wnid}_{offset + k}.JPEG'),
               class_image(label, offset + k))
    offset += count
  return names

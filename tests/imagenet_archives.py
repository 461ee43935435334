"""Tiny ImageNet-2012 archives in the official layout, and a tfds data_dir prepared from them.

`write_imagenet2012_archives` writes what image-net.org ships, at toy size:

  ILSVRC2012_img_train.tar   one tar per synset: n01440764.tar -> n01440764_<k>.JPEG ...
  ILSVRC2012_img_val.tar     flat: ILSVRC2012_val_00000001.JPEG ... (no labels inside)

Synset ids are real ones, read from the installed tfds's imagenet2012 label list. tfds
labels the validation images by zipping the SORTED member names of the val tar with its
shipped validation_labels.txt (imagenet_common.get_validation_labels), so it assumes all
50,000 files are there: a val tar holding only files 5 and 12 would get the labels of
files 1 and 2. We therefore write files 1..M, whose official labels are then exact, and
choose the trained synsets to include those M labels.

Images are small JPEGs whose colour and stripe direction depend on the class (so a
model could learn them), plus per-image noise; everything is a function of `seed`.

`prepare_imagenet2012` runs tfds's real imagenet2012 builder on them (what
`tfds build imagenet2012 --manual_dir=...` does), no mocking; tests/conftest.py exposes
it as the session fixture `imagenet2012_data_dir`.
"""
from __future__ import annotations

import colorsys
import dataclasses
import io
import os
import tarfile
import time

import numpy as np
import PIL.Image

TRAIN_TAR = 'ILSVRC2012_img_train.tar'
VAL_TAR = 'ILSVRC2012_img_val.tar'
IMAGE_SIZE = (40, 48)  # (height, width) of every written JPEG


@dataclasses.dataclass(frozen=True)
class ImagenetArchives:
  """What `write_imagenet2012_archives` wrote."""
  manual_dir: str
  synsets: list[str]  # the generated classes, in generation order
  train_files: dict[str, list[str]]  # synset -> its JPEG names in the train tar
  val_labels: list[str]  # official synset of ILSVRC2012_val_{i+1:08}.JPEG

  @property
  def num_train(self) -> int:
    return sum(len(v) for v in self.train_files.values())

  @property
  def num_val(self) -> int:
    return len(self.val_labels)


@dataclasses.dataclass(frozen=True)
class Imagenet2012Data:
  """A tfds data_dir with imagenet2012 prepared from `archives` (in `manual_dir`)."""
  data_dir: str
  manual_dir: str
  archives: ImagenetArchives
  prepare_seconds: float  # wall time of tfds's download_and_prepare


def _tfds_imagenet_file(name: str) -> str:
  import tensorflow_datasets as tfds
  return os.fspath(tfds.core.tfds_path(f'datasets/imagenet2012/{name}'))


def official_synsets() -> list[str]:
  """The 1000 synsets in tfds's label order (label i = line i)."""
  with open(_tfds_imagenet_file('labels.txt')) as f:
    return f.read().split()


def official_val_labels(count: int) -> list[str]:
  """Official synsets of ILSVRC2012_val_00000001 ... _{count:08}."""
  with open(_tfds_imagenet_file('validation_labels.txt')) as f:
    return f.read().split()[:count]


def _choose_synsets(classes: int, val_labels: list[str]) -> list[str]:
  # The val images' synsets first (they must be trained on), then the label list in order.
  chosen = list(dict.fromkeys(val_labels))
  if classes < len(chosen):
    raise ValueError(f'{len(val_labels)} val images have {len(chosen)} distinct official '
                     f'labels; use classes >= {len(chosen)} or fewer val_images')
  for synset in official_synsets():
    if len(chosen) == classes:
      break
    if synset not in chosen:
      chosen.append(synset)
  return chosen


def class_image(class_index: int, num_classes: int, rng: np.random.Generator) -> bytes:
  """JPEG bytes: hue and stripe direction from the class, noise from `rng`."""
  h, w = IMAGE_SIZE
  rgb = np.array(colorsys.hsv_to_rgb(class_index / num_classes, 0.8, 0.9)) * 255
  y, x = np.mgrid[:h, :w]
  angle = np.pi * (class_index % 4) / 4
  stripes = np.sin((x * np.cos(angle) + y * np.sin(angle)) * 0.6) * 40
  pixels = rgb + stripes[..., None] + rng.normal(0, 12, (h, w, 3))
  out = io.BytesIO()
  PIL.Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format='JPEG',
                                                                      quality=90)
  return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size, info.mtime = len(data), 0  # fixed mtime: byte-identical archives per seed
  tar.addfile(info, io.BytesIO(data))


def _skip_names() -> set[str]:
  # The builder converts these official file names (CMYK / PNG in the real archive); a
  # plain JPEG under such a name would break its conversion.
  from tensorflow_datasets.datasets.imagenet2012 import imagenet2012_dataset_builder as b
  return set(b.CMYK_IMAGES) | set(b.PNG_IMAGES)


def _train_names(synset: str, count: int, rng: np.random.Generator) -> list[str]:
  skip, names = _skip_names(), []
  for number in sorted(rng.choice(np.arange(1, 30_000), 2 * count, replace=False)):
    if f'{synset}_{number}.JPEG' not in skip and len(names) < count:
      names.append(f'{synset}_{number}.JPEG')
  return names


def write_imagenet2012_archives(manual_dir: str, classes: int = 12,
                                train_per_class: int = 8, val_images: int = 10,
                                seed: int = 0) -> ImagenetArchives:
  """Writes TRAIN_TAR and VAL_TAR into `manual_dir` (created); see the module doc."""
  rng = np.random.default_rng(seed)
  val_labels = official_val_labels(val_images)
  synsets = _choose_synsets(classes, val_labels)
  index = {s: i for i, s in enumerate(synsets)}
  os.makedirs(manual_dir, exist_ok=True)
  train_files = {}
  with tarfile.open(os.path.join(manual_dir, TRAIN_TAR), 'w', format=tarfile.GNU_FORMAT) as outer:
    for synset in synsets:
      inner_bytes = io.BytesIO()
      with tarfile.open(fileobj=inner_bytes, mode='w', format=tarfile.GNU_FORMAT) as inner:
        train_files[synset] = _train_names(synset, train_per_class, rng)
        for name in train_files[synset]:
          _add(inner, name, class_image(index[synset], classes, rng))
      _add(outer, f'{synset}.tar', inner_bytes.getvalue())
  with tarfile.open(os.path.join(manual_dir, VAL_TAR), 'w', format=tarfile.GNU_FORMAT) as val:
    for i, synset in enumerate(val_labels):
      _add(val, f'ILSVRC2012_val_{i + 1:08}.JPEG', class_image(index[synset], classes, rng))
  return ImagenetArchives(manual_dir, synsets, train_files, val_labels)


def prepare_imagenet2012(root: str, **archive_kwargs) -> Imagenet2012Data:
  """Writes the archives to <root>/manual and prepares <root>/tfds with tfds's real
  imagenet2012 builder, exactly as `tfds build imagenet2012 --data_dir=<root>/tfds
  --manual_dir=<root>/manual --file_format=array_record` does (the format vit_jax
  prepares it in: random access for the global stream)."""
  import tensorflow_datasets as tfds
  manual_dir, data_dir = os.path.join(root, 'manual'), os.path.join(root, 'tfds')
  archives = write_imagenet2012_archives(manual_dir, **archive_kwargs)
  start = time.perf_counter()
  tfds.builder('imagenet2012', data_dir=data_dir,
               file_format='array_record').download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return Imagenet2012Data(data_dir, manual_dir, archives, time.perf_counter() - start)

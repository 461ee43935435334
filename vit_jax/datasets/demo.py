"""`vit_demo`: the offline demo dataset, procedurally generated, no download.

Every image is a few flat shapes (10 kinds, see `SHAPES`) on a textured background. An
example is first drawn as *parameters* (`Scene`: shapes, centres, radii, angles, colours,
background gratings, all in canvas units [0, 1]) from a numpy Generator seeded by
(task, split, index), then rasterised by `render(scene, size)` at any resolution: shape
edges are signed-distance functions evaluated at pixel centres, so the same scene at 32 or
256 px is the same picture. The builder stores JPEGs at a native size (64 px) and the
input pipeline resizes.

Two tasks share that visual vocabulary, so what upstream pretraining learns (which shape,
above which) is what the downstream task needs, while the downstream label set differs:

* `upstream` (pretraining, 40k train / 4k test): two large objects, one clearly above the
  other. Label = (shape of the upper, shape of the lower): 10 x 10 = 100 classes. Objects
  are 6-8 px across at 16 px, so it is meant for low-resolution pretraining.
* `downstream` (fine-tuning, 1k train / 2k test): three smaller objects of distinct
  shapes (7-10 px across at 32 px, the pixel scale upstream has at 16 px). Label = the
  shape of the TOPMOST one: 10 classes. Few training images make training from scratch
  data-starved; a relational label makes position embeddings and attention matter.
* `multilabel_tiny`: downstream's scenes labelled by the set of shapes present
  (multi-hot, ImageNet-21k style), for tests of the multi-label path.

Colours, sizes, rotations (+-15 deg), horizontal positions and the background texture
are nuisances. Every label is invariant to a horizontal flip (all shapes are left-right
symmetric and labels only involve height), so random flips are valid augmentation;
crops and RandAugment's geometric ops are not (they cut objects or reorder heights):
train the demo with `data.train_crop='resize'`.

`upstream_tiny` / `downstream_tiny` are the same tasks with a handful of 32 px images,
for tests.
Importing `vit_jax.datasets` registers the builder: `tfds.builder('vit_demo/upstream')`.
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

SHAPES = ('disc', 'square', 'triangle', 'plus', 'ring', 'diamond', 'frame', 'x',
          'hbars', 'vbars')
# Eight saturated hues (RGB in [0, 1]); colour is a nuisance, never part of a label.
PALETTE = np.array([
    (0.90, 0.15, 0.15), (0.15, 0.80, 0.20), (0.20, 0.35, 0.95), (0.95, 0.85, 0.10),
    (0.85, 0.20, 0.85), (0.10, 0.85, 0.85), (0.95, 0.55, 0.10), (0.95, 0.95, 0.95),
], np.float32)
_SQRT3 = np.sqrt(3.0)


@dataclasses.dataclass(frozen=True)
class Scene:
  """Resolution-free description of one image; lengths in canvas units [0, 1].

  Row k of each (num_objects,) array is object k, drawn in order (later on top).
  """
  shape: np.ndarray  # (n,) int, index into SHAPES.
  centre: np.ndarray  # (n, 2) float (x, y), y pointing down.
  radius: np.ndarray  # (n,) float, the shape spans about +-radius.
  angle: np.ndarray  # (n,) float radians, counter-clockwise.
  color: np.ndarray  # (n, 3) float RGB in [0, 1].
  background: np.ndarray  # (3,) float RGB base colour.
  gratings: np.ndarray  # (g, 4) float rows (freq_x, freq_y [cycles/canvas], phase, amplitude).


# --- rasterisation --------------------------------------------------------------------

def _box(u, v, half_w, half_h):
  # Signed distance (approximate outside the corners, exact on the edges) of a box.
  return np.maximum(np.abs(u) - half_w, np.abs(v) - half_h)


def _plus(u, v):
  return np.minimum(_box(u, v, 0.95, 0.3), _box(u, v, 0.3, 0.95))


def shape_sdf(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Signed distance to shape `kind` in units of its radius; u right, v up; < 0 inside."""
  name = SHAPES[kind]
  if name == 'disc':
    return np.hypot(u, v) - 0.9
  if name == 'square':
    return _box(u, v, 0.78, 0.78)
  if name == 'triangle':  # equilateral, pointing up, vertices 1.0 from the centroid.
    return np.maximum(-v, (_SQRT3 * np.abs(u) + v) / 2) - 0.5
  if name == 'plus':
    return _plus(u, v)
  if name == 'ring':
    return np.abs(np.hypot(u, v) - 0.68) - 0.25
  if name == 'diamond':
    return (np.abs(u) + np.abs(v)) / np.sqrt(2.0) - 0.7
  if name == 'frame':
    return np.abs(_box(u, v, 0.6, 0.6)) - 0.2
  if name == 'x':
    return _plus((u + v) / np.sqrt(2.0), (v - u) / np.sqrt(2.0))
  if name == 'hbars':
    return np.minimum(_box(u, v - 0.45, 0.85, 0.22), _box(u, v + 0.45, 0.85, 0.22))
  if name == 'vbars':
    return np.minimum(_box(u - 0.45, v, 0.22, 0.85), _box(u + 0.45, v, 0.22, 0.85))
  raise ValueError(f'unknown shape index {kind}; expected 0..{len(SHAPES) - 1}')


def _background(scene: Scene, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  # Sinusoidal gratings are functions of canvas coordinates, so the texture is the same
  # at every resolution (per-pixel noise would not be).
  texture = np.zeros(np.broadcast_shapes(x.shape, y.shape), np.float32)
  for fx, fy, phase, amplitude in scene.gratings:
    texture += amplitude * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
  return scene.background[None, None, :] + texture[..., None]


def render(scene: Scene, size: int | tuple[int, int]) -> np.ndarray:
  """Rasterises `scene` to a uint8 (height, width, 3) image of any resolution."""
  height, width = (size, size) if isinstance(size, int) else size
  x = ((np.arange(width, dtype=np.float32) + 0.5) / width)[None, :]  # (1, W) canvas units
  y = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None]  # (H, 1)
  image = _background(scene, x, y)
  pixel = 1.0 / min(height, width)  # canvas units per pixel, for the 1-pixel soft edge
  for kind, (cx, cy), r, a, color in zip(scene.shape, scene.centre, scene.radius,
                                         scene.angle, scene.color):
    # Every shape lies within 1.15 radii of its centre (the square's rotated corner is
    # the farthest, 1.1); evaluating only that box makes rendering ~5x cheaper.
    reach = 1.15 * r + 2 * pixel
    cols = slice(max(0, int((cx - reach) * width)), int(np.ceil((cx + reach) * width)))
    rows = slice(max(0, int((cy - reach) * height)), int(np.ceil((cy + reach) * height)))
    dx, dy = x[:, cols] - cx, cy - y[rows]  # dy points up
    u = (np.cos(a) * dx + np.sin(a) * dy) / r
    v = (-np.sin(a) * dx + np.cos(a) * dy) / r
    coverage = np.clip(0.5 - shape_sdf(int(kind), u, v) * r / pixel, 0.0, 1.0)
    patch = image[rows, cols]
    image[rows, cols] = patch + coverage[..., None] * (color[None, None, :] - patch)
  return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


# --- scene sampling ---------------------------------------------------------------------

def _jittered_color(rng: np.random.Generator, hue: int) -> np.ndarray:
  return np.clip(PALETTE[hue] * rng.uniform(0.8, 1.05) + rng.uniform(-0.08, 0.08, 3), 0, 1)


def _background_params(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  base = rng.uniform(0.25, 0.5) + rng.uniform(-0.05, 0.05, 3)
  gratings = np.stack([
      rng.uniform(-4, 4, 2).tolist() + [rng.uniform(0, 2 * np.pi), rng.uniform(0.03, 0.1)]
      for _ in range(2)])
  return base.astype(np.float32), gratings.astype(np.float32)


def _place(rng: np.random.Generator, radius: float, centres: list, radii: list,
           margin: float, lo: float = 0.0, hi: float = 1.0) -> np.ndarray | None:
  """A centre for a new object inside [lo, hi]^2 that overlaps no placed one (or None)."""
  for _ in range(50):
    c = rng.uniform(lo + radius, hi - radius, 2)
    if all(np.hypot(*(c - o)) > radius + r + margin for o, r in zip(centres, radii)):
      return c
  return None


def upstream_scene(rng: np.random.Generator) -> tuple[Scene, int]:
  """Two large objects; label = (shape of the upper one, shape of the lower one)."""
  label = int(rng.integers(len(SHAPES) ** 2))
  top, bottom = divmod(label, len(SHAPES))
  # Large (6-8 px across at 16 px): upstream is meant for low-resolution pretraining, and
  # then shows shapes at the pixel scale of downstream's smaller objects at 32 px.
  radius = rng.uniform(0.18, 0.25)
  while True:
    centres = [rng.uniform(radius, 1 - radius, 2) for _ in range(2)]
    upper, lower = sorted(centres, key=lambda c: c[1])
    # Apart, and clearly one above the other (0.12 canvas = 2 px at 16 px).
    if np.hypot(*(upper - lower)) > 2 * radius + 0.03 and lower[1] - upper[1] > 0.12:
      break
  colors = [_jittered_color(rng, int(rng.integers(len(PALETTE)))) for _ in range(2)]
  return _scene(rng, [top, bottom], [upper, lower], [radius] * 2, colors), label


def downstream_scene(rng: np.random.Generator) -> tuple[Scene, int]:
  """Three same-size objects of distinct shapes; label = shape of the topmost one."""
  while True:
    shapes = rng.choice(len(SHAPES), size=3, replace=False)
    radius = rng.uniform(0.11, 0.15)  # 7-10 px across at 32 px
    centres, radii = [], []
    for _ in shapes:
      c = _place(rng, radius, centres, radii, margin=0.03)
      if c is None:
        break
      centres.append(c)
      radii.append(radius)
    ys = sorted(c[1] for c in centres)
    # Require an unambiguous topmost object: 0.06 canvas (2 px at 32 px) above the next.
    if len(centres) == 3 and ys[1] - ys[0] > 0.06:
      break
  colors = [_jittered_color(rng, int(rng.integers(len(PALETTE)))) for _ in shapes]
  label = int(shapes[int(np.argmin([c[1] for c in centres]))])
  return _scene(rng, list(shapes), centres, radii, colors), label


def _scene(rng, shapes, centres, radii, colors) -> Scene:
  background, gratings = _background_params(rng)
  n = len(shapes)
  return Scene(
      shape=np.asarray(shapes, np.int32), centre=np.asarray(centres, np.float32),
      radius=np.asarray(radii, np.float32),
      angle=np.radians(rng.uniform(-15, 15, n)).astype(np.float32),
      color=np.asarray(colors, np.float32), background=background, gratings=gratings)


def label_names(task: str) -> list[str]:
  if task == 'upstream':
    return [f'{top}_above_{bottom}' for top in SHAPES for bottom in SHAPES]
  if task == 'downstream':
    return [f'topmost_{s}' for s in SHAPES]
  raise ValueError(f"unknown demo task {task!r}; expected 'upstream' or 'downstream'")


_SCENE_FNS = {'upstream': upstream_scene, 'downstream': downstream_scene}
_TASK_IDS = {'upstream': 1, 'downstream': 2}
_SPLIT_IDS = {'train': 1, 'test': 2}


def example(task: str, split: str, index: int) -> tuple[Scene, int]:
  """The scene and label of example `index`: a pure function of (task, split, index)."""
  rng = np.random.default_rng([_TASK_IDS[task], _SPLIT_IDS[split], index])
  return _SCENE_FNS[task](rng)


# --- tfds builder -----------------------------------------------------------------------

@dataclasses.dataclass
class DemoConfig(tfds.core.BuilderConfig):
  """One task at one size. Sizes are part of the config so tests get tiny variants."""
  task: str = 'upstream'
  num_train: int = 0
  num_test: int = 0
  image_size: int = 64  # native stored resolution; the input pipeline resizes.


class VitDemo(tfds.core.GeneratorBasedBuilder):
  """Procedural shapes: upstream (100 classes) and downstream (10 classes) tasks."""
  name = 'vit_demo'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      DemoConfig(name='upstream', task='upstream', num_train=40_000, num_test=4_000,
                 description='100 classes: (upper shape, lower shape) of two objects.'),
      DemoConfig(name='downstream', task='downstream', num_train=1_000, num_test=2_000,
                 description='10 classes: shape of the topmost of three objects.'),
      DemoConfig(name='upstream_tiny', task='upstream', num_train=96, num_test=50,
                 image_size=32, description='Upstream task, tiny, for tests.'),
      DemoConfig(name='downstream_tiny', task='downstream', num_train=64, num_test=50,
                 image_size=32, description='Downstream task, tiny, for tests.'),
      DemoConfig(name='multilabel_tiny', task='multilabel', num_train=32, num_test=20,
                 image_size=32, description='Multi-label (the 3 shapes present), for tests.'),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    size, task = self.builder_config.image_size, self.builder_config.task
    if task == 'multilabel':  # ImageNet-21k style: a set of labels per image
      label_key = 'labels'
      label = tfds.features.Sequence(tfds.features.ClassLabel(names=list(SHAPES)))
    else:
      label_key, label = 'label', tfds.features.ClassLabel(names=label_names(task))
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(size, size, 3), encoding_format='jpeg'),
            label_key: label,
        }),
        supervised_keys=('image', label_key),
        # Examples are i.i.d. by construction; keeping index order skips tfds's shuffle
        # pass at preparation time (and makes example i the i-th record).
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: every image is rendered from its index.
    config = self.builder_config
    return {'train': self._generate_examples('train', config.num_train),
            'test': self._generate_examples('test', config.num_test)}

  def _generate_examples(self, split: str, num_examples: int):
    config = self.builder_config
    for index in range(num_examples):
      if config.task == 'multilabel':  # downstream's scenes, labelled by the shapes in them
        scene, _ = example('downstream', split, index)
        labels = {'labels': sorted(int(k) for k in scene.shape)}
      else:
        scene, label = example(config.task, split, index)
        labels = {'label': label}
      yield index, {'image': encode_jpeg(render(scene, config.image_size)), **labels}


def encode_jpeg(image: np.ndarray) -> bytes:
  """JPEG at quality 95 without chroma subsampling: mean error < 1/255 on these scenes.

  JPEG rather than PNG: the background texture makes PNGs ~2.5x larger and 2-4x slower
  to encode (measured: 4.5 KB vs 2.1 KB at 64 px). Encoding here with PIL avoids tfds
  running one TF graph call per image.
  """
  buffer = io.BytesIO()
  PIL.Image.fromarray(image).save(buffer, format='JPEG', quality=95, subsampling=0)
  return buffer.getvalue()

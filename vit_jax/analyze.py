"""The ViT paper's analysis figures as commands (Fig. 6 attention maps, Fig. 7).

  python -m vit_jax.analyze posemb --model ViT-B/16 --checkpoint ViT-B_16.npz --out DIR
  python -m vit_jax.analyze filters --model ViT-B/16 --checkpoint ViT-B_16.npz --out DIR
  python -m vit_jax.analyze attention --model ViT-B/16 --checkpoint CKPT --out DIR img.jpg
  python -m vit_jax.analyze attention-distance --model ViT-B/16 --checkpoint CKPT --out DIR *.jpg

Each writes a PNG and the numbers behind it (`.npz`). `--checkpoint` is a published
`.npz` or one of our run directories; `--image_size` sets the model resolution (the
position embeddings are resampled from `--source_image_size` when it differs).
"""
from __future__ import annotations

import os

from absl import app
from absl import flags
import jax
import matplotlib
import numpy as np

matplotlib.use('Agg')  # files only: no display on TPU VMs and CI.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from vit_jax import checkpoint  # pylint: disable=g-import-not-at-top
from vit_jax import models
from vit_jax.analysis import attention_maps
from vit_jax.analysis import embeddings

ANALYSES = ('attention', 'attention-distance', 'posemb', 'filters')
flags.DEFINE_string('model', 'ViT-B/16', 'registered model name')
flags.DEFINE_string('checkpoint', None, 'published .npz or our run directory')
flags.DEFINE_string('out', None, 'output directory')
flags.DEFINE_integer('num_classes', 0, 'classes of the checkpoint head (0: from file)')
flags.DEFINE_integer('image_size', 224, 'model resolution in pixels')
flags.DEFINE_integer('source_image_size', 224, 'resolution the checkpoint was trained at')
flags.DEFINE_list('layers', '0,2,4,9', '0-based layers shown as raw class-token maps')
flags.DEFINE_integer('components', 28, 'filter principal components to draw')
FLAGS = flags.FLAGS


def check_applies(what: str, model) -> None:
  """Rejects analyses that do not apply to the model family, saying why."""
  if not isinstance(model, models.vit.VisionTransformer):
    raise app.UsageError(f'{what} is implemented for ViT and hybrids; {FLAGS.model} '
                         'is not a ViT (Swin: see the Swin model intermediates)')
  if what == 'attention' and model.classifier != 'token':
    raise app.UsageError('attention maps follow the class token; the model uses '
                         "classifier='gap'")
  if what == 'filters' and model.resnet is not None:
    raise app.UsageError('filters: a hybrid embeds ResNet features, not pixels; '
                         'its 1x1 "patch" filters have no RGB picture')
  if what == 'posemb' and model.posemb != 'learned':
    raise app.UsageError(f'posemb: the model uses posemb={model.posemb!r}; only '
                         'learned position embeddings can be analysed')


def load_model_params():
  """Model and params from the flags; the head size comes from the file."""
  flat = checkpoint.flatten(checkpoint.load_params(FLAGS.checkpoint))
  num_classes = FLAGS.num_classes or int(flat['head/bias'].shape[0])
  rep = flat['pre_logits/bias'].shape[0] if 'pre_logits/bias' in flat else None
  model = models.create(FLAGS.model, num_classes=num_classes,
                        image_size=FLAGS.image_size, representation_size=rep)
  init = model.init(jax.random.key(0), np.zeros((1, *model.image_size, 3), np.float32),
                    train=False)['params']
  params = checkpoint.load_pretrained(
      FLAGS.checkpoint, model=model, init_params=init,
      source_image_size=FLAGS.source_image_size)
  head = checkpoint.unflatten({k: v for k, v in flat.items() if k.startswith('head/')})
  return model, dict(params, **head)


def load_images(paths: list[str], size: tuple[int, int]) -> np.ndarray:
  """Images resized to `size`, value range [-1, 1]: (n, H, W, 3) float32."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if not paths:
    raise app.UsageError('give one or more image files after the flags')
  images = []
  for path in paths:
    with Image.open(path) as img:
      img = img.convert('RGB').resize((size[1], size[0]), Image.BILINEAR)
      images.append(np.asarray(img, np.float32) / 127.5 - 1.0)
  return np.stack(images)


def attention_weights(model, params, images) -> list[np.ndarray]:
  """Per-layer attention (batch, heads, T, T) from the model's own forward pass."""
  _, state = model.apply({'params': params}, images, train=False,
                         mutable=['intermediates'])
  blocks = state['intermediates']['Transformer']
  return [np.asarray(blocks[f'encoderblock_{i}']['MultiHeadDotProductAttention_0']
                     ['attention_weights'][0]) for i in range(model.num_layers)]


def plot_posemb(model, params, out: str) -> str:
  posemb = np.asarray(params['Transformer']['posembed_input']['pos_embedding'])
  sim = embeddings.posemb_similarity(posemb, model.grid)
  h, w = model.grid
  fig, axes = plt.subplots(h, w, figsize=(w * 0.6, h * 0.6))
  for i, j in np.ndindex(h, w):
    ax = np.asarray(axes).reshape(h, w)[i, j]
    ax.imshow(sim[i, j], vmin=-1, vmax=1, cmap='viridis')
    ax.axis('off')
  fig.suptitle('Position embedding similarity (cosine)')
  np.savez(os.path.join(out, 'posemb_similarity.npz'), similarity=sim)
  return _save(fig, out, 'posemb_similarity.png')


def plot_filters(params, out: str) -> str:
  kernel = np.asarray(params['embedding']['kernel'])
  components, explained = embeddings.filter_principal_components(
      kernel, FLAGS.components)
  cols = 7
  rows = -(-len(components) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(cols, rows))
  for ax, comp in zip(np.asarray(axes).ravel(), components):
    # Each component is a unit vector: stretch it to [0, 1] for display.
    ax.imshow((comp - comp.min()) / (np.ptp(comp) + 1e-12))
  for ax in np.asarray(axes).ravel():
    ax.axis('off')
  fig.suptitle(f'RGB embedding filters: first {len(components)} principal components')
  np.savez(os.path.join(out, 'filters_pca.npz'), components=components,
           explained_variance_ratio=explained)
  return _save(fig, out, 'filters_pca.png')


def plot_attention(model, params, images, out: str) -> str:
  weights = attention_weights(model, params, images)
  rollout = attention_maps.class_token_map(attention_maps.attention_rollout(weights),
                                           model.grid)
  layers = [int(l) for l in FLAGS.layers if int(l) < model.num_layers]
  raw = [attention_maps.class_token_map(weights[l].mean(1), model.grid) for l in layers]
  fig, axes = plt.subplots(len(images), 2 + len(layers),
                           figsize=(2.2 * (2 + len(layers)), 2.2 * len(images)),
                           squeeze=False)
  extent = (0, model.image_size[1], model.image_size[0], 0)
  for n, image in enumerate(images):
    axes[n, 0].imshow((image + 1) / 2)
    axes[n, 1].imshow((image + 1) / 2)
    axes[n, 1].imshow(rollout[n], alpha=0.6, cmap='inferno', extent=extent)
    for k, l in enumerate(layers):
      axes[n, 2 + k].imshow(raw[k][n], cmap='inferno')
      axes[n, 2 + k].set_title(f'[cls] layer={l + 1}', fontsize=8)
  axes[0, 1].set_title('rollout', fontsize=8)
  for ax in axes.ravel():
    ax.axis('off')
  np.savez(os.path.join(out, 'attention.npz'), rollout=rollout, layers=np.array(layers),
           raw_class_attention=np.stack(raw))
  return _save(fig, out, 'attention.png')


def plot_attention_distance(model, params, images, out: str) -> str:
  weights = attention_weights(model, params, images)
  prefix = int(model.classifier == 'token')
  distance = np.stack([attention_maps.mean_attention_distance(
      w, model.grid, model.stride, prefix) for w in weights])  # (layers, heads)
  fig, ax = plt.subplots(figsize=(4.5, 4))
  for head in range(distance.shape[1]):
    ax.scatter(np.arange(1, len(distance) + 1), distance[:, head], s=10)
  ax.set_xlabel('network depth (layer)')
  ax.set_ylabel('mean attention distance (pixels)')
  ax.set_ylim(0, model.image_size[0])
  np.savez(os.path.join(out, 'attention_distance.npz'), distance_pixels=distance)
  return _save(fig, out, 'attention_distance.png')


def _save(fig, out: str, name: str) -> str:
  path = os.path.join(out, name)
  fig.savefig(path, dpi=120, bbox_inches='tight')
  plt.close(fig)
  return path


def main(argv):
  if len(argv) < 2 or argv[1] not in ANALYSES:
    raise app.UsageError(f'first argument: one of {", ".join(ANALYSES)}')
  what, image_paths = argv[1], argv[2:]
  if not FLAGS.checkpoint or not FLAGS.out:
    raise app.UsageError('--checkpoint and --out are required')
  os.makedirs(FLAGS.out, exist_ok=True)
  model, params = load_model_params()
  check_applies(what, model)
  if what == 'posemb':
    path = plot_posemb(model, params, FLAGS.out)
  elif what == 'filters':
    path = plot_filters(params, FLAGS.out)
  else:
    images = load_images(image_paths, model.image_size)
    plot = plot_attention if what == 'attention' else plot_attention_distance
    path = plot(model, params, images, FLAGS.out)
  print(f'wrote {path}')


if __name__ == '__main__':
  app.run(main)

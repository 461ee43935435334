"""The ViT paper's analysis figures as commands (Fig. 6, Fig. 7), and patch drop.

  python -m vit_jax.analyze posemb --model ViT-B/16 --checkpoint ViT-B_16.npz --out DIR
  python -m vit_jax.analyze filters --model ViT-B/16 --checkpoint ViT-B_16.npz --out DIR
  python -m vit_jax.analyze attention --model ViT-B/16 --checkpoint CKPT --out DIR img.jpg
  python -m vit_jax.analyze attention-distance --checkpoint RUN_DIR --out DIR *.jpg
  python -m vit_jax.analyze patch-drop --checkpoint RUN_DIR --out DIR \\
      [--dataset cifar10 --split test --data_dir D] [--fractions 0,0.1,...,0.9] [--seeds 3]

posemb: cosine similarity of the position embeddings (Fig. 7 centre); filters: principal
components of the patch-embedding filters (Fig. 7 left); attention: attention rollout
and raw class-token attention per layer (Fig. 6); attention-distance: mean attention
distance per head and layer in pixels (Fig. 7 right); patch-drop: accuracy on an eval
split with a random 0-90% of the patches dropped (Naseer et al. 2021; ViT removes the
tokens, Swin zeroes the patch embeddings, see vit_jax/analysis/patch_drop.py).

Each writes a PNG and the numbers behind it (`.npz`, patch-drop `.json`) to --out.
`--checkpoint` is one of our run directories (model, overrides, image size and eval
preprocessing from the config stored with its newest checkpoint: --model may be left
out) or a published file (--model required; resolution from its position-embedding grid, or
--source_image_size). `--image_size` runs at another resolution (position embeddings
resampled); `--patch_size` at another patch size (ViT / hybrids: the patch embedding
resized by FlexiViT's pseudo-inverse resize, vit_jax/models/vit_patch_resize.py).
patch-drop reads the run's eval split by default (for published files give --dataset)
with the checkpoint's eval preprocessing (vit_jax/inference.py).
"""
from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags
import matplotlib
import numpy as np

matplotlib.use('Agg')  # files only: no display on TPU VMs and CI.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from vit_jax import inference  # pylint: disable=g-import-not-at-top
from vit_jax.analysis import attention_maps
from vit_jax.analysis import embeddings
from vit_jax.analysis import patch_drop
from vit_jax.data import pipeline
from vit_jax.models import registry

ANALYSES = ('attention', 'attention-distance', 'posemb', 'filters', 'patch-drop')
# Own flag set, not absl's global one: analyze and predict share flag names and both
# run inside one process in the tests; main() re-parses from defaults on every call.
FLAGS = flags.FlagValues()
_DEFINE = dict(flag_values=FLAGS)
flags.DEFINE_string('model', None, 'registered model name (run directories: default '
                    'from the run\'s stored config)', **_DEFINE)
flags.DEFINE_string('checkpoint', None, 'published .npz or our run directory', **_DEFINE)
flags.DEFINE_string('out', None, 'output directory', **_DEFINE)
flags.DEFINE_integer('num_classes', 0, 'classes of the checkpoint head, checked against '
                     'the file (0: from file)', **_DEFINE)
flags.DEFINE_string('image_size', None, "model resolution, e.g. 224 or 384x256 (default: "
                    "the checkpoint's)", **_DEFINE)
flags.DEFINE_string('source_image_size', None, 'resolution a published file was trained '
                    'at (default: from its position-embedding grid)', **_DEFINE)
flags.DEFINE_integer('patch_size', None, 'run at this patch size (ViT / hybrids): the '
                     "checkpoint's patch embedding resized by FlexiViT's pseudo-inverse "
                     'resize (default: its own)', lower_bound=1, **_DEFINE)
flags.DEFINE_list('layers', '0,2,4,9', '0-based layers shown as raw class-token maps',
                  **_DEFINE)
flags.DEFINE_integer('components', 28, 'filter principal components to draw', **_DEFINE)
flags.DEFINE_string('dataset', None, 'patch-drop: tfds name or image folder (default: '
                    "the run's)", **_DEFINE)
flags.DEFINE_string('split', None, "patch-drop: split (default: the run's eval split, "
                    "else 'test')", **_DEFINE)
flags.DEFINE_string('data_dir', None, 'patch-drop: tfds data_dir', **_DEFINE)
flags.DEFINE_list('fractions', '0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9',
                  'patch-drop: fractions of the patches dropped', **_DEFINE)
flags.DEFINE_integer('seeds', 1, 'patch-drop: random patch sets per image (seeds 0..N-1)',
                     lower_bound=1, **_DEFINE)
flags.DEFINE_integer('batch_size', 64, 'patch-drop: eval batch size', lower_bound=1,
                     **_DEFINE)
flags.DEFINE_bool('help', False, 'show this help', **_DEFINE)


def check_applies(what: str, model) -> None:
  """Rejects analyses that do not apply to the model, saying why (its family's
  `check_analysis` hook)."""
  try:
    registry.family(model).check_analysis(what, model)
  except ValueError as e:
    raise app.UsageError(str(e)) from None


def load_classifier() -> inference.Classifier:
  """Model, params (head included) and eval preprocessing from the flags."""
  classifier = inference.load(FLAGS.checkpoint, model_name=FLAGS.model,
                              image_size=FLAGS.image_size,
                              source_image_size=FLAGS.source_image_size,
                              patch_size=FLAGS.patch_size)
  if FLAGS.num_classes and FLAGS.num_classes != classifier.model.num_classes:
    raise app.UsageError(f'--num_classes {FLAGS.num_classes} but the checkpoint head '
                         f'has {classifier.model.num_classes} classes; leave it at 0')
  return classifier


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


def patch_drop_data(classifier: inference.Classifier):
  """Eval config for input_pipeline: flags first, then the run's config."""
  run = (classifier.run_config or {}).get('data', {})
  dataset = FLAGS.dataset or run.get('dataset')
  if not dataset:
    raise app.UsageError('patch-drop on a published file needs --dataset (a tfds name '
                         'or an image folder) and usually --data_dir')
  return patch_drop.eval_config(
      dataset=dataset, split=FLAGS.split or run.get('eval_split', 'test'),
      data_dir=FLAGS.data_dir or run.get('data_dir'), image_size=classifier.image_size,
      batch_size=FLAGS.batch_size, eval_resize=classifier.preprocessing.resize,
      eval_crop_ratio=classifier.preprocessing.crop_ratio,
      multi_label=bool(run.get('multi_label', False)))


def run_patch_drop(classifier: inference.Classifier, out: str) -> str:
  try:
    fractions = [float(f) for f in FLAGS.fractions]
  except ValueError:
    raise app.UsageError(f'--fractions {",".join(FLAGS.fractions)}: expected numbers '
                         'in [0, 1), e.g. 0,0.1,0.5') from None
  config = patch_drop_data(classifier)
  batches = pipeline.host_eval_dataset(config, process_index=0, process_count=1)
  model = classifier.model
  result = patch_drop.accuracy_curve(model, classifier.params,
                                     batches.as_numpy_iterator(), fractions,
                                     list(range(FLAGS.seeds)))
  result = {
      'model': FLAGS.model or (classifier.run_config or {}).get('model'),
      'checkpoint': FLAGS.checkpoint, 'dataset': config.data.dataset,
      'split': config.data.eval_split, 'image_size': list(classifier.image_size),
      'preprocessing': classifier.preprocessing.describe(),
      'method': patch_drop.method(model), 'fractions': fractions, 'seeds': FLAGS.seeds,
      **result,
      'note': patch_drop.HYBRID_NOTE if getattr(model, 'resnet', None) else ''}
  with open(os.path.join(out, 'patch_drop.json'), 'w') as f:
    json.dump(result, f, indent=1)
  return plot_patch_drop(result, out)


def plot_patch_drop(result: dict, out: str) -> str:
  dropped = 100 * np.asarray(result['fractions'])
  per_seed = 100 * np.asarray(result['accuracy_per_seed'])  # (seeds, fractions)
  fig, ax = plt.subplots(figsize=(4.5, 3.5))
  ax.plot(dropped, per_seed.mean(0), 'o-', label=result['model'])
  if len(per_seed) > 1:
    ax.fill_between(dropped, per_seed.min(0), per_seed.max(0), alpha=0.25,
                    label=f'min-max over {len(per_seed)} seeds')
  ax.set_xlabel('patches dropped (%)')
  ax.set_ylabel('top-1 accuracy (%)')
  ax.set_ylim(0, 100)
  ax.set_title(f'{result["num_images"]} images, {result["method"]}', fontsize=7)
  ax.legend(fontsize=7)
  return _save(fig, out, 'patch_drop.png')


def _save(fig, out: str, name: str) -> str:
  path = os.path.join(out, name)
  fig.savefig(path, dpi=120, bbox_inches='tight')
  plt.close(fig)
  return path


def parse(argv: list[str]) -> list[str] | None:
  """[analysis, image paths...] from the command line; None after --help."""
  FLAGS.unparse_flags()  # fresh defaults: main may run several times in one process.
  try:
    args = FLAGS(argv)[1:]
  except flags.Error as e:
    raise app.UsageError(f'{e}; see --help') from None
  if FLAGS.help:
    print(__doc__ + '\n' + FLAGS.get_help(include_special_flags=False))
    return None
  if not args or args[0] not in ANALYSES:
    raise app.UsageError(f'first argument: one of {", ".join(ANALYSES)}')
  if not FLAGS.checkpoint or not FLAGS.out:
    raise app.UsageError('--checkpoint and --out are required')
  return args


def run(what: str, image_paths: list[str]) -> str:
  """Runs one analysis from the parsed flags; returns the PNG written."""
  os.makedirs(FLAGS.out, exist_ok=True)
  classifier = load_classifier()
  model, params = classifier.model, classifier.params
  check_applies(what, model)
  if what == 'posemb':
    return plot_posemb(model, params, FLAGS.out)
  if what == 'filters':
    return plot_filters(params, FLAGS.out)
  if what == 'patch-drop':
    return run_patch_drop(classifier, FLAGS.out)
  images = load_images(image_paths, model.image_size)
  plot = plot_attention if what == 'attention' else plot_attention_distance
  return plot(model, params, images, FLAGS.out)


def main(argv: list[str]) -> int:
  """argv as sys.argv. Returns the exit status: 0 done, 2 bad usage or input."""
  try:
    args = parse(argv)
    if args is None:
      return 0
    path = run(args[0], args[1:])
  except (app.UsageError, ValueError, OSError) as e:  # incl. checkpoint mismatches.
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))

"""Top-5 classes of image files, from one of our run directories or a published file.

  python -m vit_jax.predict --checkpoint RUN_DIR cat.jpg dog.png
  python -m vit_jax.predict --model ViT-B/16 --checkpoint ViT-B_16-imagenet.npz \\
      --labels imagenet2012 --data_dir ~/tensorflow_datasets --json *.jpg

Images (JPEG, PNG, GIF, BMP; any size) are prepared as the checkpoint's evaluation
prepared them:
  run directory  model, overrides and image size from the config stored with its newest
                 checkpoint (so --model can be left out) and data.eval_resize /
                 eval_crop_ratio: by default the short side resized to 1.143 x the
                 resolution, central crop;
  published file --model is required; head size from the file; resolution from its
                 position-embedding grid (or --source_image_size, which wins; needed
                 for a non-square grid); the ViT fine-tuning convention: resize to
                 the resolution (aspect not kept), no crop.
--patch_size P (ViT / hybrids) runs the checkpoint at P x P patches: the model is
created with them, its patch embedding resized by FlexiViT's pseudo-inverse resize
(Beyer et al. 2023, §3.4; vit_jax/models/vit_patch_resize.py) and its position
embedding resampled to the new token grid; the images keep their resolution.
Probabilities are a softmax over the classes (a sigmoid per class for runs trained
with loss='sigmoid_xent'). Images run in batches of --batch_size on the default JAX
device (accelerator if present, else CPU). A file that is missing or not an image gets
an error line on stderr; the others are still classified and the exit status is 1.

--labels: a text file with one class name per line, or a tfds dataset name whose
label names are used (read offline from --data_dir when the dataset is prepared there;
`vit_demo/...` is registered). Run directories default to their dataset's names.
"""
from __future__ import annotations

import json
import os
import sys

from absl import flags
import numpy as np

# Own flag set, not absl's global one: predict and analyze share flag names and both
# run inside one process in the tests.
FLAGS = flags.FlagValues()
flags.DEFINE_string('checkpoint', None, 'run directory of vit_jax.main, or a published '
                    '.npz / Swin .pth / .safetensors file', flag_values=FLAGS)
flags.DEFINE_string('model', None, 'registered model name (default for run '
                    'directories: from the run\'s stored config)', flag_values=FLAGS)
flags.DEFINE_string('labels', None, 'class names: a file with one per line, or a tfds '
                    'dataset name', flag_values=FLAGS)
flags.DEFINE_string('data_dir', None, 'tfds data_dir for --labels', flag_values=FLAGS)
flags.DEFINE_string('image_size', None, 'resolution to run at, e.g. 384 or 384x256 '
                    "(default: the checkpoint's)", flag_values=FLAGS)
flags.DEFINE_string('source_image_size', None, 'resolution a published file was trained '
                    'at, e.g. 384x256 (default: from its position-embedding grid)',
                    flag_values=FLAGS)
flags.DEFINE_integer('patch_size', None, 'run at this patch size (ViT / hybrids): the '
                     "checkpoint's patch embedding resized by FlexiViT's pseudo-inverse "
                     'resize, position embeddings to the new grid (default: its own)',
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer('batch_size', 32, 'images per forward pass', lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer('top', 5, 'classes shown per image', lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_bool('json', False, 'print one JSON document instead of text',
                  flag_values=FLAGS)
flags.DEFINE_bool('help', False, 'show this help', flag_values=FLAGS)


class UsageError(ValueError):
  """Bad command line: the message says what to give instead."""


def main(argv: list[str]) -> int:
  """argv as sys.argv (program, flags and image paths). Returns the exit status:
  0 all classified, 1 some images failed, 2 bad usage or checkpoint."""
  try:
    paths = parse(argv)
    if paths is None:
      return 0
    from vit_jax import inference  # pylint: disable=import-outside-toplevel
    classifier = inference.load(FLAGS.checkpoint, model_name=FLAGS.model,
                                image_size=FLAGS.image_size,
                                source_image_size=FLAGS.source_image_size,
                                patch_size=FLAGS.patch_size)
    names = label_names(FLAGS.labels, classifier, FLAGS.data_dir)
  except (ValueError, OSError) as e:  # UsageError, bad checkpoint, missing file.
    print(f'error: {e}', file=sys.stderr)
    return 2
  for note in classifier.notes:
    print(f'note: {note}', file=sys.stderr)
  results, errors = classify(classifier, paths, names, FLAGS.batch_size, FLAGS.top)
  for path, message in errors:
    print(f'error: {path}: {message}', file=sys.stderr)
  if FLAGS.json:
    print(json.dumps(report(classifier, results, errors), indent=1))
  else:
    print_text(results)
  return 1 if errors else 0


def parse(argv: list[str]) -> list[str] | None:
  """Image paths from the command line (flags parsed into FLAGS); None after --help."""
  FLAGS.unparse_flags()  # fresh defaults: main may run several times in one process.
  try:
    paths = FLAGS(argv)[1:]
  except flags.Error as e:
    raise UsageError(f'{e}; see --help') from None
  if FLAGS.help:
    print(__doc__ + '\n' + FLAGS.get_help(include_special_flags=False))
    return None
  if not FLAGS.checkpoint:
    raise UsageError('--checkpoint is required: a run directory or a published file')
  if not paths:
    raise UsageError('give one or more image files after the flags')
  return paths


def label_names(spec: str | None, classifier, data_dir: str | None) -> list[str]:
  """Class names for the classifier's head: from --labels, else the run's dataset,
  else '0', '1', ..."""
  count = classifier.model.num_classes
  config = classifier.run_config
  if spec is None and config is not None:
    dataset = config['data']['dataset']
    try:
      return label_names(dataset, classifier, data_dir or config['data']['data_dir'])
    except ValueError as e:  # e.g. the run's dataset is not on this machine.
      print(f'note: no class names from the run\'s dataset {dataset!r} ({e}); '
            'printing class ids (give --labels)', file=sys.stderr)
  if spec is None:
    return [str(i) for i in range(count)]
  if os.path.isfile(spec):
    with open(spec) as f:
      names = [line.strip() for line in f if line.strip()]
  else:
    names = _dataset_label_names(spec, data_dir)
  if len(names) != count:
    raise UsageError(f'labels {spec!r} name {len(names)} classes but the checkpoint '
                     f'head has {count}; give the labels of the dataset it was trained '
                     'or fine-tuned on')
  return names


def _dataset_label_names(name: str, data_dir: str | None) -> list[str]:
  """Label names of a tfds dataset (offline if prepared in data_dir) or image folder."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  # Importing vit_jax.datasets registers vit_demo with tfds.
  from vit_jax.data import folder  # pylint: disable=import-outside-toplevel
  if folder.is_folder(name):
    return folder.class_names(name)
  try:
    features = tfds.builder(name, data_dir=data_dir).info.features
  except tfds.core.registered.DatasetNotFoundError:
    raise UsageError(f'--labels {name!r} is neither a file nor a tfds dataset; give a '
                     'text file with one class name per line') from None
  for key in ('label', 'labels'):
    feature = features[key] if key in features.keys() else None
    feature = getattr(feature, 'feature', feature)  # Sequence(ClassLabel): multi-label.
    if isinstance(feature, tfds.features.ClassLabel):
      return list(feature.names)
  raise UsageError(f'tfds dataset {name!r} has no ClassLabel feature "label" (features: '
                   f'{list(features.keys())}); give a text file of class names')


def read_batches(classifier, paths: list[str], batch_size: int):
  """Yields (paths, images (n <= batch_size, H, W, 3), errors [(path, message)])."""
  from vit_jax import inference  # pylint: disable=import-outside-toplevel
  prepare = inference.image_preprocessor(classifier)
  for start in range(0, len(paths), batch_size):
    good, images, errors = [], [], []
    for path in paths[start:start + batch_size]:
      try:
        with open(path, 'rb') as f:
          images.append(prepare(f.read()))
        good.append(path)
      except OSError as e:
        errors.append((path, e.strerror or str(e)))
      except ValueError as e:  # not a decodable image.
        errors.append((path, str(e)))
    yield good, np.stack(images) if images else None, errors


def classify(classifier, paths: list[str], names: list[str], batch_size: int,
             top: int) -> tuple[list[dict], list[tuple[str, str]]]:
  """([{'image', 'top': [{'label', 'class_id', 'probability'}]}], [(path, error)])."""
  import jax  # pylint: disable=import-outside-toplevel
  model, sigmoid = classifier.model, _uses_sigmoid(classifier)

  @jax.jit
  def probabilities(params, images):
    logits = model.apply({'params': params}, images, train=False).astype('float32')
    return jax.nn.sigmoid(logits) if sigmoid else jax.nn.softmax(logits)

  results, errors = [], []
  for good, images, batch_errors in read_batches(classifier, paths, batch_size):
    errors += batch_errors
    if images is None:
      continue
    # Pad to a full batch: one compiled shape for every batch, the last one included.
    padded = np.zeros((batch_size, *images.shape[1:]), np.float32)
    padded[:len(images)] = images
    probs = np.asarray(probabilities(classifier.params, padded))[:len(images)]
    for path, p in zip(good, probs):
      best = np.argsort(-p, kind='stable')[:top]
      results.append({'image': path, 'top': [
          {'label': names[i], 'class_id': int(i), 'probability': float(p[i])}
          for i in best]})
  return results, errors


def _uses_sigmoid(classifier) -> bool:
  config = classifier.run_config
  return config is not None and config.get('loss') == 'sigmoid_xent'


def report(classifier, results: list[dict], errors: list[tuple[str, str]]) -> dict:
  return {'checkpoint': FLAGS.checkpoint, 'model': FLAGS.model or
          (classifier.run_config or {}).get('model'),
          'image_size': list(classifier.image_size),
          'preprocessing': classifier.preprocessing.describe(),
          'probabilities': 'sigmoid' if _uses_sigmoid(classifier) else 'softmax',
          'predictions': results,
          'errors': [{'image': path, 'error': message} for path, message in errors]}


def print_text(results: list[dict]) -> None:
  for result in results:
    print(result['image'])
    for entry in result['top']:
      print(f'  {entry["probability"]:8.4f}  {entry["label"]}')


if __name__ == '__main__':
  sys.exit(main(sys.argv))

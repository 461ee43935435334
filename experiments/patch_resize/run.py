"""The demo's pretrained ViT (4x4 patches, 16 px) evaluated at other patch sizes without
training: FlexiViT's pseudo-inverse resize of the patch embedding (Beyer et al. 2023,
§3.4, Fig. 3) against the plain bilinear resize of the kernel.

  python experiments/patch_resize/run.py --workdir=/tmp/patch_resize_demo

<workdir>/pretrain is the demo's pretraining run (vit_jax.demo's first phase, 3,000
steps on vit_demo/upstream at 16 px); it is trained first when it has no checkpoint
(--cpu_devices=auto: ~5 min on 2 cores). Each (patch, method) is loaded by the
project's inference path (inference.load: the model created at that patch size, the
patch embedding resized by checkpoints.fit.fit_params, the position embedding
resampled to the new grid) and evaluated on the run's upstream test split by the
training loop's own eval step (steps.eval_step: padded last batch, masked counts).

Three protocols:
  fixed      the images stay at 16 px, so the token grid changes: /2 gives 8x8 tokens
             (4x the sequence), /8 gives 2x2; position embeddings resampled.
  rendered   the image is resized with the patch (8 px at /2, 32 px at /8) by the eval
             pipeline from the dataset's 64 px source, so the grid stays 4x4: FlexiViT
             Fig. 3's setting, where only the patch embedding changes; the inputs have
             detail the 16 px images lacked, so PI-resize is not exact here.
  upsampled  the same sizes, but made from the pipeline's 16 px images by
             jax.image.resize (bilinear, no antialias): the x' = B x of FlexiViT §3.4,
             up to the patch borders (the whole-image resize mixes neighbouring
             patches, B resizes each patch alone).
Writes <workdir>/patch_resize.json and prints a markdown table.
"""
from __future__ import annotations

import json
import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
from vit_jax import demo  # pylint: disable=g-import-not-at-top
from vit_jax.platform import cpu_devices  # pylint: disable=g-import-not-at-top
from vit_jax.platform import log_filters  # pylint: disable=g-import-not-at-top

_PATCHES = flags.DEFINE_list('patches', '2,4,8', 'patch sizes to evaluate at')
_METHODS = flags.DEFINE_list('methods', 'pi,bilinear', 'vit_patch_resize.METHODS')
NATIVE_PATCH, NATIVE_SIZE = 4, 16  # configs/demo.py: 'testing' ViT /4, pretrained at 16 px.
PROTOCOLS = ('fixed', 'rendered', 'upsampled')  # see the module docstring.


def pretrain_dir(workdir: str) -> str:
  """The demo's pretraining run directory, trained first if it has no checkpoint."""
  run = os.path.join(workdir, 'pretrain')
  if not os.path.isdir(os.path.join(run, 'checkpoints')):
    demo.run_phases(workdir, pretrain_steps=demo.demo_config.PRETRAIN_STEPS,
                    downstream_steps=1, phases=('pretrain',), sweep=False,
                    data_dir=demo._DATA_DIR.value)  # pylint: disable=protected-access
  return run


def evaluate(run: str, patch: int, method: str, image_size: int,
             protocol: str) -> dict:
  """Top-1 accuracy of `run` at `patch` x `patch` patches and `image_size` px on its
  eval split (the project's eval pipeline and eval step), with the token count.
  protocol 'upsampled': the pipeline's 16 px images resized to `image_size` by
  jax.image.resize (bilinear, no antialias: vit_patch_resize's B, but over the whole
  image, so pixels at patch borders mix neighbouring patches)."""
  # pylint: disable=import-outside-toplevel  (after flags: these import jax)
  import jax
  from vit_jax import inference
  from vit_jax import steps
  from vit_jax.analysis import patch_drop
  from vit_jax.data import pipeline
  classifier = inference.load(run, patch_size=patch, patch_resize_method=method,
                              image_size=image_size)
  config = classifier.run_config
  read_size = NATIVE_SIZE if protocol == 'upsampled' else image_size
  eval_config = patch_drop.eval_config(
      dataset=config['data']['dataset'], split=config['data']['eval_split'],
      data_dir=config['data']['data_dir'], image_size=(read_size, read_size),
      batch_size=500, eval_resize=classifier.preprocessing.resize,
      eval_crop_ratio=classifier.preprocessing.crop_ratio)
  eval_config.loss = config['loss']

  @jax.jit
  def step(params, batch):
    images = batch['image']  # (batch, read_size, read_size, 3)
    if read_size != image_size:
      batch = dict(batch, image=jax.image.resize(
          images, (images.shape[0], image_size, image_size, 3), 'bilinear',
          antialias=False))
    return steps.eval_step(params, batch, model=classifier.model, config=eval_config)

  correct = count = 0.0
  for batch in pipeline.host_eval_dataset(eval_config, process_index=0,
                                          process_count=1).as_numpy_iterator():
    sums = step(classifier.params, batch)
    correct, count = correct + float(sums['correct']), count + float(sums['count'])
  grid = classifier.model.grid
  return {'protocol': protocol, 'patch': patch, 'method': method,
          'image_size': image_size, 'tokens': grid[0] * grid[1],
          'accuracy': correct / count, 'examples': int(count),
          'notes': [n for n in classifier.notes if n.startswith('resampled')]}


def markdown(rows: list[dict], methods: list[str]) -> str:
  """One line per (protocol, patch): accuracy per method."""
  table = {}
  for r in rows:
    table.setdefault((r['protocol'], r['patch']), {})[r['method']] = r
  lines = ['| protocol | patch | image px | tokens | ' + ' | '.join(
      f'accuracy {m}' for m in methods) + ' |', '|---|---|---|---|' + '---|' * len(methods)]
  for (protocol, patch), by_method in table.items():
    first = next(iter(by_method.values()))
    accs = ' | '.join(f"{by_method[m]['accuracy']:.4f}" if m in by_method else '-'
                      for m in methods)
    lines.append(f"| {protocol} | {patch} | {first['image_size']} | {first['tokens']} "
                 f'| {accs} |')
  return '\n'.join(lines)


def image_size_for(protocol: str, patch: int) -> int:
  """16 px for 'fixed'; else the image scaled with the patch (4x4 tokens)."""
  return NATIVE_SIZE if protocol == 'fixed' else NATIVE_SIZE * patch // NATIVE_PATCH


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  # --cpu_devices (vit_jax.demo's flag): the pretraining's devices, before any backend.
  cpu_devices.configure(demo._CPU_DEVICES.value)  # pylint: disable=protected-access
  log_filters.install()
  workdir = flags.FLAGS.workdir
  run, patches = pretrain_dir(workdir), [int(p) for p in _PATCHES.value]
  start, rows = time.perf_counter(), []
  for protocol in PROTOCOLS:
    for patch in patches:
      if protocol != 'fixed' and patch == NATIVE_PATCH:
        continue  # the same evaluation as the fixed-image row.
      size = image_size_for(protocol, patch)
      rows += [evaluate(run, patch, method, size, protocol)
               for method in _METHODS.value]
      print(rows[-1], flush=True)
  with open(os.path.join(workdir, 'patch_resize.json'), 'w') as f:
    json.dump({'rows': rows, 'eval_seconds': time.perf_counter() - start}, f, indent=1)
  print(markdown(rows, _METHODS.value))


if __name__ == '__main__':
  app.run(main)

"""Input images/s per host core: the global stream against the per-host one, in one run.

  PYTHONPATH=. python experiments/global_stream/throughput.py --out=/tmp/stream.json

A benchmark, not a test. On a folder of ImageNet-like JPEGs written to disk (500x375 px,
quality 90; ImageNet's train JPEGs average ~110 KB at about that size), the real
`pipeline.host_train_dataset` of one host (process 0 of 1) at 224 px, batch 128: Inception
crop (area 0.08-1) + flip, and the same + RandAugment(2, 15), for config.data.stream =
'per_host' (the pipeline before the global stream) and 'global', alternating the two in
rounds so that both see the same machine load. File reading and decoding are included.
Then the demo's pretraining input (vit_demo/upstream, 16 px, cache_decoded) in both
streams. Prints a markdown table; README.md in this folder records runs.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import PIL.Image
import psutil

from vit_jax.configs import common
from vit_jax.configs import demo as demo_recipe
from vit_jax.data import pipeline

BATCH = 128
CORES = os.cpu_count()


def write_folder(root: str, classes: int = 8, per_class: int = 32) -> int:
  """root/train/<class>/*.JPEG and root/val/<class>/*.JPEG; returns mean JPEG bytes."""
  rng, sizes = np.random.default_rng(0), []
  for split, count in (('train', per_class), ('val', 2)):
    for c in range(classes):
      os.makedirs(os.path.join(root, split, f'class_{c}'), exist_ok=True)
      for k in range(count):
        coarse = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
        image = np.asarray(PIL.Image.fromarray(coarse).resize((500, 375), PIL.Image.BICUBIC))
        image = np.clip(image + rng.normal(0, 18, image.shape), 0, 255).astype(np.uint8)
        path = os.path.join(root, split, f'class_{c}', f'{k}.JPEG')
        PIL.Image.fromarray(image).save(path, format='JPEG', quality=90)
        sizes.append(os.path.getsize(path))
  return int(np.mean(sizes))


def folder_config(root: str, stream: str, randaug: int):
  config = common.get_config()
  config.data.dataset, config.data.train_split, config.data.eval_split = root, 'train', 'val'
  config.image_size, config.batch_size, config.eval_batch_size = 224, BATCH, BATCH
  config.data.stream = stream
  config.data.crop_area_min = 0.08
  config.data.shuffle_buffer = 256  # per-host: the whole (small) split.
  config.data.randaug_layers, config.data.randaug_magnitude = randaug, 15
  return config


def rate(config, batches: int, warmup: int = 2) -> tuple[float, float, float]:
  """(images/s, images per CPU-second of this process, MiB resident after) of `batches`
  batches after `warmup`. Per CPU-second is what survives other jobs on the cores."""
  it = iter(pipeline.host_train_dataset(config, process_index=0, process_count=1))
  for _ in range(warmup):
    next(it)
  start, cpu_start = time.perf_counter(), time.process_time()
  for _ in range(batches):
    next(it)
  seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
  images = batches * config.batch_size
  return images / seconds, images / cpu, psutil.Process().memory_info().rss / 2**20


def demo_config(data_dir: str, stream: str):
  config = demo_recipe.get_config('phase=pretrain')
  config.data.data_dir, config.data.stream = data_dir, stream
  config.batch_size = BATCH
  return config


def measure(cases: dict, rounds: int, batches: dict) -> dict:
  """Alternates the cases `rounds` times; per case the median images/s and max RSS."""
  results = {name: [] for name in cases}
  for _ in range(rounds):
    for name, config in cases.items():
      results[name].append(rate(config, batches[name]))
  return {name: {'images_per_second': float(np.median([r for r, _, _ in runs])),
                 'per_core': float(np.median([r for r, _, _ in runs])) / CORES,
                 'per_cpu_second': float(np.median([c for _, c, _ in runs])),
                 'runs': [round(r, 1) for r, _, _ in runs],
                 'rss_mib': float(max(m for _, _, m in runs))}
          for name, runs in results.items()}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--out', default='/tmp/global_stream_throughput.json')
  parser.add_argument('--data_dir', default=os.path.expanduser('~/tensorflow_datasets'))
  parser.add_argument('--rounds', type=int, default=3)
  args = parser.parse_args()
  load_before = os.getloadavg()
  with tempfile.TemporaryDirectory() as root:
    mean_bytes = write_folder(root)
    cases, batches = {}, {}
    for stream in ('per_host', 'global'):
      for randaug in (0, 2):
        name = f'224 px folder JPEGs, {stream}' + (', RandAugment(2, 15)' if randaug else '')
        cases[name], batches[name] = folder_config(root, stream, randaug), 4
      name = f'demo upstream 16 px cache_decoded, {stream}'
      cases[name], batches[name] = demo_config(args.data_dir, stream), 60
    results = measure(cases, args.rounds, batches)
  record = {'results': results, 'mean_jpeg_bytes': mean_bytes, 'cores': CORES,
            'loadavg_before': load_before, 'loadavg_after': os.getloadavg()}
  with open(args.out, 'w') as f:
    json.dump(record, f, indent=2)
  print(f'cores {CORES}, mean JPEG {mean_bytes / 1e3:.0f} KB, load {load_before} -> '
        f'{record["loadavg_after"]}')
  print('| input | images/s | per core | per CPU-s | runs | RSS MiB |\n'
        '|---|---:|---:|---:|---|---:|')
  for name, r in results.items():
    print(f'| {name} | {r["images_per_second"]:.0f} | {r["per_core"]:.0f} | '
          f'{r["per_cpu_second"]:.0f} | {r["runs"]} | {r["rss_mib"]:.0f} |')


if __name__ == '__main__':
  main()

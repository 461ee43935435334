"""Forward time per image of Swin-T vs ViT-B/16 as the resolution grows (CPU).

Question: does Swin's inference cost grow ~linearly with pixel count (windowed
attention) while ViT's grows faster (global attention, quadratic in tokens)?

  PYTHONPATH=. python experiments/swin_vs_vit_scaling/run.py \
      --out experiments/swin_vs_vit_scaling/results.json

Method: one jitted forward per (model, resolution), compiled and warmed up before any
timing; then `--repeats` rounds, each timing every configuration once in turn
(interleaved, so machine-load drift hits all configurations alike); the median per
configuration is reported, divided by the batch size (the minimum too: on a shared
machine it is the least disturbed run). Weights are random (timing does
not depend on their values); Swin-T keeps window 7 at every resolution, so at 384 its
12x12 last-stage map is padded to 14x14 (as the official detection code does).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from vit_jax.cost import flops
from vit_jax import models

MODELS = ('Swin-T', 'ViT-B/16')


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--resolutions', type=int, nargs='+', default=[224, 384, 448])
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--repeats', type=int, default=9)
  parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__),
                                                    'results.json'))
  return parser.parse_args()


def _random_params(model, seed: int = 0):
  """Random float32 params of `model`'s shapes, without compiling model.init."""
  rng = np.random.default_rng(seed)
  abstract = flops.abstract_params(model)
  return jax.tree_util.tree_map(
      lambda s: jnp.asarray(rng.normal(0, 0.02, s.shape).astype(np.float32)), abstract)


def _compiled_forward(name: str, resolution: int, batch: int):
  """(run() -> seconds for one forward of `batch` images, forward GMACs per image)."""
  model = models.create(name, num_classes=1000, image_size=(resolution, resolution))
  params = _random_params(model)
  images = jnp.asarray(np.random.default_rng(1).normal(
      size=(batch, resolution, resolution, 3)).astype(np.float32))
  forward = jax.jit(lambda p, x: model.apply({'params': p}, x, train=False))
  for _ in range(2):  # compile + one warm-up call, excluded from timing.
    forward(params, images).block_until_ready()

  def run() -> float:
    start = time.perf_counter()
    forward(params, images).block_until_ready()
    return time.perf_counter() - start

  return run, flops.forward_macs(model) / 1e9


def _measure(args) -> dict:
  configs = [(name, r) for name in MODELS for r in args.resolutions]
  runners, gmacs = {}, {}
  for config in configs:
    print(f'compiling {config}', flush=True)
    runners[config], gmacs[config] = _compiled_forward(*config, args.batch)
  times = {config: [] for config in configs}
  for repeat in range(args.repeats):
    for config in configs:  # interleaved: one of each per round.
      times[config].append(runners[config]() / args.batch)
    print(f'round {repeat + 1}/{args.repeats} done', flush=True)
  return {f'{name}@{r}': dict(model=name, resolution=r, gmacs=gmacs[(name, r)],
                              median_s_per_image=statistics.median(times[(name, r)]),
                              min_s_per_image=min(times[(name, r)]),
                              s_per_image=times[(name, r)])
          for name, r in configs}


def _ratios(results: dict, resolutions) -> dict:
  """Median-time and GMAC ratios of each resolution to the smallest one."""
  base = min(resolutions)
  out = {}
  for name in MODELS:
    ref = results[f'{name}@{base}']
    for r in resolutions:
      if r == base:
        continue
      row = results[f'{name}@{r}']
      out[f'{name} {r}/{base}'] = dict(
          time=row['median_s_per_image'] / ref['median_s_per_image'],
          time_of_min=row['min_s_per_image'] / ref['min_s_per_image'],
          gmacs=row['gmacs'] / ref['gmacs'], pixels=(r / base)**2)
  return out


def main():
  args = _parse_args()
  load_before = os.getloadavg()
  started = time.time()
  results = _measure(args)
  record = dict(
      question='forward time per image, Swin-T vs ViT-B/16, vs resolution (CPU)',
      hardware=dict(cpu=platform.processor() or platform.machine(),
                    cores=os.cpu_count(), jax_backend=jax.default_backend(),
                    jax=jax.__version__, load_avg_before=load_before,
                    load_avg_after=os.getloadavg()),
      batch=args.batch, repeats=args.repeats, wall_s=time.time() - started,
      results=results, ratios=_ratios(results, args.resolutions))
  with open(args.out, 'w') as f:
    json.dump(record, f, indent=2)
  for key, row in results.items():
    print(f'{key:>14}: median {1e3 * row["median_s_per_image"]:8.1f} ms/image, '
          f'min {1e3 * row["min_s_per_image"]:8.1f}, {row["gmacs"]:6.1f} GMACs')
  for key, ratio in record['ratios'].items():
    print(f'{key:>18}: time x{ratio["time"]:.2f} (of min x{ratio["time_of_min"]:.2f}), '
          f'GMACs x{ratio["gmacs"]:.2f}, '
          f'pixels x{ratio["pixels"]:.2f}')


if __name__ == '__main__':
  main()

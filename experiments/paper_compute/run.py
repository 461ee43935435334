"""ViT paper Table 2's TPUv3-core-days from our FLOP counts: the MFU each row implies.

  python experiments/paper_compute/run.py   # CPU only; ~6 min on 2 cores (4 compiles)

For each model, the recipe's train step (configs/vit_i21k.py: the pretraining head with
its pre-logits layer, 224 px, bfloat16) is compiled for one CPU device at 4 and 2
images, and XLA's cost analysis of the two gives the FLOPs of one more image (the
per-step optimiser update cancels). vit_jax/analysis/paper_compute.py holds the rows
and the arithmetic; results.json and the table in README.md are what this printed.
"""
import json
import os
import sys

import jax

jax.config.update('jax_num_cpu_devices', 1)

from vit_jax import recipes, sharding  # noqa: E402
from vit_jax.analysis import paper_compute  # noqa: E402
from vit_jax.planning import advice, memory  # noqa: E402
from ml_collections import config_flags  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))


def recipe(model):
  import importlib.util
  spec = importlib.util.spec_from_file_location('vit_i21k', recipes.resolve('vit_i21k'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(f'model={model}')


def flops_per_image(model, classes, mesh):
  config = advice.changed(recipe(model), model_overrides__attention_chunks=1)
  steps = [memory.compile_step(advice.changed(config, batch_size=b), classes, mesh,
                               target_cpu=False) for b in (4, 2)]
  return (steps[0].flops_per_step - steps[1].flops_per_step) / 2


def main():
  mesh = sharding.make_mesh(jax.devices('cpu')[:1])
  measured = {}
  rows = []
  for row in paper_compute.TABLE_2:
    key = (row.model, row.classes)
    if key not in measured:
      measured[key] = flops_per_image(row.model, row.classes, mesh)
      print(f'{row.model} ({row.classes} classes): {measured[key]:.4g} FLOPs per image',
            flush=True)
    per_image = measured[key]
    rows.append(dict(model=row.model, data=row.data, images=row.images,
                     epochs=row.epochs, alternative=row.alternative,
                     flops_per_image=per_image,
                     total_flops=paper_compute.total_flops(row, per_image),
                     published_core_days=row.core_days,
                     core_days_at_100pct=paper_compute.core_days_at(row, per_image, 1.0),
                     implied_mfu=paper_compute.implied_mfu(row, per_image)))
  for r in rows:
    print(f"| {r['model']} | {r['data']} | {r['epochs']}{' (alt.)' if r['alternative'] else ''} "
          f"| {r['flops_per_image']:.4g} | {r['total_flops']:.4g} | {r['core_days_at_100pct']:.0f} "
          f"| {r['published_core_days']:.0f} | {r['implied_mfu']:.1%} |")
  with open(os.path.join(HERE, 'results.json'), 'w') as f:
    json.dump(dict(rows=rows, jax=jax.__version__), f, indent=1)


if __name__ == '__main__':
  sys.exit(main())

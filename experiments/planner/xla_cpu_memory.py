"""XLA:CPU's temp buffer against JAX's saved activations: dtype and remat.

  python experiments/planner/xla_cpu_memory.py   # ~2 min on 2 cores (6 compiles)

ViT-S/16, 224 px, 16 images on one CPU device, compiled as the planner compiles for an
accelerator (attention in one batched kernel). Prints, per (dtype, remat policy), the
temp buffer of XLA:CPU's compile and the bytes JAX's autodiff saves for the backward
(vit_jax/planning/memory.py: saved_activations).
"""
import jax

jax.config.update('jax_num_cpu_devices', 1)

from vit_jax import sharding  # noqa: E402
from vit_jax.configs import testing  # noqa: E402
from vit_jax.planning import advice, memory  # noqa: E402

MIB = 2**20


def main():
  mesh = sharding.make_mesh(jax.devices('cpu')[:1])
  print('| dtype | remat | XLA:CPU temp (MiB) | saved by JAX (MiB) |\n|---|---|---:|---:|')
  for dtype in ('bfloat16', 'float32'):
    for policy in (None, 'nothing_saveable', 'dots_saveable'):
      changes = dict(model='ViT-S/16', image_size=224, batch_size=16, dtype=dtype,
                     model_overrides__attention_chunks=1)
      if policy:
        changes.update(model_overrides__remat=True, model_overrides__remat_policy=policy)
      step = memory.compile_step(advice.changed(testing.get_config(), **changes), 1000,
                                 mesh, target_cpu=False)
      print(f'| {dtype} | {policy or "off"} | {step.memory.temp / MIB:.1f} | '
            f'{step.saved_activations / MIB:.1f} |', flush=True)


if __name__ == '__main__':
  main()

"""A Plan as the text `python -m vit_jax.plan` prints, and as JSON (--json)."""
from __future__ import annotations

import dataclasses

from vit_jax.planning import plan as plan_lib

CORE_RULE = ('the ViT paper counts one core per TPU v2/v3 device and two per v4/v5p chip; '
             'v5e/v6e chips and GPUs count one')


def size(num_bytes: float | None) -> str:
  if num_bytes is None:
    return '-'
  for unit, scale in (('GiB', 2**30), ('MiB', 2**20), ('KiB', 2**10)):
    if abs(num_bytes) >= scale:
      return f'{num_bytes / scale:.2f} {unit}'
  return f'{int(num_bytes)} B'


def duration(seconds: float) -> str:
  if seconds >= 86_400:
    return f'{seconds / 86_400:.2f} days'
  if seconds >= 3_600:
    return f'{seconds / 3_600:.2f} h'
  return f'{seconds:.3g} s'


def _days(days: float) -> str:
  return f'{days:,.1f}' if days >= 10 else f'{days:.3g}'


def text(plan: plan_lib.Plan, recipe: str) -> str:
  return '\n'.join([f'Plan: {recipe} on {plan.topology.name}', *_machine(plan),
                    *_memory(plan), *_options(plan), *_compute(plan)])


def _machine(plan: plan_lib.Plan) -> list[str]:
  t, config = plan.topology, plan.base.config
  return [
      f'  devices           {t.devices} x {t.device_name}, {t.cores_per_device:g} core(s) '
      f'each ({CORE_RULE})',
      f'  hosts             {t.hosts} x {t.devices_per_host} devices',
      f'  batch             {config.batch_size} global = {config.batch_size // t.hosts} '
      f'per host = {plan.per_device_batch} per device (accum_steps {config.accum_steps})'
  ]


def _memory(plan: plan_lib.Plan) -> list[str]:
  m, t = plan.base.memory, plan.topology
  other_temp = m.temp - (plan.activations or 0)
  split = ('activations       ' + size(plan.activations) +
           f'  (temp that scales with the batch: compiled at {plan.per_device_batch} '
           f'and {plan.per_device_batch // 2} per device)') if plan.activations is not None \
      else 'activations       not split from temp (1 example per device)'
  headroom = t.usable_memory - m.total
  verdict = (f'fits, headroom {size(headroom)} ({headroom / t.usable_memory:.0%})'
             if plan.fits else f'DOES NOT FIT: {size(-headroom)} over')
  gpu = ' (75% of the GPU: JAX preallocates that)' if t.platform == 'gpu' else ''
  return [
      f'Memory per device (XLA:CPU compile of the step on {t.devices} simulated devices)',
      f'  parameters        {size(m.parameters)}',
      f'  optimiser state   {size(m.optimizer)}',
      f'  EMA parameters    {size(m.ema)}',
      f'  batch             {size(m.batch)}',
      f'  {split}',
      f'  saved by JAX      {size(plan.base.saved_activations)}  (autodiff\'s residuals for '
      f'{plan.per_device_batch // plan.base.config.accum_steps} images in the model\'s '
      'dtypes, before XLA fuses: see vit_jax/planning/memory.py)',
      f'  other temporaries {size(other_temp)}  (gradients, compiler scratch)',
      f'  other             {size(m.other_arguments + m.outputs_not_aliased)}  '
      '(step, RNG key, metrics)',
      f'  total             {size(m.total)} of {size(t.usable_memory)}{gpu} '
      f'({t.memory_source}): {verdict}',
  ]


def _options(plan: plan_lib.Plan) -> list[str]:
  if plan.fits:
    return []
  if not plan.options:
    return ['  no option measured (--options=false, or none applies)']
  lines = ['What would fit (each compiled the same way):']
  for option in plan.options:
    if option.total is None:
      lines.append(f'  {option.flags:<58} compile failed: {option.error}')
      continue
    fits = 'fits' if option.total <= plan.topology.usable_memory else 'still over'
    saved = plan.base.memory.total - option.total
    jax_saves = (f' JAX saves {size(option.saved_activations)} of activations.'
                 if option.saved_activations is not None else '')
    change = f'saves {size(saved):>10}' if saved >= 0 else f'adds  {size(-saved):>10}'
    lines.append(f'  {option.flags:<58} {size(option.total):>11}  {change}  {fits}: '
                 f'{option.what}.{jax_saves}')
  return lines


def _compute(plan: plan_lib.Plan) -> list[str]:
  f, t = plan.forecast, plan.topology
  return [
      'Compute',
      f'  FLOPs per step    {f.flops_per_step:.4g} ({plan.base.flops_source})',
      f'  FLOPs per example {f.flops_per_example:.4g}',
      f'  MFU               {f.mfu:.1%} ({f.mfu_source}; --mfu to change)',
      f'  step time         {duration(f.step_seconds)} at {t.devices} x '
      f'{f.peak_per_device / 1e12:.4g} TFLOP/s peak',
      f'  training          {f.total_steps:,} steps = {duration(f.wall_seconds)} wall '
      '(no eval, checkpoint or compile time)',
      f'  cost              {_days(f.core_days)} {t.device_name} core-days = '
      f'{_days(f.tpu_v3_core_days)} TPUv3-core-days (the paper\'s unit, at this MFU)',
      f'  input per host    {f.per_host_batch} images per step = '
      f'{f.per_host_images_per_second:,.0f} images/s',
  ]


def to_json(plan: plan_lib.Plan, recipe: str) -> dict:
  base = plan.base
  return {
      'recipe': recipe, 'topology': dataclasses.asdict(plan.topology),
      'usable_memory_per_device': plan.topology.usable_memory,
      'num_classes': plan.num_classes, 'per_device_batch': plan.per_device_batch,
      'memory': dataclasses.asdict(base.memory), 'activations': plan.activations,
      'saved_activations': base.saved_activations,
      'fits': plan.fits, 'compile_seconds': base.compile_seconds,
      'options': [dataclasses.asdict(o) for o in plan.options],
      'forecast': dataclasses.asdict(plan.forecast),
  }

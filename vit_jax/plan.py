"""Plan a run before launching it: memory per device, FLOPs, time and core-days.

  python -m vit_jax.plan --config=configs/<recipe>.py[:args] --topology=v3-256 \\
      [--mfu=0.4] [--num_classes=21843] [--options=false] [--json=plan.json] \\
      [--config.<field>=<value> ...]

Runs on a CPU (no accelerator needed): the training loop's own train step is compiled
for a mesh of as many simulated CPU devices as the topology has (vit_jax/planning/), and
XLA's memory and cost analyses of it give the per-device memory (parameters, optimiser
state, activations, temporaries) and the FLOPs per step. When it does not fit the
device's memory, the options that would (a smaller batch per device, accum_steps,
remat, FSDP) are compiled too and their memory printed. Step time, wall time and
core-days follow at --mfu (default: cost/default_mfu.py for the device kind, cited).
Topologies: vit_jax/planning/topology.py (`--topology=list` prints them). The number
of classes comes from the dataset when it is readable here, else from --num_classes.
Compile time: ~20 s per compile for ViT-B/16 on a 2-core host; 2 compiles when it fits.
"""
from __future__ import annotations

import json

from absl import app
from absl import flags

from vit_jax import recipes
from vit_jax.cost import forecast
from vit_jax.platform import cpu_devices
from vit_jax.platform import log_filters
from vit_jax.planning import topology as topology_lib

_CONFIG = recipes.define_config_flag(
    'config', f'Training config to plan (a file or a shipped recipe: '
    f'{", ".join(recipes.names())}), [:args].')
_TOPOLOGY = flags.DEFINE_string(
    'topology', None, 'Where it would run: v3-256, v4-128, v5e-64, v6e-256, 8xH100, '
    "16xA100-80GB, cpu, 8xcpu, ... ('list' prints them).")
_MFU = flags.DEFINE_float('mfu', None, 'Model FLOPs utilisation in (0, 1] for the '
                          'time and cost forecast; default: the cited figure of the '
                          'device kind (vit_jax/cost/default_mfu.py).')
_NUM_CLASSES = flags.DEFINE_integer(
    'num_classes', None, 'Classes of the head, when the dataset is not readable here.')
_OPTIONS = flags.DEFINE_bool('options', True, 'When it does not fit: compile and '
                             'measure what would (batch, accum_steps, remat, FSDP).')
_JSON = flags.DEFINE_string('json', None, 'Also write the plan as JSON to this path.')
flags.mark_flags_as_required(['config', 'topology'])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if _TOPOLOGY.value == 'list':
    print(topology_lib.known())
    return
  try:
    topology = topology_lib.parse(_TOPOLOGY.value)
    if _MFU.value is not None:
      forecast.check_mfu(_MFU.value)
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  log_filters.install()
  cpu_devices.configure(topology.devices)  # before JAX creates its CPU backend.
  config = _CONFIG.value
  num_classes = _NUM_CLASSES.value or classes_of(config)
  from vit_jax.planning import plan as plan_lib  # pylint: disable=import-outside-toplevel
  from vit_jax.planning import printout  # pylint: disable=import-outside-toplevel
  try:
    plan = plan_lib.make_plan(config, topology, num_classes=num_classes, mfu=_MFU.value,
                              with_options=_OPTIONS.value)
  except ValueError as error:  # the batch does not divide: named with a size that does.
    raise app.UsageError(str(error)) from None
  recipe = flags.FLAGS['config'].serialize().split('=', 1)[-1]
  print(printout.text(plan, recipe))
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump(printout.to_json(plan, recipe), f, indent=1)


def classes_of(config) -> int:
  """The dataset's class count (tfds info or the folder's classes), else a UsageError."""
  from vit_jax.data import sources  # pylint: disable=import-outside-toplevel
  try:
    return sources.classes(config)[0]
  except Exception as error:  # pylint: disable=broad-except  (any unreadable dataset)
    raise app.UsageError(
        f'the number of classes of dataset {config.data.dataset!r} could not be read '
        f'here ({type(error).__name__}: {str(error)[:200]}); pass --num_classes=N '
        '(e.g. 21843 for ImageNet-21k, 1000 for ImageNet)') from None


if __name__ == '__main__':
  app.run(main)

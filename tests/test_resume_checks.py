"""The pure parts of issue 18's resume checks, in this process (the subprocess faults are
tests/test_faults.py): which config changes a checkpoint survives, the saved-tree check
naming arrays, and what counts as a full disk."""
from __future__ import annotations

import errno
import json
import os

import jax
import jax.numpy as jnp
import pytest

from vit_jax.checkpoints import compat
from vit_jax.checkpoints import disk_full
from vit_jax.checkpoints import errors
from vit_jax.configs import testing

WHERE, WORKDIR = '/runs/a/checkpoints/16', '/runs/a'


def _config(**changes) -> dict:
  config = dict(json.loads(testing.get_config().to_json_best_effort()), num_classes=100)
  for dotted, value in changes.items():
    node = config
    *parents, leaf = dotted.split('.')
    for name in parents:
      node = node[name]
    node[leaf] = value
  return config


def test_scheduling_changes_are_accepted_and_the_rest_sorted_by_kind():
  changes = compat.compare(_config(), _config(**{
      'total_steps': 48, 'eval_every_steps': 6, 'data.data_dir': '/elsewhere',
      'debug.sigterm_at_step': 3, 'lr': 3e-4, 'data.crop_area_min': 0.3}))
  assert [c[0] for c in changes.resumable] == [
      'data.data_dir', 'debug.sigterm_at_step', 'eval_every_steps', 'total_steps']
  assert [c[0] for c in changes.other] == ['data.crop_area_min', 'lr']
  assert changes.unusable == ()
  assert compat.describe(changes.resumable[-1:]) == 'total_steps 24 -> 48'


@pytest.mark.parametrize('field, new', [
    ('model', 'R+ViT-testing'), ('image_size', 32), ('num_classes', 10),
    ('optimizer', 'sgd'), ('param_dtype', 'bfloat16'), ('momentum_dtype', 'bfloat16'),
    ('ema_decay', 0.999)])
def test_each_unusable_change_is_refused_naming_old_new_and_the_fix(field, new):
  with pytest.raises(errors.IncompatibleCheckpoint) as error:
    compat.check_config(_config(), _config(**{field: new}), WHERE, WORKDIR)
  old = _config()[field]
  message = str(error.value)
  assert f'changed {field} {json.dumps(old)} -> {json.dumps(new)}' in message
  assert message.startswith(f'{WHERE} cannot be resumed by this config')
  assert 'new workdir' in message and f'--config.init={WORKDIR}' in message


def test_same_size_written_differently_and_ema_rate_changes_are_not_refused():
  changes = compat.check_config(_config(image_size=16, ema_decay=0.99),
                                _config(image_size='16x16', ema_decay=0.999), WHERE,
                                WORKDIR)
  assert [c[0] for c in changes.other] == ['ema_decay', 'image_size']


def _tree(**shapes):
  return {'params': {name: jax.ShapeDtypeStruct(shape, jnp.float32)
                     for name, shape in shapes.items()}, 'step': jnp.zeros((), jnp.int32)}


def test_tree_check_names_missing_extra_and_reshaped_arrays():
  saved = _tree(cls=(1, 1, 32), head=(32, 100), embedding=(4, 4, 3, 32))
  compat.check_tree(saved, _tree(cls=(1, 1, 32), head=(32, 100), embedding=(4, 4, 3, 32)),
                    WHERE, WORKDIR)  # the same tree passes
  with pytest.raises(errors.IncompatibleCheckpoint) as error:
    compat.check_tree(saved, _tree(head=(32, 10), embedding=(4, 4, 3, 32), pre=(32,)),
                      WHERE, WORKDIR)
  message = str(error.value)
  assert '1 arrays only in the checkpoint (params/cls)' in message
  assert '1 arrays not in the checkpoint (params/pre)' in message
  assert 'params/head (32, 100)/float32 -> (32, 10)/float32' in message


def test_full_disk_is_recognised_in_oserrors_tensorstore_text_and_chains():
  assert disk_full.is_disk_full(OSError(errno.ENOSPC, 'No space left on device'))
  assert disk_full.is_disk_full(OSError(errno.EDQUOT, 'Disk quota exceeded'))
  tensorstore = ValueError('RESOURCE_EXHAUSTED: Error writing local file "x": Failed to '
                           "write 83 bytes to file 6: ... [os_error_code='28']")
  assert disk_full.is_disk_full(tensorstore)
  try:
    try:
      raise tensorstore
    except ValueError as inner:
      raise RuntimeError('save failed') from inner
  except RuntimeError as outer:
    assert disk_full.is_disk_full(outer)
  assert not disk_full.is_disk_full(OSError(errno.EACCES, 'Permission denied'))
  assert not disk_full.is_disk_full(ValueError('shape mismatch'))


def test_disk_full_message_names_the_path_the_space_and_what_survived(tmp_path):
  (tmp_path / '8' / 'state').mkdir(parents=True)
  (tmp_path / '8' / 'state' / 'array').write_bytes(b'x' * 1000)
  message = disk_full.message(str(tmp_path), 8)
  assert f'a checkpoint save in {tmp_path} ran out of disk space' in message
  assert 'a checkpoint needs about 1,000 bytes (checkpoint 8 on disk)' in message
  assert 'bytes free' in message and 'Checkpoint 8 is complete' in message
  assert 'Free space there' in message and 're-run the same command' in message
  assert 'No checkpoint was completed yet' in disk_full.message(str(tmp_path), None)
  assert os.listdir(tmp_path) == ['8']  # the message only reads

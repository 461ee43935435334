"""The learning-rate sweep's decisions (vit_jax/sweep/), checked before anything trains.

Minival is checked on the examples the real readers return (tfds ArrayRecord records of
the tiny demo data, files of an image folder); the choice on sweep.json records whose
test accuracy would choose otherwise; the refusals through `run.prepare`, which
`python -m vit_jax.finetune_sweep` calls before any compile.
"""
import hashlib
import json
import os

import pytest
import tensorflow as tf

from tests import image_folders
from vit_jax.checkpoints import training
from vit_jax.configs import finetune as finetune_config
from vit_jax.configs import testing as testing_config
from vit_jax.data import folder
from vit_jax.data import records as records_lib
from vit_jax.sweep import SweepError
from vit_jax.sweep import choice
from vit_jax.sweep import grid
from vit_jax.sweep import minival
from vit_jax.sweep import record as record_lib
from vit_jax.sweep import run

TRAIN, MINIVAL = 'train[:75%]', 'train[75%:]'


def tiny_config(demo_data_dir, **data):
  config = testing_config.get_config()
  config.data.data_dir = demo_data_dir
  config.data.train_split, config.data.minival_split = TRAIN, MINIVAL
  for key, value in data.items():
    config.data[key] = value
  return config


def record_digests(config, split):
  """sha1 of each encoded image of `split`, in record order, as the global stream reads."""
  records = records_lib.split_records(config, split)
  return [hashlib.sha1(records.read(tf.constant(i, tf.int64))['encoded'].numpy()).hexdigest()
          for i in range(records.num_examples)]


def test_minival_of_tfds_records_is_disjoint_from_training_and_deterministic(demo_data_dir):
  config = tiny_config(demo_data_dir)
  whole = record_digests(config, 'train')
  train, held_out = record_digests(config, TRAIN), record_digests(config, MINIVAL)
  assert len(set(whole)) == 96  # every tiny image distinct: digests identify them.
  assert (len(train), len(held_out)) == (72, 24)
  assert not set(train) & set(held_out)
  assert sorted(train + held_out) == sorted(whole)
  assert record_digests(config, MINIVAL) == held_out  # the same slice every time.
  assert minival.plan_for(config).minival_examples == 24


def test_minival_of_an_image_folder_is_disjoint_and_independent_of_the_mount(tmp_path):
  image_folders.write_split_folders(str(tmp_path / 'a'), per_class={'train': 25, 'test': 2})
  os.rename(tmp_path / 'a', tmp_path / 'b')  # the same tree, mounted elsewhere.
  def names(root, split):
    return {os.path.relpath(p, root) for p in folder.list_files(str(root), split)[0]}
  train, held_out = names(tmp_path / 'b', 'train[:90%]'), names(tmp_path / 'b', 'train[90%:]')
  assert (len(train), len(held_out)) == (90, 10)
  assert not train & held_out
  # Membership is by a hash of the path inside the tree: not a block of whole classes.
  assert len({p.split(os.sep)[1] for p in held_out}) > 1
  image_folders.write_split_folders(str(tmp_path / 'c'), per_class={'train': 25, 'test': 2})
  assert names(tmp_path / 'c', 'train[90%:]') == held_out


@pytest.mark.parametrize('train, held_out, test, message', [
    ('train', 'train[90%:]', 'test', "shares 10 examples with the training split 'train'"),
    ('train[:90%]', 'train[85%:]', 'test', 'shares 5 examples with the training split'),
    ('train[:90%]', 'train[100%:]', 'test', 'selects no examples'),
    ('train[:90%]', None, 'test', 'minival_split is not set'),
    ('train[:90%]', 'test[:10]', 'test[10:]', 'is not a slice of the training split'),
    ('train[:90%]', 'train[90%:]', 'train[95%:]', 'shares 5 examples with the test split'),
])
def test_minival_refusals_name_the_slices_and_the_fix(train, held_out, test, message):
  with pytest.raises(SweepError, match=message.replace('[', r'\[')):
    minival.check(train, held_out, test, {'train': 100, 'test': 50})


def test_the_paper_recipes_hold_out_the_papers_fractions():
  """ViT paper Appendix B.1.1: 2% of CIFAR, 1% of ImageNet, 10% of Pets and Flowers."""
  sizes = {'cifar10': 50_000, 'imagenet2012': 1_281_167, 'oxford_iiit_pet': 3_680}
  held = {}
  for dataset, size in sizes.items():
    config = finetune_config.get_config(f'dataset={dataset}')
    held[dataset] = minival.check(config.data.train_split, config.data.minival_split,
                                  config.data.eval_split,
                                  {'train': size, 'test': 1, 'validation': 1}).minival_examples
    assert tuple(config.lr_grid) == finetune_config.LR_SWEEP[dataset]
  assert held == {'cifar10': 1_000, 'imagenet2012': 12_812, 'oxford_iiit_pet': 368}


def test_choice_reads_minival_only_where_test_would_choose_otherwise():
  runs = {0.001: {'minival_accuracy': 0.70, 'minival_loss': 0.9, 'test_accuracy': 0.80},
          0.003: {'minival_accuracy': 0.75, 'minival_loss': 1.1, 'test_accuracy': 0.60},
          0.01: {'minival_accuracy': 0.60, 'minival_loss': 0.8, 'test_accuracy': 0.90}}
  assert max(runs, key=lambda r: runs[r]['test_accuracy']) == 0.01
  assert choice.choose(runs) == 0.003
  # Ties in accuracy go to the lower minival loss, then the smaller rate.
  tie = {0.01: {'minival_accuracy': 0.5, 'minival_loss': 1.0},
         0.003: {'minival_accuracy': 0.5, 'minival_loss': 1.2},
         0.001: {'minival_accuracy': 0.5, 'minival_loss': 1.0}}
  assert choice.choose(tie) == 0.001


@pytest.mark.parametrize('lrs, message', [
    (['0.001', '0'], "learning rate '0' is not positive"),
    (['-0.01'], "learning rate '-0.01' is not positive"),
    (['nan'], "'nan' is not positive"),
    (['fast'], "'fast' is not a number"),
    (['0.01', '1e-2'], '0.01 given twice'),
])
def test_grid_refusals(lrs, message):
  with pytest.raises(SweepError, match=message):
    grid.rates(lrs, testing_config.get_config())


def test_grid_defaults_to_the_recipe_and_sorts():
  config = finetune_config.get_config('dataset=cifar100')
  assert grid.rates(None, config) == (0.001, 0.003, 0.01, 0.03)
  assert grid.rates(['0.03', '0.001'], config) == (0.001, 0.03)
  with pytest.raises(SweepError, match='no learning rates to sweep'):
    grid.rates(None, testing_config.get_config())


def test_printed_command_trains_one_rate_on_minival(tmp_path):
  line = grid.command('configs/testing.py', ['--config.total_steps=8'], 0.003,
                      'train[75%:]', str(tmp_path))
  assert line == ('python -m vit_jax.main --config=configs/testing.py '
                  "--config.total_steps=8 --config.lr=0.003 "
                  f"'--config.data.eval_split=train[75%:]' --workdir={tmp_path}/lr_0.003")


def test_a_sweep_directory_of_another_recipe_is_refused(tmp_path, demo_data_dir):
  workdir = str(tmp_path)
  plan = run.prepare(tiny_config(demo_data_dir), workdir, lrs=['0.001', '0.003'],
                     config_spec='configs/testing.py')
  record_lib.save(plan.record, workdir)
  run.prepare(tiny_config(demo_data_dir), workdir, lrs=['0.01'])  # another grid: fine.
  other = tiny_config(demo_data_dir)
  other.total_steps = 48
  with pytest.raises(SweepError, match=r'holds a sweep of another recipe \(total_steps: '
                     r'24 -> 48\); its runs are untouched'):
    run.prepare(other, workdir, lrs=['0.001'])
  assert record_lib.load(workdir) == plan.record  # nothing rewritten.


def test_a_rate_directory_holding_another_run_is_refused(tmp_path, demo_data_dir):
  stranger = testing_config.get_config()
  stranger.model = 'R+ViT-testing'
  os.makedirs(tmp_path / 'lr_0.001')
  (tmp_path / 'lr_0.001' / training.CONFIG_FILE).write_text(json.dumps(stranger.to_dict()))
  with pytest.raises(SweepError, match=r"lr_0.001 holds a run of another recipe .*model: "
                     r"'R\+ViT-testing' -> 'testing'"):
    run.prepare(tiny_config(demo_data_dir), str(tmp_path), lrs=['0.001'])

"""The offline demo (vit_jax/demo.py, configs/demo.py), shrunk to the tiny demo splits.

The real demo's numbers are measured in experiments/demo/; here the same three phases
run for a few steps on 96 / 64 training images, checking the plumbing between them:
pretrain -> fine-tune at 2x the resolution (posemb resampled, head replaced) -> scratch,
each downstream phase a 2-rate sweep. A re-run of a finished sweep (nothing retrained) is
tests/test_sweep_run.py's.
"""
import json
import os

import numpy as np
import pytest

from vit_jax.configs import demo as demo_config
from vit_jax import demo
from vit_jax.models import vit_posemb
from vit_jax.checkpoints import training

TINY = {'pretrain': 'vit_demo/upstream_tiny', 'finetune': 'vit_demo/downstream_tiny',
        'scratch': 'vit_demo/downstream_tiny'}
POSEMB = ('Transformer', 'posembed_input', 'pos_embedding')
LRS = ('1e-4', '3e-4')  # 2 rates of each downstream sweep (the demo's grid has 3).


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory, demo_data_dir):
  workdir = str(tmp_path_factory.mktemp('demo'))
  summaries = demo.run_phases(workdir, pretrain_steps=6, downstream_steps=4,
                              data_dir=demo_data_dir, datasets=TINY, lrs=LRS)
  return workdir, summaries


def _param(run_dir, path):
  arrays = training.read_arrays(run_dir, None, 'params')
  for key in path:
    arrays = arrays[key]
  return np.asarray(arrays)


def test_phases_run_their_steps_and_report_accuracy(demo_run):
  workdir, summaries = demo_run
  assert [summaries[p]['final_step'] for p in demo.PHASES] == [6, 4, 4]
  assert summaries['pretrain']['eval_examples'] == 50  # upstream_tiny test split
  for phase in ('finetune', 'scratch'):  # each a sweep: test accuracy of its choice.
    s = summaries[phase]
    assert s['eval_examples'] == 50  # downstream_tiny test split
    assert s['minival_examples'] == 6  # 10% of downstream_tiny's 64 training images.
    assert set(s['minival_accuracy']) == {'0.0001', '0.0003'}
    record = json.load(open(os.path.join(workdir, phase, 'sweep.json')))
    assert s['chosen_lr'] == record['chosen']['lr'] in (1e-4, 3e-4)
    assert s['core_hours'] == pytest.approx(sum(r['core_hours'] for r in record['runs'].values()))
  for s in summaries.values():
    assert 0.0 <= s['eval_accuracy'] <= 1.0 and s['core_hours'] > 0


def test_finetune_resamples_posemb_and_replaces_head(demo_run):
  workdir, summaries = demo_run
  pretrain = os.path.join(workdir, 'pretrain')
  finetune = os.path.join(workdir, 'finetune', summaries['finetune']['run'])
  scratch = os.path.join(workdir, 'scratch', summaries['scratch']['run'])
  # 16 px / 4 px patches = 4x4 tokens + class token; 32 px = 8x8 + class token; D = 64.
  assert _param(pretrain, POSEMB).shape == (1, 17, 64)
  assert _param(finetune, POSEMB).shape == (1, 65, 64)
  assert _param(pretrain, ('head', 'kernel')).shape == (64, 100)
  assert _param(finetune, ('head', 'kernel')).shape == (64, 10)
  # Fine-tuning starts from the pretrained embeddings resampled 4x4 -> 8x8 (class token
  # kept); 4 Adam updates at lr <= 3e-4 move each entry by at most ~1.2e-3, while a
  # fresh 8x8 init (the scratch run) is N(0, 0.02^2) noise.
  expected = vit_posemb.resample_posemb(_param(pretrain, POSEMB), (4, 4),
                                        (8, 8), num_prefix_tokens=1)
  assert np.abs(_param(finetune, POSEMB) - expected).max() < 4 * 3e-4
  assert np.abs(_param(scratch, POSEMB) - expected).max() > 0.02


def test_results_record_and_table(demo_run):
  _, summaries = demo_run
  results = demo.results_from(summaries, wall_seconds=90.0, cores=2)
  assert results['upstream_accuracy'] == summaries['pretrain']['eval_accuracy']
  assert results['downstream_accuracy_pretrained'] == summaries['finetune']['eval_accuracy']
  assert results['downstream_accuracy_scratch'] == summaries['scratch']['eval_accuracy']
  assert results['core_hours'] == pytest.approx(
      sum(s['core_hours'] for s in summaries.values()))
  assert results['wall_core_hours'] == pytest.approx(0.05)  # 90 s x 2 cores
  assert results['chosen_lr'] == {p: summaries[p]['chosen_lr'] for p in ('finetune', 'scratch')}
  json.dumps(results)  # serialisable as results.json
  text = demo.table(results)
  assert 'from scratch' in text and f"{results['upstream_accuracy']:.3f}" in text
  assert f"lr {results['chosen_lr']['finetune']:g} chosen on minival" in text


@pytest.mark.parametrize('arg, message', [
    ('phase=bogus', "phase='bogus'"),
    ('phase=finetune', 'finetune needs init'),
    ('phase=scratch,init=/tmp/x', 'the others none'),
    ('phase=pretrain,steps=ten', 'steps'),
])
def test_demo_config_rejects_bad_arguments(arg, message):
  with pytest.raises(ValueError, match=message):
    demo_config.get_config(arg)


def test_demo_config_recipe():
  pre = demo_config.get_config('phase=pretrain')
  fine = demo_config.get_config('phase=finetune,init=/tmp/pre')
  assert (pre.image_size, fine.image_size) == (16, 32)
  assert pre.total_steps == demo_config.PRETRAIN_STEPS
  assert fine.total_steps == demo_config.DOWNSTREAM_STEPS
  assert pre.data.train_crop == fine.data.train_crop == 'resize'  # crops break labels
  assert fine.init == '/tmp/pre'
  # The downstream phases sweep the same grid, on 10% of the training images held out.
  scratch = demo_config.get_config('phase=scratch')
  assert tuple(fine.lr_grid) == tuple(scratch.lr_grid) == demo_config.LR_GRID
  assert (fine.data.train_split, fine.data.minival_split) == ('train[:90%]', 'train[90%:]')

"""Swin V2: published sizes, weight loading against an independent NumPy forward at the
native and at transferred windows, buffers rebuilt, version and window refusals.
CPU only, narrow models."""
from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy

from tests.test_swin import _region, np_gelu, np_layer_norm, np_linear, np_softmax
from vit_jax.checkpoints import fit
from vit_jax.checkpoints import published
from vit_jax.checkpoints import swin_torch
from vit_jax.cost import flops as cost
from vit_jax.models import registry
from vit_jax.models import swin

# (variant, overrides, parameters at 1000 classes): timm 1.0.31 (the pins).
PARAM_COUNTS = [
    ('SwinV2-T', {}, 28_347_154),  # swinv2_tiny_window8_256
    ('SwinV2-S', {}, 49_728_418),  # swinv2_small_window8_256
    ('SwinV2-B', {}, 87_918_816),  # swinv2_base_window8_256
    ('SwinV2-L', dict(window_size=24, image_size=(384, 384),  # ..._window12to24_192to384
                      pretrained_window_sizes=(12, 12, 12, 6)), 196_739_932),
]
# (variant, overrides, published GFLOPs = GMACs): Swin V2 paper Table 2 / the official
# README (SwinV2-T 256 px: window 8 5.9G, window 16 6.6G; S 11.5G; B 20.3G) and the
# SwinV2-L 384 px window 24 row of the official README (115.4G).
GMACS = [
    ('SwinV2-T', {}, 5.9),
    ('SwinV2-T', dict(window_size=16), 6.6),
    ('SwinV2-S', {}, 11.5),
    ('SwinV2-B', {}, 20.3),
    ('SwinV2-L', dict(window_size=24, image_size=(384, 384),
                      pretrained_window_sizes=(12, 12, 12, 6)), 115.4),
]


@pytest.mark.parametrize('name,overrides,expected', PARAM_COUNTS)
def test_param_count_matches_timm(name, overrides, expected):
  assert cost.count_params(registry.create(name, num_classes=1000, **overrides)) == expected


@pytest.mark.parametrize('name,overrides,gmacs', GMACS)
def test_forward_gmacs_within_2_percent(name, overrides, gmacs):
  measured = cost.forward_macs(registry.create(name, num_classes=1000, **overrides)) / 1e9
  assert abs(measured / gmacs - 1) < 0.02, (name, overrides, measured, gmacs)


# ----------------------------------------------------------------------------------
# Random weights in the official naming (buffers included, with garbage values).
# ----------------------------------------------------------------------------------

PATCH, CLASSES = 4, 5


def official_state_dict(embed: int, depths, heads, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  sd = {}

  def linear(name, n_out, n_in, bias=True, std=None):
    sd[f'{name}.weight'] = rng.normal(0, std or n_in**-0.5, (n_out, n_in))
    if bias:
      sd[f'{name}.bias'] = rng.normal(0, 0.1, n_out)

  def norm(name, n):  # V2's post-norms start at 0; random here so every block counts.
    sd[f'{name}.weight'] = rng.normal(0.5, 0.2, n)
    sd[f'{name}.bias'] = rng.normal(0, 0.2, n)

  sd['patch_embed.proj.weight'] = rng.normal(0, 48**-0.5, (embed, 3, PATCH, PATCH))
  sd['patch_embed.proj.bias'] = rng.normal(0, 0.1, embed)
  norm('patch_embed.norm', embed)
  for i, (depth, h) in enumerate(zip(depths, heads)):
    dim = embed * 2**i
    for j in range(depth):
      p = f'layers.{i}.blocks.{j}'
      a = f'{p}.attn'
      linear(f'{a}.qkv', 3 * dim, dim, bias=False)
      sd[f'{a}.q_bias'] = rng.normal(0, 0.3, dim)
      sd[f'{a}.v_bias'] = rng.normal(0, 0.3, dim)
      # Around log(10); head 0 of each block above log(100): the clamp must apply.
      scale = rng.normal(np.log(10), 0.5, (h, 1, 1))
      scale[0] = 5.0
      sd[f'{a}.logit_scale'] = scale
      linear(f'{a}.cpb_mlp.0', 512, 2, std=1.0)
      linear(f'{a}.cpb_mlp.2', h, 512, bias=False, std=0.3)
      linear(f'{a}.proj', dim, dim)
      sd[f'{a}.relative_coords_table'] = rng.normal(0, 1, (1, 7, 7, 2))  # garbage.
      sd[f'{a}.relative_position_index'] = rng.integers(0, 9, (16, 16))
      if j % 2:
        sd[f'{p}.attn_mask'] = rng.normal(0, 1, (4, 16, 16))
      norm(f'{p}.norm1', dim)
      norm(f'{p}.norm2', dim)
      linear(f'{p}.mlp.fc1', 4 * dim, dim)
      linear(f'{p}.mlp.fc2', dim, 4 * dim)
    if i < len(depths) - 1:
      linear(f'layers.{i}.downsample.reduction', 2 * dim, 4 * dim, bias=False)
      norm(f'layers.{i}.downsample.norm', 2 * dim)
  width = embed * 2**(len(depths) - 1)
  norm('norm', width)
  linear('head', CLASSES, width)
  return {k: np.asarray(v, np.float32 if v.dtype.kind == 'f' else np.int64)
          for k, v in sd.items()}


def timm_state_dict(official: dict) -> dict:
  """timm >= 0.9 naming: the merge starts the next stage, `head.fc`, an all-zero
  `k_bias` buffer; the official buffers are not in timm's file."""
  out = {}
  for key, value in official.items():
    if key.endswith(('relative_coords_table', 'relative_position_index', 'attn_mask')):
      continue
    parts = key.split('.')
    if parts[0] == 'layers' and parts[2] == 'downsample':
      parts[1] = str(int(parts[1]) + 1)
    if parts[0] == 'head':
      parts.insert(1, 'fc')
    out['.'.join(parts)] = value
    if key.endswith('attn.q_bias'):
      out[key.replace('q_bias', 'k_bias')] = np.zeros_like(value)
  return out


# ----------------------------------------------------------------------------------
# Independent NumPy Swin V2 forward (float64), from the paper's equations.
# ----------------------------------------------------------------------------------


def np_cpb_bias(sd, name, window, pretrained):
  """(heads, N, N) for the window's row-major tokens: 16 sigmoid(MLP(log-spaced
  offset)), the MLP evaluated on each distinct (query - key) offset (np.unique, no
  table layout, no index formula)."""
  pos = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing='ij'),
                 -1).reshape(-1, 2).astype(np.float64)  # (N, 2)
  delta = pos[:, None, :] - pos[None, :, :]  # (N, N, 2) query minus key.
  offsets, inverse = np.unique(delta.reshape(-1, 2), axis=0, return_inverse=True)
  unit = (pretrained or window) - 1
  coords = offsets / unit * 8 if unit > 0 else offsets
  coords = np.sign(coords) * np.log2(np.abs(coords) + 1) / np.log2(8)
  hidden = np.maximum(np_linear(sd, f'{name}.cpb_mlp.0', coords), 0)
  out = np_linear(sd, f'{name}.cpb_mlp.2', hidden)[inverse.ravel()]  # (N * N, heads)
  out = out.reshape(len(pos), len(pos), -1)
  return 16 / (1 + np.exp(-out.transpose(2, 0, 1)))


def np_attention_v2(sd, name, tokens, position_bias, heads, mask):
  n, c = tokens.shape
  bias = np.concatenate([sd[f'{name}.q_bias'], np.zeros(c), sd[f'{name}.v_bias']])
  qkv = (tokens @ sd[f'{name}.qkv.weight'].T + bias).reshape(n, 3, heads, c // heads)
  out = np.zeros((n, heads, c // heads))
  for h in range(heads):
    q, k = (qkv[:, i, h] / np.linalg.norm(qkv[:, i, h], axis=-1, keepdims=True)
            for i in (0, 1))
    scale = np.exp(min(sd[f'{name}.logit_scale'][h, 0, 0], np.log(100)))
    logits = q @ k.T * scale + position_bias[h] + mask
    out[:, h] = np_softmax(logits) @ qkv[:, 2, h]
  return np_linear(sd, f'{name}.proj', out.reshape(n, c))


def np_block_v2(sd, name, x, heads, shifted, window, pretrained):
  b, h, w, c = x.shape
  win, shift = (min(h, w), 0) if min(h, w) <= window else (
      window, window // 2 if shifted else 0)
  y = np.roll(x, (-shift, -shift), axis=(1, 2))
  out = np.zeros_like(y)
  # Offsets inside a window do not depend on where the window is.
  position_bias = np_cpb_bias(sd, f'{name}.attn', win, pretrained)
  for r0 in range(0, h, win):
    for c0 in range(0, w, win):
      pos = [(r, q) for r in range(r0, r0 + win) for q in range(c0, c0 + win)]
      labels = np.array([(_region(r, h, win, shift), _region(q, w, win, shift))
                         for r, q in pos])
      same = (labels[:, None] == labels[None, :]).all(-1)
      mask = np.where(same | (shift == 0), 0.0, -100.0)
      for i in range(b):
        tokens = np.stack([y[i, r, q] for r, q in pos])
        out[i, r0:r0 + win, c0:c0 + win] = np_attention_v2(
            sd, f'{name}.attn', tokens, position_bias, heads, mask).reshape(win, win, c)
  x = x + np_layer_norm(sd, f'{name}.norm1', np.roll(out, (shift, shift), axis=(1, 2)))
  hidden = np_gelu(np_linear(sd, f'{name}.mlp.fc1', x))
  return x + np_layer_norm(sd, f'{name}.norm2', np_linear(sd, f'{name}.mlp.fc2', hidden))


def np_merge_v2(sd, name, x):
  merged = np.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2],
                           x[:, 1::2, 1::2]], axis=-1)
  return np_layer_norm(sd, f'{name}.norm', np_linear(sd, f'{name}.reduction', merged))


def np_swin_v2(sd, images, depths, heads, window, pretrained_windows):
  """Logits (B, classes) of the official-named V2 state dict on images (B, H, W, 3)."""
  sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
  images = np.asarray(images, np.float64)
  b, h, w, _ = images.shape
  patches = images.reshape(b, h // PATCH, PATCH, w // PATCH, PATCH, 3)
  x = np.einsum('bikjlc,ockl->bijo', patches, sd['patch_embed.proj.weight'])
  x = np_layer_norm(sd, 'patch_embed.norm', x + sd['patch_embed.proj.bias'])
  for i, depth in enumerate(depths):
    for j in range(depth):
      x = np_block_v2(sd, f'layers.{i}.blocks.{j}', x, heads[i], j % 2 == 1, window,
                      pretrained_windows[i])
    if i < len(depths) - 1:
      x = np_merge_v2(sd, f'layers.{i}.downsample', x)
  return np_linear(sd, 'head', np_layer_norm(sd, 'norm', x).mean(axis=(1, 2)))


# ----------------------------------------------------------------------------------
# Logits: loaded weights against the NumPy forward.
# ----------------------------------------------------------------------------------

# (embed, depths, heads, window, image side, pretrained windows): the native window of
# SwinV2-testing (shift + mask at 8x8, one window at 4x4); the two transfers,
# narrow: window 8 -> 16 at 256 px (maps 64, 32, 16, 8: the last two shrink the window)
# and 12 -> 24 at 384 px with the official pretrained windows (12, 12, 12, 6).
CASES = {
    'native': (16, (2, 2), (1, 2), 4, 32, (0, 0)),
    'w8to16_256': (8, (2, 2, 2, 2), (1, 1, 2, 2), 16, 256, (8, 8, 8, 8)),
    'w12to24_384': (8, (2, 2, 2, 2), (1, 1, 1, 2), 24, 384, (12, 12, 12, 6)),
}


def _model(embed, depths, heads, window, side, pretrained):
  return registry.create('SwinV2-testing', num_classes=CLASSES, embed_dim=embed,
                         depths=depths, num_heads=heads, window_size=window,
                         image_size=(side, side), pretrained_window_sizes=pretrained)


def _write(tmp_path, sd, name):
  path = tmp_path / name
  safetensors_numpy.save_file(sd, str(path))
  return str(path)


# timm's naming at the native window; the transfers in the official naming.
@pytest.mark.parametrize('case,naming', [('native', 'official'), ('native', 'timm'),
                                         ('w8to16_256', 'official'),
                                         ('w12to24_384', 'official')])
def test_loaded_weights_match_numpy_reference(tmp_path, case, naming):
  embed, depths, heads, window, side, pretrained = CASES[case]
  official = official_state_dict(embed, depths, heads)
  sd = official if naming == 'official' else timm_state_dict(official)
  model = _model(*CASES[case])
  template = cost.abstract_params(model)
  params = published.load_params(_write(tmp_path, sd, f'{naming}.safetensors'),
                                 template)
  images = np.random.default_rng(1).normal(size=(1, side, side, 3)).astype(np.float32)
  logits = np.asarray(jax.jit(lambda p, x: model.apply({'params': p}, x, train=False))(
      params, images))
  expected = np_swin_v2(official, images, depths, heads, window, pretrained)
  assert np.std(expected) > 0.1
  np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)


def test_reference_depends_on_the_pretrained_window_and_the_clamp():
  """Guards the transfer cases: coordinates in units of the pretrained window matter,
  and so does the logit-scale clamp (head 0 of every block sits above log(100))."""
  embed, depths, heads, window, side, pretrained = CASES['w8to16_256']
  sd = official_state_dict(embed, depths, heads)
  images = np.random.default_rng(1).normal(size=(1, side, side, 3))
  transferred = np_swin_v2(sd, images, depths, heads, window, pretrained)
  own_window = np_swin_v2(sd, images, depths, heads, window, (0,) * 4)
  assert np.abs(transferred - own_window).max() > 1e-2
  unclamped = {k: (np.minimum(v, np.log(100)) if k.endswith('logit_scale') else v)
               for k, v in sd.items()}
  np.testing.assert_allclose(np_swin_v2(unclamped, images, depths, heads, window,
                                        pretrained), transferred, atol=1e-12)
  raised = {k: (v + 0.5 if k.endswith('logit_scale') else v) for k, v in sd.items()}
  assert np.abs(np_swin_v2(raised, images, depths, heads, window, pretrained)
                - transferred).max() > 1e-2


def test_every_naming_gives_the_model_tree():
  official = official_state_dict(16, (2, 2), (1, 2))
  model = registry.create('SwinV2-testing', num_classes=CLASSES)
  expected = jax.tree_util.tree_map(lambda x: x.shape, cost.abstract_params(model))
  official_tree = swin_torch.convert_state_dict(official)
  timm_tree = swin_torch.convert_state_dict(timm_state_dict(official))
  assert jax.tree_util.tree_map(np.shape, official_tree) == expected
  jax.tree_util.tree_map(np.testing.assert_array_equal, timm_tree, official_tree)
  attn = official_tree['layers_0']['blocks_1']['attn']
  assert set(attn) == {'qkv', 'q_bias', 'v_bias', 'logit_scale', 'cpb_mlp_0',
                       'cpb_mlp_2', 'proj'}  # no buffer is a parameter.
  np.testing.assert_array_equal(attn['cpb_mlp_0']['kernel'],
                                official['layers.0.blocks.1.attn.cpb_mlp.0.weight'].T)
  # The post-norms start at zero (official _init_respostnorm): blocks start as identity.
  init = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False)
  block = init['params']['layers_0']['blocks_0']
  assert not np.any(block['norm1']['scale']) and not np.any(block['norm2']['bias'])
  np.testing.assert_allclose(block['attn']['logit_scale'], np.log(10), rtol=1e-6)


def test_stage_windows_give_the_official_pretrained_windows():
  assert swin.windows.stage_windows((192, 192), 4, 12, 4) == (12, 12, 12, 6)
  assert swin.windows.stage_windows((256, 256), 4, 8, 4) == (8, 8, 8, 8)
  assert swin.windows.stage_windows((256, 256), 4, 16, 4) == (16, 16, 16, 8)


def _flat(tree):
  return published.flatten(tree)


def test_fit_reports_rebuilt_buffers_in_pretrained_window_units(tmp_path):
  official = official_state_dict(8, (2, 2, 2, 2), (1, 1, 2, 2))
  path = _write(tmp_path, timm_state_dict(official), 'v2.safetensors')
  model = _model(*CASES['w8to16_256'])
  _, report = fit.fit_params(_flat(published.load_params(path)), model)
  assert len(report) == 4, report
  assert report[0].startswith('rebuilt layers_0/blocks_*/attn buffers: '
                              'relative_coords_table (961, 2) in units of the '
                              'pretrained window 8 (offsets / 7)')
  assert 'attn_mask (16, 256, 256)' in report[0]  # 64x64 map in 16x16 windows.
  assert 'window 8 on the 8x8 map' in report[3] and 'attn_mask' not in report[3]


def test_a_v1_checkpoint_is_refused_for_v2_and_the_reverse(tmp_path):
  from tests.test_swin import _official_state_dict as v1_state_dict
  v1_params = _flat(swin_torch.convert_state_dict(v1_state_dict()))
  v2_params = _flat(swin_torch.convert_state_dict(official_state_dict(16, (2, 2), (1, 2))))
  v2_model = registry.create('SwinV2-testing', num_classes=CLASSES)
  v1_model = registry.create('Swin-testing', num_classes=CLASSES)
  with pytest.raises(ValueError, match=r'layers_0/blocks_0/attn/relative_position_bias_'
                     r'table, a Swin V1 parameter, but the model is Swin V2.*model=Swin-T'):
    fit.fit_params(v1_params, v2_model)
  with pytest.raises(ValueError, match=r'a Swin V2 parameter, but the model is Swin V1'
                     r'.*model=SwinV2-T'):
    fit.fit_params(v2_params, v1_model)


def test_bad_windows_and_sizes_are_refused_at_creation():
  with pytest.raises(ValueError, match=r'stage 0 has a 10x10 feature map .*window 4 does '
                     r'not divide.*multiples of 16, or a window_size that divides 10'):
    registry.create('SwinV2-testing', num_classes=CLASSES, image_size=40)
  with pytest.raises(ValueError, match=r'the 9x9 map of stage 0 cannot be merged 2x2 '
                     r'\(odd side\); use image sides that are multiples of 8'):
    registry.create('SwinV2-testing', num_classes=CLASSES, image_size=36, window_size=3)
  with pytest.raises(ValueError, match=r'pretrained_window_sizes \(8,\): expected one '
                     r'window >= 0 per stage \(2 stages\), e\.g\. \(4, 4\)'):
    registry.create('SwinV2-testing', num_classes=CLASSES, pretrained_window_sizes=(8,))
  with pytest.raises(ValueError, match='width 30 .*patch size 4; use 28 or 32'):
    registry.create('SwinV2-testing', num_classes=CLASSES, image_size=(32, 30))
  model = registry.create('SwinV2-testing', num_classes=CLASSES)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False)
  with pytest.raises(ValueError, match=r'input images of size \(48, 48\): Swin V2 stage 1 '
                     r'has a 6x6 feature map.*multiples of 32, or a window_size that '
                     r'divides 6\b'):
    model.apply(variables, jnp.zeros((1, 48, 48, 3)), train=False)


# ----------------------------------------------------------------------------------
# Fine-tuning through `python -m vit_jax.main` from a run at a smaller window.
# ----------------------------------------------------------------------------------


def test_finetune_through_main_from_a_run_at_a_smaller_window(tmp_path, demo_data_dir):
  """Pretrain SwinV2-testing at 16 px / window 2 (maps 4x4 and 2x2), then one
  documented recipe (configs/swinv2_finetune.py) fine-tunes it at 32 px / window 4
  with pretrained_window_sizes (2, 2), as a user runs it."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from tests import test_train  # pylint: disable=g-import-not-at-top
  from vit_jax import train  # pylint: disable=g-import-not-at-top
  from vit_jax.checkpoints import training  # pylint: disable=g-import-not-at-top
  from vit_jax.configs import testing  # pylint: disable=g-import-not-at-top

  pretrain = testing.get_config()
  pretrain.model = 'SwinV2-testing'
  pretrain.model_overrides = ml_collections.ConfigDict({'window_size': 2})
  pretrain.data.data_dir = demo_data_dir
  pretrain.total_steps, pretrain.eval_every_steps = 8, 8
  source = str(tmp_path / 'pretrain')
  assert train.train_and_evaluate(pretrain, source)['final_step'] == 8

  workdir = tmp_path / 'finetune'
  arg = ('model=SwinV2-testing,dataset=vit_demo/downstream_tiny,res=32,window=4,'
         f'init={source},init_res=16,init_window=2,steps=2,batch=8')
  proc = subprocess.run(
      [sys.executable, '-m', 'vit_jax.main', f'--config=configs/swinv2_finetune.py:{arg}',
       f'--workdir={workdir}', f'--config.data.data_dir={demo_data_dir}',
       '--config.eval_batch_size=16'],
      cwd=test_train.REPO, env=test_train.main_env(tmp_path / 'cache', devices=1),
      capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  log = proc.stdout + proc.stderr
  assert ('rebuilt layers_0/blocks_*/attn buffers: relative_coords_table (49, 2) in '
          'units of the pretrained window 2 (offsets / 1)') in log, log[-3000:]
  assert 'window 4 on the 4x4 map' in log  # stage 1: the 4x4 map, one window.
  with open(workdir / 'config.json') as f:
    assert json.load(f)['model_overrides']['pretrained_window_sizes'] == [2, 2]
  # The fine-tuned run started from the pretrained bias MLP: after 2 AdamW updates of
  # lr <= 2e-5 * 8 / 512 its weights are still the pretrained ones to ~1e-6.
  before = training.read_arrays(source, 8)['layers_0']['blocks_1']['attn']
  after = training.read_arrays(str(workdir), 2)['layers_0']['blocks_1']['attn']
  np.testing.assert_allclose(after['cpb_mlp_0']['kernel'], before['cpb_mlp_0']['kernel'],
                             atol=1e-5)
  assert np.abs(before['cpb_mlp_0']['kernel']).max() > 1e-2
  # The same run given to a model that measures offsets in its own windows (4, 4): the
  # run's recorded config says (2, 2), so the load is refused, naming the fix.
  wrong = registry.create('SwinV2-testing', num_classes=10, window_size=4)
  init = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), cost.abstract_params(wrong))
  with pytest.raises(ValueError, match=r'trained at 16 px, window 2: its bias MLP '
                     r'measures offsets in windows \(2, 2\).*this model measures them in '
                     r'\(4, 4\); create it with pretrained_window_sizes=\[2, 2\] '
                     r'\(configs/swinv2_finetune.py: init_res=16,init_window=2\)'):
    fit.load_pretrained(source, model=wrong, init_params=init)


def test_coordinate_units_follow_a_fine_tuned_source():
  """A model fine-tuned 12 -> 24 still measures in (12, 12, 12, 6): fine-tuning it
  again must keep those units, not its own windows."""
  source = registry.create('SwinV2-L', num_classes=1000, window_size=24,
                           image_size=384, pretrained_window_sizes=(12, 12, 12, 6))
  assert swin.adapt.coordinate_units(source) == (12, 12, 12, 6)
  again = registry.create('SwinV2-L', num_classes=10, window_size=24, image_size=384,
                          pretrained_window_sizes=(12, 12, 12, 6))
  swin.adapt.check_coordinate_units(again, source)  # same units: accepted.
  own = registry.create('SwinV2-L', num_classes=10, window_size=24, image_size=384)
  assert swin.adapt.coordinate_units(own) == (24, 24, 24, 12)
  with pytest.raises(ValueError, match=r'pretrained_window_sizes=\[12, 12, 12, 6\]'):
    swin.adapt.check_coordinate_units(own, source)


def test_models_table_shows_a_refused_size_and_why():
  """`python -m vit_jax.models` at 224 px: SwinV2-T is shown at its own 256 px,
  marked, with the window refusal under the table; Swin-T runs at 224."""
  from vit_jax.models import __main__ as table  # pylint: disable=g-import-not-at-top
  rows = table.variant_rows(['Swin-T', 'SwinV2-T'], 224)
  assert [r[1] for r in rows] == ['224x224', '256x256*']
  assert rows[1][2] == 28_347_154 and rows[1][4] == 5.9
  text = table.format_table(rows)
  assert re.search(r'\* SwinV2-T at its own size: image_size \(224, 224\): Swin V2 '
                   r'stage 1 has a 28x28 feature map', text), text
  assert rows[0][5] is None and '* Swin-T' not in text

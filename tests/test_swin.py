"""Swin family: published sizes, weight loading against an independent NumPy forward,
bias-table resizing, config validation and compute dtype. CPU only, tiny models."""
from __future__ import annotations

import functools
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy
from scipy import special

from vit_jax.cost import flops as cost
from vit_jax.models import registry
from vit_jax.models import swin
from vit_jax.checkpoints import swin_torch as swin_weights

# ----------------------------------------------------------------------------------
# Published sizes.
# ----------------------------------------------------------------------------------

# (variant, overrides, parameters at 1000 classes): the Swin paper / official repo.
PARAM_COUNTS = [
    ('Swin-T', {}, 28_288_354),
    ('Swin-S', {}, 49_606_258),
    ('Swin-B', {}, 87_768_224),
    ('Swin-B', dict(window_size=12, image_size=(384, 384)), 87_903_584),
    ('Swin-L', {}, 196_532_476),
]

# (variant, overrides, published forward GMACs).
GMACS = [
    ('Swin-T', {}, 4.5),
    ('Swin-S', {}, 8.7),
    ('Swin-B', {}, 15.4),
    ('Swin-B', dict(window_size=12, image_size=(384, 384)), 47.0),
    ('Swin-L', {}, 34.5),
    ('Swin-L', dict(window_size=12, image_size=(384, 384)), 104.0),
]


@pytest.mark.parametrize('name,overrides,expected', PARAM_COUNTS)
def test_param_count_matches_published(name, overrides, expected):
  model = registry.create(name, num_classes=1000, **overrides)
  assert cost.count_params(model) == expected


@pytest.mark.parametrize('name,overrides,gmacs', GMACS)
def test_forward_gmacs_within_3_percent(name, overrides, gmacs):
  model = registry.create(name, num_classes=1000, **overrides)
  measured = cost.forward_macs(model) / 1e9
  assert abs(measured / gmacs - 1) < 0.03, (name, overrides, measured, gmacs)


def test_variants_are_registered():
  for name in ('Swin-T', 'Swin-S', 'Swin-B', 'Swin-L', 'Swin-testing'):
    assert name in registry.names()


# ----------------------------------------------------------------------------------
# The tiny variant's weights, in the official naming, random.
# ----------------------------------------------------------------------------------

EMBED, DEPTHS, HEADS, WINDOW, PATCH, CLASSES = 16, (2, 2), (1, 2), 4, 4, 5


def _official_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
  """Swin-testing weights as the official repo names them, buffers included."""
  rng = np.random.default_rng(seed)
  sd = {}

  def linear(name, n_out, n_in, bias=True):
    sd[f'{name}.weight'] = rng.normal(0, n_in**-0.5, (n_out, n_in))
    if bias:
      sd[f'{name}.bias'] = rng.normal(0, 0.1, n_out)

  def norm(name, n):
    sd[f'{name}.weight'] = 1 + rng.normal(0, 0.2, n)
    sd[f'{name}.bias'] = rng.normal(0, 0.2, n)

  sd['patch_embed.proj.weight'] = rng.normal(0, 48**-0.5, (EMBED, 3, PATCH, PATCH))
  sd['patch_embed.proj.bias'] = rng.normal(0, 0.1, EMBED)
  norm('patch_embed.norm', EMBED)
  for i, (depth, heads) in enumerate(zip(DEPTHS, HEADS)):
    dim = EMBED * 2**i
    for j in range(depth):
      p = f'layers.{i}.blocks.{j}'
      norm(f'{p}.norm1', dim)
      linear(f'{p}.attn.qkv', 3 * dim, dim)
      linear(f'{p}.attn.proj', dim, dim)
      # Large (std 1) so a wrong bias index changes the logits visibly.
      sd[f'{p}.attn.relative_position_bias_table'] = rng.normal(
          0, 1, ((2 * WINDOW - 1)**2, heads))
      # Buffers with garbage values: the loader must drop them.
      sd[f'{p}.attn.relative_position_index'] = rng.integers(0, 9, (16, 16))
      if j % 2:
        sd[f'{p}.attn_mask'] = rng.normal(0, 1, (4, 16, 16))
      norm(f'{p}.norm2', dim)
      linear(f'{p}.mlp.fc1', 4 * dim, dim)
      linear(f'{p}.mlp.fc2', dim, 4 * dim)
    if i < len(DEPTHS) - 1:
      norm(f'layers.{i}.downsample.norm', 4 * dim)
      linear(f'layers.{i}.downsample.reduction', 2 * dim, 4 * dim, bias=False)
  norm('norm', EMBED * 2**(len(DEPTHS) - 1))
  linear('head', CLASSES, EMBED * 2**(len(DEPTHS) - 1))
  return {k: np.asarray(v, np.float32 if v.dtype.kind == 'f' else np.int64)
          for k, v in sd.items()}


def _timm_state_dict(official: dict[str, np.ndarray], underscores=False):
  """timm >= 0.9 naming: merge at the start of the next stage, `head.fc`."""
  out = {}
  for key, value in official.items():
    parts = key.split('.')
    if parts[0] == 'layers' and parts[2] == 'downsample':
      parts[1] = str(int(parts[1]) + 1)
    if parts[0] == 'head':
      parts.insert(1, 'fc')
    key = '.'.join(parts)
    if underscores:  # timm feature-wrapper style: `layers_0.blocks.1...`
      key = key.replace('layers.', 'layers_', 1)
    out[key] = value
  return out


# ----------------------------------------------------------------------------------
# Independent NumPy Swin forward (float64), from the equations, on the torch naming.
# ----------------------------------------------------------------------------------


def np_linear(sd, name, x):
  y = x @ sd[f'{name}.weight'].astype(np.float64).T
  return y + sd[f'{name}.bias'] if f'{name}.bias' in sd else y


def np_layer_norm(sd, name, x):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean)**2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-5) * sd[f'{name}.weight'] + sd[f'{name}.bias']


def np_gelu(x):
  return 0.5 * x * (1 + special.erf(x / np.sqrt(2)))


def np_softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_patch_embed(sd, images):
  b, h, w, _ = images.shape
  patches = images.reshape(b, h // PATCH, PATCH, w // PATCH, PATCH, 3)
  # Conv with stride = kernel = one dot product per patch; torch weight (O, I, kh, kw).
  x = np.einsum('bikjlc,ockl->bijo', patches, sd['patch_embed.proj.weight'])
  return np_layer_norm(sd, 'patch_embed.norm', x + sd['patch_embed.proj.bias'])


def np_window_attention(sd, name, tokens, positions, heads, mask):
  """tokens (N, C); positions: (row, col) of each token; mask (N, N) additive."""
  n, c = tokens.shape
  hd = c // heads
  qkv = np_linear(sd, f'{name}.qkv', tokens).reshape(n, 3, heads, hd)
  table = sd[f'{name}.relative_position_bias_table']
  side = 2 * WINDOW - 1
  out = np.zeros((n, heads, hd))
  for h in range(heads):
    logits = (qkv[:, 0, h] * hd**-0.5) @ qkv[:, 1, h].T + mask
    for a, (ra, ca) in enumerate(positions):
      for k, (rk, ck) in enumerate(positions):
        logits[a, k] += table[(ra - rk + WINDOW - 1) * side + (ca - ck + WINDOW - 1), h]
    out[:, h] = np_softmax(logits) @ qkv[:, 2, h]
  return np_linear(sd, f'{name}.proj', out.reshape(n, c))


def _region(i, length, win, shift):
  """Which of the 3 strips (before the shift) row/col i of the rolled map came from."""
  return 0 if i < length - win else (1 if i < length - shift else 2)


def np_shifted_windows(sd, name, y, heads, win, shift, mask_value):
  """Attention over all windows of the padded, rolled map y (B, Hp, Wp, C)."""
  b, hp, wp, c = y.shape
  out = np.zeros_like(y)
  for r0 in range(0, hp, win):
    for c0 in range(0, wp, win):
      pos = [(r, q) for r in range(r0, r0 + win) for q in range(c0, c0 + win)]
      labels = [(_region(r, hp, win, shift), _region(q, wp, win, shift)) for r, q in pos]
      mask = np.array([[0.0 if la == lk or not shift else mask_value for lk in labels]
                       for la in labels])
      for i in range(b):
        tokens = np.stack([y[i, r, q] for r, q in pos])
        out[i, r0:r0 + win, c0:c0 + win] = np_window_attention(
            sd, name, tokens, pos, heads, mask).reshape(win, win, c)
  return out


def np_block(sd, name, x, heads, shifted, mask_value):
  b, h, w, c = x.shape
  if min(h, w) <= WINDOW:  # map not larger than the window: one window, no shift.
    win, shift = min(h, w), 0
  else:
    win, shift = WINDOW, (WINDOW // 2 if shifted else 0)
  hp, wp = -(-h // win) * win, -(-w // win) * win
  y = np.zeros((b, hp, wp, c))
  y[:, :h, :w] = np_layer_norm(sd, f'{name}.norm1', x)  # zero padding after the norm.
  y = np.roll(y, (-shift, -shift), axis=(1, 2))
  y = np_shifted_windows(sd, f'{name}.attn', y, heads, win, shift, mask_value)
  x = x + np.roll(y, (shift, shift), axis=(1, 2))[:, :h, :w]
  z = np_layer_norm(sd, f'{name}.norm2', x)
  hidden = np_gelu(np_linear(sd, f'{name}.mlp.fc1', z))
  return x + np_linear(sd, f'{name}.mlp.fc2', hidden)


def np_patch_merging(sd, name, x):
  b, h, w, c = x.shape
  padded = np.zeros((b, h + h % 2, w + w % 2, c))
  padded[:, :h, :w] = x
  out = np.zeros((b, padded.shape[1] // 2, padded.shape[2] // 2, 4 * c))
  for r in range(out.shape[1]):
    for q in range(out.shape[2]):
      out[:, r, q] = np.concatenate([padded[:, 2 * r, 2 * q], padded[:, 2 * r + 1, 2 * q],
                                     padded[:, 2 * r, 2 * q + 1],
                                     padded[:, 2 * r + 1, 2 * q + 1]], axis=-1)
  return np_linear(sd, f'{name}.reduction', np_layer_norm(sd, f'{name}.norm', out))


def np_swin(sd, images, mask_value=-100.0):
  """Logits (B, classes) of the official-named state dict `sd` on images (B, H, W, 3)."""
  sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
  x = np_patch_embed(sd, np.asarray(images, np.float64))
  for i, (depth, heads) in enumerate(zip(DEPTHS, HEADS)):
    for j in range(depth):
      x = np_block(sd, f'layers.{i}.blocks.{j}', x, heads, j % 2 == 1, mask_value)
    if i < len(DEPTHS) - 1:
      x = np_patch_merging(sd, f'layers.{i}.downsample', x)
  x = np_layer_norm(sd, 'norm', x).mean(axis=(1, 2))
  return np_linear(sd, 'head', x)


# ----------------------------------------------------------------------------------
# Loading published-format weights: logits vs the NumPy forward.
# ----------------------------------------------------------------------------------


def _write(tmp_path, sd, name):
  path = tmp_path / name
  safetensors_numpy.save_file(sd, str(path))
  return str(path)


@functools.lru_cache(maxsize=None)
def _jitted_apply(**overrides):
  """One compiled forward per config: eager op-by-op dispatch compiles every op."""
  model = registry.create('Swin-testing', num_classes=CLASSES, **overrides)
  return jax.jit(lambda params, images, rng: model.apply(
      {'params': params}, images, train=rng is not None, rngs={'dropout': rng}
      if rng is not None else {}))


def _flax_logits(params, images, rng=None, **overrides):
  apply = _jitted_apply(image_size=images.shape[1:3], **overrides)
  return np.asarray(apply(params, jnp.asarray(images), rng))


# (32, 32): square, shifted windows + mask in stage 0, a 4x4 map in stage 1.
# (36, 44): 9x11 map padded to 12x12 under the shift, odd merge padding to 10x12,
#   then 5x6 padded to 8x8 with a shifted block.
# (24, 40): 6x10 padded to 8x12; stage 1 is 3x5, so the window shrinks to 3 (central
#   entries of the 7x7-offset table, see swin.relative_position_index), no shift.
SIZES = [(32, 32), (36, 44), (24, 40)]


@pytest.mark.parametrize('naming', ['official', 'timm'])
@pytest.mark.parametrize('size', SIZES)
def test_loaded_weights_match_numpy_reference(tmp_path, naming, size):
  official = _official_state_dict()
  sd = official if naming == 'official' else _timm_state_dict(official)
  params = swin_weights.load(_write(tmp_path, sd, f'{naming}.safetensors'))
  images = np.random.default_rng(1).normal(size=(2, *size, 3)).astype(np.float32)
  logits = _flax_logits(params, images)
  expected = np_swin(official, images)
  assert logits.shape == (2, CLASSES)
  assert np.std(expected) > 0.1  # non-degenerate logits.
  np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)


def test_reference_depends_on_the_shift_mask():
  """Guards the test above: without the -100 mask the logits differ clearly."""
  sd = _official_state_dict()
  images = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
  gap = np.abs(np_swin(sd, images) - np_swin(sd, images, mask_value=0.0)).max()
  assert gap > 1e-2


def test_converted_tree_matches_model_tree(tmp_path):
  """All naming styles give the model's exact tree; buffers are not parameters."""
  official = _official_state_dict()
  model = registry.create('Swin-testing', num_classes=CLASSES)
  expected = jax.tree_util.tree_map(lambda x: x.shape, cost.abstract_params(model))
  trees = [swin_weights.convert_state_dict(sd) for sd in (
      official, _timm_state_dict(official), _timm_state_dict(official, True))]
  for tree in trees:
    assert jax.tree_util.tree_map(np.shape, tree) == expected
  for tree in trees[1:]:
    jax.tree_util.tree_map(np.testing.assert_array_equal, tree, trees[0])
  # Dense kernels are (in, out), conv kernels HWIO.
  np.testing.assert_array_equal(trees[0]['head']['kernel'], official['head.weight'].T)
  np.testing.assert_array_equal(
      trees[0]['patch_embed']['proj']['kernel'][1, 2, 0, 3],
      official['patch_embed.proj.weight'][3, 0, 1, 2])


def test_unrecognised_keys_are_listed():
  sd = _official_state_dict()
  sd['layers.0.blocks.0.attn.gamma'] = np.zeros(16, np.float32)
  sd['cls_token'] = np.zeros((1, 1, 16), np.float32)
  with pytest.raises(ValueError, match=r"2 state-dict key.*'cls_token'.*attn\.gamma"):
    swin_weights.convert_state_dict(sd)


def test_torch_checkpoint_without_torch_says_how_to_install(tmp_path, monkeypatch):
  path = tmp_path / 'swin_tiny_patch4_window7_224.pth'
  path.write_bytes(b'not read: the import fails first')
  monkeypatch.setitem(sys.modules, 'torch', None)  # `import torch` -> ImportError.
  with pytest.raises(ImportError, match=r'pip install torch.*vit_jax\[torch\]'):
    swin_weights.read_state_dict(str(path))


# ----------------------------------------------------------------------------------
# Relative-position-bias table resizing (fine-tuning at a new window).
# ----------------------------------------------------------------------------------

# PyTorch bicubic (a = -0.75, align_corners=False) from 3 to 5 samples, by hand:
# output i samples x = (i + 0.5) * 3/5 - 0.5 = -0.2, 0.4, 1.0, 1.6, 2.2; taps
# floor(x) - 1 .. floor(x) + 2 clamped to [0, 2]; kernel W(d) = 1.25|d|^3 - 2.25|d|^2 + 1
# (|d| <= 1), -0.75|d|^3 + 3.75|d|^2 - 6|d| + 3 (1 < |d| < 2). E.g. i = 0: t = 0.8,
# weights W(1.8) = -0.024, W(0.8) = 0.2, W(0.2) = 0.92, W(1.2) = -0.096 on taps
# -2, -1, 0, 1 -> input 0 gets 1.096, input 1 gets -0.096.
HAND_RESIZE_3_TO_5 = np.array([
    [1.096, -0.096, 0.0],
    [0.612, 0.46, -0.072],
    [0.0, 1.0, 0.0],
    [-0.072, 0.46, 0.612],
    [0.0, -0.096, 1.096],
])


def test_bias_table_resize_matches_hand_computed_bicubic():
  table = np.arange(18, dtype=np.float32).reshape(9, 2) ** 1.5  # window 2, 2 heads.
  resized = swin.resize_relative_position_bias_table(table, new_window=3)
  assert resized.shape == (25, 2)
  grid = table.reshape(3, 3, 2).astype(np.float64)
  for head in range(2):
    expected = HAND_RESIZE_3_TO_5 @ grid[..., head] @ HAND_RESIZE_3_TO_5.T
    np.testing.assert_allclose(resized[:, head].reshape(5, 5), expected, rtol=1e-6)
  # Top-left output, fully by hand: rows and columns both weight (1.096, -0.096).
  g = grid[..., 0]
  corner = (1.096**2 * g[0, 0] - 1.096 * 0.096 * (g[0, 1] + g[1, 0])
            + 0.096**2 * g[1, 1])
  np.testing.assert_allclose(resized[0, 0], corner, rtol=1e-6)


def test_bias_table_resize_to_same_window_is_identity():
  table = np.random.default_rng(0).normal(size=(13 * 13, 3)).astype(np.float32)
  np.testing.assert_array_equal(
      swin.resize_relative_position_bias_table(table, new_window=7), table)
  np.testing.assert_array_equal(swin.bicubic_matrix(13, 13), np.eye(13))


def test_adapt_params_resizes_every_table_only():
  params = swin_weights.convert_state_dict(_official_state_dict())
  adapted = swin.adapt_params(params, old_window=4, new_window=6)
  large = registry.create('Swin-testing', num_classes=CLASSES, window_size=6,
                          image_size=(48, 48))
  expected = jax.tree_util.tree_map(lambda x: x.shape, cost.abstract_params(large))
  assert jax.tree_util.tree_map(np.shape, adapted) == expected
  table = params['layers_1']['blocks_1']['attn']['relative_position_bias_table']
  np.testing.assert_allclose(
      adapted['layers_1']['blocks_1']['attn']['relative_position_bias_table'],
      swin.resize_relative_position_bias_table(table, 6))
  np.testing.assert_array_equal(adapted['head']['bias'], params['head']['bias'])
  with pytest.raises(ValueError, match='old_window=5'):
    swin.adapt_params(params, old_window=5, new_window=6)


def test_adapt_pretrained_hook_reports_resized_tables():
  """The generic fine-tune loader's hook: flat '/'-joined keys, window from shapes."""
  params = swin_weights.convert_state_dict(_official_state_dict())
  flat = {'/'.join(k.key for k in path): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
  model = registry.create('Swin-testing', num_classes=CLASSES, window_size=6,
                          image_size=(48, 48))
  flat_init = {'/'.join(k.key for k in path): leaf for path, leaf in
               jax.tree_util.tree_leaves_with_path(cost.abstract_params(model))}
  out, report = swin.adapt_pretrained(flat, flat_init, model, {})
  assert {k: np.shape(v) for k, v in out.items()} == {
      k: v.shape for k, v in flat_init.items()}
  assert len(report) == 4  # one line per block's table.
  key = 'layers_0/blocks_1/attn/relative_position_bias_table'
  assert report[1].split()[:2] == ['resampled', key]
  np.testing.assert_allclose(
      out[key], swin.resize_relative_position_bias_table(flat[key], 6))


# ----------------------------------------------------------------------------------
# Config validation, compute dtype, training-time randomness.
# ----------------------------------------------------------------------------------


def test_bad_image_size_names_nearest_valid_sizes():
  with pytest.raises(ValueError, match=r'width 30 .*patch size 4; use 28 or 32'):
    registry.create('Swin-testing', num_classes=CLASSES, image_size=(32, 30))
  with pytest.raises(ValueError, match=r'height 2 .*use 4 for the height'):
    registry.create('Swin-T', num_classes=10, image_size=(2, 224))


def test_unknown_override_is_rejected():
  with pytest.raises(ValueError, match='windowsize'):
    registry.create('Swin-T', num_classes=10, windowsize=12)
  model = registry.create('Swin-T', num_classes=10, drop_path_rate=0.2)
  assert model.stochastic_depth == 0.2


LAYER_NAMES = r'proj|norm[12]?|qkv|fc[12]|reduction|head'


def test_bfloat16_reaches_every_layer():
  model = registry.create('Swin-testing', num_classes=CLASSES, dtype=jnp.bfloat16)
  images = jnp.ones((1, 36, 44, 3), jnp.float32)
  abstract = cost.abstract_params(model)
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(abstract))
  variables = {'params': swin_weights.convert_state_dict(_official_state_dict())}
  logits, state = jax.jit(lambda v, x: model.apply(
      v, x, train=False, capture_intermediates=True, mutable=['intermediates']))(
          variables, images)
  assert logits.dtype == jnp.bfloat16
  # Outputs of every conv, Dense and LayerNorm ('.../qkv/__call__/0' -> 'qkv').
  layer_outputs = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    names = [str(getattr(k, 'key', '')) for k in path]
    if names[-2] == '__call__' and re.fullmatch(LAYER_NAMES, names[-3]):
      layer_outputs['/'.join(names[1:-2])] = leaf
  # patch_embed (2) + 6 per block x 4 blocks + 2 for the merge + norm + head.
  assert len(layer_outputs) == 30, sorted(layer_outputs)
  wrong = {k: v.dtype for k, v in layer_outputs.items() if v.dtype != jnp.bfloat16}
  assert not wrong


def test_drop_path_uses_dropout_rng_only_in_training():
  params = swin_weights.convert_state_dict(_official_state_dict())
  images = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype(np.float32)
  run = lambda seed: _flax_logits(params, images, jax.random.PRNGKey(seed),
                                  stochastic_depth=0.5)
  assert not np.allclose(run(0), run(1))
  np.testing.assert_array_equal(run(0), run(0))
  eval_logits = _flax_logits(params, images, stochastic_depth=0.5)  # no rng needed.
  np.testing.assert_allclose(eval_logits, np_swin(_official_state_dict(), images),
                             atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(_flax_logits(params, images, remat=True), eval_logits,
                             atol=1e-5)

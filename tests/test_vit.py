"""ViT / hybrid semantics: published-layout weights vs an independent NumPy forward."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import numpy_vit_reference as ref
from vit_jax.checkpoints import published as checkpoint
from vit_jax.cost import flops as cost
from vit_jax import models


def _random_params(model, seed=0):
  """Random values for every parameter (init would leave the head at zero)."""
  shapes = cost.abstract_params(model)
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda s: rng.normal(0, 0.5, s.shape).astype(np.float32), shapes)


def _write_published_npz(path, params, *, old_names, prefix='', gn_4d=False):
  """Writes `params` the way the published files store them."""
  flat = checkpoint.flatten(params)
  renamed = {}
  for key, value in flat.items():
    if old_names:
      key = (key.replace('MultiHeadDotProductAttention_0', 'MultiHeadDotProductAttention_1')
             .replace('LayerNorm_1/', 'LayerNorm_2/').replace('MlpBlock_0', 'MlpBlock_3'))
    if gn_4d and '/gn' in '/' + key and value.ndim == 1:
      value = value.reshape(1, 1, 1, -1)
    renamed[prefix + key] = value
  np.savez(path, **renamed)


CASES = [
    dict(name='testing', old_names=False, prefix='', overrides={}),
    dict(name='testing', old_names=True, prefix='params/', overrides={}),
    dict(name='testing', old_names=True, prefix='opt/target/',
         overrides={'representation_size': 24}),
    dict(name='R+ViT-testing', old_names=False, prefix='', overrides={}, gn_4d=True),
    dict(name='R+ViT-testing', old_names=True, prefix='', overrides={}),
]


@pytest.mark.parametrize('case', CASES, ids=lambda c: f"{c['name']}-old{c['old_names']}"
                         f"-{c['prefix'] or 'noprefix'}-{c['overrides']}")
def test_published_npz_matches_numpy_reference(tmp_path, case):
  model = models.create(case['name'], num_classes=7, **case['overrides'])
  params = _random_params(model)
  path = str(tmp_path / 'ckpt.npz')
  _write_published_npz(path, params, old_names=case['old_names'],
                       prefix=case['prefix'], gn_4d=case.get('gn_4d', False))

  loaded = checkpoint.load_params(path, template=cost.abstract_params(model))
  images = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  logits = model.apply({'params': loaded}, images, train=False)

  expected = ref.vit_forward(
      images, {k: v.astype(np.float64) for k, v in checkpoint.flatten(params).items()},
      num_layers=model.num_layers, heads=model.num_heads, patch=model.patch_size[0],
      resnet_layers=model.resnet.num_layers if model.resnet else None,
      representation=model.representation_size is not None)
  assert logits.shape == (2, 7)
  np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)


def test_mismatch_lists_missing_unexpected_and_wrong_shape(tmp_path):
  model = models.create('testing', num_classes=7)
  flat = checkpoint.flatten(_random_params(model))
  del flat['cls']
  flat['head/kernel'] = np.zeros((32, 5), np.float32)
  flat['pre_logits/kernel'] = np.zeros((32, 32), np.float32)
  np.savez(tmp_path / 'bad.npz', **flat)
  with pytest.raises(checkpoint.CheckpointMismatchError) as err:
    checkpoint.load_params(str(tmp_path / 'bad.npz'), template=cost.abstract_params(model))
  message = str(err.value)
  assert 'missing (in model, not in file): 1\n    cls' in message
  assert 'unexpected (in file, not in model): 1\n    pre_logits/kernel' in message
  assert 'head/kernel: file (32, 5) vs model (32, 7)' in message


def test_unknown_model_and_override_errors():
  with pytest.raises(ValueError, match=r"unknown model 'ViT-X/16'.*ViT-B/16"):
    models.create('ViT-X/16', num_classes=10)
  with pytest.raises(ValueError, match=r"unknown override\(s\) \['hidden'\].*hidden_size"):
    models.create('testing', num_classes=10, hidden=3)


def test_image_size_not_divisible_names_nearest_sizes():
  with pytest.raises(ValueError, match='image size 250 is not divisible by the token '
                     r'stride 16 \(stem stride x patch size\); use 240 or 256'):
    models.create('ViT-B/16', num_classes=10, image_size=250)
  with pytest.raises(ValueError, match='stride 32.*use 224 or 256'):
    models.create('R50+ViT-L/32', num_classes=10, image_size=(224, 250))


def test_wrong_input_size_says_how_to_fix():
  model = models.create('testing', num_classes=3)
  params = cost.abstract_params(model)
  with pytest.raises(ValueError, match=r'images are 48x32 .*image_size=\(48, 32\)'):
    jax.eval_shape(lambda p: model.apply({'params': p}, jnp.zeros((1, 48, 32, 3)),
                                         train=False), params)


def _apply(model, params, images, **kwargs):
  return model.apply({'params': params}, images, **kwargs)


def test_fast_paths_equal_reference_path():
  """Fused QKV and jax.nn.dot_product_attention change nothing but speed."""
  images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  base = models.create('testing', num_classes=5, fused_qkv=False)
  params = _random_params(base)
  expected = _apply(base, params, images, train=False)
  for overrides in ({'fused_qkv': True}, {'attention_impl': 'xla'}):
    fast = models.create('testing', num_classes=5, **overrides)
    np.testing.assert_allclose(_apply(fast, params, images, train=False), expected,
                               rtol=1e-5, atol=1e-5)


def test_dtype_reaches_every_layer():
  model = models.create('R+ViT-testing', num_classes=5, dtype=jnp.bfloat16)
  params = _random_params(model)
  _, state = model.apply({'params': params}, jnp.ones((1, 32, 32, 3)), train=False,
                         capture_intermediates=True, mutable=['intermediates'])
  outputs = checkpoint.flatten(state['intermediates'])
  # Modules that return parameters (not activations) keep param_dtype by design;
  # attention weights are sown in float32 (softmax statistics).
  skip = ('query', 'key', 'value', '/out/', 'posembed_input', 'attention_weights')
  checked = {k: v[0].dtype for k, v in outputs.items()
             if not any(s in k for s in skip) and hasattr(v[0], 'dtype')}
  assert len(checked) > 20
  assert {str(d) for d in checked.values()} == {'bfloat16'}, checked


def test_param_dtype_applies_to_every_parameter():
  model = models.create('R+ViT-testing', num_classes=5, param_dtype=jnp.bfloat16)
  dtypes = {str(x.dtype) for x in jax.tree_util.tree_leaves(cost.abstract_params(model))}
  assert dtypes == {'bfloat16'}


def test_stochastic_depth_rises_linearly_to_the_last_block():
  """With rate 1.0 on a 2-block model, block 0 (rate 0) runs and block 1 (rate 1) is
  always dropped: the train-mode output equals a 1-block model in eval mode."""
  two = models.create('testing', num_classes=5, stochastic_depth=1.0)
  params = _random_params(two)
  images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  dropped = _apply(two, params, images, train=True, rngs={'dropout': jax.random.key(0)})
  one = models.create('testing', num_classes=5, num_layers=1)
  one_params = dict(params, Transformer={k: v for k, v in params['Transformer'].items()
                                         if k != 'encoderblock_1'})
  np.testing.assert_allclose(dropped, _apply(one, one_params, images, train=False),
                             rtol=1e-5, atol=1e-5)


def test_remat_gives_same_values_and_gradients():
  images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  plain = models.create('testing', num_classes=5)
  params = _random_params(plain)
  grads = []
  for model in (plain, models.create('testing', num_classes=5, remat=True)):
    loss = lambda p, m=model: jnp.sum(_apply(m, p, images, train=False)**2)
    grads.append(jax.grad(loss)(params))
  for a, b in zip(jax.tree_util.tree_leaves(grads[0]), jax.tree_util.tree_leaves(grads[1])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_posemb_and_classifier_options():
  count = lambda **kw: cost.count_params(models.create('testing', num_classes=5, **kw))
  tokens, dim = 8 * 8 + 1, 32
  assert count() - count(posemb='sincos2d') == tokens * dim
  assert count(posemb='sincos2d') == count(posemb='none')
  assert count() - count(classifier='gap') == dim + dim  # cls token + its posemb row.
  params = cost.abstract_params(models.create('testing', num_classes=5, classifier='gap'))
  assert 'cls' not in params


def test_sincos2d_bands():
  emb = models.vit.sincos2d_posemb((3, 4), 8)  # (12, 8); first band: sin(x * 1).
  np.testing.assert_allclose(emb[:, 0], np.sin(np.tile(np.arange(4), 3)))
  np.testing.assert_allclose(emb[:, 6], np.cos(np.repeat(np.arange(3), 4)))


def test_head_is_zero_initialised_with_bias_init():
  model = models.create('testing', num_classes=5, head_bias_init=-3.0)
  variables = model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)), train=False)
  np.testing.assert_array_equal(variables['params']['head']['kernel'], 0)
  np.testing.assert_array_equal(variables['params']['head']['bias'], -3.0)
  np.testing.assert_array_equal(variables['params']['cls'], 0)

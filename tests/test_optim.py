"""Optimiser chains against hand-computed values and a NumPy Adam / SGD reference."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import common
from vit_jax import optim


def _config(**overrides):
  config = common.get_config()
  config.update(dict(total_steps=10, warmup_steps=2, lr=1.0, grad_clip_norm=0.0,
                     weight_decay=0.0))
  config.update(overrides)
  return config


@pytest.mark.parametrize('decay_type,expected', [
    # update n = count + 1; warmup 2 steps; progress = (n - 2) / 8.
    ('linear', [0.5, 1.0, 7 / 8, 6 / 8, 0.0]),
    ('cosine', [0.5, 1.0, 0.5 * (1 + np.cos(np.pi / 8)), 0.5 * (1 + np.cos(np.pi / 4)), 0.0]),
    ('constant', [0.5, 1.0, 1.0, 1.0, 1.0]),
])
def test_schedule_hand_computed(decay_type, expected):
  schedule = optim.learning_rate_schedule(_config(decay_type=decay_type, lr=2.0))
  got = [float(schedule(count)) for count in (0, 1, 2, 3, 9)]
  np.testing.assert_allclose(got, 2.0 * np.array(expected), rtol=1e-6)


SWIN_LIKE = {
    'patch_embed': {'proj': {'kernel': np.ones((4, 4, 3, 8)), 'bias': np.ones(8)},
                    'norm': {'scale': np.ones(8), 'bias': np.ones(8)}},
    'absolute_pos_embed': np.ones((1, 16, 8)),
    'layers_0': {'blocks_0': {'attn': {
        'relative_position_bias_table': np.ones((49, 2)),
        'qkv': {'kernel': np.ones((8, 24)), 'bias': np.ones(24)}}}},
    'cls': np.ones((1, 1, 8)),
    'Transformer': {'posembed_input': {'pos_embedding': np.ones((1, 17, 8))}},
    'head': {'kernel': np.ones((8, 10)), 'bias': np.ones(10)},
}


def _decayed_names(mask):
  flat = jax.tree_util.tree_leaves_with_path(mask)
  return sorted(jax.tree_util.keystr(p) for p, v in flat if v)


def test_adamw_mask_skips_biases_norms_embeddings_tables():
  assert _decayed_names(optim.weight_decay_mask(SWIN_LIKE, 'adamw')) == [
      "['head']['kernel']", "['layers_0']['blocks_0']['attn']['qkv']['kernel']",
      "['patch_embed']['proj']['kernel']"]


def test_adam_mask_is_kernels_only():
  assert _decayed_names(optim.weight_decay_mask(SWIN_LIKE, 'adam')) == [
      "['head']['kernel']", "['layers_0']['blocks_0']['attn']['qkv']['kernel']",
      "['patch_embed']['proj']['kernel']"]
  vit_like = {'embedding': {'kernel': np.ones((2, 2, 3, 4)), 'bias': np.ones(4)},
              'cls': np.ones((1, 1, 4)), 'LayerNorm_0': {'scale': np.ones(4)}}
  assert _decayed_names(optim.weight_decay_mask(vit_like, 'adam')) == [
      "['embedding']['kernel']"]


def _numpy_adam(p, grads, lrs, wd, b1=0.9, b2=0.999, eps=1e-8, decay=True):
  m = v = 0.0
  for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    update = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    p = p - lr * (update + (wd * p if decay else 0.0))
  return p


def _apply(tx, params, grads_seq):
  state = tx.init(params)
  for grads in grads_seq:
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def test_adam_decoupled_weight_decay_matches_numpy():
  config = _config(optimizer='adam', weight_decay=0.1, lr=0.01, decay_type='linear')
  rng = np.random.default_rng(0)
  params = {'kernel': rng.normal(size=(3, 2)), 'bias': rng.normal(size=2)}
  grads_seq = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(4)]
  got, _ = _apply(optim.make_optimizer(config), params, grads_seq)
  lrs = [float(optim.learning_rate_schedule(config)(c)) for c in range(4)]
  assert lrs[0] == pytest.approx(0.005)  # warmup: update 1 of 2
  for name, decay in (('kernel', True), ('bias', False)):
    expected = _numpy_adam(params[name], [g[name] for g in grads_seq], lrs, 0.1, decay=decay)
    np.testing.assert_allclose(got[name], expected, rtol=1e-5)


def test_sgd_momentum_clipping_and_bf16_accumulator():
  config = _config(optimizer='sgd', lr=0.1, grad_clip_norm=1.0, decay_type='constant',
                   warmup_steps=0, momentum_dtype='bfloat16')
  params = {'w': np.array([1.0, 2.0], np.float32)}
  grads_seq = [{'w': np.array([3.0, 4.0], np.float32)},  # norm 5 -> clipped to (.6, .8)
               {'w': np.array([0.3, 0.0], np.float32)}]  # norm .3: untouched
  got, state = _apply(optim.make_optimizer(config), params, grads_seq)
  # m1 = g1c; m2 = 0.9 m1 + g2; p = p0 - 0.1 (m1 + m2)
  m1 = np.array([0.6, 0.8]); m2 = 0.9 * m1 + np.array([0.3, 0.0])
  np.testing.assert_allclose(got['w'], params['w'] - 0.1 * (m1 + m2), rtol=1e-2)
  traces = [s for s in jax.tree.leaves(state) if getattr(s, 'dtype', None) == jnp.bfloat16]
  assert len(traces) == 1, 'the momentum accumulator must be stored in bfloat16'


def test_ema_update():
  ema = optim.ema_update({'w': jnp.array([1.0])}, {'w': jnp.array([3.0])}, 0.75)
  np.testing.assert_allclose(ema['w'], [1.5])


@pytest.mark.parametrize('field,value,message', [
    ('optimizer', 'lamb', "optimizer='lamb'"),
    ('decay_type', 'step', "decay_type='step'"),
    ('warmup_steps', 10, 'warmup_steps=10 must be in [0, total_steps=10)'),
    ('ema_decay', 1.0, 'ema_decay=1.0'),
])
def test_bad_config_names_the_value(field, value, message):
  with pytest.raises(ValueError, match=message.replace('[', r'\[').replace('(', r'\(')
                     .replace(')', r'\)')):
    optim.make_optimizer(_config(**{field: value}))

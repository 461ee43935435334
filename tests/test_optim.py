"""Optimiser chains against hand-computed values and a NumPy Adam / SGD reference."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vit_jax.configs import common
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


def test_adamw_mask_skips_the_swin_v2_bias_mlp_and_logit_scale():
  """Official V2 no_weight_decay_keywords: cpb_mlp, logit_scale (q/v biases are 1-D)."""
  from vit_jax.models import registry  # pylint: disable=g-import-not-at-top
  from vit_jax.cost import flops  # pylint: disable=g-import-not-at-top
  import vit_jax.models  # noqa: F401 (registers the families)  pylint: disable=g-import-not-at-top
  params = flops.abstract_params(registry.create('SwinV2-testing', num_classes=5))
  decayed = _decayed_names(optim.weight_decay_mask(params, 'adamw'))
  block = "['layers_0']['blocks_0']"
  assert f"{block}['attn']['qkv']['kernel']" in decayed
  assert f"{block}['mlp']['fc1']['kernel']" in decayed
  assert not [n for n in decayed if 'cpb_mlp' in n or 'logit_scale' in n or '_bias' in n]
  assert len(decayed) == 1 + 4 * 4 + 1 + 1  # patch conv, 4 per block, merge, head.


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


# --- end_lr: decay to a final learning rate -------------------------------------------

@pytest.mark.parametrize('decay_type,expected', [
    # peak 2, end 0.5, warmup 2 of 10 updates; n = count + 1, progress = (n - 2) / 8.
    # Warmup ignores end_lr (lr = 2 n / 2); afterwards lr = 0.5 + 1.5 * decay(progress).
    ('linear', [1.0, 2.0, 0.5 + 1.5 * 7 / 8, 0.5 + 1.5 * 6 / 8, 0.5 + 1.5 * 4 / 8, 0.5]),
    ('cosine', [1.0, 2.0, 0.5 + 0.75 * (1 + np.cos(np.pi / 8)),
                0.5 + 0.75 * (1 + np.cos(np.pi / 4)), 0.5 + 0.75, 0.5]),
])
def test_schedule_decays_to_end_lr(decay_type, expected):
  schedule = optim.learning_rate_schedule(_config(decay_type=decay_type, lr=2.0,
                                                  end_lr=0.5))
  got = [float(schedule(count)) for count in (0, 1, 2, 3, 5, 9)]
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert float(schedule(50)) == pytest.approx(0.5)  # past total_steps: stays at end_lr


def test_vit_i21k_schedule_ends_at_1e_5():
  # The i21k checkpoints' hyperparameters (google-research/vision_transformer issue #2):
  # lr 1e-3, 10k warmup, linear decay to 1e-5. Halfway through the decay: 5.05e-4.
  config = _config(lr=1e-3, end_lr=1e-5, warmup_steps=10_000, total_steps=110_000,
                   decay_type='linear')
  schedule = optim.learning_rate_schedule(config)
  assert float(schedule(9_999)) == pytest.approx(1e-3, rel=1e-6)
  assert float(schedule(59_999)) == pytest.approx(5.05e-4, rel=1e-5)
  assert float(schedule(109_999)) == pytest.approx(1e-5, rel=1e-4)


# --- layer-wise learning-rate decay -----------------------------------------------------

def _init_params(name, **overrides):
  """The params tree of a registered model (its real names and shapes), filled with
  normal noise: jax.eval_shape traces the init without running it (seconds, not a
  minute of eager init on 2 cores)."""
  from vit_jax import models
  model = models.create(name, num_classes=5, **overrides)
  h, w = model.image_size
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, h, w, 3)), train=False)['params'])
  rng = np.random.default_rng(1)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shapes)


# Expected exponent k of layer_decay ** k per parameter-name prefix, written by hand
# from the rules (BEiT get_num_layer_for_vit, Swin get_swin_layer): k = num_layers + 1 -
# layer id. 'testing' ViT: 2 blocks. R+ViT-testing: 2 blocks after a ResNet stem.
# Swin-testing: depths (2, 2), ids per block: 1, 2 | 3, 4; stage 0's merge takes id 2.
EXPECTED_EXPONENTS = {
    'testing': {
        'embedding': 3, 'cls': 3, 'Transformer/posembed_input': 3,
        'Transformer/encoderblock_0': 2, 'Transformer/encoderblock_1': 1,
        'Transformer/encoder_norm': 0, 'pre_logits': 0, 'head': 0},
    'R+ViT-testing': {
        'conv_root': 3, 'gn_root': 3, 'block1': 3, 'block2': 3, 'embedding': 3, 'cls': 3,
        'Transformer/posembed_input': 3, 'Transformer/encoderblock_0': 2,
        'Transformer/encoderblock_1': 1, 'Transformer/encoder_norm': 0, 'head': 0},
    'Swin-testing': {
        'patch_embed': 5, 'absolute_pos_embed': 5,
        'layers_0/blocks_0': 4, 'layers_0/blocks_1': 3, 'layers_0/downsample': 3,
        'layers_1/blocks_0': 2, 'layers_1/blocks_1': 1, 'norm': 0, 'head': 0},
}
MODEL_OVERRIDES = {'testing': {'representation_size': 8}, 'Swin-testing': {'ape': True}}


def _expected_exponent(name, key):
  matches = [k for prefix, k in EXPECTED_EXPONENTS[name].items()
             if key == prefix or key.startswith(prefix + '/')]
  assert len(matches) == 1, f'{key}: {matches}'
  return matches[0]


@pytest.mark.parametrize('name', sorted(EXPECTED_EXPONENTS))
def test_layer_decay_scales_each_block_of_a_real_model(name):
  from vit_jax.checkpoints import published as checkpoint
  params = _init_params(name, **MODEL_OVERRIDES.get(name, {}))
  rng = np.random.default_rng(0)
  grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
  base = dict(optimizer='sgd', lr=0.1, b1=0.9, weight_decay=0.1, warmup_steps=0,
              decay_type='linear', grad_clip_norm=0.0)
  updates = {}
  for decay in (1.0, 0.5):
    tx = optim.make_optimizer(_config(**base, layer_decay=decay))
    updates[decay], _ = jax.jit(tx.update)(grads, tx.init(params), params)
  plain, scaled = (checkpoint.flatten(updates[d]) for d in (1.0, 0.5))
  assert len(plain) == len(checkpoint.flatten(params))
  exponents = {}
  for key, u in plain.items():
    k = exponents[key] = _expected_exponent(name, key)
    assert np.abs(u).max() > 0, key
    np.testing.assert_allclose(scaled[key], 0.5**k * np.asarray(u), rtol=1e-6, atol=0,
                               err_msg=key)
  # Every level of the model is present (no block silently shares a scale).
  assert sorted(set(exponents.values())) == sorted(set(EXPECTED_EXPONENTS[name].values()))


def test_layer_decay_scales_the_weight_decay_term_too():
  # Zero gradient: the whole update is -lr * wd * kernel, scaled by the layer's factor.
  params = _init_params('testing')
  grads = jax.tree.map(jnp.zeros_like, params)
  tx = optim.make_optimizer(_config(optimizer='sgd', lr=0.1, weight_decay=0.5,
                                    warmup_steps=0, decay_type='constant',
                                    layer_decay=0.8))
  updates, _ = tx.update(grads, tx.init(params), params)
  kernel = params['Transformer']['encoderblock_0']['MlpBlock_0']['Dense_0']['kernel']
  got = updates['Transformer']['encoderblock_0']['MlpBlock_0']['Dense_0']['kernel']
  np.testing.assert_allclose(got, -0.1 * 0.5 * 0.8**2 * kernel, rtol=1e-6)
  embedding = updates['embedding']['kernel']
  np.testing.assert_allclose(embedding, -0.1 * 0.5 * 0.8**3 * params['embedding']['kernel'],
                             rtol=1e-6)
  np.testing.assert_array_equal(updates['head']['bias'], 0.0)  # no decay on biases


def test_layer_decay_off_keeps_the_chain():
  params = {'w': jnp.ones(2)}
  plain = optim.make_optimizer(_config())
  assert jax.tree.structure(plain.init(params)) == jax.tree.structure(
      optim.make_optimizer(_config(layer_decay=1.0)).init(params))


def test_layer_ids_refuse_unknown_parameters():
  params = {'Transformer': {'encoderblock_0': {'w': np.ones(1)}},
            'adapter': {'w': np.ones(1)}}
  with pytest.raises(ValueError, match='no layer id for parameter adapter/w'):
    optim.layer_ids(params)
  with pytest.raises(ValueError, match='found no Transformer/encoderblock_'):
    optim.layer_ids({'head': {'kernel': np.ones(1)}})


@pytest.mark.parametrize('overrides,message', [
    (dict(layer_decay=0.0), r'layer_decay=0.0 must be in \(0, 1\].*use 1.0 to turn it off'),
    (dict(layer_decay=1.5), r'layer_decay=1.5 must be in \(0, 1\]'),
    (dict(layer_decay=-0.65), r'layer_decay=-0.65 must be in \(0, 1\]'),
    (dict(end_lr=-1e-5), r'end_lr=-1e-05 must be in \[0, lr=1.0\]'),
    (dict(end_lr=2.0), r'end_lr=2.0 must be in \[0, lr=1.0\]'),
    (dict(end_lr=1e-5, decay_type='constant'), r"end_lr=1e-05 has no effect with "
                                               r"decay_type='constant'"),
])
def test_bad_layer_decay_or_end_lr_is_refused(overrides, message):
  with pytest.raises(ValueError, match=message):
    optim.check_config(_config(**overrides))

"""No regression from the speed work: the fast paths compute what the plain path does.

Fast path: fused QKV, jax.nn.dot_product_attention and/or attention in batch chunks.
Plain path: separate q/k/v matmuls and explicit einsum attention over the whole batch. Same parameters (the checkpoint format is one
tree for all), same batch, float32: logits and one SGD update of the real train step
agree to 1e-5. The bf16-matmul mode (config dtype 'bf16_matmul') is not exact by
design: it must differ from float32 (so it is really on) by a small, bounded amount.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vit_jax.configs import common
from vit_jax import optim
from vit_jax import run_config
from vit_jax import steps
from vit_jax.models import matmul

CLASSES = 10


def _config(model: str, dtype: str = 'float32'):
  config = common.get_config()
  config.model, config.image_size, config.dtype = model, 32, dtype
  config.batch_size, config.optimizer, config.lr = 8, 'sgd', 0.1
  config.warmup_steps, config.decay_type, config.total_steps = 0, 'constant', 10
  return config


def _params_and_batch(model):
  """Init params with a random (not zero-initialised) head, and a batch of 8."""
  images = jax.random.normal(jax.random.key(1), (8, 32, 32, 3))
  params = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images)
  params = params['params']
  head = params['head']['kernel']
  params = dict(params, head=dict(params['head'], kernel=0.3 * jax.random.normal(
      jax.random.key(2), head.shape)))
  labels = jax.nn.one_hot(jnp.arange(8) % CLASSES, CLASSES)
  return params, {'image': images, 'label': labels}


def _logits_and_step(config, params, batch):
  """(logits, params after one SGD update of steps.train_step) for `config`."""
  model = run_config.create_model(config, CLASSES)
  tx = optim.make_optimizer(config)
  step = functools.partial(steps.train_step, model=model, tx=tx, config=config)

  @jax.jit  # one compilation for both.
  def run(state, batch):
    logits = model.apply({'params': state.params}, batch['image'], train=False)
    return logits, step(state, batch)[0].params

  return run(steps.init_state(params, tx, jax.random.key(3), ema_decay=0.0), batch)


@pytest.fixture(scope='module')
def reference():
  """The plain path (separate q/k/v, einsum attention) in float32."""
  config = _config('testing')
  config.model_overrides.fused_qkv = False
  config.model_overrides.attention_impl = 'einsum'
  config.model_overrides.attention_chunks = 1
  params, batch = _params_and_batch(run_config.create_model(config, CLASSES))
  return params, batch, _logits_and_step(config, params, batch)


@pytest.mark.parametrize('overrides', [
    {'fused_qkv': True, 'attention_impl': 'einsum'},
    {'fused_qkv': True, 'attention_impl': 'xla'},
    # 8 examples in chunks of 3, 3, 2 (the CPU default: 4 chunks of 2).
    {'fused_qkv': True, 'attention_impl': 'einsum', 'attention_chunks': 3},
    {'fused_qkv': True, 'attention_impl': 'xla', 'attention_chunks': 3},
])
def test_fast_path_equals_plain_path_in_float32(reference, overrides):
  params, batch, (ref_logits, ref_params) = reference
  config = _config('testing')
  config.model_overrides.update(overrides)
  logits, new_params = _logits_and_step(config, params, batch)
  np.testing.assert_allclose(logits, ref_logits, atol=1e-5, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
               new_params, ref_params)


def test_swin_attention_chunks_equal_one_batched_attention_in_float32():
  """Swin's window attention in 3 batch chunks (with the shifted-window mask and the
  relative-position bias) computes what one batched attention does."""
  results = []
  for chunks in (1, 3):
    config = _config('Swin-testing')
    config.model_overrides.attention_chunks = chunks
    if not results:
      params, batch = _params_and_batch(run_config.create_model(config, CLASSES))
    results.append(_logits_and_step(config, params, batch))
  (ref_logits, ref_params), (logits, new_params) = results
  assert float(jnp.std(ref_logits)) > 0.1  # not a trivially zero output.
  np.testing.assert_allclose(logits, ref_logits, atol=1e-5, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
               new_params, ref_params)


def _relative(a, b) -> float:
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def test_bf16_matmul_mode_is_close_to_float32_but_not_equal(reference):
  """bf16 inputs round to 8 significant bits (relative error <= 2^-9 per value);
  through the tiny model's two blocks logits and updates move well under 2%."""
  params, batch, (f32_logits, f32_params) = reference
  config = _config('testing', 'bf16_matmul')
  config.model_overrides.fused_qkv = False
  bf16_logits, bf16_params = _logits_and_step(config, params, batch)
  assert 1e-4 < _relative(bf16_logits, f32_logits) < 2e-2
  updates = jax.tree.map(lambda new, old: new - old, bf16_params, params)
  f32_updates = jax.tree.map(lambda new, old: new - old, f32_params, params)
  flat, f32_flat = (jnp.concatenate([x.ravel() for x in jax.tree.leaves(t)])
                    for t in (updates, f32_updates))
  assert 1e-4 < _relative(flat, f32_flat) < 2e-2


def test_bf16_matmul_gradients_use_bf16_inputs_and_match_float32():
  """The custom VJP: all three dots of a matmul get bf16 operands (none upcast) and
  the gradients agree with float32 ones to bf16 rounding."""
  a = jax.random.normal(jax.random.key(0), (4, 16, 32))
  w = 0.1 * jax.random.normal(jax.random.key(1), (32, 3, 8))  # sin's argument ~0.5.
  spec = 'btd,dhk->bthk'

  def loss(a, w, low):
    return jnp.sum(jnp.sin(matmul.einsum(spec, a, w, low)))

  hlo = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2).lower(
      a, w, jnp.bfloat16).as_text()
  dots = [line for line in hlo.splitlines() if 'stablehlo.dot_general' in line]
  assert len(dots) == 3 and all('bf16>, tensor<' in d for d in dots), dots
  mixed = jax.grad(loss, argnums=(0, 1))(a, w, jnp.bfloat16)
  exact = jax.grad(loss, argnums=(0, 1))(a, w, None)
  for m, e in zip(mixed, exact):
    assert m.dtype == jnp.float32
    assert 1e-5 < _relative(m, e) < 1e-2


@pytest.mark.parametrize('model, float32_dots', [('testing', 1), ('Swin-testing', 1)])
def test_bf16_matmul_reaches_every_block_matmul(model, float32_dots):
  """Traced (not compiled): every dot_general of the forward pass but the head's gets
  bf16 operands; the patch embedding is a convolution and stays float32."""
  config = _config(model, 'bf16_matmul')
  net = run_config.create_model(config, CLASSES)
  images = jnp.zeros((2, 32, 32, 3))
  params = jax.eval_shape(lambda x: net.init(jax.random.key(0), x, train=False), images)
  jaxpr = jax.make_jaxpr(lambda p, x: net.apply(p, x, train=False))(params, images)
  kinds = [tuple(v.aval.dtype for v in eqn.invars[:2]) for eqn in _equations(jaxpr.jaxpr)
           if eqn.primitive.name == 'dot_general']
  bf16 = sum(k == (jnp.bfloat16, jnp.bfloat16) for k in kinds)
  assert len(kinds) - bf16 == float32_dots and bf16 >= 8, kinds


def _equations(jaxpr):
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in (value if isinstance(value, (list, tuple)) else [value]):
        inner = getattr(sub, 'jaxpr', sub)
        if hasattr(inner, 'eqns'):
          yield from _equations(inner)


def test_bad_einsum_spec_is_rejected_by_name():
  with pytest.raises(ValueError, match="index \\['k'\\] of the first operand"):
    matmul.einsum('bk,bd->bd', jnp.ones((2, 3)), jnp.ones((2, 4)), jnp.bfloat16)


def test_bf16_dot_outside_ynnpack_is_reported():
  """XLA:CPU cannot execute a bf16 x bf16 -> f32 dot outside a YNNPACK fusion; the
  compile-time check finds one in HLO text (a dot inside a fusion body is fine)."""
  hlo = '\n'.join([
      '%fused_computation.1 (p0: bf16[8,4], p1: bf16[4,2]) -> f32[8,2] {',
      '  %p0 = bf16[8,4]{1,0} parameter(0)',
      '  %p1 = bf16[4,2]{1,0} parameter(1)',
      '  ROOT %dot.1 = f32[8,2]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}',
      '}',
      '',
      'ENTRY %main (a: bf16[4,8], b: bf16[4,2], c: f32[4,8]) -> f32[8,2] {',
      '  %a = bf16[4,8]{1,0} parameter(0)',
      '  %b = bf16[4,2]{1,0} parameter(1)',
      '  %c = f32[4,8]{1,0} parameter(2)',
      '  %ok = f32[8,2]{1,0} dot(%c, %c), lhs_contracting_dims={0}',
      '  ROOT %bad = f32[8,2]{1,0} dot(%a, %b), lhs_contracting_dims={0}',
      '}'])
  bad = matmul.unsupported_cpu_dots(hlo)
  assert len(bad) == 1 and bad[0].startswith('ROOT %bad')

"""Pure train / eval step functions, losses and step metrics.

`train_step(state, batch, *, model, tx, config)` and `eval_step(params, batch, *, model,
config)` are bound with `functools.partial` and compiled once by `jit_train_step` /
`jit_eval_step` with shardings on the mesh. Batches are dicts of global arrays:
`image` (B, H, W, 3) float32, `label` (B, classes) float32 (one-hot, smoothed or
multi-hot, prepared by the input pipeline), for training `weight` (B,) float32 (0 = a
record the pipeline could not read: its slot adds nothing to the loss or gradients), and
for eval `mask` (B,) float32 (0 = padding or unreadable) and `unreadable` (B,) float32.
"""
from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from vit_jax import optim

LOSSES = ('softmax_xent', 'sigmoid_xent')


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # () int32: number of updates applied so far.
  params: Any
  opt_state: Any
  ema_params: Any  # Polyak average of params; an empty dict when config.ema_decay == 0.
  rng: jax.Array  # (2,) uint32 base key; step s uses fold_in(rng, s): resumable.


def init_state(params: Any, tx: optax.GradientTransformation, rng: jax.Array,
               ema_decay: float) -> TrainState:
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
      ema_params=jax.tree.map(jnp.copy, params) if ema_decay else {}, rng=rng)


def per_example_loss(logits: jax.Array, labels: jax.Array, loss: str) -> jax.Array:
  """(B, C) float32 logits and targets -> (B,) loss.

  softmax_xent: -sum_c y_c log softmax(z)_c. sigmoid_xent (multi-label, ImageNet-21k):
  sum over classes of binary cross-entropy, as in the ViT reference code.
  """
  if loss == 'softmax_xent':
    return -jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1)
  if loss == 'sigmoid_xent':
    return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, labels), axis=-1)
  raise ValueError(f'loss={loss!r} is not one of {LOSSES}')


def split_micro_batches(x: jax.Array, accum_steps: int) -> jax.Array:
  """(B, ...) -> (accum_steps, B / accum_steps, ...) without moving data across devices.

  Row r goes to micro-batch r % accum_steps: each device's contiguous block of B / devices
  rows feeds every micro-batch, so no micro-batch lives on a subset of the devices.
  """
  micro = x.shape[0] // accum_steps
  return x.reshape(micro, accum_steps, *x.shape[1:]).swapaxes(0, 1)


def _nan_injection(step: jax.Array, config) -> jax.Array:
  """1.0, or NaN in update number config.debug.nan_loss_at_step (1-based; state.step is
  the 0-based count before the update). Tests the non-finite-loss stop."""
  return jnp.where(step + 1 == config.debug.nan_loss_at_step, jnp.nan, 1.0)


def loss_and_grads(params, images, labels, weights, rng, step, *, model, config):
  """Weighted mean loss over the batch, sum(w * loss) / sum(w), and its gradients,
  summed over config.accum_steps. All weights 1: the plain mean."""
  total_weight = jnp.maximum(jnp.sum(weights), 1.0)  # () float32; 0 only if all unread.

  def loss_fn(p, x, y, w, key):
    logits = model.apply({'params': p}, x, train=True, rngs={'dropout': key})
    losses = per_example_loss(logits.astype(jnp.float32), y, config.loss)
    loss = jnp.sum(losses * w) / total_weight
    if config.debug.nan_loss_at_step >= 0:  # Python-level: absent from real runs' graphs.
      loss = loss * _nan_injection(step, config)
    return loss

  grad_fn = jax.value_and_grad(loss_fn)
  accum = config.accum_steps
  if accum == 1:
    return grad_fn(params, images, labels, weights, rng)

  def body(carry, xs):
    loss_sum, grad_sum = carry
    i, x, y, w = xs
    loss, grads = grad_fn(params, x, y, w, jax.random.fold_in(rng, i))
    # Accumulate in float32 whatever the parameter dtype.
    grad_sum = jax.tree.map(lambda s, g: s + g.astype(jnp.float32), grad_sum, grads)
    return (loss_sum + loss, grad_sum), None

  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  xs = (jnp.arange(accum), split_micro_batches(images, accum),
        split_micro_batches(labels, accum), split_micro_batches(weights, accum))
  (loss_sum, grad_sum), _ = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros), xs)
  # Each micro loss is already divided by the whole batch's weight: sums, not means.
  grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grad_sum, params)
  return loss_sum, grads


def batch_weights(batch: dict[str, jax.Array]) -> jax.Array:
  """(B,) float32 example weights; a batch without 'weight' (a benchmark's constant
  batch, a test's hand-made one) weights every row 1."""
  if 'weight' in batch:
    return batch['weight']
  return jnp.ones(batch['image'].shape[:1], jnp.float32)


def train_step(state: TrainState, batch: dict[str, jax.Array], *, model,
               tx: optax.GradientTransformation, config) -> tuple[TrainState, dict]:
  """One optimiser update on a global batch; returns the new state and scalar metrics."""
  rng = jax.random.fold_in(state.rng, state.step)
  weights = batch_weights(batch)
  loss, grads = loss_and_grads(state.params, batch['image'], batch['label'], weights,
                               rng, state.step, model=model, config=config)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema_params = state.ema_params
  if config.ema_decay:
    ema_params = optim.ema_update(ema_params, params, config.ema_decay)
  metrics = {
      'loss': loss,
      'grad_norm': optax.tree.norm(grads),
      'param_norm': optax.tree.norm(params),
      'update_norm': optax.tree.norm(updates),
      'lr': optim.learning_rate_schedule(config)(state.step),
      'data_errors': jnp.sum(1.0 - weights),  # slots of unreadable records.
  }
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            ema_params=ema_params)
  return new_state, metrics


def correct_predictions(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """(B,) 1.0 where the top-1 class is a (highest-weighted) target class.

  One-hot: top-1 accuracy; multi-hot: precision@1 (any positive label counts).
  """
  picked = jnp.take_along_axis(labels, jnp.argmax(logits, -1)[:, None], axis=-1)[:, 0]
  best = jnp.max(labels, axis=-1)
  return ((picked == best) & (best > 0)).astype(jnp.float32)


def eval_step(params: Any, batch: dict[str, jax.Array], *, model,
              config) -> dict[str, jax.Array]:
  """Masked sums over one eval batch: correct, loss, count (padding and unreadable
  examples have mask 0), and unreadable."""
  logits = model.apply({'params': params}, batch['image'], train=False)
  logits = logits.astype(jnp.float32)
  mask = batch['mask']
  return {
      'correct': jnp.sum(correct_predictions(logits, batch['label']) * mask),
      'loss': jnp.sum(per_example_loss(logits, batch['label'], config.loss) * mask),
      'count': jnp.sum(mask),
      'unreadable': jnp.sum(batch['unreadable']) if 'unreadable' in batch else 0.0,
  }


def jit_train_step(*, model, tx, config, state_sharding, batch_sharding, replicated):
  """train_step compiled for the mesh; the state is donated (updated in place)."""
  step_fn = functools.partial(train_step, model=model, tx=tx, config=config)
  return jax.jit(step_fn, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, replicated), donate_argnums=0)


def jit_eval_step(*, model, config, params_sharding, batch_sharding, replicated):
  step_fn = functools.partial(eval_step, model=model, config=config)
  return jax.jit(step_fn, in_shardings=(params_sharding, batch_sharding),
                 out_shardings=replicated)

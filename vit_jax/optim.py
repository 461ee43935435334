"""Optimisers of the ViT / Swin recipes as optax chains, the learning-rate schedule, EMA.

  adam   Adam(b1, b2) + decoupled weight decay on kernels only (ViT pretraining).
  sgd    SGD with momentum b1, accumulator optionally bfloat16 (ViT fine-tuning).
  adamw  Adam(b1, b2) + decoupled weight decay on everything except biases, norms,
         position embeddings, relative-position bias tables and the class token (Swin).

Each chain is: global-norm clip -> moment estimate -> + wd * param -> x -lr(step).
Decoupled weight decay is added after Adam's normalisation and scaled by the learning
rate schedule, as `optax.adamw` does: p <- p - lr(t) * (adam_update + wd * p).
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ('adam', 'sgd', 'adamw')
DECAY_TYPES = ('cosine', 'linear', 'constant')
# Swin (and DeiT) exclude these from weight decay by name, besides every 1-D leaf.
ADAMW_NO_DECAY_NAMES = frozenset({
    'bias', 'scale', 'pos_embedding', 'absolute_pos_embed',
    'relative_position_bias_table', 'cls'})


def check_config(config) -> None:
  """Raises on optimiser settings that would only fail (or silently misbehave) later."""
  if config.optimizer not in OPTIMIZERS:
    raise ValueError(f'optimizer={config.optimizer!r} is not one of {OPTIMIZERS}')
  if config.decay_type not in DECAY_TYPES:
    raise ValueError(f'decay_type={config.decay_type!r} is not one of {DECAY_TYPES}')
  if not 0 <= config.warmup_steps < config.total_steps:
    raise ValueError(
        f'warmup_steps={config.warmup_steps} must be in [0, total_steps='
        f'{config.total_steps}); lower warmup_steps or raise total_steps')
  if not 0 <= config.ema_decay < 1:
    raise ValueError(f'ema_decay={config.ema_decay} must be in [0, 1); 0 disables EMA')
  if config.momentum_dtype not in ('float32', 'bfloat16'):
    raise ValueError(
        f"momentum_dtype={config.momentum_dtype!r}; use 'float32' or 'bfloat16'")


def learning_rate_schedule(config) -> optax.Schedule:
  """lr(count) for optax's update count (0-based) from config.lr / warmup / decay.

  Update number n = count + 1 (1-based, as in the ViT reference code, so the first update
  is not a zero step): lr = peak * min(1, n / warmup) * decay(progress), with progress =
  (n - warmup) / (total - warmup) clipped to [0, 1]; decay is 1 - progress (linear),
  (1 + cos(pi progress)) / 2 (cosine) or 1 (constant). The last update (n = total) has
  lr 0 under linear and cosine decay.
  """
  peak, warmup, total = config.lr, config.warmup_steps, config.total_steps
  decay_type = config.decay_type

  def schedule(count):
    n = jnp.asarray(count, jnp.float32) + 1.0
    progress = jnp.clip((n - warmup) / (total - warmup), 0.0, 1.0)
    if decay_type == 'linear':
      factor = 1.0 - progress
    elif decay_type == 'cosine':
      factor = 0.5 * (1.0 + jnp.cos(math.pi * progress))
    else:
      factor = jnp.ones_like(progress)
    if warmup:
      factor = factor * jnp.minimum(1.0, n / warmup)
    return peak * factor

  return schedule


def _leaf_name(path) -> str:
  last = path[-1]
  return str(getattr(last, 'key', getattr(last, 'name', last)))


def weight_decay_mask(params: Any, optimizer: str) -> Any:
  """True where decoupled weight decay applies (same tree structure as `params`)."""
  def decays(path, leaf):
    name = _leaf_name(path)
    if optimizer == 'adamw':
      return leaf.ndim > 1 and name not in ADAMW_NO_DECAY_NAMES
    return name == 'kernel'  # ViT pretraining: kernels only (not biases, norms, embeddings).

  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(config) -> optax.GradientTransformation:
  """The optax chain for config.optimizer (see module docstring)."""
  check_config(config)
  chain = []
  if config.grad_clip_norm > 0:
    chain.append(optax.clip_by_global_norm(config.grad_clip_norm))
  if config.optimizer == 'sgd':
    chain.append(optax.trace(decay=config.b1, accumulator_dtype=jnp.dtype(
        config.momentum_dtype)))
  else:
    chain.append(optax.scale_by_adam(b1=config.b1, b2=config.b2))
  if config.weight_decay > 0:
    chain.append(optax.add_decayed_weights(
        config.weight_decay,
        mask=lambda params: weight_decay_mask(params, config.optimizer)))
  chain.append(optax.scale_by_learning_rate(learning_rate_schedule(config)))
  return optax.chain(*chain)


def ema_update(ema_params: Any, params: Any, decay: float) -> Any:
  """Polyak / exponential moving average: ema <- decay * ema + (1 - decay) * params."""
  return jax.tree.map(
      lambda e, p: (decay * e + (1.0 - decay) * p).astype(e.dtype), ema_params, params)

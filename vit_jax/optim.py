"""Optimisers of the ViT / Swin recipes as optax chains, the learning-rate schedule, EMA.

  adam   Adam(b1, b2) + decoupled weight decay on kernels only (ViT pretraining).
  sgd    SGD with momentum b1, accumulator optionally bfloat16 (ViT fine-tuning).
  adamw  Adam(b1, b2) + decoupled weight decay on everything except biases, norms,
         position embeddings, relative-position bias tables and the class token (Swin).

Each chain is: global-norm clip -> moment estimate -> + wd * param
-> x layer-decay scale (config.layer_decay < 1 only) -> x -lr(step).
Decoupled weight decay is added after Adam's normalisation and scaled by the learning
rate schedule, as `optax.adamw` does: p <- p - lr(t) * (adam_update + wd * p).

Layer-wise learning-rate decay (BEiT, Bao et al. 2021, arXiv:2106.08254; its fine-tuning
code microsoft/unilm beit/optim_factory.py, and Swin's SimMIM fine-tuning in
microsoft/Swin-Transformer optimizer.py `get_swin_layer`): the whole update of a
parameter with layer id l, weight decay included, is scaled by
layer_decay ** (num_layers + 1 - l); see `layer_ids`.
"""
from __future__ import annotations

import math
import re
from typing import Any

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ('adam', 'sgd', 'adamw')
DECAY_TYPES = ('cosine', 'linear', 'constant')
# Swin (and DeiT) exclude these from weight decay by name, besides every 1-D leaf;
# Swin V2 also its logit scale (heads, 1, 1) and every leaf of the continuous-bias MLP
# (official swin_transformer_v2.py no_weight_decay_keywords: cpb_mlp, logit_scale).
ADAMW_NO_DECAY_NAMES = frozenset({
    'bias', 'scale', 'pos_embedding', 'absolute_pos_embed',
    'relative_position_bias_table', 'cls', 'logit_scale'})
ADAMW_NO_DECAY_MODULES = frozenset({'cpb_mlp_0', 'cpb_mlp_2'})


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
  layer_decay = config.get('layer_decay', 1.0)
  if not 0 < layer_decay <= 1:
    raise ValueError(
        f'layer_decay={layer_decay} must be in (0, 1]: the lr of a layer is scaled by '
        'layer_decay ** (number of layers above it); use 1.0 to turn it off, or e.g. '
        '0.65 (BEiT-B fine-tuning) or 0.8 (SimMIM Swin-B fine-tuning)')
  end_lr = config.get('end_lr', 0.0)
  if not 0 <= end_lr <= config.lr:
    raise ValueError(
        f'end_lr={end_lr} must be in [0, lr={config.lr}]: the schedule decays from lr '
        'to end_lr; lower end_lr (0 decays to zero)')
  if end_lr and config.decay_type == 'constant':
    raise ValueError(
        f"end_lr={end_lr} has no effect with decay_type='constant'; set end_lr=0.0 or "
        "use decay_type='linear' or 'cosine'")


def learning_rate_schedule(config) -> optax.Schedule:
  """lr(count) for optax's update count (0-based) from config.lr / warmup / decay.

  Update number n = count + 1 (1-based, as in the ViT reference code, so the first update
  is not a zero step):

    lr = min(1, n / warmup) * (end + (peak - end) * decay(progress)),

  with peak = config.lr, end = config.end_lr (default 0), progress = (n - warmup) /
  (total - warmup) clipped to [0, 1]; decay is 1 - progress (linear), (1 + cos(pi
  progress)) / 2 (cosine) or 1 (constant). Warmup rises linearly from 0 to peak (there
  progress is 0); the last update (n = total) has lr = end under linear and cosine
  decay (the ViT i21k checkpoints decayed linearly to 1e-5, google-research/
  vision_transformer issue #2). With end = 0 the numbers are those of peak * factor.
  """
  peak, warmup, total = config.lr, config.warmup_steps, config.total_steps
  end = config.get('end_lr', 0.0)
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
    warm = jnp.minimum(1.0, n / warmup) if warmup else jnp.ones_like(progress)
    # warm * (end + (peak - end) * decay), written so that end = 0 gives peak * factor
    # bit for bit (as before end_lr existed).
    return end * warm + (peak - end) * (factor * warm)

  return schedule


def _leaf_name(path) -> str:
  last = path[-1]
  return str(getattr(last, 'key', getattr(last, 'name', last)))


def weight_decay_mask(params: Any, optimizer: str) -> Any:
  """True where decoupled weight decay applies (same tree structure as `params`)."""
  def decays(path, leaf):
    name = _leaf_name(path)
    if optimizer == 'adamw':
      modules = {str(getattr(k, 'key', k)) for k in path[:-1]}
      return (leaf.ndim > 1 and name not in ADAMW_NO_DECAY_NAMES
              and not modules & ADAMW_NO_DECAY_MODULES)
    return name == 'kernel'  # ViT pretraining: kernels only (not biases, norms, embeddings).

  return jax.tree_util.tree_map_with_path(decays, params)


# --- layer-wise learning-rate decay ---------------------------------------------------
# Names of the parameters that sit below the first block (layer id 0): ViT patch
# embedding, class token, (Transformer/)posembed_input; the R50 stem of hybrids
# (conv_root, gn_root, block{s}/unit{u}); Swin patch_embed and absolute_pos_embed.
_EMBEDDING_NAMES = ('embedding', 'cls', 'conv_root', 'gn_root', 'patch_embed',
                    'absolute_pos_embed')
# Names above the last block (layer id num_layers + 1, scale 1).
_TOP_NAMES = ('head', 'pre_logits', 'norm')
_VIT_BLOCK = re.compile(r'encoderblock_(\d+)$')
_SWIN_STAGE = re.compile(r'layers_(\d+)$')
_SWIN_BLOCK = re.compile(r'blocks_(\d+)$')
_RESNET_STAGE = re.compile(r'block\d+$')


def _names(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, 'key', getattr(k, 'name', k))) for k in path)


def _block_counts(paths) -> tuple[int, list[int]]:
  """(ViT encoder blocks, Swin blocks per stage) counted in the params tree itself."""
  vit, swin = set(), {}
  for names in paths:
    if len(names) > 1 and names[0] == 'Transformer' and _VIT_BLOCK.match(names[1]):
      vit.add(int(_VIT_BLOCK.match(names[1]).group(1)))
    if len(names) > 1 and _SWIN_STAGE.match(names[0]) and _SWIN_BLOCK.match(names[1]):
      stage = int(_SWIN_STAGE.match(names[0]).group(1))
      swin.setdefault(stage, set()).add(int(_SWIN_BLOCK.match(names[1]).group(1)))
  if vit and swin:
    raise ValueError('layer_decay: the params hold both ViT encoderblock_* and Swin '
                     'layers_*/blocks_* subtrees; cannot tell the layer order')
  depths = [len(swin.get(i, ())) for i in range(max(swin) + 1)] if swin else []
  for blocks, what in [(vit, 'Transformer/encoderblock_*')] + [
      (swin[i], f'layers_{i}/blocks_*') for i in swin]:
    if blocks != set(range(len(blocks))):
      raise ValueError(f'layer_decay: {what} are numbered {sorted(blocks)}, not 0..n-1')
  return len(vit), depths


def layer_ids(params: Any) -> tuple[Any, int]:
  """(tree of int layer ids like `params`, num_layers) for layer-wise lr decay.

  num_layers is counted in the tree: the ViT's Transformer/encoderblock_* or Swin's
  layers_*/blocks_* summed over stages. Ids, as in BEiT's `get_num_layer_for_vit` and
  the official Swin `get_swin_layer`:
    0                        embeddings: ViT embedding, cls, Transformer/posembed_input;
                             the hybrids' ResNet stem (conv_root, gn_root, block*/unit*);
                             Swin patch_embed and absolute_pos_embed
    i + 1                    ViT Transformer/encoderblock_i
    sum(depths[:s]) + j + 1  Swin layers_s/blocks_j: per block across stages, as Swin's
                             SimMIM fine-tuning code (not one id per stage)
    sum(depths[:s + 1])      Swin layers_s/downsample (the id of stage s's last block)
    num_layers + 1           head, pre_logits, Transformer/encoder_norm, Swin norm
  One deliberate difference: the official get_swin_layer gives absolute_pos_embed the
  top id (scale 1; its SimMIM models have none); here it is an embedding, as in BEiT.
  Any other name raises, so a new module is not silently left undecayed.
  """
  leaves = jax.tree_util.tree_leaves_with_path(params)
  num_vit, depths = _block_counts([_names(p) for p, _ in leaves])
  num_layers = num_vit + sum(depths)
  if not num_layers:
    raise ValueError('layer_decay: found no Transformer/encoderblock_* (ViT) or '
                     'layers_*/blocks_* (Swin) in the params; set layer_decay=1.0')
  top = num_layers + 1

  def layer_id(path, _):
    names = _names(path)
    head = names[0]
    if head == 'Transformer' and len(names) > 1:
      if _VIT_BLOCK.match(names[1]):
        return int(_VIT_BLOCK.match(names[1]).group(1)) + 1
      if names[1] == 'posembed_input':
        return 0
      if names[1] == 'encoder_norm':
        return top
    if head in _EMBEDDING_NAMES or _RESNET_STAGE.match(head):
      return 0
    if head in _TOP_NAMES:
      return top
    if _SWIN_STAGE.match(head) and len(names) > 1:
      stage = int(_SWIN_STAGE.match(head).group(1))
      if _SWIN_BLOCK.match(names[1]):
        return sum(depths[:stage]) + int(_SWIN_BLOCK.match(names[1]).group(1)) + 1
      if names[1] == 'downsample':
        return sum(depths[:stage + 1])
    raise ValueError(f'layer_decay: no layer id for parameter {"/".join(names)}; '
                     'extend optim.layer_ids or set layer_decay=1.0')

  return jax.tree_util.tree_map_with_path(layer_id, params), num_layers


def layer_decay_scales(params: Any, layer_decay: float) -> Any:
  """Tree of python floats like `params`: layer_decay ** (num_layers + 1 - layer id)."""
  ids, num_layers = layer_ids(params)
  return jax.tree.map(lambda i: float(layer_decay) ** (num_layers + 1 - i), ids)


def scale_by_layer_decay(layer_decay: float) -> optax.GradientTransformation:
  """Multiplies each leaf of the update by its `layer_decay_scales` factor.

  Stateless; the scales depend only on the tree's key paths, so they are python
  constants under jit. `init` already computes them, so a tree without layer ids fails
  when the optimiser state is made, before the train step is compiled.
  """
  def init_fn(params):
    layer_decay_scales(params, layer_decay)
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params
    scales = layer_decay_scales(updates, layer_decay)
    return jax.tree.map(lambda u, s: u * jnp.asarray(s, u.dtype), updates, scales), state

  return optax.GradientTransformation(init_fn, update_fn)


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
  if config.get('layer_decay', 1.0) < 1:
    # After the weight decay term, so it is scaled too (BEiT scales a group's whole lr).
    chain.append(scale_by_layer_decay(config.layer_decay))
  chain.append(optax.scale_by_learning_rate(learning_rate_schedule(config)))
  return optax.chain(*chain)


def ema_update(ema_params: Any, params: Any, decay: float) -> Any:
  """Polyak / exponential moving average: ema <- decay * ema + (1 - decay) * params."""
  return jax.tree.map(
      lambda e, p: (decay * e + (1.0 - decay) * p).astype(e.dtype), ema_params, params)

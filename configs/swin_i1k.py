"""Swin-T/S/B on ImageNet-1k from scratch: the Swin paper's recipe (Liu et al. 2021).

Command:
  python -m vit_jax.main --config=configs/swin_i1k.py:model=Swin-T --workdir=DIR

Hardware: 8 x V100/A100 in the paper (global batch 1024), or a TPU v3-8.
Time: 300 epochs = 375k steps at batch 1024. Expected result (ImageNet top-1 at
224 px, paper Table 1a): Swin-T 81.3%, Swin-S 83.0%, Swin-B 83.5%.
"""
import ml_collections

from configs import common

DROP_PATH = {'Swin-T': 0.2, 'Swin-S': 0.3, 'Swin-B': 0.5}  # paper, per variant.
EPOCHS, WARMUP_EPOCHS, TRAIN_IMAGES = 300, 20, 1_281_167


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = common.parse_args(arg, model='Swin-T', dataset='imagenet2012', res=224,
                           batch=1024, steps=0)
  if args.model not in DROP_PATH:
    raise ValueError(f'model={args.model!r}: this recipe covers {sorted(DROP_PATH)}')
  config = common.get_config()
  config.model = args.model
  config.model_overrides = ml_collections.ConfigDict(
      {'stochastic_depth': DROP_PATH[args.model]})
  config.image_size = args.res
  config.data.dataset = args.dataset
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.randaug_layers = 2  # paper (timm rand-m9-mstd0.5): 2 ops, magnitude 9.
  config.data.randaug_magnitude = 9
  config.data.mixup_alpha = 0.8
  config.label_smoothing = 0.1
  config.optimizer = 'adamw'  # no decay on biases, norms, bias tables.
  config.lr = 1e-3 * args.batch / 1024  # 1e-3 at batch 1024, scaled linearly.
  config.weight_decay = 0.05
  config.batch_size = args.batch
  config.eval_batch_size = 1024
  steps_per_epoch = TRAIN_IMAGES // args.batch
  config.total_steps = args.steps or EPOCHS * steps_per_epoch
  config.warmup_steps = WARMUP_EPOCHS * steps_per_epoch
  config.decay_type = 'cosine'
  config.grad_clip_norm = 5.0  # paper's clipping.
  config.dtype = 'bfloat16'
  return config

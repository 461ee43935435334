"""ViT on ImageNet-1k from scratch with AugReg ("How to train your ViT", Steiner et al.).

Command:
  python -m vit_jax.main --config=configs/vit_i1k_augreg.py:model=ViT-B/16 --workdir=DIR

Hardware: TPU v3-32 or 8 x A100 (global batch 4096; lower it with accum_steps, not the
recipe). Time: 300 epochs, ~ 93k steps (the paper: medium2 augmentation). Expected
result: ViT-B/16 ~ 79-80% ImageNet top-1 at 224 px (AugReg paper, Table 7, i1k-only).
"""
import ml_collections

from configs import common


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = common.parse_args(arg, model='ViT-B/16', dataset='imagenet2012', res=224,
                           steps=0, accum_steps=1)
  config = common.get_config()
  config.model = args.model
  config.model_overrides = ml_collections.ConfigDict({
      'dropout_rate': 0.1,  # AugReg "medium" regularisation: dropout 0.1 + sd 0.1.
      'stochastic_depth': 0.1,
      'classifier': 'token',
  })
  config.image_size = args.res
  config.data.dataset = args.dataset
  config.data.train_split = 'train[:99%]'  # AugReg: 1% of train held out (minival).
  config.data.eval_split = 'validation'
  config.data.randaug_layers = 2  # RandAugment(2, 15) + Mixup(0.5): "medium2".
  config.data.randaug_magnitude = 15
  config.data.mixup_alpha = 0.5
  config.loss = 'sigmoid_xent'  # AugReg trains i1k with sigmoid xent too.
  config.optimizer = 'adam'
  config.lr = 1e-3
  config.weight_decay = 0.1
  config.batch_size = 4096
  config.eval_batch_size = 1024
  config.accum_steps = args.accum_steps
  # 300 epochs of 1,268,355 images (99% of 1,281,167) at batch 4096.
  config.total_steps = args.steps or 92_900
  config.warmup_steps = 10_000
  config.decay_type = 'cosine'
  config.grad_clip_norm = 1.0
  config.dtype = 'bfloat16'
  config.log_every_steps = 100
  config.eval_every_steps = 2_000
  return config

"""ViT (or R50+ViT hybrid) pretraining on ImageNet-21k, the ViT paper's recipe.

Command (TPU VM, all workers; see experiments/tpu/README.md):
  python -m vit_jax.main --config=configs/vit_i21k.py:model=ViT-B/16 --workdir=gs://BUCKET/vit_b16_i21k
  python -m vit_jax.main --config=configs/vit_i21k.py:model=R50+ViT-B/16 --workdir=...

Hardware: TPU v3-256 (paper); any mesh works, the batch is global. Time: the paper
reports 230 TPUv3-core-days for ViT-L/16 and ~ 55 for ViT-B/16 (90 epochs); the cost
summary at the end of the run reports our figure in the same unit.
Expected result: ViT-B/16 fine-tuned at 384 px reaches ~84.0% ImageNet top-1 (paper
Table 2/5 with this pretraining); the pretraining eval here is multi-label precision
on a held-out 2% of the training split.

ImageNet-21k is not in the tfds catalog: give a folder dataset path
(`dataset=/data/imagenet21k`, layout root/train/<class>/*.jpg) or the name of your own
tfds builder; the preflight check explains what is missing before anything compiles.
"""
import ml_collections

from configs import common
from vit_jax import models


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = common.parse_args(arg, model='ViT-B/16', dataset='imagenet21k', res=224,
                           steps=0)
  config = common.get_config()
  config.model = args.model
  # Creating a module allocates nothing: it just reads the variant's width.
  hidden = models.create(args.model, num_classes=1).hidden_size
  config.model_overrides = ml_collections.ConfigDict({
      'representation_size': hidden,  # pre_logits of the hidden size, as the paper.
      'dropout_rate': 0.1,  # paper: 0.1 dropout for ImageNet-21k B and L.
  })
  config.image_size = args.res
  config.data.dataset = args.dataset
  config.data.train_split = 'train[:98%]'  # 2% held out for evaluation.
  config.data.eval_split = 'train[98%:]'
  config.data.multi_label = True  # ImageNet-21k images carry several labels.
  config.data.eval_resize = 'resize'
  config.loss = 'sigmoid_xent'
  config.optimizer = 'adam'  # b1 0.9, b2 0.999, decoupled wd on kernels only.
  config.lr = 1e-3
  config.weight_decay = 0.1  # decoupled (multiplied by the lr schedule).
  config.batch_size = 4096
  config.eval_batch_size = 4096
  # 90 epochs of ~12.6M training images (98% of 12.9M) at batch 4096.
  config.total_steps = args.steps or 277_000
  config.warmup_steps = 10_000
  config.decay_type = 'linear'
  config.grad_clip_norm = 1.0
  config.dtype = 'bfloat16'  # accelerator default: bf16 compute, f32 params.
  config.log_every_steps = 100
  config.eval_every_steps = 5_000
  config.checkpoint_every_steps = 1_000
  return config

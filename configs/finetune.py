"""Fine-tuning at higher resolution (ViT paper, Appendix B.1.1; Swin at 384 / window 12).

Commands:
  python -m vit_jax.main --config=configs/finetune.py:model=ViT-B/16,dataset=cifar10,res=384,init=ViT-B_16.npz --workdir=DIR
  python -m vit_jax.main --config=configs/finetune.py:model=ViT-B/16,dataset=/data/my_images,res=224 --workdir=DIR
  python -m vit_jax.main --config=configs/finetune.py:model=Swin-B,dataset=imagenet2012,res=384,init=swin_base_patch4_window7_224_22k.pth --workdir=DIR

`init` is optional (without it the model trains from scratch); it may be a published
`.npz`, Swin weights or one of our run directories (the position embeddings / bias
tables are resampled to the new resolution / window). `dataset` is a tfds name or a
folder path (root/{train,test}/<class>/*.jpg). `init_res` is the resolution the
published file was trained at (our own checkpoints record it).

Hardware: TPU v3-8 or 8 GPUs (batch 512); on one GPU use accum_steps. Time: CIFAR-10,
10k steps of ViT-B/16 at 384 px: ~ 4 h on a TPU v3-8. Expected result (ViT paper
Table 5, from ImageNet-21k ViT-B/16): CIFAR-10 98.1%, CIFAR-100 87.1%, Pets 93.8%,
Flowers 99.0%, ImageNet 84.0% (lr picked from {0.001, 0.003, 0.01, 0.03} on minival).
"""
import ml_collections

from configs import common

# Recipe choices per dataset (not dataset facts): steps, train / eval split.
STEPS = {'cifar10': 10_000, 'cifar100': 10_000, 'imagenet2012': 20_000,
         'oxford_iiit_pet': 500, 'oxford_flowers102': 500}
SPLITS = {'cifar10': ('train[:98%]', 'test'), 'cifar100': ('train[:98%]', 'test'),
          'imagenet2012': ('train[:99%]', 'validation'),
          'oxford_iiit_pet': ('train[:90%]', 'test'),
          'oxford_flowers102': ('train', 'test')}
SWIN_DROP_PATH = {'Swin-T': 0.1, 'Swin-S': 0.2, 'Swin-B': 0.2, 'Swin-L': 0.2}


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = common.parse_args(arg, model='ViT-B/16', dataset='cifar10', res=384,
                           init=None, init_res=224, steps=0, lr=0.0, batch=512,
                           accum_steps=1)
  config = common.get_config()
  config.model = args.model
  config.image_size = args.res
  config.init = args.init
  config.init_image_size = args.init_res
  config.data.dataset = args.dataset
  train_split, eval_split = SPLITS.get(args.dataset, ('train', 'test'))
  config.data.train_split, config.data.eval_split = train_split, eval_split
  config.data.train_crop = 'inception'
  config.data.eval_resize = 'resize'  # the paper fine-tunes and evaluates on resizes.
  config.batch_size = args.batch
  config.eval_batch_size = args.batch
  config.accum_steps = args.accum_steps
  config.total_steps = args.steps or STEPS.get(args.dataset, 10_000)
  config.dtype = 'bfloat16'
  if args.model.startswith('Swin'):
    _swin_recipe(config, args)
  else:
    _vit_recipe(config, args)
  return config


def _vit_recipe(config, args) -> None:
  """SGD momentum 0.9, no weight decay, clip 1, cosine, 500 warmup steps."""
  config.model_overrides = ml_collections.ConfigDict({'representation_size': None})
  config.optimizer = 'sgd'
  config.b1 = 0.9
  config.lr = args.lr or 0.03
  config.weight_decay = 0.0
  config.grad_clip_norm = 1.0
  config.warmup_steps = 500
  config.decay_type = 'cosine'


def _swin_recipe(config, args) -> None:
  """Swin paper fine-tuning at 384: window 12, AdamW lr 2e-5, wd 1e-8, cosine."""
  config.model_overrides = ml_collections.ConfigDict({
      'window_size': 12 if args.res >= 384 else 7,
      'stochastic_depth': SWIN_DROP_PATH.get(args.model, 0.2)})
  config.optimizer = 'adamw'
  config.lr = args.lr or 2e-5
  config.weight_decay = 1e-8
  config.grad_clip_norm = 5.0
  config.warmup_steps = max(config.total_steps // 30, 1)  # 1 of 30 epochs.
  config.decay_type = 'cosine'
  config.label_smoothing = 0.1

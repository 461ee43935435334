"""Fine-tuning at higher resolution (ViT paper, Appendix B.1.1; Swin at 384 / window 12).

Sources (cited per line below):
  [T4]  ViT paper (Dosovitskiy et al., ICLR 2021, arXiv 2010.11929), Table 4 and its
        caption ("cosine learning rate decay, a batch size of 512, no weight decay, and
        grad clipping at global norm 1 ... fine-tuning resolution is 384"), Appendix B.1.1.
  [VC]  google-research/vision_transformer vit_jax/configs/common.py (the official
        fine-tuning code: batch 512, base_lr 0.03, warmup_steps 500, cosine,
        grad_norm_clip 1.0, optim_dtype bfloat16, DATASET_PRESETS) and
        vit_jax/configs/augreg.py (500 steps with warmup 100 for small datasets).
  [SW]  microsoft/Swin-Transformer config.py (defaults) with
        configs/swin/swin_{tiny,small,base,large}_patch4_window{7_224,12_384}_22kto1k_finetune.yaml
        and main.py (lr, warmup lr and min lr scaled by total batch / 512).

Commands (ViT-B_16.npz: the published ImageNet-21k checkpoint,
gs://vit_models/imagenet21k/ViT-B_16.npz; /runs/...: our pretraining run directories):
  python -m vit_jax.main --config=configs/finetune.py:model=ViT-B/16,dataset=cifar10,res=384,init=ViT-B_16.npz --workdir=DIR
  python -m vit_jax.main --config=configs/finetune.py:model=ViT-B/16,dataset=cifar100,res=384,init=ViT-B_16.npz --workdir=DIR
  python -m vit_jax.main --config=configs/finetune.py:model=ViT-B/16,dataset=oxford_iiit_pet,res=384,init=ViT-B_16.npz --workdir=DIR
  python -m vit_jax.main --config=configs/finetune.py:model=ViT-B/16,dataset=oxford_flowers102,res=384,init=ViT-B_16.npz --workdir=DIR
  python -m vit_jax.main --config=configs/finetune.py:model=ViT-B/16,dataset=imagenet2012,res=384,init=/runs/vit_b16_i21k --workdir=DIR
  python -m vit_jax.main --config=configs/finetune.py:model=ViT-B/16,dataset=/data/my_images,res=224 --workdir=DIR
  python -m vit_jax.main --config=configs/finetune.py:model=Swin-T,dataset=imagenet2012,res=384,init=/runs/swin_t_i1k --workdir=DIR

The paper's protocol, a learning-rate sweep over LR_SWEEP[dataset] chosen on the held-out
MINIVAL slice, then the chosen run on the test split (vit_jax/finetune_sweep.py; without
init= the same command sweeps the from-scratch baseline):
  python -m vit_jax.finetune_sweep --config=configs/finetune.py:model=ViT-B/16,dataset=cifar10,res=384,init=ViT-B_16.npz --workdir=DIR

`init` is optional (without it the model trains from scratch); it may be a published
`.npz`, Swin weights (e.g. init=swin_base_patch4_window7_224_22k.pth with model=Swin-B,
the official ImageNet-22K checkpoint) or one of our run directories (the position
embeddings / bias tables are resampled to the new resolution / window). `dataset` is a
tfds name or a folder path (root/{train,test}/<class>/*.jpg). `init_res` overrides the
resolution inferred from the checkpoint's position-embedding grid (0, the default:
infer it).

Hardware: any; batch 512 [T4] is global (use accum_steps on small devices).
Time: the vision_transformer README measured ViT-B_16 (ImageNet-21k checkpoint) at
2.2 h for cifar10 and 6.5 h for imagenet2012 on "A100" (device count not stated).
Expected results, ViT-B/16 pretrained on ImageNet-21k, fine-tuned at 384 px (ViT paper
Table 5, rows "ImageNet-21k", column ViT-B/16): CIFAR-10 98.95%, CIFAR-100 91.67%,
ImageNet 83.97% (ReaL 88.35%), Oxford Flowers-102 99.38%, Oxford-IIIT Pets 94.43%; the
paper picks the lr per dataset on the held-out development split from LR_SWEEP below
(the finetune_sweep command above; a plain vit_jax.main run uses the one `lr`).
The vision_transformer README reproduces 99.02% (cifar10), 92.06% (cifar100) and 84.53%
(imagenet2012) with [VC], whose splits SPLITS copies. Swin (README "Main Results",
ImageNet-22K pretrained, 1K top-1): Swin-B 85.2% at 224, 86.4% at 384; Swin-L 86.3% at
224, 87.3% at 384.
"""
import ml_collections

from vit_jax.configs import common

# Per-dataset steps: [T4] column "Steps" (also [VC] DATASET_PRESETS total_steps for
# cifar10/cifar100/imagenet2012). VTAB tasks: 2,500 steps at lr 0.01 [T4], pass steps=.
STEPS = {'cifar10': 10_000, 'cifar100': 10_000, 'imagenet2012': 20_000,
         'oxford_iiit_pet': 500, 'oxford_flowers102': 500}
# [T4] column "Base LR": the grid the paper sweeps on the development split (VTAB: 0.01).
LR_SWEEP = {'imagenet2012': (0.003, 0.01, 0.03, 0.06),
            'cifar100': (0.001, 0.003, 0.01, 0.03), 'cifar10': (0.001, 0.003, 0.01, 0.03),
            'oxford_iiit_pet': (0.001, 0.003, 0.01, 0.03),
            'oxford_flowers102': (0.001, 0.003, 0.01, 0.03)}
# (train, eval) splits: the training set minus the paper's development sub-split
# (Appendix B.1.1: 2% CIFAR, 1% ImageNet, 10% Pets and Flowers), evaluated on the test
# data. CIFAR and ImageNet exactly as [VC] DATASET_PRESETS; Pets as the [VC] augreg.py
# example ('train[:90%]'); Flowers by the same 10% rule. The paper's final numbers
# retrain on the entire training set (B.1.1); the held-out part is for the lr sweep.
SPLITS = {'cifar10': ('train[:98%]', 'test'), 'cifar100': ('train[:98%]', 'test'),
          'imagenet2012': ('train[:99%]', 'validation'),
          'oxford_iiit_pet': ('train[:90%]', 'test'),
          'oxford_flowers102': ('train[:90%]', 'test')}
# The held-out rest of each training split: the minival the lr sweep chooses on
# (python -m vit_jax.finetune_sweep; Appendix B.1.1); [VC] DATASET_PRESETS name the same
# 'train[98%:]' (CIFAR) and 'train[99%:]' (ImageNet) slices as their validation data.
MINIVAL = {'cifar10': 'train[98%:]', 'cifar100': 'train[98%:]',
           'imagenet2012': 'train[99%:]', 'oxford_iiit_pet': 'train[90%:]',
           'oxford_flowers102': 'train[90%:]'}
# Stochastic depth of the ImageNet-22K -> 1K fine-tuning yamls [SW] (DROP_PATH_RATE);
# the 1K -> 1K 384 yaml (swin_base_patch4_window12_384_finetune.yaml) keeps 0.5 for B.
SWIN_DROP_PATH = {'Swin-T': 0.1, 'Swin-S': 0.2, 'Swin-B': 0.2, 'Swin-L': 0.2}
IMAGENET_TRAIN_IMAGES = 1_281_167  # tfds imagenet2012 'train'.


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = common.parse_args(arg, model='ViT-B/16', dataset='cifar10', res=384,
                           init=None, init_res=0, steps=0, lr=0.0, batch=512,
                           accum_steps=1)
  config = common.get_config()
  config.model = args.model
  config.image_size = args.res  # default 384: [T4] caption; Appendix B.1.1.
  config.init = args.init
  config.init_image_size = args.init_res or None  # None: inferred from the checkpoint.
  config.data.dataset = args.dataset
  train_split, eval_split = SPLITS.get(args.dataset, ('train', 'test'))  # else: project choice.
  config.data.train_split, config.data.eval_split = train_split, eval_split
  config.data.minival_split = MINIVAL.get(args.dataset)  # else None: the sweep asks for one.
  config.data.train_crop = 'inception'  # [VC] vit_jax/data/pipeline.py: area 5-100% (common.py), flip.
  config.data.eval_resize = 'resize'  # [VC] vit_jax/data/pipeline.py evaluates on plain resizes.
  config.batch_size = args.batch  # 512: [T4] caption; [VC] batch.
  config.eval_batch_size = args.batch  # [VC] batch_eval 512.
  config.accum_steps = args.accum_steps  # memory only ([VC] accum_steps).
  config.total_steps = args.steps or STEPS.get(args.dataset, 10_000)  # unlisted: project choice.
  config.dtype = 'bfloat16'  # project choice.
  if args.model.startswith('Swin'):
    _swin_recipe(config, args)
  else:
    _vit_recipe(config, args)
  return config


def _vit_recipe(config, args) -> None:
  """ViT paper Appendix B.1.1 / Table 4, as run by the official fine-tuning code [VC]."""
  # New zero-initialised head on the encoder output, pre-logits dropped (Appendix B.1.1:
  # "remove the whole head (two linear layers) and replace it by a single, zero-initialized
  # linear layer"; head kernel init is zeros and head_bias_init defaults to 0).
  config.model_overrides = ml_collections.ConfigDict({'representation_size': None})
  config.optimizer = 'sgd'  # Appendix B.1.1: "SGD with a momentum of 0.9".
  config.b1 = 0.9  # momentum, Appendix B.1.1.
  config.momentum_dtype = 'bfloat16'  # [VC] optim_dtype='bfloat16' (the accumulator).
  # [VC]: base_lr 0.03, except vit_jax/configs/vit.py sets 0.01 for b16 + cifar10.
  # The paper sweeps LR_SWEEP[dataset] instead ([T4]).
  default_lr = 0.01 if (args.model, args.dataset) == ('ViT-B/16', 'cifar10') else 0.03
  config.lr = args.lr or default_lr
  config.lr_grid = list(LR_SWEEP.get(args.dataset, ()))  # [T4] "Base LR"; else: pass --lrs.
  config.weight_decay = 0.0  # [T4] caption "no weight decay".
  config.grad_clip_norm = 1.0  # [T4] caption "grad clipping at global norm 1"; [VC] grad_norm_clip.
  # [VC] warmup_steps=500 (10k/20k-step runs); [VC] augreg.py uses 100 for 500-step runs.
  # The paper gives no warmup for fine-tuning.
  config.warmup_steps = min(500, config.total_steps // 5)
  config.decay_type = 'cosine'  # [T4] caption "cosine learning rate decay"; [VC] decay_type.
  config.end_lr = 0.0  # [VC] cosine decays to 0 (vit_jax/utils.py).


def _swin_recipe(config, args) -> None:
  """Swin ImageNet-22K -> 1K fine-tuning [SW]: 30 epochs, 5 warmup, AdamW 2e-5 @ 512, wd 1e-8."""
  config.model_overrides = ml_collections.ConfigDict({
      'window_size': 12 if args.res >= 384 else 7,  # [SW] WINDOW_SIZE 12 (384 yamls) / 7 (224).
      'stochastic_depth': SWIN_DROP_PATH.get(args.model, 0.2)})  # [SW] DROP_PATH_RATE; else project choice.
  if args.dataset == 'imagenet2012':
    config.data.train_split = 'train'  # [SW] trains on the whole train folder, evaluates on val.
    config.data.minival_split = None  # nothing held out: a sweep needs a train_split slice.
    if not args.steps:  # [SW] EPOCHS: 30 over the 1,281,167 training images.
      config.total_steps = 30 * IMAGENET_TRAIN_IMAGES // args.batch
  config.optimizer = 'adamw'  # [SW] OPTIMIZER.NAME adamw, BETAS (0.9, 0.999) as common.py.
  config.lr = args.lr or 2e-5 * args.batch / 512  # [SW] BASE_LR 2e-05 x total batch / 512 (main.py).
  config.end_lr = config.lr / 100  # [SW] MIN_LR 2e-07 = BASE_LR / 100, scaled alike.
  config.weight_decay = 1e-8  # [SW] WEIGHT_DECAY 1e-8.
  config.layer_decay = 1.0  # [SW] TRAIN.LAYER_DECAY 1.0 (only SimMIM fine-tuning changes it).
  config.grad_clip_norm = 5.0  # [SW] TRAIN.CLIP_GRAD 5.0 (config.py default).
  # [SW] WARMUP_EPOCHS 5 of EPOCHS 30 (linear from WARMUP_LR 2e-08 @ 512; ours from 0).
  config.warmup_steps = max(config.total_steps * 5 // 30, 1)
  config.decay_type = 'cosine'  # [SW] LR_SCHEDULER.NAME cosine.
  config.label_smoothing = 0.1  # [SW] MODEL.LABEL_SMOOTHING 0.1.
  # Augmentation: the yamls keep config.py's AUG defaults during fine-tuning [SW].
  common.set_swin_augmentation(config.data)
  # Eval: TEST.CROP False in the 384 yamls (plain resize), default True at 224 (resize
  # 256/224, centre crop).
  config.data.eval_resize = 'resize' if args.res >= 384 else 'resize_crop'

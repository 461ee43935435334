"""Swin-T/S/B on ImageNet-1k from scratch: the official Swin recipe (Liu et al. 2021).

Source [SW]: microsoft/Swin-Transformer config.py (TRAIN, AUG and MODEL defaults),
configs/swin/swin_{tiny,small,base}_patch4_window7_224.yaml (DROP_PATH_RATE), main.py
(BASE_LR, WARMUP_LR and MIN_LR scaled by total batch / 512), lr_scheduler.py (cosine
over EPOCHS - WARMUP_EPOCHS after warmup), data/build.py (timm create_transform).

Command:
  python -m vit_jax.main --config=configs/swin_i1k.py:model=Swin-T --workdir=DIR

Hardware: get_started.md trains on 8 GPUs at global batch 1024 (128 per GPU for T/S;
64 per GPU x 2 accumulation steps for B); any mesh works here, the batch is global.
Time: 300 epochs = 375,300 updates at batch 1024 (1,251 per epoch).
Expected result (ImageNet-1k top-1 at 224 px): the official README ("Main Results",
ImageNet-1K rows) lists the released models at Swin-T 81.2%, Swin-S 83.2%, Swin-B 83.5%;
the paper's Table 1(a) is quoted as 81.3 / 83.0 / 83.5 (not re-checked in this audit).
"""
import ml_collections

from vit_jax.configs import common

# [SW] DROP_PATH_RATE of swin_{tiny,small,base}_patch4_window7_224.yaml.
DROP_PATH = {'Swin-T': 0.2, 'Swin-S': 0.3, 'Swin-B': 0.5}
# [SW] TRAIN.EPOCHS 300, TRAIN.WARMUP_EPOCHS 20; tfds imagenet2012 'train' size.
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
  config.image_size = args.res  # [SW] DATA.IMG_SIZE 224.
  config.data.dataset = args.dataset
  config.data.train_split = 'train'  # [SW] ImageFolder train/ (all of it).
  config.data.eval_split = 'validation'  # [SW] ImageFolder val/.
  # Train-time augmentation: timm create_transform with [SW] AUG defaults.
  common.set_swin_augmentation(config.data)
  # Eval: TEST.CROP True, resize 256/224 then centre crop, which is common.py's
  # eval_resize 'resize_crop' with eval_crop_ratio 256/224.
  config.label_smoothing = 0.1  # [SW] MODEL.LABEL_SMOOTHING 0.1.
  config.optimizer = 'adamw'  # [SW] adamw, BETAS (0.9, 0.999); no decay on 1-D params, biases, bias tables.
  config.lr = 5e-4 * args.batch / 512  # [SW] BASE_LR 5e-4 x total batch / 512 (main.py): 1e-3 at 1024.
  config.end_lr = 5e-6 * args.batch / 512  # [SW] MIN_LR 5e-6, scaled alike.
  config.weight_decay = 0.05  # [SW] WEIGHT_DECAY 0.05.
  config.batch_size = args.batch  # 1024: get_started.md (8 GPUs x 128).
  config.eval_batch_size = 1024  # project choice.
  steps_per_epoch = TRAIN_IMAGES // args.batch  # the train loader drops the last batch.
  config.total_steps = args.steps or EPOCHS * steps_per_epoch
  # Linear warmup over [SW] WARMUP_EPOCHS of EPOCHS (from WARMUP_LR 5e-7 x batch / 512;
  # ours from 0): 20 * 1,251 = 25,020 updates at batch 1024.
  config.warmup_steps = config.total_steps * WARMUP_EPOCHS // EPOCHS
  config.decay_type = 'cosine'  # [SW] LR_SCHEDULER.NAME cosine.
  config.grad_clip_norm = 5.0  # [SW] TRAIN.CLIP_GRAD 5.0.
  config.dtype = 'bfloat16'  # project choice ([SW] trains with AMP, AMP_ENABLE True).
  return config

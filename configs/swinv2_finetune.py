"""Swin V2 fine-tuning at a larger window: ImageNet-22K 192 px / window 12 -> ImageNet-1K
384 px / window 24, the official recipe.

Source [S2]: microsoft/Swin-Transformer
configs/swinv2/swinv2_{base,large}_patch4_window12to24_192to384_22kto1k_ft.yaml
(IMG_SIZE 384, WINDOW_SIZE 24, PRETRAINED_WINDOW_SIZES [12, 12, 12, 6],
DROP_PATH_RATE 0.2, EPOCHS 30, WARMUP_EPOCHS 5, WEIGHT_DECAY 1e-8, BASE_LR 2e-05,
MIN_LR 2e-07, TEST.CROP False) on config.py's defaults. Those TRAIN settings are the
V1 22K -> 1K fine-tuning's, which configs/finetune.py's Swin recipe already sets (cited
there); this file adds the window change.

Command (swinv2_large_patch4_window12_192_22k.pth: the official ImageNet-22K
checkpoint; timm's `.safetensors` of the same weights load alike):
  python -m vit_jax.main --config=configs/swinv2_finetune.py:model=SwinV2-L,init=swinv2_large_patch4_window12_192_22k.pth --workdir=DIR

From one of our own Swin V2 runs, give its size and window, e.g. a SwinV2-T trained at
256 px / window 8 fine-tuned at window 16 on an image folder:
`...swinv2_finetune.py:model=SwinV2-T,dataset=/data/my_images,res=256,window=16,init=RUN_DIR,init_res=256,init_window=8`
(tests/test_swin_v2.py runs this path, shrunk, through `python -m vit_jax.main`).

The continuous position bias is not resampled: the new model's `pretrained_window_sizes`
are the windows each stage had in pretraining (`windows.stage_windows(init_res,
init_window)`, (12, 12, 12, 6) for 192 px / window 12), and the bias MLP reads
coordinates in those units (Swin V2 paper Sec. 3.3). The load report names the buffers
rebuilt for the new windows.

Hardware: the official runs use 8 GPUs x batch 64 (total 512, config.py default; the
learning rates scale with total batch / 512 as configs/finetune.py does).
Expected result (official README, "ImageNet-1K fine-tuned from ImageNet-22K", 384 px,
window 24): SwinV2-B 87.1% top-1, SwinV2-L 87.6%.
"""
import ml_collections

from vit_jax.configs import finetune
from vit_jax.models import swin

DROP_PATH = 0.2  # [S2] DROP_PATH_RATE of both the B and the L yaml.
PATCH = 4  # every Swin V2 variant: patch 4.


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = finetune.common.parse_args(
      arg, model='SwinV2-L', dataset='imagenet2012', res=384, window=24, init=None,
      init_res=192, init_window=12, steps=0, lr=0.0, batch=512, accum_steps=1)
  if args.model not in swin.V2_VARIANTS:
    raise ValueError(f'model={args.model!r}: this recipe is for Swin V2 '
                     f'({", ".join(swin.V2_VARIANTS)}); Swin V1 fine-tunes with '
                     'configs/finetune.py')
  passed = dict(model=args.model, dataset=args.dataset, res=args.res, steps=args.steps,
                lr=args.lr, batch=args.batch, accum_steps=args.accum_steps)
  if args.init:
    passed['init'] = args.init
  config = finetune.get_config(','.join(f'{k}={v}' for k, v in passed.items()))
  config.model_overrides.window_size = args.window  # [S2] WINDOW_SIZE 24.
  config.model_overrides.stochastic_depth = DROP_PATH  # [S2] DROP_PATH_RATE 0.2.
  # [S2] PRETRAINED_WINDOW_SIZES [12, 12, 12, 6]: the source's windows per stage (the
  # last 6x6 map of a 192 px model shrinks its window to 6). Without init: () (trained
  # at its own window).
  # A list: config.json stores lists, and a resumed run compares them.
  config.model_overrides.pretrained_window_sizes = list(
      swin.windows.stage_windows((args.init_res,) * 2, PATCH, args.init_window,
                                 len(swin.V2_VARIANTS[args.model]['depths']))
      if args.init else ())
  return config

"""Defaults shared by every training config (pretrain, finetune, demo, testing).

Not runnable by itself: the other configs call `get_config()` and override fields.
Every number that changes results lives here or in the config that overrides it.
"""
import ml_collections


def get_data_config() -> ml_collections.ConfigDict:
  """Input pipeline settings (vit_jax/data/pipeline.py reads these)."""
  data = ml_collections.ConfigDict()
  data.dataset = 'vit_demo/upstream'  # tfds name ('cifar10', 'imagenet2012') or a folder path.
  data.data_dir = ml_collections.FieldReference(None, field_type=str)  # tfds data_dir; None = tfds default.
  data.manual_dir = ml_collections.FieldReference(None, field_type=str)  # archives for manual datasets (ImageNet).
  data.train_split = 'train'  # tfds split string, e.g. 'train[:98%]'.
  data.eval_split = 'test'  # tfds split string used for evaluation.
  data.minival_split = ml_collections.FieldReference(None, field_type=str)  # held out of train_split for choosing the lr (vit_jax.finetune_sweep; ViT paper App. B.1.1); None: no sweep.
  data.multi_label = False  # True: multi-hot labels + sigmoid cross-entropy (ImageNet-21k style).
  data.stream = 'auto'  # 'auto': the global, host-count-invariant stream wherever the split has random access (folders, ArrayRecord tfds), else per-host | 'global' (refuse otherwise) | 'per_host' (vit_jax/data/pipeline.py).
  data.shuffle_buffer = 10_000  # per-host stream only (the global stream permutes the whole split): examples held for shuffling (encoded bytes: decoded after shuffle); project choice (vision_transformer configs/common.py: 50_000).
  data.cache = False  # cache the encoded split in memory (small datasets only).
  data.cache_decoded = False  # cache decoded (+ resized, if train_crop='resize') images instead: tiny images (the demo).
  data.prefetch = 2  # batches tf.data prepares ahead on the host; project choice.
  data.device_prefetch = 2  # global batches placed on devices ahead of the step; project choice (vision_transformer prefetch = 2).
  data.num_parallel_calls = 2  # tf.data threads for decode/augment; bounded for small hosts (project choice).
  # Preprocessing: vit_jax/data/preprocess.py, randaugment.py, batch_augment.py.
  data.train_crop = 'inception'  # 'inception' random resized crop | 'resize' (plain resize).
  data.crop_area_min = 0.05  # inception crop: min fraction of the image area (vision_transformer vit_jax/data/pipeline.py area_range=(0.05, 1.0); big_vision inception_crop area_min=5).
  data.flip = True  # random horizontal flip at train time.
  data.eval_resize = 'resize_crop'  # 'resize_crop' (resize to eval_crop_ratio x res, central crop) | 'resize'.
  data.eval_crop_ratio = 1.143  # 256/224: resize side relative to the crop side (big_vision resize_small(256)|central_crop(224); Swin data/build.py TEST.CROP).
  data.randaug_layers = 0  # RandAugment ops per image; 0 disables.
  data.randaug_magnitude = 10  # RandAugment level on the TPU code's 0..10 scale; used only with randaug_layers > 0 (big_vision AugReg RANDAUG_DEF: 10, 15, 20).
  data.mixup_alpha = 0.0  # Mixup Beta(alpha, alpha); 0 disables.
  data.cutmix_alpha = 0.0  # CutMix (Yun et al. 2019) box area ~ Beta(alpha, alpha), one box per batch; 0 disables.
  data.mix_switch_prob = 0.5  # with mixup and cutmix both on: P(CutMix) per batch, else Mixup (timm Mixup switch_prob; Swin AUG.MIXUP_SWITCH_PROB).
  data.random_erase_prob = 0.0  # Random Erasing (Zhong et al. 2017) per image, timm 'pixel' mode after value_range; 0 disables (Swin AUG.REPROB 0.25).
  return data


def set_swin_augmentation(data: ml_collections.ConfigDict) -> None:
  """The official Swin training augmentation (microsoft/Swin-Transformer config.py AUG
  defaults through timm create_transform, data/build.py); its ImageNet-1k training and
  its fine-tuning yamls both keep them."""
  data.crop_area_min = 0.08  # timm RandomResizedCrop default scale (0.08, 1.0).
  data.randaug_layers = 2  # AUTO_AUGMENT 'rand-m9-mstd0.5-inc1': timm's default 2 ops,
  data.randaug_magnitude = 9  # magnitude 9 of 10 (its std 0.5 and 'inc1' are not modelled).
  data.mixup_alpha = 0.8  # AUG.MIXUP 0.8 (AUG.MIXUP_PROB 1.0: every batch).
  data.cutmix_alpha = 1.0  # AUG.CUTMIX 1.0.
  data.mix_switch_prob = 0.5  # AUG.MIXUP_SWITCH_PROB 0.5.
  data.random_erase_prob = 0.25  # AUG.REPROB 0.25 (REMODE pixel, RECOUNT 1).
  # AUG.COLOR_JITTER 0.4 is inactive in timm 0.4.12 (get_started.md) when auto-augment
  # is set, so it is left out.


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # one seed for init, dropout and data order; project choice (big_vision configs also use 0).
  # Model: a name registered in vit_jax.models plus overrides of its fields.
  config.model = 'ViT-B/16'
  config.model_overrides = ml_collections.ConfigDict()  # e.g. classifier, dropout_rate, stochastic_depth, remat, remat_policy.
  config.dtype = 'float32'  # 'float32' | 'bfloat16' | 'bf16_matmul' (bf16-input, f32-output matmuls; fastest on AVX512-BF16 CPUs).
  config.param_dtype = 'float32'  # parameter storage dtype.
  config.image_size = 224  # training/eval resolution in pixels (int or 'HxW'); ViT paper Table 3 caption: "Training resolution is 224".
  config.init = ml_collections.FieldReference(None, field_type=str)  # checkpoint to fine-tune from; None = scratch.
  config.init_image_size = ml_collections.FieldReference(None, field_type=int)  # resolution a published `init` file was trained at; None = infer from the checkpoint's position-embedding grid.
  config.posemb_resample = 'bilinear'  # corner-aligned, as published; or 'bicubic', 'bilinear_half_pixel'.
  config.data = get_data_config()
  # Optimisation (vit_jax/optim.py).
  config.batch_size = 512  # global batch, all hosts together; ViT paper Table 4 caption (fine-tuning), vision_transformer configs/common.py batch.
  config.eval_batch_size = 512  # global eval batch; the last one is padded and masked (vision_transformer configs/common.py batch_eval).
  config.total_steps = 10_000  # optimiser updates; ViT paper Table 4, CIFAR row (recipes override it).
  config.accum_steps = 1  # micro-batches per update (gradient accumulation).
  config.optimizer = 'sgd'  # 'adam' (decoupled wd on kernels) | 'sgd' (momentum) | 'adamw' (Swin).
  config.lr = 0.03  # peak learning rate; vision_transformer configs/common.py base_lr (fine-tuning).
  config.lr_grid = []  # learning rates vit_jax.finetune_sweep tries (recipes set the ViT paper's Table 4 grid); [] = none named; a list, as config.json stores it.
  config.weight_decay = 0.0  # decoupled weight decay (multiplied by lr as in optax); ViT paper Table 4 caption: "no weight decay".
  config.b1 = 0.9  # Adam beta1 / SGD momentum (ViT paper Sec. 4.1 Adam beta1 0.9; Appendix B.1.1 SGD momentum 0.9).
  config.b2 = 0.999  # Adam beta2 (ViT paper Sec. 4.1; Swin config.py BETAS).
  config.momentum_dtype = 'float32'  # SGD accumulator dtype ('bfloat16' halves its memory, as vision_transformer's optim_dtype); project default.
  config.warmup_steps = 500  # linear warmup from 0; vision_transformer configs/common.py warmup_steps.
  config.decay_type = 'cosine'  # 'cosine' | 'linear' | 'constant' after warmup; ViT paper Table 4 caption (fine-tuning).
  config.end_lr = 0.0  # lr that linear/cosine decay ends at (ViT i21k checkpoints: linear to 1e-5).
  config.layer_decay = 1.0  # layer-wise lr decay, lr x decay**(layers above); 1 = off (BEiT, Bao et al. 2021; Swin/BEiT fine-tuning code).
  config.grad_clip_norm = 1.0  # global-norm clipping; 0 disables; ViT paper Table 4 caption, vision_transformer grad_norm_clip.
  config.loss = 'softmax_xent'  # 'softmax_xent' | 'sigmoid_xent' (multi-label).
  config.label_smoothing = 0.0  # softmax targets (1 - s) one-hot + s / classes; off by default (Swin recipes: 0.1).
  config.ema_decay = 0.0  # Polyak/EMA of params used for eval; 0 disables (ViT paper Sec. 4.1 used 0.9999 only for its Table 2 ImageNet results).
  config.fsdp = False  # shard params + optimiser state over the data axis.
  # Per-device memory (GiB) the OOM preflight holds the compiled step to before step 1;
  # 0: what the GPU / TPU runtime lets XLA allocate (CPU runs are then not checked).
  # vit_jax/planning/preflight.py; project choice.
  config.memory_limit_gib = 0.0
  # Loop cadence.
  config.log_every_steps = 50  # train metrics interval; project choice.
  config.eval_every_steps = 1000  # eval interval (and at the end); project choice.
  config.checkpoint_every_steps = 1000  # checkpoint interval (and at the end, and on SIGTERM); vision_transformer checkpoint_every.
  config.keep_checkpoints = 3  # how many recent checkpoints orbax keeps; project choice.
  # Fault injection for the tests of the training loop; -1 disables each.
  config.debug = ml_collections.ConfigDict()
  config.debug.nan_loss_at_step = -1  # loss x NaN in this update (1-based, as logged).
  config.debug.sigterm_at_step = -1  # the process SIGTERMs itself after this update.
  config.debug.sigkill_after_save_at_step = -1  # SIGKILL itself right after this save.
  config.debug.sigterm_during_save_at_step = -1  # SIGTERM itself right after this save started.
  config.debug.sigterm_during_eval_at_step = -1  # SIGTERM itself after the first batch of this eval.
  config.debug.signal_process = -1  # which process sends the debug signals; -1 = every one.
  return config


def _parse_value(key: str, raw: str, default):
  try:
    if isinstance(default, bool):
      if raw.lower() not in ('true', 'false', '1', '0'):
        raise ValueError(raw)
      return raw.lower() in ('true', '1')
    return raw if default is None else type(default)(raw)
  except ValueError:
    raise ValueError(f'config argument {key}={raw!r}: expected '
                     f'{type(default).__name__}') from None


def parse_args(arg: str, **defaults) -> ml_collections.ConfigDict:
  """'model=ViT-B/16,res=384' -> typed values; each key must be in `defaults`.

  The type of each default decides the parsing (int, float, bool, str; None -> str),
  so `res=38a` fails here, naming the field, instead of deep inside a run.
  """
  values = dict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, sep, raw = item.partition('=')
    if not sep or key not in defaults:
      raise ValueError(f'config argument {item!r}: expected key=value with key in '
                       f'{sorted(defaults)}')
    values[key] = _parse_value(key, raw, defaults[key])
  return ml_collections.ConfigDict(values)

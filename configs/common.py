"""Defaults shared by every training config (pretrain, finetune, demo, testing).

Not runnable by itself: the other configs call `get_config()` and override fields.
Every number that changes results lives here or in the config that overrides it.
"""
import ml_collections


def get_data_config() -> ml_collections.ConfigDict:
  """Input pipeline settings (vit_jax/input_pipeline.py reads these)."""
  data = ml_collections.ConfigDict()
  data.dataset = 'vit_demo/upstream'  # tfds name ('cifar10', 'imagenet2012') or a folder path.
  data.data_dir = ml_collections.FieldReference(None, field_type=str)  # tfds data_dir; None = tfds default.
  data.manual_dir = ml_collections.FieldReference(None, field_type=str)  # archives for manual datasets (ImageNet).
  data.train_split = 'train'  # tfds split string, e.g. 'train[:98%]'.
  data.eval_split = 'test'  # tfds split string used for evaluation.
  data.multi_label = False  # True: multi-hot labels + sigmoid cross-entropy (ImageNet-21k style).
  data.shuffle_buffer = 10_000  # examples held for shuffling (encoded bytes: decoded after shuffle).
  data.cache = False  # cache the encoded split in memory (small datasets only).
  data.cache_decoded = False  # cache decoded (+ resized, if train_crop='resize') images instead: tiny images (the demo).
  data.prefetch = 2  # batches tf.data prepares ahead on the host.
  data.device_prefetch = 2  # global batches placed on devices ahead of the step.
  data.num_parallel_calls = 2  # tf.data threads for decode/augment; bounded for small hosts.
  # Preprocessing, see vit_jax/preprocess.py.
  data.train_crop = 'inception'  # 'inception' random resized crop | 'resize' (plain resize).
  data.crop_area_min = 0.05  # inception crop: min fraction of the image area.
  data.flip = True  # random horizontal flip at train time.
  data.eval_resize = 'resize_crop'  # 'resize_crop' (resize to eval_crop_ratio x res, central crop) | 'resize'.
  data.eval_crop_ratio = 1.143  # 256/224: resize side relative to the crop side.
  data.randaug_layers = 0  # RandAugment ops per image; 0 disables.
  data.randaug_magnitude = 10  # RandAugment level on the TPU code's 0..10 scale (AugReg used 10-20).
  data.mixup_alpha = 0.0  # Mixup Beta(alpha, alpha); 0 disables.
  return data


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # one seed for init, dropout and data order.
  # Model: a name registered in vit_jax.models plus overrides of its fields.
  config.model = 'ViT-B/16'
  config.model_overrides = ml_collections.ConfigDict()  # e.g. classifier, dropout_rate, stochastic_depth, remat, remat_policy.
  config.dtype = 'float32'  # 'float32' | 'bfloat16' | 'bf16_matmul' (bf16-input, f32-output matmuls; fastest on AVX512-BF16 CPUs).
  config.param_dtype = 'float32'  # parameter storage dtype.
  config.image_size = 224  # training/eval resolution in pixels (int or 'HxW').
  config.init = ml_collections.FieldReference(None, field_type=str)  # checkpoint to fine-tune from; None = scratch.
  config.init_image_size = 224  # resolution a published `init` file was trained at (posemb grid).
  config.posemb_resample = 'bilinear'  # corner-aligned, as published; or 'bicubic', 'bilinear_half_pixel'.
  config.data = get_data_config()
  # Optimisation (vit_jax/optim.py).
  config.batch_size = 512  # global batch, all hosts together.
  config.eval_batch_size = 512  # global eval batch; the last one is padded and masked.
  config.total_steps = 10_000  # optimiser updates.
  config.accum_steps = 1  # micro-batches per update (gradient accumulation).
  config.optimizer = 'sgd'  # 'adam' (decoupled wd on kernels) | 'sgd' (momentum) | 'adamw' (Swin).
  config.lr = 0.03  # peak learning rate.
  config.weight_decay = 0.0  # decoupled weight decay (multiplied by lr as in optax).
  config.b1 = 0.9  # Adam beta1 / SGD momentum.
  config.b2 = 0.999  # Adam beta2.
  config.momentum_dtype = 'float32'  # SGD accumulator dtype ('bfloat16' halves its memory).
  config.warmup_steps = 500  # linear warmup from 0.
  config.decay_type = 'cosine'  # 'cosine' | 'linear' | 'constant' after warmup.
  config.grad_clip_norm = 1.0  # global-norm clipping; 0 disables.
  config.loss = 'softmax_xent'  # 'softmax_xent' | 'sigmoid_xent' (multi-label).
  config.label_smoothing = 0.0  # softmax targets (1 - s) one-hot + s / classes.
  config.ema_decay = 0.0  # Polyak/EMA of params used for eval; 0 disables.
  config.fsdp = False  # shard params + optimiser state over the data axis.
  # Loop cadence.
  config.log_every_steps = 50  # train metrics interval.
  config.eval_every_steps = 1000  # eval interval (and at the end).
  config.checkpoint_every_steps = 1000  # checkpoint interval (and at the end, and on SIGTERM).
  config.keep_checkpoints = 3  # how many recent checkpoints orbax keeps.
  # Fault injection for the tests of the training loop; -1 disables each.
  config.debug = ml_collections.ConfigDict()
  config.debug.nan_loss_at_step = -1  # loss x NaN in this update (1-based, as logged).
  config.debug.sigterm_at_step = -1  # the process SIGTERMs itself after this update.
  config.debug.sigkill_after_save_at_step = -1  # SIGKILL itself right after this save.
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

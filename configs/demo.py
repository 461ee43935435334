"""The offline demo: pretrain a small ViT at 16 px, fine-tune at 32 px, vs from scratch.

The whole demo is one command (it runs the three phases below in order, then prints the
table and writes <workdir>/results.json):

  python -m vit_jax.demo --workdir=/tmp/vit_demo

Each phase is also an ordinary training config:

  python -m vit_jax.main --config=configs/demo.py:phase=pretrain --workdir=/tmp/vit_demo/pretrain
  python -m vit_jax.main --config=configs/demo.py:phase=finetune,init=/tmp/vit_demo/pretrain --workdir=/tmp/vit_demo/finetune
  python -m vit_jax.main --config=configs/demo.py:phase=scratch --workdir=/tmp/vit_demo/scratch

Data: `vit_demo/upstream` (100 classes, 40k train / 4k test: "which shape is above which")
and `vit_demo/downstream` (10 classes, 1k train / 2k test: "which shape is on top"),
rendered offline on first use (~30 s, 125 MB in the tfds data_dir); see
experiments/demo_dataset/. The shapes are left-right symmetric and the labels are about
height, so flips preserve labels but crops do not: plain resizes, flips, no RandAugment.

Model: ViT width 64, 4 layers, 4 heads, MLP 256, 4x4 patches, class token, learned
position embeddings (0.2 M parameters). Pretraining at 16 px (4x4 tokens), fine-tuning at
32 px (8x8 tokens): the position embeddings are resampled 4x4 -> 8x8 (corner-aligned
bilinear, as the ViT paper) and the head is replaced by a zero head for 10 classes.

Hardware: 2 CPU cores. Time: 7.6 min measured on 2 free cores with the dataset already
rendered (+~35 s to render it; 12.1 min with the test suite alongside;
experiments/demo/README.md). Expected result (deterministic; measured): upstream
accuracy 0.594, downstream 0.521 after pretraining vs 0.130 from scratch (chance 0.10).

Arguments: phase=pretrain|finetune|scratch, init=<pretraining workdir> (finetune),
steps=<int> (0: the phase's default), posemb=learned|sincos2d|none and
classifier=token|gap (the ablations of experiments/demo_ablations/).
"""
import ml_collections

from vit_jax.configs import common

# Budget (project choice): the whole demo must stay under 10 minutes on 2 CPU cores
# (3,000 / 200: 7.6 min measured, experiments/demo/README.md "Results"; 8.2 min before
# the attention chunks). 4,000 / 300 gave 0.826 upstream, 0.669 fine-tuned vs 0.122
# from scratch but took 15.2 min with one of the two cores busy elsewhere; the probe in
# experiments/demo_dataset/ saw 2,000 pretraining steps transfer erratically (0.33-0.48
# downstream), so 3,000 is the compromise.
PRETRAIN_STEPS = 3_000  # 9.6 epochs of upstream at batch 128.
DOWNSTREAM_STEPS = 200  # 25.6 epochs of downstream's 1,000 images, fine-tune and scratch.


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = common.parse_args(arg, phase='pretrain', init=None, steps=0, posemb='learned',
                           classifier='token')
  if args.phase not in ('pretrain', 'finetune', 'scratch'):
    raise ValueError(f'configs/demo.py phase={args.phase!r}: use pretrain, finetune '
                     'or scratch')
  if (args.phase == 'finetune') != bool(args.init):
    raise ValueError(f'configs/demo.py: phase={args.phase} with init={args.init!r}; '
                     'finetune needs init=<pretraining workdir>, the others none')
  config = common.get_config()
  config.model = 'testing'  # ViT, 4x4 patches; sized up below.
  # Project choice (experiments/demo/README.md: 208,074 parameters at 10 classes).
  config.model_overrides = ml_collections.ConfigDict(dict(
      hidden_size=64, num_layers=4, num_heads=4, mlp_dim=256,
      posemb=args.posemb, classifier=args.classifier))
  _data(config.data)
  config.optimizer = 'adam'  # decoupled weight decay on kernels (AdamW).
  config.weight_decay = 1e-4  # project choice (experiments/demo/README.md phase table).
  config.decay_type = 'cosine'  # project choice, as the README phase table.
  config.grad_clip_norm = 1.0  # project choice (the ViT recipes' global norm 1).
  config.batch_size = 128  # project choice (README phase table: steps x 128).
  config.eval_batch_size = 512  # divisible by 8 devices; the last batch is padded.
  config.log_every_steps = 100  # project choice.
  config.keep_checkpoints = 1  # project choice: only the final checkpoint is used.
  if args.phase == 'pretrain':
    _pretrain(config)
  else:
    _downstream(config, args.init)
  config.total_steps = args.steps or config.total_steps
  config.warmup_steps = max(1, config.total_steps // 10)  # 10% linear warmup (project choice).
  config.eval_every_steps = config.total_steps  # evaluate once, at the end.
  config.checkpoint_every_steps = config.total_steps
  return config


def _data(data: ml_collections.ConfigDict) -> None:
  data.train_crop = 'resize'  # crops would cut the objects the labels are about.
  data.eval_resize = 'resize'
  data.flip = True  # label-preserving here (symmetric shapes, vertical relations).
  data.cache_decoded = True  # 40k images at 16 px are 31 MB decoded: decode once.
  data.shuffle_buffer = 40_000  # the whole upstream split (indices, not images).


def _pretrain(config: ml_collections.ConfigDict) -> None:
  config.data.dataset = 'vit_demo/upstream'
  config.image_size = 16  # low resolution: 4x4 tokens, cheap steps.
  config.lr = 1e-3  # project choice (README phase table; the dataset probe's value).
  config.total_steps = PRETRAIN_STEPS


def _downstream(config: ml_collections.ConfigDict, init) -> None:
  config.data.dataset = 'vit_demo/downstream'
  config.image_size = 32  # higher resolution: 8x8 tokens, posemb resampled from 4x4.
  config.init = init
  # Fine-tuning a pretrained model wants a smaller step than learning from zero (the
  # probe in experiments/demo_dataset/ used the same pair).
  config.lr = 3e-4 if init else 1e-3  # project choice (README phase table).
  config.total_steps = DOWNSTREAM_STEPS

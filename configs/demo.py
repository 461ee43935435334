"""The offline demo: pretrain a small ViT at 16 px, fine-tune at 32 px, vs from scratch.

The whole demo is one command (it pretrains, then runs each downstream phase as a
learning-rate sweep over LR_GRID chosen on minival, then prints the table and writes
<workdir>/results.json):

  python -m vit_jax.demo --workdir=/tmp/vit_demo

Each phase is also an ordinary training config (one run at the phase's `lr`), and each
downstream sweep a finetune_sweep command:

  python -m vit_jax.main --config=configs/demo.py:phase=pretrain --cpu_devices=auto --workdir=/tmp/vit_demo/pretrain
  python -m vit_jax.main --config=configs/demo.py:phase=finetune,init=/tmp/vit_demo/pretrain --cpu_devices=auto --workdir=/tmp/vit_demo/finetune
  python -m vit_jax.main --config=configs/demo.py:phase=scratch --cpu_devices=auto --workdir=/tmp/vit_demo/scratch
  python -m vit_jax.finetune_sweep --config=configs/demo.py:phase=finetune,init=/tmp/vit_demo/pretrain --cpu_devices=auto --workdir=/tmp/vit_demo/finetune

Data: `vit_demo/upstream` (100 classes, 40k train / 4k test: "which shape is above which")
and `vit_demo/downstream` (10 classes, 1k train / 2k test: "which shape is on top"),
rendered offline on first use (~30 s, 125 MB in the tfds data_dir); see
experiments/demo_dataset/. The shapes are left-right symmetric and the labels are about
height, so flips preserve labels but crops do not: plain resizes, flips, no RandAugment.

Model: ViT width 64, 4 layers, 4 heads, MLP 256, 4x4 patches, class token, learned
position embeddings (0.2 M parameters). Pretraining at 16 px (4x4 tokens), fine-tuning at
32 px (8x8 tokens): the position embeddings are resampled 4x4 -> 8x8 (corner-aligned
bilinear, as the ViT paper) and the head is replaced by a zero head for 10 classes.

Hardware: 2 CPU cores (the demo trains on 2 CPU devices, --cpu_devices=auto). Time:
8.8 min measured on a quiet 2-core AMD EPYC (AVX2), rendering the data included
(~65 s of it); experiments/demo/README.md "The learning-rate sweep". Expected result
(deterministic on one CPU; measured there): upstream accuracy 0.732, downstream 0.624
after pretraining vs 0.106 from scratch (chance 0.10), lr 1e-3 chosen on minival for
both.

Arguments: phase=pretrain|finetune|scratch, init=<pretraining workdir> (finetune),
steps=<int> (0: the phase's default), posemb=learned|sincos2d|none and
classifier=token|gap (the ablations of experiments/demo_ablations/).
"""
import ml_collections

from vit_jax.configs import common

# Budget (project choice): the whole demo, rendering its data included, must stay under
# 10 minutes on 2 CPU cores: 8.8 min measured (experiments/demo/README.md). On one
# device the same steps did not fit; 2,500 pretraining steps took 11.0 min, and 2,000
# fit (9.6 min) but transferred poorly (0.340 upstream, +17.7 points), like the 2,000-step
# runs of the probe in experiments/demo_dataset/ (0.33-0.48 downstream).
PRETRAIN_STEPS = 3_000  # 9.6 epochs of upstream at batch 128.
# Each downstream phase is a learning-rate sweep (vit_jax/sweep/): one run per rate of
# LR_GRID, chosen on minival. Project choice: the two Adam rates the demo's single runs
# used (3e-4 fine-tuning, 1e-3 from scratch, after the dataset probe), now swept for
# both phases, so that the comparison is sweep against sweep. To fit 4 runs in the
# budget each is 100 updates of batch 64 (7.1 epochs of the 900 training images)
# instead of the single runs' 200 x 128.
LR_GRID = (3e-4, 1e-3)
DOWNSTREAM_STEPS = 100
DOWNSTREAM_BATCH = 64
# A single run (vit_jax.main, one phase) trains at the rate the demo's sweeps chose on
# minival (experiments/demo/README.md "The learning-rate sweep").
FINETUNE_LR, SCRATCH_LR = 1e-3, 1e-3


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
  # Minival for the lr sweep: 10% of the 1,000 training images held out, the ViT paper's
  # fraction for the sets of this size (Appendix B.1.1: Flowers-102 has 1,020).
  config.data.train_split = 'train[:90%]'
  config.data.minival_split = 'train[90%:]'
  config.batch_size = DOWNSTREAM_BATCH
  config.lr_grid = list(LR_GRID)  # python -m vit_jax.demo sweeps it for both phases.
  config.lr = FINETUNE_LR if init else SCRATCH_LR  # a single run's rate.
  config.total_steps = DOWNSTREAM_STEPS

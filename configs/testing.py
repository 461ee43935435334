"""Tiny training config for the tests and a first smoke run: model 'testing' on the demo data.

Command (from any directory once installed; the tiny demo dataset is rendered offline on
first use):

  python -m vit_jax.main --config=configs/testing.py --workdir=/tmp/vit_testing

Hardware: any CPU (1 device; the tests simulate 8 with
XLA_FLAGS=--xla_force_host_platform_device_count=8). Time: about 20 s wall on 2 cores,
almost all of it imports and compiling; the 24 steps themselves take ~0.6 s.
Result (seen on 2 cores): 24 Adam steps at 16x16 px, batch 32; train loss 4.60 (= ln 100
classes) -> 4.42; eval accuracy stays near chance (0.02 on the 50 test images): a plumbing
check, not a recipe. The workdir then holds TensorBoard events, checkpoints/{8,16,24},
config.json and cost_summary.json.

Argument `fsdp` shards parameters and optimiser state: configs/testing.py:fsdp
"""
import ml_collections

from vit_jax.configs import common


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = common.get_config()
  # Every number below is a project choice sized for a fast plumbing check, not a
  # published recipe; the docstring gives what it measured on 2 cores.
  config.model = 'testing'  # ViT: width 32, 2 layers, 2 heads, 4x4 patches.
  config.model_overrides = ml_collections.ConfigDict()  # no dropout: exact comparisons.
  config.image_size = 16  # 4x4 tokens.
  config.data.dataset = 'vit_demo/upstream_tiny'  # offline demo images: 96 train, 50 test.
  config.data.shuffle_buffer = 256  # tiny: fast start.
  config.data.crop_area_min = 0.5  # mild crops at 16 px.
  config.batch_size = 32  # 4 per device on 8 simulated devices.
  config.eval_batch_size = 64  # 8 per device; the last eval batch is padded.
  config.total_steps = 24  # 8 epochs of the 96 tiny train images.
  config.optimizer = 'adam'  # the ViT pretraining recipe, shrunk.
  config.lr = 1e-3  # peak learning rate (the ViT ImageNet-21k value, paper Table 3).
  config.weight_decay = 1e-4  # decoupled, kernels only.
  config.warmup_steps = 4  # linear warmup updates.
  config.decay_type = 'linear'  # to 0 at the last update.
  config.grad_clip_norm = 1.0  # global norm.
  config.log_every_steps = 4  # train metrics at 4, 8, ..., 24.
  config.eval_every_steps = 12  # eval at 12 and 24.
  config.checkpoint_every_steps = 8  # checkpoints 8, 16, 24.
  config.keep_checkpoints = 3  # all three kept.
  if arg not in ('', 'fsdp'):
    raise ValueError(f"configs/testing.py argument {arg!r}: use nothing or 'fsdp'")
  config.fsdp = arg == 'fsdp'  # shard params + optimiser state over the data axis.
  return config

"""PyTorch + timm side of the speed comparison: a worker timing timm's training step.

Runs in its own virtualenv (torch is not a dependency of vit_jax):

  python3 -m venv /work/torchvenv
  /work/torchvenv/bin/pip install torch==2.13.0
  /work/torchvenv/bin/pip install --no-deps timm safetensors huggingface_hub pyyaml pillow numpy

timm imports torchvision (no CPU build here); the stand-in package next to this file
(experiments/benchmarks/torchvision) provides the two names timm needs at import and
placeholders that raise for the rest.

The step mirrors vit_jax's: SGD with momentum 0.9 (lr 0.03), global-norm clipping at
1.0, softmax cross-entropy on one-hot targets; random images (timing does not depend
on values); --amp bf16 wraps forward and loss in `torch.autocast('cpu', bfloat16)`
(the usual mixed-precision recipe: float32 params and optimiser). --mode infer times
`model.eval()` under `torch.inference_mode()`.

Protocol (driven by compare.py, which interleaves this worker with vit_jax steps):
prints one JSON line `{"ready": ...}` once the model exists, then for each stdin line
`run N` runs N steps and prints `{"seconds": [...]}`; `quit` (or EOF) exits. Run alone
with --steps N to time N steps after --warmup steps and print one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # torchvision stand-in.

import timm  # noqa: E402  pylint: disable=wrong-import-position
import torch  # noqa: E402  pylint: disable=wrong-import-position
import torch.nn.functional as F  # noqa: E402  pylint: disable=wrong-import-position

# vit_jax model name -> timm model name (same architecture and parameter count).
TIMM_NAMES = {
    'ViT-Ti/16': 'vit_tiny_patch16_224',
    'ViT-S/16': 'vit_small_patch16_224',
    'ViT-B/16': 'vit_base_patch16_224',
    'Swin-T': 'swin_tiny_patch4_window7_224',
    'Swin-S': 'swin_small_patch4_window7_224',
    'Swin-B': 'swin_base_patch4_window7_224',
}
NUM_CLASSES = 1000


def build_step(model_name: str, res: int, batch: int, amp: str, mode: str):
  """(step() -> None, info dict) for one timm configuration."""
  if model_name not in TIMM_NAMES:
    raise SystemExit(f'--model {model_name!r}: use one of {sorted(TIMM_NAMES)}')
  torch.manual_seed(0)
  model = timm.create_model(TIMM_NAMES[model_name], pretrained=False,
                            num_classes=NUM_CLASSES, img_size=res)
  images = torch.randn(batch, 3, res, res)  # NCHW, timm's layout.
  targets = F.one_hot(torch.randint(0, NUM_CLASSES, (batch,)), NUM_CLASSES).float()
  autocast = torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp == 'bf16')
  if mode == 'infer':
    model.eval()

    def step():
      with torch.inference_mode(), autocast:
        model(images)
  else:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.03, momentum=0.9)

    def step():
      with autocast:
        loss = F.cross_entropy(model(images).float(), targets)
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(params, 1.0)
      optimizer.step()
  info = {'timm_model': TIMM_NAMES[model_name], 'torch': torch.__version__,
          'timm': timm.__version__, 'threads': torch.get_num_threads(),
          'parameters': sum(p.numel() for p in model.parameters())}
  return step, info


def timed(step, n: int) -> list[float]:
  seconds = []
  for _ in range(n):
    start = time.perf_counter()
    step()
    seconds.append(time.perf_counter() - start)
  return seconds


def serve(step, info: dict) -> None:
  print(json.dumps({'ready': info}), flush=True)
  for line in sys.stdin:
    command = line.split()
    if not command or command[0] == 'quit':
      return
    if command[0] != 'run' or len(command) != 2:
      raise SystemExit(f'unknown command {line!r}; send "run N" or "quit"')
    print(json.dumps({'seconds': timed(step, int(command[1]))}), flush=True)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--model', default='ViT-B/16', help=f'one of {sorted(TIMM_NAMES)}')
  p.add_argument('--res', type=int, default=224)
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--amp', choices=('none', 'bf16'), default='none')
  p.add_argument('--mode', choices=('train', 'infer'), default='train')
  p.add_argument('--serve', action='store_true', help='stdin protocol (compare.py)')
  p.add_argument('--steps', type=int, default=10)
  p.add_argument('--warmup', type=int, default=3)
  args = p.parse_args()
  step, info = build_step(args.model, args.res, args.batch, args.amp, args.mode)
  if args.serve:
    serve(step, info)
    return
  timed(step, args.warmup)
  median = statistics.median(timed(step, args.steps))
  print(json.dumps(dict(info, model=args.model, batch=args.batch, amp=args.amp,
                        ms_per_step=1e3 * median, images_per_second=args.batch / median)))


if __name__ == '__main__':
  main()

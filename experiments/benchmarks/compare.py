"""vit_jax vs PyTorch + timm training steps, interleaved in one run on one machine.

  PYTHONPATH=. python experiments/benchmarks/compare.py --group Ti --steps 10 \\
      --json experiments/benchmarks/results.jsonl

Groups: Ti = ViT-Ti/16 batch 16, B = ViT-B/16 batch 8, Swin = Swin-T batch 8 (224 px).
In each group our entries (--ours name:assignments, as in variants.py; default: float32
and bf16_matmul) run in this process through `vit_jax.benchmark`, and each timm entry
(--timm none|bf16: float32 or bf16 autocast) runs in its own worker process
(compare_timm.py, in the torch venv given by --torch_python) that waits on a pipe
while the others run. With --cpu_devices N, an entry `name:devices=N` runs our step
data-parallel over N CPU devices (vit_jax/platform/cpu_devices.py); --cpu_malloc restarts this
process with vit_jax/platform/host_malloc.py's settings (the timm workers keep glibc's
defaults). Everything is built and warmed up first, then timed in rounds, one step of
every entry per round, so machine-speed drift hits all of them alike.

Each entry writes one JSON line (`framework`: 'vit_jax' or 'pytorch+timm'). timm's
FLOPs per step are taken from our XLA count for the same architecture (float32
entry), so MFU is comparable. `summarize.py` turns the lines into the README tables.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys

import jax

from vit_jax import benchmark
from vit_jax.platform import cpu_devices
from vit_jax.platform import host_malloc

import variants  # pylint: disable=g-bad-import-order  (this folder's script)

HERE = os.path.dirname(os.path.abspath(__file__))
GROUPS = {'Ti': ('ViT-Ti/16', 16), 'B': ('ViT-B/16', 8), 'Swin': ('Swin-T', 8)}
DEFAULT_OURS = ('float32:', 'bf16_matmul:dtype=bf16_matmul')
DEFAULT_TIMM = ('none', 'bf16')


class TimmWorker:
  """A compare_timm.py --serve process: one timm configuration, timed on request."""

  def __init__(self, torch_python: str, model: str, batch: int, res: int, amp: str):
    self.amp = amp
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    env.pop('PYTHONPATH', None)  # the torch venv must not see this repository's path.
    for name in host_malloc.TUNED_ENV:  # timm as its users run it (it does not gain).
      env.pop(name, None)
    self.proc = subprocess.Popen(
        [torch_python, os.path.join(HERE, 'compare_timm.py'), '--serve', '--model',
         model, '--batch', str(batch), '--res', str(res), '--amp', amp],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    self.info = self._reply()['ready']

  def _reply(self) -> dict:
    """The worker's next JSON line; other output (import notices) goes to stderr."""
    while True:
      line = self.proc.stdout.readline()
      if not line:
        raise RuntimeError(f'timm worker ({self.amp}) exited with {self.proc.wait()}')
      if line.startswith('{'):
        return json.loads(line)
      print(f'timm worker: {line.rstrip()}', file=sys.stderr)

  def run(self, n: int) -> list[float]:
    self.proc.stdin.write(f'run {n}\n')
    self.proc.stdin.flush()
    return self._reply()['seconds']

  def step(self) -> float:
    return self.run(1)[0]

  def close(self) -> None:
    if self.proc.poll() is None:
      self.proc.stdin.write('quit\n')
      self.proc.stdin.close()
      self.proc.wait(timeout=60)


def timm_record(worker: TimmWorker, model: str, batch: int, seconds: list[float],
                flops_per_step: float | None, peaks: dict, context: dict) -> dict:
  median = statistics.median(seconds)
  achieved = flops_per_step / median if flops_per_step else None
  line = dict(framework='pytorch+timm', model=model, batch=batch, res=224,
              dtype='bf16_autocast' if worker.amp == 'bf16' else 'float32',
              mode='train', steps=len(seconds), ms_per_step=1e3 * median,
              ms_per_step_min=1e3 * min(seconds), ms_per_step_max=1e3 * max(seconds),
              images_per_second=batch / median,
              images_per_second_per_core=batch / median / context['cores'],
              flops_per_step=flops_per_step,
              flops_source='vit_jax XLA count of the same architecture (float32)',
              achieved_flops_per_second=achieved, **worker.info)
  for dtype, value in peaks.items():
    name = 'bf16' if dtype != 'float32' else dtype
    line[f'cpu_matmul_peak_{name}'] = value
    line[f'mfu_vs_{name}_peak'] = achieved / value if achieved else None
  return dict(context, **line)


def run_group(args, group: str) -> list[dict]:
  model, batch = GROUPS[group]
  # One device unless a variant says devices=N (with --cpu_devices N).
  base = benchmark.Options(model=model, res=224, batch=batch, devices=1)
  ours = [variants.parse_variant(base, text) for text in args.ours]
  load_start = os.getloadavg()
  log = functools.partial(print, file=sys.stderr, flush=True)
  prepared = benchmark.prepare_all([opts for _, opts in ours], args.warmup, log)
  workers = [TimmWorker(args.torch_python, model, batch, 224, amp) for amp in args.timm]
  try:
    for w in workers:
      w.run(args.warmup + 1)  # first calls allocate and pick kernels.
    timers = ([functools.partial(benchmark.time_call, p) for p in prepared]
              + [w.step for w in workers])
    on_cpu = jax.devices()[0].platform == 'cpu'
    times, peaks = benchmark.interleaved_times(timers, args.steps, on_cpu)
  finally:
    for w in workers:
      w.close()
  context = benchmark.run_context(benchmark.devices_fields(), load_start,
                                  len(prepared) + len(workers))
  lines = [dict(benchmark.record(p, t, peaks, context), framework='vit_jax',
                variant=name) for (name, _), p, t in zip(ours, prepared, times)]
  f32_flops = next((l['flops_per_step'] for l in lines if l['dtype'] == 'float32'), None)
  lines += [dict(timm_record(w, model, batch, t, f32_flops, peaks, context),
                 variant=f'timm_{w.amp}')
            for w, t in zip(workers, times[len(prepared):])]
  return lines




def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--group', action='append', choices=sorted(GROUPS), required=True)
  p.add_argument('--ours', action='append', default=None)
  p.add_argument('--timm', action='append', choices=DEFAULT_TIMM, default=None)
  p.add_argument('--torch_python', default='/work/torchvenv/bin/python')
  p.add_argument('--steps', type=int, default=10)
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--json', default=None)
  p.add_argument('--cpu_malloc', action='store_true',
                 help='our process with vit_jax/platform/host_malloc.py settings (timm: default)')
  p.add_argument('--cpu_devices', default=None,
                 help='CPU devices of this process, for --ours name:devices=N entries')
  args = p.parse_args(argv)
  benchmark.check_cpu_malloc(args.cpu_malloc, in_process=argv is not None)
  if args.cpu_devices is not None:
    cpu_devices.configure(args.cpu_devices)  # before any JAX backend starts.
  args.ours = args.ours or list(DEFAULT_OURS)
  args.timm = args.timm or list(DEFAULT_TIMM)
  if not os.path.exists(args.torch_python):
    raise SystemExit(f'--torch_python {args.torch_python} does not exist; create the '
                     'torch venv as compare_timm.py says, or point to it')
  for group in args.group:
    for line in run_group(args, group):
      text = json.dumps(line)
      print(text, flush=True)
      if args.json:
        with open(args.json, 'a') as f:
          f.write(text + '\n')


if __name__ == '__main__':
  main()

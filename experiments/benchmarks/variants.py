"""Speed attempts: named variants of one configuration, timed interleaved in one process.

  PYTHONPATH=. python experiments/benchmarks/variants.py --model ViT-Ti/16 --batch 16 \\
      --steps 15 --variant base: --variant xla:attention_impl=xla \\
      --variant unfused:fused_qkv=false --variant no_ynn:xla.xla_cpu_experimental_ynn_fusion_type= \\
      --json experiments/benchmarks/attempts.jsonl

Each --variant is `name:key=value;key=value` with the keys of `vit_jax.benchmark
--sweep` (dtype, remat, a model field, xla.<option>, ...); `name:` alone is the
baseline. All variants are compiled first and then timed in interleaved rounds by
`vit_jax.benchmark.measure`, so they see the same machine load. Prints medians, minima
and the paired speed-up over the first variant (median over rounds of the ratio of
their times in the same round), and appends the JSON lines (with a `variant` field)
to --json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

from vit_jax import benchmark


def parse_variant(base: benchmark.Options, text: str) -> tuple[str, benchmark.Options]:
  name, sep, assignments = text.partition(':')
  if not sep or not name:
    raise ValueError(f'--variant {text!r}: expected name:key=value;key=value')
  opts = base
  for item in filter(None, assignments.split(';')):
    opts = benchmark.with_value(opts, *benchmark.split_assignment(item, '--sweep'))
  benchmark.check_options(opts)
  return name, opts


def table(named, lines) -> str:
  """Medians, minima and the median over rounds of (first variant's time / this
  variant's time) in the same round: the paired ratio cancels drift between rounds."""
  first = lines[0]['step_seconds']
  rows = [f'{"variant":28s} {"ms/step":>8s} {"min":>7s} {"img/s":>6s} {"paired":>7s} '
          f'{"MFU":>6s}  (load {lines[0]["load_average_start"]:.2f} -> '
          f'{lines[0]["load_average_end"]:.2f}; paired = speed-up over the first)']
  for (name, _), line in zip(named, lines):
    paired = statistics.median(a / b for a, b in zip(first, line['step_seconds']))
    rows.append(f'{name:28s} {line["ms_per_step"]:8.1f} {line["ms_per_step_min"]:7.1f} '
                f'{line["images_per_second"]:6.2f} {paired:7.3f} {line["mfu"] or 0:6.1%}')
  return '\n'.join(rows)


def main(argv=None) -> list[dict]:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--model', default='ViT-Ti/16')
  p.add_argument('--res', type=int, default=224)
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--dtype', default='float32')
  p.add_argument('--mode', default='train')
  p.add_argument('--steps', type=int, default=15)
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--variant', action='append', required=True)
  p.add_argument('--json', default=None)
  args = p.parse_args(argv)
  base = benchmark.Options(model=args.model, res=args.res, batch=args.batch,
                           dtype=args.dtype, mode=args.mode)
  named = [parse_variant(base, v) for v in args.variant]
  lines = benchmark.measure([opts for _, opts in named], args.steps, args.warmup,
                            log=lambda msg: print(msg, file=sys.stderr, flush=True))
  print(table(named, lines))
  for (name, _), line in zip(named, lines):
    line['variant'] = name
    if args.json:
      with open(args.json, 'a') as f:
        f.write(json.dumps(line) + '\n')
  return lines


if __name__ == '__main__':
  main()

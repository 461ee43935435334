"""Markdown tables (README format) and target checks from benchmark JSON lines.

  python experiments/benchmarks/summarize.py experiments/benchmarks/final.jsonl

Reads the lines compare.py and `python -m vit_jax.benchmark` wrote and prints:
the headline table (one row per entry: images/s, ms/step, ratios to timm in the same
run, % of the measured float32 / bf16 matmul peaks), the Swin resolution scaling, and
the targets of issue 8 marked met / not met. Only the newest run of each (group,
entry) in the file is used. No third-party imports: runs in any Python 3.
"""
from __future__ import annotations

import json
import sys

# Original vit_jax step of the study (same machine, quiet; img/s).
ORIGINAL = {('ViT-Ti/16', 16): 12.7, ('ViT-B/16', 8): 1.40}
# The same study's timm float32 numbers, for the drift-free proxy: original / timm_f32.
STUDY_TIMM_F32 = {('ViT-Ti/16', 16): 17.9, ('ViT-B/16', 8): 1.53}


def _pct(x) -> str:
  return '' if x is None else f'{100 * x:.0f}%'


def load(path: str) -> list[dict]:
  with open(path) as f:
    lines = [json.loads(line) for line in f if line.strip()]
  newest = {}
  for line in lines:  # later lines replace earlier ones of the same entry.
    key = (line.get('framework'), line['model'], line['batch'], line['res'],
           line['mode'], line.get('variant') or line['dtype'])
    newest[key] = line
  return list(newest.values())


def headline(lines: list[dict]) -> list[str]:
  rows = ['| model | batch | entry | img/s | ms/step (min-max) | vs timm f32 | '
          'vs timm bf16 | % f32 peak | % bf16 peak | load |',
          '|---|---:|---|---:|---|---:|---:|---:|---:|---|']
  compared = [l for l in lines if l.get('framework')]
  for line in compared:
    same = [l for l in compared if l['model'] == line['model']
            and l['batch'] == line['batch'] and l['date'] == line['date']]
    timm = {l['dtype']: l['images_per_second'] for l in same
            if l['framework'] == 'pytorch+timm'}
    ips = line['images_per_second']
    ratio = {k: f'{ips / v:.2f}x' for k, v in timm.items()}
    rows.append(
        f"| {line['model']} | {line['batch']} | {line['framework']} "
        f"{line.get('variant', line['dtype'])} | {ips:.2f} | {line['ms_per_step']:.0f} "
        f"({line['ms_per_step_min']:.0f}-{line['ms_per_step_max']:.0f}) | "
        f"{ratio.get('float32', '')} | {ratio.get('bf16_autocast', '')} | "
        f"{_pct(line.get('mfu_vs_float32_peak'))} | {_pct(line.get('mfu_vs_bf16_peak'))} "
        f"| {line['load_average_start']:.1f}->{line['load_average_end']:.1f} |")
  return rows


def targets(lines: list[dict]) -> list[str]:
  out = []
  by = {}
  for l in lines:
    if l.get('framework'):
      by.setdefault((l['model'], l['batch']), {})[l.get('variant', l['dtype'])] = l
  for (model, batch), entries in sorted(by.items()):
    ips = {k: v['images_per_second'] for k, v in entries.items()}
    ours = {k: v for k, v in ips.items() if not k.startswith('timm')}
    for dtype, timm, timm_name in (('float32', 'timm_none', 'timm float32'),
                                   ('bf16_matmul', 'timm_bf16', 'timm bf16 autocast')):
      best = _best_of_dtype(entries, dtype)
      if timm in ips and best:
        out.append(_check(f'{model} b{batch}: {dtype} (best: {best}) >= {timm_name}',
                          ips[best] / ips[timm]))
    key = (model, batch)
    if key in ORIGINAL and ours:
      best_name = max(ours, key=ours.get)
      speedup = ours[best_name] / ORIGINAL[key]
      line = _check(f'{model} b{batch}: fastest ({best_name}) >= 1.5x original '
                    f'{ORIGINAL[key]} img/s (an old number)', speedup / 1.5)
      if 'timm_none' in ips:  # drift-free: via timm measured in this run.
        proxy = ours[best_name] / ips['timm_none'] * STUDY_TIMM_F32[key] / ORIGINAL[key]
        line += f'; via timm f32 of this run: {proxy:.2f}x original'
      out.append(line.replace('ratio', f'{speedup:.2f}x original, ratio'))
  return out


def _best_of_dtype(entries: dict[str, dict], dtype: str) -> str | None:
  """Our fastest entry of `dtype` (e.g. one device or one device per core)."""
  ours = [k for k, v in entries.items()
          if v.get('framework') == 'vit_jax' and v['dtype'] == dtype]
  return max(ours, key=lambda k: entries[k]['images_per_second'], default=None)


def _check(what: str, ratio: float) -> str:
  return f"- {what}: ratio {ratio:.2f} -> {'MET' if ratio >= 1 else 'NOT MET'}"


def swin_scaling(lines: list[dict]) -> list[str]:
  out = []
  swin = [l for l in lines if l['model'].startswith('Swin') and not l.get('framework')]
  keys = sorted({(l['mode'], l['dtype'], l['batch']) for l in swin})
  for mode, dtype, batch in keys:
    by_res = {l['res']: l for l in swin
              if (l['mode'], l['dtype'], l['batch']) == (mode, dtype, batch)}
    if 224 in by_res and 448 in by_res:
      per_image = {r: by_res[r]['ms_per_step'] / batch for r in (224, 448)}
      ratio = per_image[448] / per_image[224]
      minimum = by_res[448]['ms_per_step_min'] / by_res[224]['ms_per_step_min']
      out.append(f"- {by_res[224]['model']} {mode} {dtype} batch {batch}: "
                 f'{per_image[224]:.0f} -> {per_image[448]:.0f} ms/image, 448/224 = '
                 f'{ratio:.2f}x (minima {minimum:.2f}x; '
                 f"{'MET' if ratio <= 4.5 else 'NOT MET'}: <= 4.5x)")
  return out


def main(path: str) -> None:
  lines = load(path)
  print('\n'.join(headline(lines)))
  print('\nTargets:')
  print('\n'.join(targets(lines) + swin_scaling(lines)))
  peaks = [(l['date'], l.get('cpu_matmul_peak_float32'), l.get('cpu_matmul_peak_bf16'))
           for l in lines if l.get('cpu_matmul_peak_float32')]
  for date, f32, bf16 in sorted(set(peaks)):
    print(f'\nmatmul peaks measured {date}: float32 {f32 / 1e9:.0f} GFLOP/s, '
          f'bf16 -> f32 {bf16 / 1e9:.0f} GFLOP/s')


if __name__ == '__main__':
  main(sys.argv[1])

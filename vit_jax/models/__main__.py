"""Prints the variant table: name, parameters (1000 classes), forward GMACs.

  python -m vit_jax.models                # every registered variant at 224 px
  python -m vit_jax.models --res 384 ViT-B/16 ViT-L/16

Counts use abstract shapes (`jax.eval_shape` / `jax.make_jaxpr`): no weights are
allocated, so the whole table takes seconds on a laptop.
"""
import argparse

from vit_jax.cost import flops
from vit_jax import models


def variant_rows(names: list[str], res: int | None) -> list[tuple[str, str, int, float]]:
  rows = []
  for name in names:
    # Tiny '*testing' variants are 32 px models: shown at their own size.
    use_res = res and not name.endswith('testing')
    model = models.create(name, num_classes=1000, **({'image_size': res} if use_res else {}))
    size = 'x'.join(map(str, model.image_size))
    rows.append((name, size, flops.count_params(model), flops.forward_macs(model) / 1e9))
  return rows


def format_table(rows) -> str:
  lines = [f'{"name":<16} {"image":>9} {"params":>13} {"GMACs":>9}']
  lines += [f'{n:<16} {r:>9} {p:>13,} {g:>9.2f}' for n, r, p, g in rows]
  return '\n'.join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('names', nargs='*', help='variants (default: all registered)')
  parser.add_argument('--res', type=int, default=224,
                      help='image side in pixels (0: each variant\'s default)')
  args = parser.parse_args(argv)
  names = args.names or models.names()
  unknown = [n for n in names if n not in models.names()]
  if unknown:
    parser.error(f'unknown variant(s) {unknown}; valid: {", ".join(models.names())}')
  print(format_table(variant_rows(names, args.res or None)))


if __name__ == '__main__':
  main()

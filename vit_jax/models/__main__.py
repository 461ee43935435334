"""Prints the variant table: name, parameters (1000 classes), forward GMACs, and the
published GMACs where a paper or official README gives them (cost/published_macs.py).

  python -m vit_jax.models                # every registered variant at 224 px
  python -m vit_jax.models --res 384 ViT-B/16 ViT-L/16
  python -m vit_jax.models --res 0 SwinV2-T   # each variant's own size (V2: 256 px)

A variant that cannot run at --res (Swin V2's windows must divide every stage's map:
224 px does not suit window 8) is shown at its own size, marked `*`, with the reason
printed under the table.

Counts use abstract shapes (`jax.eval_shape` / `jax.make_jaxpr`): no weights are
allocated, so the whole table takes seconds on a laptop.
"""
import argparse

from vit_jax.cost import flops
from vit_jax.cost import published_macs
from vit_jax import models


def _create(name: str, res: int | None):
  """(model, why not at `res`): the variant at `res` px where it runs there, else at
  its own size with the creation error that refused `res`."""
  # Tiny '*testing' variants are 32 px models: shown at their own size.
  if res and not name.endswith('testing'):
    try:
      return models.create(name, num_classes=1000, image_size=res), None
    except ValueError as e:  # e.g. Swin V2 windows that do not divide the maps at `res`.
      return models.create(name, num_classes=1000), str(e)
  return models.create(name, num_classes=1000), None


def variant_rows(names: list[str], res: int | None) -> list[tuple]:
  """(name, 'HxW', params, GMACs, published GMACs or None, why not at `res` or None)
  per variant."""
  rows = []
  for name in names:
    model, refused = _create(name, res)
    size = 'x'.join(map(str, model.image_size)) + ('*' if refused else '')
    published = published_macs.published_gmacs(name, model.image_size,
                                               getattr(model, 'window_size', None))
    rows.append((name, size, flops.count_params(model), flops.forward_macs(model) / 1e9,
                 published, refused))
  return rows


def format_table(rows) -> str:
  lines = [f'{"name":<16} {"image":>10} {"params":>13} {"GMACs":>9} {"published":>9}']
  lines += [f'{n:<16} {r:>10} {p:>13,} {g:>9.2f} '
            f'{"" if pub is None else f"{pub:.1f}":>9}' for n, r, p, g, pub, _ in rows]
  lines += [f'* {n} at its own size: {why}' for n, *_, why in rows if why]
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

"""Stand-in for torchvision, for the timm comparison only (no CPU torchvision build here).

timm (1.0.31) imports torchvision at import time for `ops.misc.FrozenBatchNorm2d`,
`transforms.functional.InterpolationMode` and, through `timm.data`, dataset and
transform class names. The first two are real here; every other name is a placeholder
class that raises when used, so a timing run of ViT / Swin (which uses none of them)
works and anything else fails loudly. Put on sys.path only by compare_timm.py.
"""
__version__ = '0.0-standin'


def placeholder(module: str, name: str) -> type:
  """A class named `name` that raises on instantiation (usable as a base class)."""
  def fail(*args, **kwargs):
    raise NotImplementedError(f'{module}.{name} is not in the torchvision stand-in of '
                              'experiments/benchmarks; install real torchvision')
  return type(name, (), {'__init__': fail, '__call__': fail})

"""`InterpolationMode` with torchvision's member names and values; other names raise."""
import enum

import torchvision


class InterpolationMode(enum.Enum):
  NEAREST = 'nearest'
  NEAREST_EXACT = 'nearest-exact'
  BILINEAR = 'bilinear'
  BICUBIC = 'bicubic'
  BOX = 'box'
  HAMMING = 'hamming'
  LANCZOS = 'lanczos'


def __getattr__(name: str):
  if name.startswith('__'):
    raise AttributeError(name)
  return torchvision.placeholder(__name__, name)

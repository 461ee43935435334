"""torchvision.transforms stand-in: placeholders, plus the real `InterpolationMode`."""
import torchvision
from torchvision.transforms import functional  # noqa: F401
from torchvision.transforms.functional import InterpolationMode  # noqa: F401


def __getattr__(name: str):
  if name.startswith('__'):
    raise AttributeError(name)
  return torchvision.placeholder(__name__, name)

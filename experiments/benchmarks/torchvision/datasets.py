"""torchvision.datasets stand-in: every name is a placeholder that raises when used."""
import torchvision


def __getattr__(name: str):
  if name.startswith('__'):
    raise AttributeError(name)
  return torchvision.placeholder(__name__, name)

"""The choice of learning rate: the best minival accuracy, and nothing else.

`choose` is given the minival results only (the runs' test accuracy is never computed
before the choice; finetune_sweep.py evaluates the chosen run on the test split after
it). Ties, likely on a small minival (1 example = 1% of 100), go to the lower minival
loss, then to the smaller rate: project choice, so the choice is a pure function of the
minival numbers.
"""
from __future__ import annotations

from typing import Mapping


def choose(runs: Mapping[float, Mapping[str, float]]) -> float:
  """The rate whose run has the highest minival accuracy.

  `runs`: {rate: sweep.json's record of that run}; only its 'minival_accuracy' and
  'minival_loss' are read, whatever else the record holds."""
  if not runs:
    raise ValueError('no finished runs to choose from')
  return min(runs, key=lambda rate: (-runs[rate]['minival_accuracy'],
                                     runs[rate]['minival_loss'], rate))

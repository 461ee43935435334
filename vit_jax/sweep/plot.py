"""DIR/sweep.png: minival accuracy against learning rate, the chosen rate marked."""
from __future__ import annotations

import matplotlib

matplotlib.use('Agg')  # files only: no display on TPU VMs and CI.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top


def write(record: dict, path: str) -> str:
  """Plots sweep.json's runs (log-scale rates); returns `path`."""
  runs = sorted((float(rate), run) for rate, run in record['runs'].items()
                if run.get('minival_accuracy') is not None)
  fig, ax = plt.subplots(figsize=(4.5, 3.5))
  ax.plot([r for r, _ in runs], [100 * run['minival_accuracy'] for _, run in runs], 'o-',
          label=f'minival ({record["minival_examples"]} images)')
  chosen = record.get('chosen') or {}
  if chosen:
    ax.plot([chosen['lr']], [100 * chosen['minival_accuracy']], 's', ms=10, mfc='none',
            label=_chosen_label(chosen))
  ax.set_xscale('log')
  ax.set_xlabel('learning rate')
  ax.set_ylabel('minival accuracy (%)')
  ax.set_title(record.get('title', 'learning-rate sweep'), fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def _chosen_label(chosen: dict) -> str:
  test = chosen.get('test_accuracy')
  return f'chosen lr {chosen["lr"]:g}' + (f': test {100 * test:.1f}%' if test is not None
                                           else '')

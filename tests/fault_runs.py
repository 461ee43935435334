"""Children and workdirs for the fault-injection cases (tests/faults.py).

Every child is a real `python -m vit_jax.main` on CPU with configs/testing.py, started as
tests/test_train.py starts its own (`main_env`, `main_command`: 8 simulated devices and a
shared compile cache), with its output in a log file that a case can poll while the child
runs. A Context owns the data dir, the compile cache, a scratch root for workdirs and logs,
and the uninterrupted baseline runs that cases compare their final parameters with.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shutil
import subprocess
import threading
import time
from typing import Any, Callable

import jax
import numpy as np

from tests import test_train
from vit_jax.checkpoints import training

REPO = test_train.REPO
TIMEOUT = 300  # seconds a child may take; the tiny config needs ~20 s.
STANDARD_STEPS = 24  # configs/testing.py: checkpoints 8, 16, 24; eval 12, 24.
# A save every 4 updates and a progress line after each: kills land in updates and in
# asynchronous saves. Checkpoint and log intervals change no parameter, so these runs
# end with the standard run's parameters (and share its compiled program).
FREQUENT = ('--config.checkpoint_every_steps=4', '--config.log_every_steps=1')
LONG_STEPS = 48  # the runner's kill chain: room for 20 kills.
LONG = (f'--config.total_steps={LONG_STEPS}', *FREQUENT)
BASELINES = {'standard': (), 'long': LONG}
# Preempted runs that several cases start from (each works on a copy).
PREEMPTED = {'at_10': ('--config.debug.sigterm_at_step=10',),  # checkpoints 8, 10
             'in_save_8': ('--config.debug.sigterm_during_save_at_step=8',)}  # 8
TINY_DATASETS = ('vit_demo/upstream_tiny', 'vit_demo/downstream_tiny')


def build_demo_data(data_dir: str) -> str:
  """The tiny demo datasets as tests/conftest.py's `demo_data_dir` fixture builds them
  (ArrayRecord, the format vit_jax prepares): for the runner outside pytest."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  import vit_jax.datasets  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  from vit_jax.data import tfds_prepare  # pylint: disable=import-outside-toplevel
  for name in TINY_DATASETS:
    tfds.builder(name, data_dir=data_dir,
                 file_format=tfds_prepare.FILE_FORMAT).download_and_prepare()
  return data_dir


@dataclasses.dataclass(frozen=True)
class Run:
  """A finished child: exit status and everything it logged."""
  rc: int
  log: str
  log_path: str

  @property
  def resumed_from(self) -> int | None:
    found = re.search(r'Resumed from \S+ at step (\d+)\.', self.log)
    return int(found.group(1)) if found else None

  @property
  def stopped(self) -> str:
    """The 'Stopped: ...' line (a RunStopped), else the last exception line, else ''."""
    found = re.search(r'\] (Stopped: .*)', self.log)
    if found:
      return found.group(1)
    errors = re.findall(r'^((?:\w+\.)*\w*(?:Error|Exception)\w*: .*)$', self.log, re.M)
    return errors[-1] if errors else ''

  @property
  def compiled(self) -> bool:
    return 'Start of training' in self.log


class Context:
  """Data dir, compile cache, scratch root; starts children; owns the baselines."""

  def __init__(self, data_dir: str, cache_dir: str, root: str):
    self.data_dir, self.cache_dir, self.root = str(data_dir), str(cache_dir), str(root)
    os.makedirs(os.path.join(self.root, 'logs'), exist_ok=True)
    self._counter = itertools.count()
    self._lock = threading.Lock()
    self._shared: dict[str, dict] = {}

  def workdir(self, name: str) -> str:
    """A new, not yet existing workdir path under the root (main creates it)."""
    with self._lock:
      n = next(self._counter)
    return os.path.join(self.root, f'{name}_{n}')

  def command(self, workdir: str, *overrides: str, config: str | None = None) -> list[str]:
    command = test_train.main_command(workdir, self.data_dir, *overrides)
    if config is not None:  # a config file of the case's own (e.g. model_overrides).
      command = [f'--config={config}' if a.startswith('--config=') else a for a in command]
    return command

  def start(self, workdir: str, *overrides: str, config: str | None = None
            ) -> tuple[subprocess.Popen, str]:
    """(child, its log path); stdout and stderr both go to the log."""
    with self._lock:
      n = next(self._counter)
    log_path = os.path.join(self.root, 'logs', f'{os.path.basename(workdir)}.{n}.log')
    with open(log_path, 'w') as log:
      proc = subprocess.Popen(self.command(workdir, *overrides, config=config), cwd=REPO,
                              env=test_train.main_env(self.cache_dir), stdout=log,
                              stderr=subprocess.STDOUT, text=True)
    return proc, log_path

  def run(self, workdir: str, *overrides: str, config: str | None = None) -> Run:
    proc, log_path = self.start(workdir, *overrides, config=config)
    return finish(proc, log_path)

  def once(self, key: str, make: Callable[[], Any]) -> Any:
    """make()'s value, made by the first caller; later callers wait for it. A failure
    is not kept: the next caller tries again."""
    with self._lock:
      entry = self._shared.setdefault(key, {'lock': threading.Lock()})
    with entry['lock']:
      if 'value' not in entry:
        entry['value'] = make()
    return entry['value']

  def baseline(self, name: str) -> str:
    """Workdir of the uninterrupted run `name` (BASELINES), run once per Context."""
    def make():
      workdir = self.workdir(f'baseline_{name}')
      run = self.run(workdir, *BASELINES[name])
      if run.rc != 0:
        raise RuntimeError(f'baseline {name} exited {run.rc}:\n{run.log[-4000:]}')
      return workdir
    return self.once(f'baseline {name}', make)

  def preempted(self, name: str) -> tuple[str, 'Run']:
    """(workdir, run) of the run PREEMPTED[name], run once; callers copy the workdir."""
    def make():
      workdir = self.workdir(f'preempted_{name}')
      return workdir, self.run(workdir, *PREEMPTED[name])
    return self.once(f'preempted {name}', make)


@dataclasses.dataclass
class Result:
  """One row of the table, its checks (name -> passed) and the facts behind them."""
  fault: str
  injected: int = 0
  resumed: int = 0
  lost: int | None = 0  # checkpoints found unreadable + runs that could not resume.
  max_delta: float | None = None  # None: no uninterrupted run to compare with.
  saw: str = ''
  checks: dict = dataclasses.field(default_factory=dict)
  facts: dict = dataclasses.field(default_factory=dict)
  logs: dict = dataclasses.field(default_factory=dict)  # not in the JSON: large.
  skipped: str = ''
  error: str = ''

  def check(self, name: str, ok) -> bool:
    self.checks[name] = bool(ok)
    return bool(ok)

  @property
  def failures(self) -> list[str]:
    return [name for name, ok in self.checks.items() if not ok] + (
        [f'error: {self.error}'] if self.error else [])

  def explain(self) -> str:
    """What failed, with the facts and the tails of the logs, for an assertion."""
    tails = '\n'.join(f'--- {k} ---\n{v[-3000:]}' for k, v in self.logs.items())
    return f'{self.fault}: failed {self.failures}\nfacts {self.facts}\n{tails}'

  def to_json(self) -> dict:
    return {k: v for k, v in dataclasses.asdict(self).items() if k != 'logs'}


def resume_and_compare(ctx: Context, r: Result, workdir: str, *overrides: str,
                       expect_from: int, baseline: str = 'standard') -> Run:
  """Restarts `workdir`, checks it resumed at `expect_from` and finished, and records
  max |Δparam| against the uninterrupted run."""
  run = ctx.run(workdir, *BASELINES[baseline], *overrides)
  r.logs['resume'] = run.log
  r.resumed += run.resumed_from is not None
  r.facts['resumed_from'] = run.resumed_from
  r.check('resume exits 0', run.rc == 0)
  r.check(f'resumed from step {expect_from}', run.resumed_from == expect_from)
  if run.rc == 0:
    steps = LONG_STEPS if baseline == 'long' else STANDARD_STEPS
    r.max_delta = max_delta(workdir, ctx.baseline(baseline), steps)
    r.check('final params equal the uninterrupted run', r.max_delta == 0.0)
  return run


def finish(proc: subprocess.Popen, log_path: str, timeout: float = TIMEOUT) -> Run:
  try:
    rc = proc.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    rc = proc.wait()
  with open(log_path) as f:
    return Run(rc=rc, log=f.read(), log_path=log_path)


def wait_for(proc: subprocess.Popen, log_path: str, pattern: str,
             timeout: float = TIMEOUT) -> re.Match | None:
  """The first match of `pattern` (within one line) in the child's log, polled every
  10 ms; None when the child exits (or the time runs out) before it appears. Only the
  lines added since the last poll are searched: the parent shares the two cores."""
  deadline = time.monotonic() + timeout
  compiled, pending = re.compile(pattern), ''
  with open(log_path) as f:
    while time.monotonic() < deadline:
      alive = proc.poll() is None
      text = pending + f.read()
      complete, _, pending = text.rpartition('\n')  # a partial last line waits.
      found = compiled.search(complete)
      if found or not alive:
        return found or compiled.search(pending)
      time.sleep(0.01)
  return None


def wait_until(proc: subprocess.Popen, condition: Callable[[], bool],
               timeout: float = TIMEOUT) -> bool:
  """Whether `condition()` became true (polled every 10 ms) while the child ran."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline and proc.poll() is None:
    if condition():
      return True
    time.sleep(0.01)
  return condition()


# ----------------------------------------------------------------------------------------
# Workdirs and checkpoints.
# ----------------------------------------------------------------------------------------
def listing(workdir: str) -> dict[str, tuple[int, int]]:
  """{path relative to workdir: (size, mtime_ns)} of every file and directory."""
  found = {}
  for root, dirs, files in os.walk(workdir):
    for name in dirs + files:
      path = os.path.join(root, name)
      stat = os.stat(path)
      found[os.path.relpath(path, workdir)] = (stat.st_size if name in files else 0,
                                               stat.st_mtime_ns)
  return found


def copy_workdir(source: str, target: str) -> str:
  shutil.copytree(source, target, copy_function=shutil.copy2)  # mtimes kept
  return target


def checkpoint_steps(workdir: str) -> list[int]:
  """Steps of the digit-named checkpoint dirs (orbax renames a save to its step only
  once it is complete; partial ones are <step>.orbax-checkpoint-tmp-*)."""
  path = training.checkpoint_dir(workdir)
  if not os.path.isdir(path):
    return []
  return sorted(int(n) for n in os.listdir(path) if n.isdigit())


def tmp_checkpoints(workdir: str) -> list[str]:
  path = training.checkpoint_dir(workdir)
  return sorted(n for n in os.listdir(path) if 'tmp' in n) if os.path.isdir(path) else []


def read_checkpoint(workdir: str, step: int) -> None:
  """Reads every array of checkpoint `step`'s state and its meta JSON (raises if any
  fails): what a restart needs of it."""
  state = os.path.join(training.checkpoint_dir(workdir), str(step), 'state')
  with open(os.path.join(state, '_METADATA')) as f:
    keys = json.load(f)['tree_metadata']  # "('params', 'head', 'kernel')", ...
  for item in sorted({k.split("'")[1] for k in keys}):
    training.read_arrays(workdir, step, item=item)
  with open(os.path.join(os.path.dirname(state), 'meta', 'metadata')) as f:
    json.load(f)


def unreadable(workdir: str) -> list[tuple[int, str]]:
  """(step, error) of each complete checkpoint that does not read."""
  bad = []
  for step in checkpoint_steps(workdir):
    try:
      read_checkpoint(workdir, step)
    except Exception as error:  # pylint: disable=broad-except
      bad.append((step, f'{type(error).__name__}: {str(error)[:200]}'))
  return bad


def meta(workdir: str, step: int) -> dict:
  path = os.path.join(training.checkpoint_dir(workdir), str(step), 'meta', 'metadata')
  with open(path) as f:
    return json.load(f)


def max_delta(workdir: str, reference: str, step: int) -> float:
  """max |param - reference param| of checkpoint `step` of two workdirs (the same
  parameter names required)."""
  got = dict(_flat(training.read_arrays(workdir, step)))
  want = dict(_flat(training.read_arrays(reference, step)))
  if got.keys() != want.keys():
    raise AssertionError(f'parameter names differ: {sorted(got.keys() ^ want.keys())}')
  return max(float(np.max(np.abs(got[k].astype(np.float64) - want[k])))
             for k in want)


def _flat(tree):
  return [(jax.tree_util.keystr(p), np.asarray(x))
          for p, x in jax.tree_util.tree_leaves_with_path(tree)]


def largest_array_file(workdir: str, step: int) -> str:
  d = os.path.join(training.checkpoint_dir(workdir), str(step), 'state', 'ocdbt.process_0',
                   'd')
  return max((os.path.join(d, n) for n in os.listdir(d)), key=os.path.getsize)


def truncate(path: str) -> None:
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)

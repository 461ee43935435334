"""vit_jax/platform/startup.py: every kind of machine faked (sysfs tree, /dev, environment), the
decision asserted; plus `python -m vit_jax.main` trained to completion on a machine whose
/sys/bus/pci/devices really shows only a gVNIC (tmpfs mounted over it under unshare -m).
"""
import glob
import importlib.util
import logging
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import textwrap

import jax
import pytest

from tests import test_train
from vit_jax.platform import startup

compile_cache = test_train.compile_cache  # test_train's session fixture, shared.

GVNIC = ('0x1ae0', '0x0042')  # Google's virtual NIC, standard on current GCE VMs.
TPU_V4 = ('0x1ae0', '0x005e')
VIRTIO_NET = ('0x1af4', '0x1041')
# `srun --nodes=2 --ntasks=4 python -m vit_jax.main ...`: task 1, on the first node.
SLURM_SRUN = {
    'SLURM_JOB_ID': '4242', 'SLURM_JOBID': '4242', 'SLURM_NTASKS': '4',
    'SLURM_NPROCS': '4', 'SLURM_PROCID': '1', 'SLURM_LOCALID': '1', 'SLURM_NODEID': '0',
    'SLURM_STEP_ID': '0', 'SLURM_STEP_NODELIST': 'node[001-002]',
    'SLURM_NODELIST': 'node[001-002]', 'SLURM_STEP_NUM_NODES': '2',
    'SLURM_JOB_NUM_NODES': '2', 'SLURM_TASKS_PER_NODE': '2(x2)'}
# `mpirun -np 2 python -m vit_jax.main ...` (Open MPI 4, ORTE): rank 1.
OMPI_MPIRUN = {
    'OMPI_MCA_orte_hnp_uri': '1531576320.0;tcp://10.0.0.1,10.148.0.1:34911',
    'OMPI_COMM_WORLD_SIZE': '2', 'OMPI_COMM_WORLD_RANK': '1',
    'OMPI_COMM_WORLD_LOCAL_RANK': '1', 'OMPI_COMM_WORLD_LOCAL_SIZE': '2'}


def fake_sysfs(root, devices):
  """root/bus/pci/devices/<address>/{vendor,device}, as Linux lays it out."""
  for i, ids in enumerate(devices):
    path = root / 'bus' / 'pci' / 'devices' / f'0000:00:{i + 4:02x}.0'
    path.mkdir(parents=True)
    if ids is not None:
      (path / 'vendor').write_text(ids[0] + '\n')
      (path / 'device').write_text(ids[1] + '\n')
  return str(root)


def old_rule_says_tpu(sysfs_root):
  """vit_jax/main.py:is_tpu_vm before this fix: any PCI device of vendor 0x1ae0."""
  return any(pathlib.Path(f).read_text().strip() == '0x1ae0'
             for f in glob.glob(os.path.join(sysfs_root, 'bus/pci/devices/*/vendor')))


def _launcher_free_env(cache_dir, devices=8):
  """test_train's child environment minus anything that names a launcher or a TPU."""
  env = test_train.main_env(cache_dir, devices=devices)
  prefixes = ('SLURM_', 'OMPI_', 'PMI_', 'PMIX_', 'TPU_', 'MEGASCALE_', 'KUBERNETES_')
  return {k: v for k, v in env.items() if not k.startswith(prefixes)}


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def decide(sysfs_root, environ=None, dev_root=None, **flags):
  dev_root = dev_root or os.path.join(sysfs_root, 'no_dev')
  return startup.decide(environ=environ or {}, sysfs_root=sysfs_root, dev_root=dev_root,
                        **flags)


# ----------------------------------------------------------------------------------------
# TPU VMs and the Google devices that are not TPUs.
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('device_id,chip,count', [
    ('0x005e', 'TPU v4', 4), ('0x0027', 'TPU v3', 4), ('0x0063', 'TPU v5e', 8),
    ('0x0062', 'TPU v5p', 4), ('0x006f', 'TPU v6e', 8), ('0x0076', 'TPU7x', 4)])
def test_tpu_vm_by_its_chips(tmp_path, device_id, chip, count):
  sysfs = fake_sysfs(tmp_path, [VIRTIO_NET, GVNIC] + [('0x1ae0', device_id)] * count)
  d = decide(sysfs)
  assert d.path == startup.TPU_VM
  assert d.reason == (f'TPU VM: PCI 0000:00:06.0 vendor 0x1ae0 device {device_id} '
                      f'({chip}, {count} TPU chips)')
  assert d.initialize_kwargs() == {}  # JAX's GceTpuCluster / GkeTpuCluster fill it in.


def test_gvnic_only_vm_is_one_process_though_the_old_rule_took_it_for_a_tpu(tmp_path):
  sysfs = fake_sysfs(tmp_path, [VIRTIO_NET, GVNIC])
  assert old_rule_says_tpu(sysfs)  # the bug: same vendor id as a TPU.
  d = decide(sysfs)
  assert (d.path, d.initialize_kwargs()) == (startup.SINGLE, None)
  assert d.reason.endswith('no TPU chip; Google PCI devices that are not TPUs: '
                           '0000:00:05.0 device 0x0042 (gVNIC)')


def test_no_google_device_id_but_the_tpu_ids_counts(tmp_path):
  tpu_ids = startup.tpu_device_ids()
  assert set(tpu_ids) >= {'0x0027', '0x005e', '0x0062', '0x0063', '0x006f'}
  others = [f'0x{i:04x}' for i in range(0x100) if f'0x{i:04x}' not in tpu_ids]
  sysfs = fake_sysfs(tmp_path, [('0x1ae0', i) for i in others])
  assert len(startup.pci_devices(sysfs)) == len(others) >= 240
  assert startup.tpu_evidence(sysfs, {}, str(tmp_path / 'no_dev')) is None
  # and a TPU device id under another vendor is no TPU either.
  assert startup.tpu_evidence(fake_sysfs(tmp_path / 'b', [('0x10de', '0x005e')]), {},
                              str(tmp_path / 'no_dev')) is None


def test_tpu_device_nodes_count_but_accel_subsystem_and_vfio_do_not(tmp_path):
  sysfs = fake_sysfs(tmp_path / 'sys', [GVNIC])
  dev = tmp_path / 'dev'
  (dev / 'accel').mkdir(parents=True)  # /dev/accel/accel0: Intel NPU, Habana, AMD XDNA.
  (dev / 'accel' / 'accel0').touch()
  (dev / 'vfio').mkdir()  # any VFIO passthrough, e.g. a GPU for a nested VM.
  (dev / 'vfio' / 'vfio').touch()
  assert decide(sysfs, dev_root=str(dev)).path == startup.SINGLE
  (dev / 'accel0').touch()  # TPU v2-v4 driver node.
  d = decide(sysfs, dev_root=str(dev))
  assert (d.path, d.reason) == (startup.TPU_VM, f'TPU VM: TPU device node {dev}/accel0')


def test_gke_tpu_worker_list_counts_but_jaxs_own_skip_mds_query_does_not(tmp_path):
  sysfs = fake_sysfs(tmp_path, [])
  from jax._src import hardware_utils  # pylint: disable=import-outside-toplevel
  if hardware_utils.num_available_tpu_chips_and_device_id()[0] == 0:
    # `import jax` set it on this machine, as on every machine WITHOUT a TPU chip.
    assert os.environ.get('TPU_SKIP_MDS_QUERY') == '1'
  assert decide(sysfs, {'TPU_SKIP_MDS_QUERY': '1'}).path == startup.SINGLE
  d = decide(sysfs, {'TPU_WORKER_HOSTNAMES': 'w-0,w-1', 'TPU_WORKER_ID': '1'})
  assert (d.path, d.reason) == (
      startup.TPU_VM, 'TPU VM: GKE TPU environment TPU_WORKER_HOSTNAMES=w-0,w-1')


# ----------------------------------------------------------------------------------------
# Launchers JAX detects by itself.
# ----------------------------------------------------------------------------------------
def test_slurm_job_with_several_tasks_starts_through_jaxs_detection(tmp_path):
  d = decide(fake_sysfs(tmp_path, [GVNIC]), SLURM_SRUN)
  assert (d.path, d.cluster, d.initialize_kwargs()) == (startup.CLUSTER, 'slurm', {})
  assert d.reason == 'slurm cluster, detected by JAX (SLURM_NTASKS=4)'
  # What jax.distributed.initialize() then derives from the same environment:
  from jax._src import clusters  # pylint: disable=import-outside-toplevel
  with startup._as_process_environment(SLURM_SRUN):  # pylint: disable=protected-access
    detected = clusters.ClusterEnv.auto_detect_unset_distributed_params(
        None, None, None, None, None, 300)
  address, count, index, local = detected
  assert (address.split(':')[0], count, index, local) == ('node001', 4, 1, [1])


REPORT = """
from vit_jax.platform import startup
decision = startup.initialize()
import jax
print('REPORT', decision.path, decision.cluster, jax.process_index(), jax.process_count(),
      jax.device_count(), flush=True)
"""


def test_two_slurm_tasks_really_join_one_run_through_jax(tmp_path):
  """srun --ntasks=2 on one node, faked: each process calls only startup.initialize()."""
  port = str(_free_port())  # JAX's Slurm rule would derive one from SLURM_JOB_ID.
  procs = []
  for task in range(2):
    env = _launcher_free_env(tmp_path / 'cache', devices=2)
    env.update(SLURM_JOB_ID='4242', SLURM_STEP_NODELIST='localhost', SLURM_NTASKS='2',
               SLURM_PROCID=str(task), SLURM_LOCALID=str(task), JAX_COORDINATOR_PORT=port)
    procs.append(subprocess.Popen([sys.executable, '-c', REPORT], cwd=test_train.REPO,
                                  env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True))
  try:
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
  finally:
    for proc in procs:
      proc.kill()
  reports = [line for out in outputs for line in out.splitlines()
             if line.startswith('REPORT')]
  assert reports == ['REPORT cluster slurm 0 2 4', 'REPORT cluster slurm 1 2 4'], outputs


def test_single_task_slurm_job_is_one_process(tmp_path):
  env = dict(SLURM_SRUN, SLURM_NTASKS='1', SLURM_NPROCS='1', SLURM_PROCID='0',
             SLURM_LOCALID='0', SLURM_STEP_NODELIST='node001', SLURM_STEP_NUM_NODES='1')
  d = decide(fake_sysfs(tmp_path, [GVNIC]), env)
  assert (d.path, d.initialize_kwargs()) == (startup.SINGLE, None)
  assert d.reason.startswith('one process: slurm started a single task (SLURM_NTASKS=1)')
  # Our choice, not JAX's: its own rule takes this for a 1-process cluster pinned to
  # local device 0 (one GPU of the node's eight).
  from jax._src import clusters  # pylint: disable=import-outside-toplevel
  with startup._as_process_environment(env):  # pylint: disable=protected-access
    detected = clusters.ClusterEnv.auto_detect_unset_distributed_params(
        None, None, None, None, None, 300)
  assert detected[1:] == (1, 0, [0])


def test_salloc_shell_without_srun_is_not_a_jax_slurm_environment(tmp_path):
  env = {'SLURM_JOB_ID': '4242', 'SLURM_NTASKS': '4', 'SLURM_NODELIST': 'node[001-002]'}
  assert decide(fake_sysfs(tmp_path, []), env).path == startup.SINGLE


def test_open_mpi_starts_through_jaxs_detection_and_wins_over_slurm(tmp_path):
  sysfs = fake_sysfs(tmp_path, [])
  d = decide(sysfs, OMPI_MPIRUN)
  assert (d.path, d.cluster, d.reason) == (
      startup.CLUSTER, 'ompi', 'ompi cluster, detected by JAX (OMPI_COMM_WORLD_SIZE=2)')
  assert decide(sysfs, {**SLURM_SRUN, **OMPI_MPIRUN}).cluster == 'ompi'  # JAX's order.
  assert decide(sysfs, dict(OMPI_MPIRUN, OMPI_COMM_WORLD_SIZE='1')).path == startup.SINGLE


def test_open_mpi_5_ranks_jax_cannot_detect_are_refused_not_run_n_times(tmp_path):
  env = {k: v for k, v in OMPI_MPIRUN.items() if k != 'OMPI_MCA_orte_hnp_uri'}  # PRRTE
  with pytest.raises(ValueError, match=r'mpirun started OMPI_COMM_WORLD_SIZE=2 '
                     r'processes, but JAX does not detect .* '
                     r'--num_processes=\$OMPI_COMM_WORLD_SIZE '
                     r'--process_id=\$OMPI_COMM_WORLD_RANK'):
    decide(fake_sysfs(tmp_path, []), env)


def test_a_launcher_on_a_tpu_vm_comes_first_as_in_jaxs_order(tmp_path):
  d = decide(fake_sysfs(tmp_path, [TPU_V4]), SLURM_SRUN)
  assert (d.path, d.cluster) == (startup.CLUSTER, 'slurm')


def test_kubernetes_pod_without_the_kubernetes_package_is_one_process(tmp_path):
  if importlib.util.find_spec('kubernetes') is not None:
    pytest.skip('the kubernetes package is installed: JAX would query the pod API')
  env = {'KUBERNETES_SERVICE_HOST': '10.0.0.1', 'KUBERNETES_SERVICE_PORT': '443'}
  with pytest.warns(UserWarning, match='kubernetes'):  # JAX's own rule and warning.
    d = decide(fake_sysfs(tmp_path, [GVNIC]), env)
  assert d.path == startup.SINGLE


# ----------------------------------------------------------------------------------------
# Plain machines, flags, errors.
# ----------------------------------------------------------------------------------------
def test_plain_machine_is_one_process_whatever_sysfs_holds(tmp_path):
  assert decide(str(tmp_path / 'no_sys')).path == startup.SINGLE  # macOS, some containers
  sysfs = fake_sysfs(tmp_path / 'sys', [VIRTIO_NET, None, GVNIC])  # None: no id files.
  bad = tmp_path / 'sys' / 'bus' / 'pci' / 'devices'
  (bad / '0000:00:05.0' / 'vendor').mkdir()  # a directory where a file should be
  (bad / '0000:00:06.0' / 'device').write_bytes(b'\xff\xfe')  # not text
  (bad / '0000:00:07.0').mkdir()
  (bad / '0000:00:07.0' / 'vendor').symlink_to(tmp_path / 'gone')  # dangling
  d = decide(sysfs)
  assert (d.path, d.reason) == (
      startup.SINGLE, 'one process: no multi-process flags, no cluster JAX detects '
      '(ompi, slurm, K8sCluster), no TPU chip')


def test_explicit_flags_win_over_slurm_and_a_tpu(tmp_path):
  d = decide(fake_sysfs(tmp_path, [TPU_V4]), SLURM_SRUN,
             coordinator_address='10.0.0.2:1234', num_processes=2, process_id=1)
  assert d.path == startup.EXPLICIT
  assert d.initialize_kwargs() == dict(
      coordinator_address='10.0.0.2:1234', num_processes=2, process_id=1,
      cluster_detection_method='deactivate')  # JAX then ignores the Slurm variables.


@pytest.mark.parametrize('flags,message', [
    (dict(num_processes=2, process_id=0),
     r'got --coordinator_address=None --num_processes=2 --process_id=0; expected all '
     r'three or none\. Fix: add --coordinator_address \(HOST:PORT'),
    (dict(coordinator_address='h:1'), r"add --num_processes \(how many processes\) and "
     r"--process_id \(this process's index, 0\.\.N-1\), or drop"),
    (dict(coordinator_address='h:1', num_processes=2, process_id=2),
     r'--process_id=2 with --num_processes=2: expected .* in 0\.\.N-1'),
    (dict(coordinator_address='h', num_processes=2, process_id=0),
     r"--coordinator_address='h': expected HOST:PORT of process 0")])
def test_malformed_flags_are_refused_naming_value_expectation_and_fix(tmp_path, flags,
                                                                     message):
  with pytest.raises(ValueError, match=message):
    decide(fake_sysfs(tmp_path, []), **flags)


def test_main_refuses_partial_flags_naming_the_missing_one(tmp_path):
  proc = subprocess.run(
      test_train.main_command(tmp_path / 'work', tmp_path / 'data', '--num_processes=2',
                              '--process_id=0'),
      cwd=test_train.REPO, env=_launcher_free_env(tmp_path / 'cache'),
      capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert proc.stderr.strip().splitlines()[-1] == (
      'multi-process flags go together: got --coordinator_address=None --num_processes=2 '
      '--process_id=0; expected all three or none. Fix: add --coordinator_address '
      '(HOST:PORT of process 0), or drop the others to let start-up detect the machine.')
  assert '] Start-up: ' not in proc.stderr  # no decision logged, nothing started
  assert not (tmp_path / 'work').exists()


def test_a_jax_without_its_cluster_list_gives_a_clear_error(tmp_path, monkeypatch):
  from jax._src import clusters  # pylint: disable=import-outside-toplevel
  monkeypatch.delattr(clusters.ClusterEnv, '_cluster_types')
  with pytest.raises(RuntimeError, match=r'_cluster_types.*constraints\.txt.*'
                     r'--coordinator_address'):
    decide(fake_sysfs(tmp_path, []))


def test_a_failing_cluster_check_is_named(tmp_path):
  class Broken:  # stands in for e.g. K8sCluster when the pod's kube config is broken.
    name = 'k8s'

    @classmethod
    def is_env_present(cls):
      raise OSError('no service account token')

  with pytest.raises(RuntimeError, match=r"JAX's check for a k8s cluster \(Broken\."
                     r"is_env_present\) failed: OSError\('no service account token'\)"
                     r'.*fix: pass'):
    decide(fake_sysfs(tmp_path, []), cluster_types=[Broken])


# ----------------------------------------------------------------------------------------
# start(): the one log line and the call made.
# ----------------------------------------------------------------------------------------
@pytest.fixture
def calls(monkeypatch):
  """jax.distributed.initialize and jax.config.update, recorded instead of run."""
  record = []
  monkeypatch.setattr(jax.distributed, 'initialize', lambda **kw: record.append(kw))
  monkeypatch.setattr(jax.config, 'update', lambda *a: record.append(a))
  return record


def test_start_logs_one_line_and_calls_initialize_as_decided(tmp_path, calls, caplog):
  caplog.set_level(logging.INFO)
  startup.start(decide(fake_sysfs(tmp_path / 'a', [GVNIC])))
  assert calls == []
  startup.start(decide(fake_sysfs(tmp_path / 'b', [TPU_V4])))
  assert calls == [('jax_cpu_collectives_implementation', 'gloo'), {}]
  startup.start(decide(fake_sysfs(tmp_path / 'c', []), coordinator_address='h:1',
                       num_processes=2, process_id=0))
  assert calls[-1]['cluster_detection_method'] == 'deactivate'
  lines = [r.getMessage() for r in caplog.records
           if r.getMessage().startswith('Start-up')]
  assert lines[0].startswith('Start-up: one process: ') and lines[0].endswith(
      '(gVNIC) -> no jax.distributed')
  assert lines[1] == ('Start-up: TPU VM: PCI 0000:00:04.0 vendor 0x1ae0 device 0x005e '
                      '(TPU v4) -> jax.distributed.initialize()')
  assert lines[2].startswith(
      "Start-up: explicit flags --coordinator_address=h:1 --num_processes=2 "
      "--process_id=0 -> jax.distributed.initialize(coordinator_address='h:1'")
  assert len(lines) == 3


def test_a_tpu_vm_jax_cannot_start_names_the_fix(tmp_path, monkeypatch):
  # What jax.distributed.initialize() raises when its TPU detection finds nothing.
  def no_tpu_runtime(**_):
    raise ValueError('coordinator_address should be defined.')
  monkeypatch.setattr(jax.distributed, 'initialize', no_tpu_runtime)
  monkeypatch.setattr(jax.config, 'update', lambda *a: None)
  with pytest.raises(RuntimeError, match=r"^TPU VM: PCI .* device 0x005e .*, but "
                     r'jax.distributed.initialize\(\) failed: coordinator_address '
                     r"should be defined\..*pip install 'jax\[tpu\]'.*--num_processes=1 "
                     r'--process_id=0'):
    startup.start(decide(fake_sysfs(tmp_path, [TPU_V4])))


# ----------------------------------------------------------------------------------------
# The real surface: `python -m vit_jax.main` on a machine that shows only a gVNIC.
# ----------------------------------------------------------------------------------------
GVNIC_MACHINE = textwrap.dedent('''\
    set -e
    mount -t tmpfs none /sys/bus/pci/devices
    d=/sys/bus/pci/devices/0000:00:04.0
    mkdir $d && echo 0x1ae0 > $d/vendor && echo 0x0042 > $d/device
    "$PYTHON" -c "$OLD_RULE" > "$OLD_RULE_OUT"
    exec "$@"
    ''')
# old_rule_says_tpu('/sys') in the child's mount namespace, plus what it lists.
OLD_RULE = ('import glob, os; print(any(open(f).read().strip() == "0x1ae0" for f in '
            'glob.glob("/sys/bus/pci/devices/*/vendor")), '
            'sorted(os.listdir("/sys/bus/pci/devices")))')


def test_main_trains_on_a_gvnic_only_machine(tmp_path, demo_data_dir, compile_cache):
  if shutil.which('unshare') is None:
    pytest.skip('needs unshare (util-linux) to fake /sys/bus/pci/devices')
  probe = subprocess.run(['unshare', '-m', 'sh', '-c',
                          'mount -t tmpfs none /sys/bus/pci/devices'],
                         capture_output=True, text=True, check=False)
  if probe.returncode:
    pytest.skip('cannot mount a fake /sys/bus/pci/devices (needs root or CAP_SYS_ADMIN): '
                f'unshare -m + mount exit {probe.returncode}: {probe.stderr.strip()}')
  # test_train's session cache: the same configs/testing.py programs compile once.
  env = _launcher_free_env(compile_cache)
  env.update(PYTHON=sys.executable, OLD_RULE=OLD_RULE,
             OLD_RULE_OUT=str(tmp_path / 'old_rule.txt'))
  command = ['unshare', '-m', 'sh', '-c', GVNIC_MACHINE, 'gvnic_machine',
             *test_train.main_command(tmp_path / 'work', demo_data_dir)]
  proc = subprocess.run(command, cwd=test_train.REPO, env=env, capture_output=True,
                        text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-6000:]
  # Not vacuous: the child saw exactly the fake device, and the old rule said 'TPU VM'.
  assert (tmp_path / 'old_rule.txt').read_text().strip() == "True ['0000:00:04.0']"
  assert ('Start-up: one process: no multi-process flags, no cluster JAX detects '
          '(ompi, slurm, K8sCluster), no TPU chip; Google PCI devices that are not TPUs: '
          '0000:00:04.0 device 0x0042 (gVNIC) -> no jax.distributed') in proc.stderr
  assert 'Process 0 of 1, 8 local / 8 global devices.' in proc.stderr
  assert sorted(os.listdir(tmp_path / 'work' / 'checkpoints')) == ['16', '24', '8']

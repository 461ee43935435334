"""How this process joins a run: decide, log it in one line, jax.distributed.initialize.

The first rule that applies wins:
  explicit  --coordinator_address, --num_processes and --process_id (all three or none):
            initialize() with exactly these, JAX's cluster detection switched off so
            that a Slurm or MPI environment around the command cannot change them.
  cluster   a launcher that JAX's initialize() detects by itself, tried in JAX's own order
            (jax._src.clusters: Open MPI's mpirun, Slurm's srun, [TPU], Kubernetes):
            initialize() with no arguments. A launcher that started a single process
            (SLURM_NTASKS=1, OMPI_COMM_WORLD_SIZE=1) is the 'single' case instead.
  TPU VM    at JAX's TPU place in that order: a TPU chip on the PCI bus (Google's vendor
            id 0x1ae0 AND a TPU device id), a TPU device node /dev/accel<N>, or the GKE
            TPU worker list in the environment: initialize() with no arguments; JAX
            reads the peers from the TPU VM metadata or GKE's variables.
  single    anything else (laptop, one GPU, a CPU or GPU VM whose only Google device is
            the gVNIC network card): no initialize(). Deciding only reads sysfs, /dev and
            the environment; an unreadable file counts as 'not a TPU', never as an error.
            Refused instead: several mpirun ranks that JAX cannot detect (Open MPI 5).

The deciding functions take the sysfs root, the /dev root and the environment mapping as
arguments so that tests can fake every machine (tests/test_startup.py).
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import re
from typing import Any, Mapping, Sequence
from unittest import mock

from absl import logging

EXPLICIT, CLUSTER, TPU_VM, SINGLE = 'explicit', 'cluster', 'tpu_vm', 'single'

_GOOGLE_VENDOR = '0x1ae0'
# TPU chips' PCI device ids under vendor 0x1ae0, copied as data from jax 0.10.2's
# jax/_src/hardware_utils.py (_TPU_PCI_DEVICE_IDS), the table jax's cloud_tpu_init counts
# TPU chips with. tpu_device_ids() adds any id a newer JAX knows.
_TPU_DEVICE_IDS = {
    '0x0027': 'TPU v3',   # hardware_utils: TpuVersion.v3 (it lists no separate v2 id)
    '0x0056': 'TPU plc',  # hardware_utils: TpuVersion.plc ("no public name")
    '0x005e': 'TPU v4',   # hardware_utils: TpuVersion.v4
    '0x0062': 'TPU v5p',  # hardware_utils: TpuVersion.v5p
    '0x0063': 'TPU v5e',  # hardware_utils: TpuVersion.v5e
    '0x006f': 'TPU v6e',  # hardware_utils: TpuVersion.v6e
    '0x0076': 'TPU7x',    # hardware_utils: TpuVersion.tpu7x
}
# Google devices that are not TPUs but share the vendor id; named in the log only. gVNIC,
# the virtual NIC standard on current GCE machine types (A3 H100, G2 L4, CPU VMs), is why
# the vendor id alone is no evidence.
_GOOGLE_NON_TPU = {'0x0042': ' (gVNIC)'}
# The GKE TPU worker list, read by jax's GkeTpuCluster (jax/_src/clusters/
# cloud_tpu_cluster.py). Not TPU_SKIP_MDS_QUERY: `import jax` itself sets it to 1 on every
# machine WITHOUT a TPU chip (jax/_src/cloud_tpu_init.py).
_TPU_ENV_VARS = ('TPU_PROCESS_ADDRESSES', 'TPU_WORKER_HOSTNAMES')
# TPU v2-v4 chips appear as /dev/accel0, /dev/accel1, ...; not counted: the directory
# /dev/accel/ of Linux's accel subsystem (Intel NPU, Habana, AMD XDNA) and /dev/vfio
# (any PCI passthrough; TPUs that use VFIO show their PCI ids anyway).
_TPU_DEV_NODE = re.compile(r'accel\d+')
# jax's TPU cluster environments (jax/_src/clusters/cloud_tpu_cluster.py): we stand in for
# them with the checks above, as GceTpuCluster's own check queries the metadata server.
_JAX_TPU_CLUSTERS = frozenset({'tpu', 'gcetpu', 'gketpu'})
# What jax's slurm_cluster.py / ompi_cluster.py read as the process count.
_PROCESS_COUNT_VARS = {'slurm': 'SLURM_NTASKS', 'ompi': 'OMPI_COMM_WORLD_SIZE'}
_FLAG_MEANINGS = {'--coordinator_address': 'HOST:PORT of process 0',
                  '--num_processes': 'how many processes',
                  '--process_id': "this process's index, 0..N-1"}
_ALONE = ('run this machine alone with --coordinator_address=127.0.0.1:<free port> '
          '--num_processes=1 --process_id=0')


@dataclasses.dataclass(frozen=True)
class Decision:
  """How this process starts; `reason` is the one-line why that start() logs."""
  path: str  # EXPLICIT, CLUSTER, TPU_VM or SINGLE.
  reason: str
  cluster: str | None = None  # CLUSTER: the name of JAX's cluster environment.
  coordinator_address: str | None = None  # EXPLICIT only, like the next two.
  num_processes: int | None = None
  process_id: int | None = None

  def initialize_kwargs(self) -> dict[str, Any] | None:
    """Arguments of jax.distributed.initialize, or None: do not call it."""
    if self.path == SINGLE:
      return None
    if self.path == EXPLICIT:
      return dict(coordinator_address=self.coordinator_address,
                  num_processes=self.num_processes, process_id=self.process_id,
                  cluster_detection_method='deactivate')  # the flags win over the env.
    return {}  # CLUSTER / TPU_VM: JAX fills everything in from what it detects.


@dataclasses.dataclass(frozen=True)
class PciDevice:
  address: str  # e.g. 0000:00:04.0
  vendor: str  # e.g. 0x1ae0
  device: str  # e.g. 0x005e

  def __str__(self) -> str:
    return f'PCI {self.address} vendor {self.vendor} device {self.device}'


# ----------------------------------------------------------------------------------------
# Reading the machine (never raises).
# ----------------------------------------------------------------------------------------
def _read_id(path: str) -> str | None:
  try:
    with open(path, encoding='ascii') as f:
      return f.read().strip().lower() or None
  except (OSError, UnicodeDecodeError, ValueError):  # gone, unreadable, not sysfs.
    return None


def pci_devices(sysfs_root: str = '/sys') -> list[PciDevice]:
  """The PCI devices whose vendor and device ids can be read; others are skipped."""
  devices = []
  for path in sorted(glob.glob(os.path.join(glob.escape(sysfs_root), 'bus', 'pci',
                                            'devices', '*'))):
    vendor = _read_id(os.path.join(path, 'vendor'))
    device = _read_id(os.path.join(path, 'device'))
    if vendor and device:
      devices.append(PciDevice(os.path.basename(path), vendor, device))
  return devices


def tpu_device_ids() -> dict[str, str]:
  """TPU PCI device id -> chip name: the table above + ids a newer JAX adds."""
  ids = dict(_TPU_DEVICE_IDS)
  try:  # Private and optional: only to know chips newer than this file; absence is fine.
    from jax._src import hardware_utils  # pylint: disable=import-outside-toplevel
    jax_ids = dict(getattr(hardware_utils, '_TPU_PCI_DEVICE_IDS', {}))
  except (ImportError, TypeError, ValueError):
    jax_ids = {}
  for device_id, version in jax_ids.items():
    ids.setdefault(str(device_id).lower(), f'TPU {getattr(version, "name", version)}')
  return ids


def tpu_dev_nodes(dev_root: str = '/dev') -> list[str]:
  try:
    names = os.listdir(dev_root)
  except OSError:
    return []
  return sorted(os.path.join(dev_root, n) for n in names if _TPU_DEV_NODE.fullmatch(n))


def tpu_evidence(sysfs_root: str = '/sys', environ: Mapping[str, str] = os.environ,
                 dev_root: str = '/dev') -> str | None:
  """Why this is a TPU VM ('PCI 0000:00:04.0 vendor 0x1ae0 device 0x005e ...') or None."""
  ids = tpu_device_ids()
  chips = [d for d in pci_devices(sysfs_root)
           if d.vendor == _GOOGLE_VENDOR and d.device in ids]
  if chips:
    more = f', {len(chips)} TPU chips' if len(chips) > 1 else ''
    return f'{chips[0]} ({ids[chips[0].device]}{more})'
  nodes = tpu_dev_nodes(dev_root)
  if nodes:
    return f'TPU device node {nodes[0]}'
  for name in _TPU_ENV_VARS:
    if environ.get(name):
      return f'GKE TPU environment {name}={environ[name]}'
  return None


def _google_non_tpu_note(sysfs_root: str) -> str:
  """The Google PCI devices that did NOT count, for the log (the gVNIC case)."""
  others = [d for d in pci_devices(sysfs_root)
            if d.vendor == _GOOGLE_VENDOR and d.device not in tpu_device_ids()]
  if not others:
    return ''
  names = [f'{d.address} device {d.device}{_GOOGLE_NON_TPU.get(d.device, "")}'
           for d in others]
  return f'; Google PCI devices that are not TPUs: {", ".join(names)}'


# ----------------------------------------------------------------------------------------
# JAX's cluster detection (private API, guarded).
# ----------------------------------------------------------------------------------------
def jax_cluster_types() -> list[type]:
  """JAX's auto-detected cluster environments, in the order its initialize() tries them.

  Private API (jax._src.clusters.ClusterEnv._cluster_types): JAX has no public way to ask
  which launcher initialize() would use short of calling it, and calling it is exactly
  what fails on a plain machine. Opt-in ones (mpi4py) are left out, as initialize() does.
  """
  try:
    from jax._src import clusters  # pylint: disable=import-outside-toplevel
    types = list(clusters.ClusterEnv._cluster_types)  # pylint: disable=protected-access
    for cls in types:
      if not callable(cls.is_env_present):
        raise AttributeError(f'{cls.__name__}.is_env_present is not callable')
  except (ImportError, AttributeError) as e:
    import jax  # pylint: disable=import-outside-toplevel
    raise RuntimeError(
        "vit_jax/platform/startup.py reads JAX's cluster environments from the private "
        f'jax._src.clusters.ClusterEnv._cluster_types, which jax {jax.__version__} does '
        f'not have as expected ({e!r}). Expected the jax version pinned in '
        'constraints.txt; fix: install that version, or pass --coordinator_address, '
        '--num_processes and --process_id, which skip detection.') from e
  return [t for t in types if not getattr(t, 'opt_in_only_method', False)]


def _cluster_name(cls: type) -> str:
  return getattr(cls, 'name', '') or cls.__name__  # K8sCluster has no name.


@contextlib.contextmanager
def _as_process_environment(environ: Mapping[str, str]):
  """JAX's checks read os.environ, not an argument: show them `environ` meanwhile."""
  if environ is os.environ:
    yield
  else:
    with mock.patch.dict(os.environ, dict(environ), clear=True):
      yield


def _jax_detects(cls: type, environ: Mapping[str, str]) -> bool:
  name = _cluster_name(cls)
  try:
    with _as_process_environment(environ):
      return bool(cls.is_env_present())
  except Exception as e:  # pylint: disable=broad-except  (e.g. kubernetes config errors)
    raise RuntimeError(
        f"JAX's check for a {name} cluster ({cls.__name__}.is_env_present) failed: "
        f'{e!r}. Expected it to say whether this process runs under {name}; fix: pass '
        '--coordinator_address, --num_processes and --process_id, or unset the '
        f'variables that make JAX look for {name}.') from e


# ----------------------------------------------------------------------------------------
# The decision (pure: flags, files and the environment in, a Decision out).
# ----------------------------------------------------------------------------------------
def explicit_decision(coordinator_address: str | None, num_processes: int | None,
                      process_id: int | None) -> Decision | None:
  """The decision the three flags make, None without flags; ValueError when malformed."""
  given = {'--coordinator_address': coordinator_address, '--num_processes': num_processes,
           '--process_id': process_id}
  if all(v is None for v in given.values()):
    return None
  got = ' '.join(f'{k}={v}' for k, v in given.items())
  missing = [k for k, v in given.items() if v is None]
  if missing:
    add = ' and '.join(f'{k} ({_FLAG_MEANINGS[k]})' for k in missing)
    raise ValueError(
        f'multi-process flags go together: got {got}; expected all three or none. Fix: '
        f'add {add}, or drop the others to let start-up detect the machine.')
  if not re.fullmatch(r'\S+:\d+', coordinator_address):
    raise ValueError(f'--coordinator_address={coordinator_address!r}: expected HOST:PORT '
                     'of process 0; fix: e.g. --coordinator_address=10.0.0.2:1234.')
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise ValueError(f'--process_id={process_id} with --num_processes={num_processes}: '
                     'expected --num_processes >= 1 and --process_id in 0..N-1; fix: '
                     'number the processes 0..N-1.')
  return Decision(EXPLICIT, f'explicit flags {got}',
                  coordinator_address=coordinator_address, num_processes=num_processes,
                  process_id=process_id)


def cluster_decision(name: str, environ: Mapping[str, str]) -> Decision:
  """A JAX-detected launcher: CLUSTER, or SINGLE when it started only this process."""
  count_var = _PROCESS_COUNT_VARS.get(name)
  count = environ.get(count_var, '').strip() if count_var else ''
  if count == '1':
    # initialize() would add a coordinator for nobody and, off TPU, keep only the device
    # numbered by the local rank (SLURM_LOCALID / OMPI_COMM_WORLD_LOCAL_RANK): a one-task
    # job on an 8-GPU node would train on one GPU.
    return Decision(SINGLE, f'one process: {name} started a single task ({count_var}=1), '
                    'so every local device is used and no coordinator is started')
  shown = f' ({count_var}={count})' if count else ''
  return Decision(CLUSTER, f'{name} cluster, detected by JAX{shown}', cluster=name)


def _refuse_undetected_mpi(environ: Mapping[str, str]) -> None:
  """Several mpirun ranks JAX cannot see would each train alone: refuse."""
  size = environ.get('OMPI_COMM_WORLD_SIZE', '1').strip()
  if size.isdigit() and int(size) > 1:  # Open MPI 5 (PRRTE) has no OMPI_MCA_orte_hnp_uri.
    raise ValueError(
        f'mpirun started OMPI_COMM_WORLD_SIZE={size} processes, but JAX does not detect '
        'this Open MPI (jax-ml/jax#14576: Open MPI 5); expected one run, not '
        f'{size} separate ones. Fix: pass --coordinator_address=<rank 0 host>:<port> '
        '--num_processes=$OMPI_COMM_WORLD_SIZE --process_id=$OMPI_COMM_WORLD_RANK.')


def decide(coordinator_address: str | None = None, num_processes: int | None = None,
           process_id: int | None = None, *, environ: Mapping[str, str] = os.environ,
           sysfs_root: str = '/sys', dev_root: str = '/dev',
           cluster_types: Sequence[type] | None = None) -> Decision:
  """How this process joins a run (module docstring); ValueError for malformed flags."""
  explicit = explicit_decision(coordinator_address, num_processes, process_id)
  if explicit:
    return explicit
  tpu = tpu_evidence(sysfs_root, environ, dev_root)
  types = jax_cluster_types() if cluster_types is None else cluster_types
  for cls in types:
    if _cluster_name(cls) in _JAX_TPU_CLUSTERS:
      if tpu:
        return Decision(TPU_VM, f'TPU VM: {tpu}')
    elif _jax_detects(cls, environ):
      return cluster_decision(_cluster_name(cls), environ)
  if tpu:  # A JAX that lists no TPU environment: still a TPU; start() says if JAX fails.
    return Decision(TPU_VM, f'TPU VM: {tpu}')
  _refuse_undetected_mpi(environ)
  checked = ', '.join(_cluster_name(t) for t in types
                      if _cluster_name(t) not in _JAX_TPU_CLUSTERS)
  return Decision(SINGLE, 'one process: no multi-process flags, no cluster JAX detects '
                  f'({checked}), no TPU chip{_google_non_tpu_note(sysfs_root)}')


# ----------------------------------------------------------------------------------------
# Acting on it.
# ----------------------------------------------------------------------------------------
def _describe_action(decision: Decision) -> str:
  kwargs = decision.initialize_kwargs()
  if kwargs is None:
    return 'no jax.distributed'
  args = ', '.join(f'{k}={v!r}' for k, v in kwargs.items())
  return f'jax.distributed.initialize({args})'


def start(decision: Decision) -> None:
  """Logs the decision in one line and acts on it; must precede any device use."""
  logging.info('Start-up: %s -> %s', decision.reason, _describe_action(decision))
  kwargs = decision.initialize_kwargs()
  if kwargs is None:
    return
  import jax  # pylint: disable=import-outside-toplevel
  # CPU devices of different processes talk over gloo (TCP); harmless on GPU / TPU.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if decision.path == EXPLICIT:
    jax.distributed.initialize(**kwargs)  # its errors name the address and the peers.
    return
  hint = ("on a TPU VM, install JAX's TPU runtime (pip install 'jax[tpu]')"
          if decision.path == TPU_VM else f"check the {decision.cluster} job's variables")
  try:
    jax.distributed.initialize(**kwargs)
  except (ValueError, RuntimeError, OSError) as e:
    raise RuntimeError(
        f'{decision.reason}, but jax.distributed.initialize() failed: {e}. '
        f'Expected JAX to detect this machine as the start-up did; fix: {hint}, or '
        f'{_ALONE}.') from e


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, **machine) -> Decision:
  """decide() then start(); `machine` fakes environ / sysfs_root / dev_root in tests."""
  decision = decide(coordinator_address, num_processes, process_id, **machine)
  start(decision)
  return decision

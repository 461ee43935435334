"""grain vs tf.data for the global input stream, on the same JPEGs: a benchmark, not a test.

  PYTHONPATH=. python experiments/input_pipeline_throughput/grain_vs_tfdata.py --out=/tmp/g.json

The stream is the one the lead is building (issue: "measure grain against tf.data on this
machine and choose"): the example at position p of the global stream is a pure function of
(seed, p); epoch e is a seeded permutation of the whole split; host h of n reads the rows
[h*B/n, (h+1)*B/n) of each global batch of B, by index. Each variant below implements that
stream, reads files by index from a folder, and does the same training augmentation at
224 px (decode, Inception random-resized crop of area 0.08-1, flip, optionally
RandAugment(2, 15), value range [-1, 1]) into host batches of 128.

Every variant runs in its own child process (a fresh interpreter), so that its peak
resident memory (RSS summed over the process tree, grain workers included, sampled by the
parent with psutil) and its time to the first batch are its own. GRAIN_VS_TFDATA.md
records runs.
"""
from __future__ import annotations

import argparse
import ast
import collections
import functools
import hashlib
import importlib
import inspect
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

from absl import flags as absl_flags
import grain
import numpy as np
import PIL.Image
import psutil

# TensorFlow is imported inside the functions that use it: grain's worker processes are
# spawned and re-import this module, and a PIL-only worker should not pay TensorFlow's
# import (grain itself imports jax: ~190 MiB per process).

SIZE = 224  # output side, px
BATCH = 128  # images per host batch (one host here)
SEED = 0
CORES = 2  # this machine's cores; images/s per core = images/s / CORES
THREADS = 2  # tf.data num_parallel_calls / private pool; grain threads or worker processes
AREA = (0.08, 1.0)  # Inception crop area fraction (the recipe)
ASPECT = (3 / 4, 4 / 3)  # crop width / height, as preprocess.sample_crop_box
RANDAUG = (2, 15)  # RandAugment layers, magnitude
STEPS = 10_000  # length of the (lazy) streams; far more than any run reads


# --- data ---------------------------------------------------------------------------------

def natural_image(rng: np.random.Generator, h: int = 375, w: int = 500) -> np.ndarray:
  """uint8 (h, w, 3) photo-like content: a colour ramp, smooth blobs at two scales and
  sensor-like noise. Pure noise or flat colour would give unrealistic JPEG sizes (and
  decode times); with noise sigma 18-30 at quality 90 the files are ~90-110 KB."""
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  angle = rng.uniform(0, 2 * np.pi)
  ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)[..., None]
  image = rng.uniform(60, 190, 3) + ramp * rng.uniform(-120, 120, 3)

  def smooth(grid, amplitude):  # random values on a coarse grid, bicubically upsampled
    coarse = rng.normal(0, amplitude, (*grid, 3)).astype(np.float32)
    return np.stack([np.asarray(PIL.Image.fromarray(coarse[..., c]).resize(
        (w, h), PIL.Image.BICUBIC)) for c in range(3)], -1)
  image = image + smooth((4, 5), 40) + smooth((40, 54), 22)
  image = image + rng.normal(0, rng.uniform(18, 30), (h, w, 3))
  return np.clip(image, 0, 255).astype(np.uint8)


def make_jpegs(root: str, classes: int, per_class: int) -> dict:
  """root/train/<class>/<i>.JPEG, ImageNet's layout; returns what was generated."""
  rng = np.random.default_rng(SEED)
  sizes = []
  for c in range(classes):
    folder = os.path.join(root, 'train', f'n{c:08d}')
    os.makedirs(folder, exist_ok=True)
    for i in range(per_class):
      # ImageNet is mostly landscape 500x375 or 500x333; a quarter portrait here.
      h, w = (375, 500) if rng.random() < 0.75 else (500, 375)
      path = os.path.join(folder, f'n{c:08d}_{i}.JPEG')
      PIL.Image.fromarray(natural_image(rng, h, w)).save(path, 'JPEG', quality=90)
      sizes.append(os.path.getsize(path))
  return {'classes': classes, 'images': len(sizes), 'quality': 90,
          'shapes_hw': '375x500 (75%) or 500x375', 'mean_kib': np.mean(sizes) / 1024,
          'min_kib': np.min(sizes) / 1024, 'max_kib': np.max(sizes) / 1024}


def list_folder(root: str) -> tuple[list[str], list[int]]:
  """Sorted paths and class ids: the index space both pipelines read from."""
  train = os.path.join(root, 'train')
  classes = sorted(os.listdir(train))
  paths, labels = [], []
  for label, name in enumerate(classes):
    for file in sorted(os.listdir(os.path.join(train, name))):
      paths.append(os.path.join(train, name, file))
      labels.append(label)
  return paths, labels


# --- the stream's index arithmetic (both pipelines) ---------------------------------------

def global_position(i, host: int, hosts: int):
  """The i-th example of host `host`'s stream -> its position in the global stream (works
  on ints, numpy and tf tensors alike)."""
  local = BATCH // hosts
  return (i // local) * BATCH + host * local + i % local


# --- tf.data ------------------------------------------------------------------------------

def tf_record_index(position, num_records: int):
  """Global position -> record index: epoch = position // N is a permutation seeded by
  (SEED, epoch). tf's index_shuffle takes a (2,) seed (it pads it to the raw op's 3)."""
  import tensorflow as tf
  position = tf.cast(position, tf.int64)
  epoch, offset = position // num_records, position % num_records
  return tf.random.experimental.index_shuffle(
      offset, tf.stack([tf.constant(SEED, tf.int64), epoch]),
      tf.constant(num_records - 1, tf.int64))


def tf_augment(encoded, position, randaug: bool):
  """The project's ops: the crop window decoded only (decode_and_crop_jpeg), flip,
  optional RandAugment; all seeded by (SEED, global position), as pipeline.py does."""
  import tensorflow as tf
  from vit_jax.data import preprocess, randaugment
  seed = tf.stack([tf.constant(SEED, tf.int64), tf.cast(position, tf.int64)])
  image = preprocess.decode_and_inception_crop(encoded, (SIZE, SIZE),
                                               preprocess.fold_seed(seed, 0), AREA[0])
  image = preprocess.flip(image, preprocess.fold_seed(seed, 1))
  if randaug:
    image = randaugment.randaugment(image, *RANDAUG, preprocess.fold_seed(seed, 2))
  return image


def tfdata_stream(paths, labels, spec: dict, host: int = 0, hosts: int = 1):
  """range(local stream) -> global position -> index_shuffle -> read_file -> augment ->
  batch -> value range, with the options of pipeline.py's `_options`."""
  import tensorflow as tf
  from vit_jax.data import preprocess
  paths_t, labels_t = tf.constant(paths), tf.constant(labels, tf.int32)

  def example(i):
    position = global_position(i, host, hosts)
    index = tf_record_index(position, len(paths))
    image = tf_augment(tf.io.read_file(tf.gather(paths_t, index)), position,
                       spec['randaug'])
    return {'image': image, 'label': tf.gather(labels_t, index), 'position': position}
  ds = tf.data.Dataset.range(STEPS * BATCH // hosts)
  ds = ds.map(example, num_parallel_calls=THREADS, deterministic=True)
  ds = ds.batch(BATCH // hosts, drop_remainder=True)
  ds = ds.map(lambda b: {**b, 'image': preprocess.value_range(b['image'])},
              num_parallel_calls=THREADS, deterministic=True)
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = THREADS
  options.threading.max_intra_op_parallelism = 1
  return ds.prefetch(2).with_options(options).as_numpy_iterator()


# --- grain: per-example work written for it -----------------------------------------------

def crop_box(rng: np.random.Generator, h: int, w: int) -> tuple[int, int, int, int]:
  """(y, x, height, width) of an Inception crop: area uniform in AREA of the image, aspect
  (w/h) uniform in ASPECT, up to 100 tries, else the whole image (tf.image's rule)."""
  for _ in range(100):
    area = rng.uniform(*AREA) * h * w
    aspect = rng.uniform(*ASPECT)
    ch, cw = int(round(np.sqrt(area / aspect))), int(round(np.sqrt(area * aspect)))
    if 0 < ch <= h and 0 < cw <= w:
      return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
  return 0, 0, h, w


def pil_crop_flip(encoded: bytes, rng: np.random.Generator) -> np.ndarray:
  """Decode (whole image: PIL cannot decode a window), crop + resize in one PIL call,
  flip. BOX (area averaging) when shrinking, bilinear when enlarging, as
  preprocess.resize."""
  image = PIL.Image.open(io.BytesIO(encoded)).convert('RGB')
  y, x, ch, cw = crop_box(rng, image.height, image.width)
  resample = PIL.Image.BOX if (ch >= SIZE and cw >= SIZE) else PIL.Image.BILINEAR
  image = image.resize((SIZE, SIZE), resample, box=(x, y, x + cw, y + ch))
  if rng.random() < 0.5:
    image = image.transpose(PIL.Image.FLIP_LEFT_RIGHT)
  return np.asarray(image)


_TF_FUNCTIONS: dict = {}
_TF_LOCK = threading.Lock()


def tf_function(name: str):
  """One tf.function per process and variant (tf.functions do not pickle into grain's
  spawned workers; each builds its own). TF limited to 2 inter-op threads x 1 intra-op,
  like the tf.data pipeline's private pool of 2 with max_intra_op_parallelism 1."""
  with _TF_LOCK:
    if name not in _TF_FUNCTIONS:
      import tensorflow as tf
      from vit_jax.data import preprocess, randaugment
      try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(THREADS)
      except RuntimeError:  # TF already initialised in this process
        pass
      if name == 'randaugment':
        def fn(image, position):
          seed = preprocess.fold_seed(tf.stack([tf.constant(SEED, tf.int64), position]), 2)
          return randaugment.randaugment(image, *RANDAUG, seed)
        signature = [tf.TensorSpec([SIZE, SIZE, 3], tf.uint8), tf.TensorSpec([], tf.int64)]
      else:  # 'augment' / 'augment_ra': the whole per-example tf.data function
        def fn(encoded, position):
          return tf_augment(encoded, position, name == 'augment_ra')
        signature = [tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64)]
      _TF_FUNCTIONS[name] = tf.function(fn, input_signature=signature)
    return _TF_FUNCTIONS[name]


def augment_example(encoded: bytes, position: int, how: str) -> np.ndarray:
  """The grain variants' per-example work. The numpy generator is seeded by (SEED,
  position), so a crop is a function of the global position, not of grain's local
  index (which is what random_map would seed with)."""
  if how in ('tf', 'tf_ra'):
    return tf_function('augment_ra' if how == 'tf_ra' else 'augment')(
        encoded, np.int64(position)).numpy()
  image = pil_crop_flip(encoded, np.random.default_rng([SEED, position]))
  if how == 'pil_tfra':
    image = tf_function('randaugment')(image, np.int64(position)).numpy()
  return image


def read_example(position: int, perm, paths, labels, how: str) -> dict:
  index = int(perm[position])  # grain's shuffle: per-epoch index_shuffle of range(N)
  with open(paths[index], 'rb') as f:
    encoded = f.read()
  return {'image': augment_example(encoded, position, how), 'label': labels[index],
          'position': position}


def value_range(batch: dict) -> dict:
  """uint8 -> float32 [-1, 1], per batch (vectorised), in the consuming process: grain
  hands a worker's batch over in shared memory only if the batch is its last op."""
  return {**batch, 'image': batch['image'].astype(np.float32) * (2 / 255) - 1}


def grain_map_stream(paths, labels, spec: dict, host: int = 0, hosts: int = 1):
  """MapDataset: local index -> global position -> (shuffled record) example -> batch;
  threads (ReadOptions) or worker processes (mp_prefetch) over whole batches."""
  perm = grain.MapDataset.range(len(paths)).shuffle(seed=SEED).repeat()
  ds = grain.MapDataset.range(STEPS * BATCH // hosts)
  ds = ds.map(functools.partial(global_position, host=host, hosts=hosts))
  ds = ds.map(functools.partial(read_example, perm=perm, paths=paths, labels=labels,
                                how=spec['augment']))
  # Batch in the MapDataset: mp_prefetch gives worker w the elements w::workers of what
  # reaches to_iter_dataset, so a batch made after it would mix rows of other batches.
  ds = ds.batch(BATCH // hosts, drop_remainder=True)
  if spec['parallel'] == 'threads':
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=THREADS, prefetch_buffer_size=4))
  else:
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=1))
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=THREADS,
                                                     per_worker_buffer_size=2))
  return iter(it.map(value_range))


class FolderSource:
  """grain RandomAccessDataSource over the folder: record i -> file bytes and label."""

  def __init__(self, paths, labels):
    self._paths, self._labels = paths, labels

  def __len__(self):
    return len(self._paths)

  def __getitem__(self, index):
    with open(self._paths[index], 'rb') as f:
      return {'encoded': f.read(), 'label': self._labels[index]}

  def __repr__(self):  # grain checks checkpoints against repr(source)
    return f'FolderSource({len(self._paths)} files)'


class LoaderAugment(grain.transforms.RandomMap):
  """DataLoader operation; `rng` is the record's, Philox(seed + global sampler index)."""

  def random_map(self, element, rng):
    return {'image': pil_crop_flip(element['encoded'], rng), 'label': element['label']}


def grain_loader_stream(paths, labels, spec: dict, host: int = 0, hosts: int = 1):
  """grain.DataLoader: IndexSampler (one global shuffle, unsharded) with the sharding
  given to the loader (see invariance()), worker processes, PIL augmentation."""
  del spec  # one variant: PIL crop + flip
  sampler = grain.samplers.IndexSampler(len(paths), shuffle=True, seed=SEED)
  loader = grain.DataLoader(
      data_source=FolderSource(paths, labels), sampler=sampler,
      operations=[LoaderAugment(), grain.transforms.Batch(BATCH // hosts, drop_remainder=True)],
      worker_count=THREADS, worker_buffer_size=2,
      # grain's default is 16 reading threads and 500 records buffered per worker; the
      # map variants' budget instead: 1 reading thread, a batch of records.
      read_options=grain.ReadOptions(num_threads=1, prefetch_buffer_size=BATCH // hosts),
      shard_options=grain.sharding.ShardOptions(host, hosts))
  return (value_range(b) for b in loader)


# --- the variants -------------------------------------------------------------------------

BUILDERS = {'tfdata': tfdata_stream, 'grain_map': grain_map_stream,
            'grain_loader': grain_loader_stream}
CASES = {  # name -> kind, RandAugment?, per-example work, parallelism
    'tfdata': dict(kind='tfdata', randaug=False, augment='tf', parallel='tf.data threads'),
    'tfdata_ra': dict(kind='tfdata', randaug=True, augment='tf_ra',
                      parallel='tf.data threads'),
    'grain_pil_threads': dict(kind='grain_map', randaug=False, augment='pil',
                              parallel='threads'),
    'grain_pil_procs': dict(kind='grain_map', randaug=False, augment='pil', parallel='procs'),
    'grain_loader_pil_procs': dict(kind='grain_loader', randaug=False, augment='pil',
                                   parallel='procs'),
    'grain_tf_threads': dict(kind='grain_map', randaug=False, augment='tf',
                             parallel='threads'),
    'grain_tf_procs': dict(kind='grain_map', randaug=False, augment='tf', parallel='procs'),
    'grain_pil_tfra_threads': dict(kind='grain_map', randaug=True, augment='pil_tfra',
                                   parallel='threads'),
    'grain_pil_tfra_procs': dict(kind='grain_map', randaug=True, augment='pil_tfra',
                                 parallel='procs'),
    'grain_tf_ra_threads': dict(kind='grain_map', randaug=True, augment='tf_ra',
                                parallel='threads'),
    'grain_tf_ra_procs': dict(kind='grain_map', randaug=True, augment='tf_ra',
                              parallel='procs'),
}
WORK = {'tf': 'TF ops (project preprocess)', 'tf_ra': 'TF ops + project RandAugment',
        'pil': 'PIL + numpy (hand-written)',
        'pil_tfra': 'PIL + numpy, then project RandAugment via tf.function'}


def tree_cpu_seconds() -> float:
  """User + system CPU seconds of this process and its children (grain workers)."""
  me = psutil.Process()
  total = 0.0
  for p in [me] + me.children(recursive=True):
    try:
      t = p.cpu_times()
      total += t.user + t.system
    except psutil.NoSuchProcess:
      pass
  return total


def measure(case: str, root: str, batches: int, warmup: int) -> dict:
  """In the child: build the variant, time the first batch, then `batches` batches after
  `warmup` more (steady state: TF traced, grain workers started, buffers full)."""
  spec = CASES[case]
  if spec['kind'] == 'tfdata' or (spec['parallel'] == 'threads' and 'tf' in spec['augment']):
    import tensorflow  # pylint: disable=unused-import  # the import is not warm-up
  paths, labels = list_folder(root)
  start = time.perf_counter()
  it = BUILDERS[spec['kind']](paths, labels, spec)
  first = next(it)
  first_s = time.perf_counter() - start
  from_process_start = time.time() - psutil.Process().create_time()
  for _ in range(warmup):
    next(it)
  cpu0, t0 = tree_cpu_seconds(), time.perf_counter()
  for _ in range(batches):
    batch = next(it)
  seconds, cpu = time.perf_counter() - t0, tree_cpu_seconds() - cpu0
  image = batch['image']
  assert image.shape == (BATCH, SIZE, SIZE, 3) and image.dtype == np.float32, image.shape
  assert -1.0 <= image.min() and image.max() <= 1.0
  result = {
      'case': case, **spec, 'images_per_s': batches * BATCH / seconds,
      'images_per_cpu_s': batches * BATCH / cpu, 'cpu_utilisation': cpu / seconds,
      'first_batch_s': first_s, 'first_batch_from_process_start_s': from_process_start,
      'measured_images': batches * BATCH,
      'first_batch_sha256': hashlib.sha256(first['image'].tobytes()).hexdigest()[:16],
      'first_batch_positions': [int(p) for p in first.get('position', [])[:4]]}
  if hasattr(it, 'close'):
    it.close()  # grain: stop the worker processes
  return result


def sample_peak_rss(proc: subprocess.Popen, stop: threading.Event, out: dict):
  """Peak of the summed RSS of `proc` and all its descendants, sampled every 50 ms. Sums
  double-count shared pages (libraries mapped by several processes): an upper bound."""
  root = psutil.Process(proc.pid)
  peak = 0
  while not stop.is_set():
    total = 0
    try:
      for p in [root] + root.children(recursive=True):
        try:
          total += p.memory_info().rss
        except psutil.NoSuchProcess:
          pass
    except psutil.NoSuchProcess:
      break
    peak = max(peak, total)
    time.sleep(0.05)
  out['peak_rss_mib'] = peak / 2**20


def run_case(case: str, root: str, args) -> dict:
  """One variant in a fresh child process; the parent samples the child's memory."""
  result_file = os.path.join(root, f'{case}.json')
  cmd = [sys.executable, os.path.abspath(__file__), f'--_case={case}', f'--_root={root}',
         f'--_result={result_file}', f'--batches={args.batches}', f'--warmup={args.warmup}']
  env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'}
  load_before, wall = os.getloadavg(), time.perf_counter()
  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  stop, memory = threading.Event(), {}
  sampler = threading.Thread(target=sample_peak_rss, args=(proc, stop, memory))
  sampler.start()
  try:
    output, _ = proc.communicate(timeout=args.case_timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    output, _ = proc.communicate()
  stop.set()
  sampler.join()
  if proc.returncode != 0 or not os.path.exists(result_file):
    return {'case': case, **CASES[case], 'error': output.decode(errors='replace')[-3000:]}
  with open(result_file) as f:
    result = json.load(f)
  result.update(memory, child_wall_s=time.perf_counter() - wall,
                loadavg_before=load_before, loadavg_after=os.getloadavg())
  return result


# --- host-count invariance (record keys only, no images) ----------------------------------

def loader_keys(num_records: int, host: int, hosts: int, batches: int,
                shard_in_sampler: bool) -> list[np.ndarray]:
  """Record keys of a host's first local batches from grain.DataLoader + IndexSampler,
  with the sharding given to the sampler (as ShardByJaxProcess is usually passed) or to
  the loader (sampler unsharded)."""
  shard = grain.sharding.ShardOptions(shard_index=host, shard_count=hosts)
  sampler = grain.samplers.IndexSampler(
      num_records, shard_options=shard if shard_in_sampler else grain.sharding.NoSharding(),
      shuffle=True, seed=SEED)
  loader = grain.DataLoader(
      data_source=grain.sources.RangeDataSource(0, num_records, 1), sampler=sampler,
      operations=[grain.transforms.Batch(BATCH // hosts, drop_remainder=True)],
      worker_count=0, shard_options=None if shard_in_sampler else shard)
  it = iter(loader)
  return [np.asarray(next(it)) for _ in range(batches)]


def record_of(position: int, perm) -> int:
  return int(perm[position])


def map_keys(num_records: int, host: int, hosts: int, batches: int) -> list[np.ndarray]:
  """The same for grain_map_stream's index arithmetic (no reading)."""
  perm = grain.MapDataset.range(num_records).shuffle(seed=SEED).repeat()
  ds = grain.MapDataset.range(batches * BATCH // hosts)
  ds = ds.map(functools.partial(global_position, host=host, hosts=hosts))
  ds = ds.map(functools.partial(record_of, perm=perm)).batch(BATCH // hosts)
  return [np.asarray(ds[k]) for k in range(batches)]


def tfdata_keys(num_records: int, host: int, hosts: int, batches: int) -> list[np.ndarray]:
  """The same for tfdata_stream's index arithmetic."""
  import tensorflow as tf
  ds = tf.data.Dataset.range(batches * BATCH // hosts).map(
      lambda i: tf_record_index(global_position(i, host, hosts), num_records))
  return list(ds.batch(BATCH // hosts).as_numpy_iterator())


def compare_host_counts(keys, num_records: int, batches: int) -> dict:
  """Global batch k for n=2 := host 0's k-th local batch, then host 1's; compared with
  the k-th batch of n=1 as a set and in order."""
  one = keys(num_records, 0, 1, batches)
  two = [keys(num_records, h, 2, batches) for h in range(2)]
  union = [np.concatenate([two[0][k], two[1][k]]) for k in range(batches)]
  same_set = [bool(np.array_equal(np.sort(one[k]), np.sort(union[k]))) for k in range(batches)]
  stream = np.concatenate(one)
  return {
      'num_records': num_records, 'global_batch': BATCH, 'batches': batches,
      'same_set_per_batch': same_set, 'same_set': all(same_set),
      'same_order': all(np.array_equal(one[k], union[k]) for k in range(batches)),
      # A batch across an epoch boundary may hold a record twice: count with multiplicity.
      'shared_keys_per_batch': [sum((collections.Counter(one[k].tolist()) &
                                     collections.Counter(union[k].tolist())).values())
                                for k in range(batches)],
      'epoch0_is_permutation': bool(np.array_equal(np.sort(stream[:num_records]),
                                                   np.arange(num_records))),
      'n1_batch0_first6': one[0][:6].tolist(), 'n2_host0_batch0_first6': two[0][0][:6].tolist(),
      'n2_host1_batch0_first6': two[1][0][:6].tolist()}


def invariance(num_records: int) -> dict:
  batches = -(-2 * num_records // BATCH)  # two epochs' worth, across epoch boundaries
  routes = {
      'grain IndexSampler(shard_options=ShardOptions(h, n)) + DataLoader':
          functools.partial(loader_keys, shard_in_sampler=True),
      'grain IndexSampler(NoSharding) + DataLoader(shard_options=ShardOptions(h, n))':
          functools.partial(loader_keys, shard_in_sampler=False),
      'grain MapDataset shuffle + global_position (grain_map_stream)': map_keys,
      'tf.data index_shuffle + global_position (tfdata_stream)': tfdata_keys}
  return {name: compare_host_counts(keys, num_records, batches)
          for name, keys in routes.items()}


# --- what each approach needed by hand ------------------------------------------------------

HAND_WRITTEN = {  # the functions of this file each approach runs (shared ones in several)
    'tf.data (project TF ops)': ['global_position', 'tf_record_index', 'tf_augment',
                                 'tfdata_stream'],
    'grain MapDataset + PIL/numpy': ['global_position', 'crop_box', 'pil_crop_flip',
                                     'augment_example', 'read_example', 'value_range',
                                     'grain_map_stream'],
    'grain DataLoader + PIL/numpy': ['crop_box', 'pil_crop_flip', 'value_range',
                                     'FolderSource', 'LoaderAugment', 'grain_loader_stream'],
    'grain MapDataset + project TF ops via tf.function': [
        'global_position', 'tf_augment', 'tf_function', 'augment_example', 'read_example',
        'value_range', 'grain_map_stream'],
}


def code_lines(name: str) -> int:
  """Lines of code of a function or class of this module: no docstrings, comments or
  blank lines."""
  source = textwrap.dedent(inspect.getsource(globals()[name]))
  skip = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node):
      doc = node.body[0]
      skip.update(range(doc.lineno, doc.end_lineno + 1))
  lines = source.splitlines()
  return sum(1 for i, line in enumerate(lines, 1)
             if i not in skip and line.strip() and not line.strip().startswith('#'))


def hand_written() -> dict:
  return {approach: {'lines': sum(code_lines(n) for n in names),
                     'per_function': {n: code_lines(n) for n in names}}
          for approach, names in HAND_WRITTEN.items()}


def hardware() -> dict:
  """CPU model and the SIMD flags that matter for JPEG decoding and resizing."""
  model, flags = '?', set()
  with open('/proc/cpuinfo') as f:
    for line in f:
      if line.startswith('model name'):
        model = line.split(':', 1)[1].strip()
      elif line.startswith('flags'):
        flags = set(line.split(':', 1)[1].split())
  wanted = ['sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'bmi2', 'avx512f', 'avx512bw',
            'avx512_vnni', 'amx_tile']
  import tensorflow as tf
  return {'cpu_model': model, 'cores': os.cpu_count(),
          'simd_flags_present': [f for f in wanted if f in flags],
          'simd_flags_absent': [f for f in wanted if f not in flags],
          'python': sys.version.split()[0], 'tensorflow': tf.__version__,
          'grain': grain.__version__, 'pillow': PIL.__version__, 'numpy': np.__version__}


# --- report -------------------------------------------------------------------------------

def table(results: list[dict]) -> str:
  rows = ['| variant | RandAugment | per-example work | parallelism (2) | images/s | '
          'images/s per core | images / CPU-s | peak RSS MiB | first batch s '
          '(from process start) | load avg before -> after |', '|' + '---|' * 10]
  for r in results:
    if 'error' in r:
      rows.append(f"| {r['case']} | {'yes' if r['randaug'] else 'no'} | "
                  f"{WORK[r['augment']]} | {r['parallel']} | failed | | | | | |")
      continue
    rows.append(
        f"| {r['case']} | {'yes' if r['randaug'] else 'no'} | {WORK[r['augment']]} | "
        f"{r['parallel']} | {r['images_per_s']:.0f} | {r['images_per_s'] / CORES:.0f} | "
        f"{r['images_per_cpu_s']:.0f} | {r['peak_rss_mib']:.0f} | "
        f"{r['first_batch_s']:.1f} ({r['first_batch_from_process_start_s']:.1f}) | "
        f"{r['loadavg_before'][0]:.2f} -> {r['loadavg_after'][0]:.2f} |")
  return '\n'.join(rows)


def same_output(results: list[dict]) -> dict:
  """grain map variants with the same per-example work: threads and processes must give
  the same first batch (same seeds, same order)."""
  by = {}
  for r in results:
    if 'error' not in r and r['kind'] == 'grain_map':
      by.setdefault(r['augment'], {})[r['parallel']] = r['first_batch_sha256']
  return {k: {'hashes': v, 'equal': len(set(v.values())) == 1} for k, v in by.items()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', help='JSON results file (required)')
  parser.add_argument('--batches', type=int, default=8, help='timed batches per variant')
  parser.add_argument('--warmup', type=int, default=2, help='untimed batches after the 1st')
  parser.add_argument('--classes', type=int, default=10)
  parser.add_argument('--per_class', type=int, default=40)
  parser.add_argument('--cases', default=','.join(CASES), help='comma-separated variants')
  parser.add_argument('--case_timeout', type=int, default=240, help='seconds per variant')
  parser.add_argument('--_case'), parser.add_argument('--_root')
  parser.add_argument('--_result')
  args = parser.parse_args()
  # grain reads absl flags (e.g. for its worker processes); with argparse as the parser,
  # absl's must still be marked parsed (to their defaults) or grain raises.
  absl_flags.FLAGS(sys.argv[:1])
  if args._case:  # pylint: disable=protected-access  # child process: one variant
    # Run this file's functions from it imported by name, not as __main__: grain's
    # worker processes get the pipeline through cloudpickle, which pickles __main__'s
    # functions by value (with their globals, a lock among them) but a module's by name.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    module = importlib.import_module(os.path.splitext(os.path.basename(__file__))[0])
    result = module.measure(args._case, args._root, args.batches, args.warmup)
    with open(args._result, 'w') as f:
      json.dump(result, f)
    return
  if not args.out:
    parser.error('--out is required')
  report = {'loadavg_start': os.getloadavg(), 'batch': BATCH, 'size': SIZE,
            'threads_or_workers': THREADS, 'cores': CORES,
            'timed_batches': args.batches, 'warmup_batches': args.warmup}
  root = tempfile.mkdtemp(prefix='grain_vs_tfdata_')
  try:
    report['data'] = make_jpegs(root, args.classes, args.per_class)
    print('data:', report['data'], flush=True)
    results = []
    for case in args.cases.split(','):
      results.append(run_case(case, root, args))
      print(case, {k: v for k, v in results[-1].items() if k not in CASES[case]}, flush=True)
    report['invariance'] = {n: invariance(n) for n in (report['data']['images'], 1001)}
  finally:
    shutil.rmtree(root, ignore_errors=True)
  report.update(results=results, same_output_threads_vs_procs=same_output(results),
                hand_written_lines=hand_written(), hardware=hardware(),
                loadavg_end=os.getloadavg())
  with open(args.out, 'w') as f:
    json.dump(report, f, indent=1)
  print(table(results))
  print(json.dumps({'invariance': report['invariance'],
                    'same_output': report['same_output_threads_vs_procs'],
                    'hand_written': report['hand_written_lines']}, indent=1))


if __name__ == '__main__':
  main()

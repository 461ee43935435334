"""Shared test setup: 8 simulated CPU devices and a tiny offline demo dataset.

XLA_FLAGS must be set before jax is first imported, and pytest imports this file before
any test module, so every test sees 8 CPU devices.
"""
import os

if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # noqa: E402

TINY_DEMO = ('vit_demo/upstream_tiny', 'vit_demo/downstream_tiny', 'vit_demo/multilabel_tiny')


@pytest.fixture(scope='session')
def demo_data_dir(tmp_path_factory) -> str:
  """A tfds data_dir holding the tiny demo datasets (96/64 train, 50 test, 32 px).

  Rendering them takes ~1 s; the full `vit_demo/upstream` is never built by tests.
  """
  import tensorflow_datasets as tfds
  import vit_jax.datasets  # noqa: F401  (registers vit_demo)
  from vit_jax.data import tfds_prepare
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  for name in TINY_DEMO:  # in the format vit_jax prepares them: ArrayRecord.
    tfds.builder(name, data_dir=data_dir,
                 file_format=tfds_prepare.FILE_FORMAT).download_and_prepare()
  return data_dir


@pytest.fixture(scope='session')
def imagenet2012_data_dir(tmp_path_factory):
  """tests.imagenet_archives.Imagenet2012Data: .data_dir (tfds data_dir with imagenet2012
  prepared by tfds's real builder, no mocking) and .manual_dir (its official-layout
  archives: 12 real synsets x 8 train JPEGs, val files 1..10 with their official labels;
  40x48 px). ~5 s on 2 cores; see .prepare_seconds.
  """
  from tests import imagenet_archives
  return imagenet_archives.prepare_imagenet2012(str(tmp_path_factory.mktemp('imagenet2012')))

"""models/attention_chunks.py: when attention is split, into how many pieces, and that
the split really happens (results are compared in test_fast_path.py)."""
import jax
import jax.numpy as jnp
import pytest

from vit_jax.configs import common
from vit_jax import models
from vit_jax import run_config
from vit_jax import sharding
from vit_jax.models import attention_chunks


@pytest.mark.parametrize('backend, cores, expected', [
    ('cpu', 2, 8),   # XLA threads on 2 cores: 8 chunks of 2 (the measured win).
    ('cpu', 1, 1),   # a single core: nothing to fill.
    ('gpu', 16, 1),  # accelerators: one batched kernel.
])
def test_default_chunks_follow_the_backend_and_cores(monkeypatch, backend, cores,
                                                     expected):
  monkeypatch.setattr(jax, 'default_backend', lambda: backend)
  monkeypatch.setattr(attention_chunks.peaks, 'host_cpu_cores', lambda: cores)
  assert attention_chunks.resolve(None, batch=16) == expected


def test_one_thread_per_device_meshes_get_one_chunk():
  """run_config.create_model: a mesh of several CPU devices in this process is compiled
  with one XLA thread each (cpu_devices), so attention is not split there; a
  one-device mesh keeps the default, and an explicit override always wins."""
  config = common.get_config()
  config.model, config.image_size = 'testing', 32
  one, all_devices = (sharding.make_mesh(d) for d in (jax.devices()[:1], None))
  assert run_config.create_model(config, 3, mesh=one).attention_chunks is None
  assert run_config.create_model(config, 3, mesh=all_devices).attention_chunks == 1
  assert run_config.create_model(config, 3).attention_chunks is None
  config.model_overrides.attention_chunks = 2
  assert run_config.create_model(config, 3, mesh=all_devices).attention_chunks == 2


def test_default_cpu_chunks_hold_two_examples_up_to_eight_chunks(monkeypatch):
  monkeypatch.setattr(jax, 'default_backend', lambda: 'cpu')
  monkeypatch.setattr(attention_chunks.peaks, 'host_cpu_cores', lambda: 2)
  sizes = {b: attention_chunks.resolve(None, batch=b) for b in (1, 2, 5, 8, 16, 256)}
  assert sizes == {1: 1, 2: 1, 5: 3, 8: 4, 16: 8, 256: 8}


def test_explicit_chunks_are_capped_by_the_batch():
  assert attention_chunks.resolve(8, batch=3) == 3
  assert attention_chunks.resolve(4, batch=16) == 4
  assert attention_chunks.resolve(1, batch=16) == 1


@pytest.mark.parametrize('bad', [0, -2, 2.5, True, '4'])
def test_bad_chunks_are_rejected_when_the_model_is_created(bad):
  for name in ('testing', 'Swin-testing'):
    with pytest.raises(ValueError, match=f'attention_chunks={bad!r}: use a positive int'):
      models.create(name, num_classes=3, image_size=32, attention_chunks=bad)


def _attention_dots(name: str, chunks: int, batch: int = 5) -> int:
  """dot_general count of one forward pass (two layers, bf16 custom-VJP dots inlined)."""
  net = models.create(name, num_classes=3, image_size=32, attention_chunks=chunks)
  images = jnp.zeros((batch, 32, 32, 3))
  params = jax.eval_shape(lambda x: net.init(jax.random.key(0), x, train=False), images)
  jaxpr = jax.make_jaxpr(lambda p, x: net.apply(p, x, train=False))(params, images)
  return str(jaxpr).count('dot_general[')


@pytest.mark.parametrize('name, blocks', [('testing', 2), ('Swin-testing', 4)])
def test_chunks_split_each_attention_into_independent_dots(name, blocks):
  """Each block's two attention matmuls (QK^T, PV) appear once per chunk; the dense
  layers do not multiply."""
  one, three = _attention_dots(name, 1), _attention_dots(name, 3)
  assert three - one == blocks * 2 * (3 - 1), (one, three)


def test_attention_maps_are_sown_whole_even_with_chunks():
  """With 'intermediates' mutable (attention-map analysis) attention runs unsplit:
  one (batch, heads, q, k) map per layer."""
  net = models.create('testing', num_classes=3, image_size=32, attention_chunks=4)
  images = jax.random.normal(jax.random.key(0), (6, 32, 32, 3))
  params = net.init(jax.random.key(1), images[:1], train=False)
  _, state = net.apply(params, images, train=False, mutable=['intermediates'])
  maps = [x for x in jax.tree.leaves(state) if x.ndim == 4]  # (batch, heads, q, k)
  assert [m.shape for m in maps] == [(6, 2, 65, 65)] * 2

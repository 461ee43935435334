"""Analysis numerics against hand-built inputs with known answers."""
import numpy as np

from vit_jax.analysis import attention_maps
from vit_jax.analysis import embeddings
from vit_jax.models import vit


def test_rollout_of_identity_attention_gives_a_uniform_class_map():
  tokens = 1 + 3 * 4
  layers = [np.broadcast_to(np.eye(tokens), (2, 3, tokens, tokens))] * 4
  joint = attention_maps.attention_rollout(layers)
  np.testing.assert_allclose(joint, np.broadcast_to(np.eye(tokens), joint.shape))
  cls_map = attention_maps.class_token_map(joint, (3, 4))
  assert cls_map.shape == (2, 3, 4)
  np.testing.assert_allclose(cls_map, 0.0)  # identity: cls attends only to itself.
  uniform = [np.full((1, 2, tokens, tokens), 1.0 / tokens)] * 3
  cls_map = attention_maps.class_token_map(attention_maps.attention_rollout(uniform),
                                           (3, 4))
  np.testing.assert_allclose(cls_map, cls_map.flat[0])  # every patch the same weight.


def test_rollout_by_hand_for_two_tokens_two_layers():
  a1 = np.array([[[[0.5, 0.5], [0.0, 1.0]]]])
  a2 = np.array([[[[1.0, 0.0], [0.5, 0.5]]]])
  # (A + I) / 2 row-normalised: A1' = [[.75, .25], [0, 1]]; A2' = [[1, 0], [.25, .75]].
  expected = np.array([[1.0, 0.0], [0.25, 0.75]]) @ np.array([[0.75, 0.25], [0.0, 1.0]])
  np.testing.assert_allclose(attention_maps.attention_rollout([a1, a2])[0], expected)


def test_mean_attention_distance_by_hand():
  # 1x3 grid of 16 px patches, no class token. Head 0 attends to itself (distance 0);
  # head 1: query 0 -> key 2 (32 px), query 1 -> keys 0 and 2 half each (16 px),
  # query 2 -> key 0 (32 px): mean (32 + 16 + 32) / 3.
  eye = np.eye(3)
  far = np.array([[0, 0, 1], [0.5, 0, 0.5], [1, 0, 0]], float)
  weights = np.stack([eye, far])[None]  # (1, 2, 3, 3)
  dist = attention_maps.mean_attention_distance(weights, (1, 3), 16, num_prefix_tokens=0)
  np.testing.assert_allclose(dist, [0.0, 80.0 / 3])


def test_sincos_posemb_similarity_has_row_and_column_bands():
  grid = (6, 6)
  posemb = np.concatenate([np.zeros((1, 32)), vit.sincos2d_posemb(grid, 32)])[None]
  sim = embeddings.posemb_similarity(posemb, grid)
  assert sim.shape == (6, 6, 6, 6)
  np.testing.assert_allclose(np.diagonal(sim.reshape(36, 36)), 1.0)
  # Half the channels encode x, half y: positions in the same row (or column) share
  # half the embedding, so they are more similar than positions in neither.
  centre = sim[2, 3]
  same_row, same_col = centre[2, [0, 5]], centre[[0, 5], 3]
  neither = centre[[0, 5], [0, 0]]
  assert same_row.min() > neither.max() and same_col.min() > neither.max()
  np.testing.assert_allclose(sim, sim.transpose(2, 3, 0, 1))  # symmetric.


def test_filter_pca_recovers_a_known_rank_one_kernel():
  rng = np.random.default_rng(0)
  pattern = rng.normal(size=(4, 4, 3))
  pattern /= np.linalg.norm(pattern)
  kernel = pattern[..., None] * rng.normal(size=(1, 1, 1, 50))  # (4, 4, 3, 50)
  components, explained = embeddings.filter_principal_components(kernel, count=3)
  assert components.shape == (3, 4, 4, 3)
  assert explained[0] > 0.999
  np.testing.assert_allclose(abs(np.sum(components[0] * pattern)), 1.0, atol=1e-6)

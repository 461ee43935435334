"""The ViT / hybrid family's hooks (`registry.Family`) for `VisionTransformer`.

Checkpoint adaptation and the trained resolution are the position-embedding rules of
vit_posemb.py; the rest is what the family's fields decide (class token, ResNet stem,
position-embedding kind).
"""
from __future__ import annotations

from vit_jax.models import registry
from vit_jax.models import vit_posemb
from vit_jax.models.vit import VisionTransformer


def file_fields(flat: dict) -> dict:
  """A published file fixes the classifier: a 'cls' param means a class token."""
  return {'classifier': 'token' if 'cls' in flat else 'gap'}


def patch_drop(model: VisionTransformer) -> str:
  """Dropped patch tokens are removed from the sequence (VisionTransformer.patch_keep)."""
  if model.resnet:
    return 'tokens removed (hybrid: ResNet feature cells)'
  return 'tokens removed'


def check_analysis(what: str, model: VisionTransformer) -> None:
  """Raises ValueError where `analyze <what>` needs a field the model does not have."""
  if what == 'patch-drop':
    patch_drop(model)
    return
  if what == 'attention' and model.classifier != 'token':
    raise ValueError('attention maps follow the class token; the model uses '
                     "classifier='gap'")
  if what == 'filters' and model.resnet is not None:
    raise ValueError('filters: a hybrid embeds ResNet features, not pixels; '
                     'its 1x1 "patch" filters have no RGB picture')
  if what == 'posemb' and model.posemb != 'learned':
    raise ValueError(f'posemb: the model uses posemb={model.posemb!r}; only '
                     'learned position embeddings can be analysed')


HOOKS = registry.Family(
    name='ViT',
    adapt_checkpoint=vit_posemb.adapt_pretrained,
    trained_image_size=vit_posemb.trained_image_size,
    file_fields=file_fields,
    patch_drop=patch_drop,
    check_analysis=check_analysis)

registry.register_family(VisionTransformer, HOOKS)

"""The ViT / hybrid family's hooks (`registry.Family`) for `VisionTransformer`.

Checkpoint adaptation is the position-embedding rules of vit_posemb.py and the
patch-embedding resize of vit_patch_resize.py (FlexiViT); the trained resolution is
vit_posemb.py's; the rest is what the family's fields decide (class token, ResNet stem,
position-embedding kind).
"""
from __future__ import annotations

from vit_jax.models import registry
from vit_jax.models import vit_patch_resize
from vit_jax.models import vit_posemb
from vit_jax.models.vit import VisionTransformer


def adapt_checkpoint(flat: dict, flat_init: dict, model: VisionTransformer,
                     source_image_size=None, method: str = 'bilinear', *,
                     patch_resize_method: str = 'pi',
                     source_model=None) -> tuple[dict, list[str]]:
  """Checkpoint params (flat 'a/b' keys) fitted to `model`'s token grid and patch.

  method: the position-embedding resampling (vit_posemb.resample_posemb).
  patch_resize_method: 'pi' | 'bilinear', for an `embedding/kernel` whose patch differs
    from the model's (vit_patch_resize.resample_patch_embedding).
  The position embedding goes first: its source grid needs the checkpoint's own
  stride, read from the kernel before it is resized. `source_model` is not needed:
  the kernel and `source_image_size` give the source geometry.
  """
  del source_model
  flat, notes = vit_posemb.adapt_pretrained(flat, flat_init, model, source_image_size,
                                            method)
  flat, more = vit_patch_resize.adapt_patch_embedding(flat, flat_init,
                                                      patch_resize_method)
  return flat, notes + more


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
  if what == 'patch-resize':  # every ViT and hybrid has an embedding/kernel to resize.
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
    adapt_checkpoint=adapt_checkpoint,
    trained_image_size=vit_posemb.trained_image_size,
    file_fields=file_fields,
    patch_drop=patch_drop,
    check_analysis=check_analysis)

registry.register_family(VisionTransformer, HOOKS)

"""Forward GMACs per image as the papers and official READMEs publish them ("FLOPs" there
count multiply-accumulates), for `python -m vit_jax.models` to print next to ours.

Keyed by (variant, image side, window or None). Sources:
  [SW1] Swin paper (Liu et al. 2021, arXiv 2103.14030) Table 1(a) / official README.
  [SW2] Swin V2 paper (Liu et al. 2022, arXiv 2111.09883) / official README
        ("ImageNet-1K" and "ImageNet-22K pretrained" model tables).
  [VIT] timm's model table for the ViT-B/16 and ViT-L/16 384 px fine-tuned weights.
"""
from __future__ import annotations

PUBLISHED_GMACS = {
    ('ViT-B/16', 384, None): 55.4,  # [VIT]
    ('ViT-L/16', 384, None): 190.7,  # [VIT]
    ('Swin-T', 224, 7): 4.5,  # [SW1]
    ('Swin-S', 224, 7): 8.7,  # [SW1]
    ('Swin-B', 224, 7): 15.4,  # [SW1]
    ('Swin-B', 384, 12): 47.0,  # [SW1]
    ('Swin-L', 224, 7): 34.5,  # [SW1]
    ('Swin-L', 384, 12): 104.0,  # [SW1]
    ('SwinV2-T', 256, 8): 5.9,  # [SW2]
    ('SwinV2-T', 256, 16): 6.6,  # [SW2]
    ('SwinV2-S', 256, 8): 11.5,  # [SW2]
    ('SwinV2-S', 256, 16): 12.6,  # [SW2]
    ('SwinV2-B', 256, 8): 20.3,  # [SW2]
    ('SwinV2-B', 256, 16): 21.8,  # [SW2]
    ('SwinV2-B', 384, 24): 54.7,  # [SW2]
    ('SwinV2-L', 384, 24): 115.4,  # [SW2]
}


def published_gmacs(name: str, image_size: tuple[int, int],
                    window: int | None) -> float | None:
  """The published figure for a square image of this variant, or None."""
  if image_size[0] != image_size[1]:
    return None
  return PUBLISHED_GMACS.get((name, image_size[0], window))

"""Checkpoints, one direction from readers to the fit:

  training.py    our run directories: orbax TrainState checkpoints (save, restore, read)
  published.py   published files (.npz ViT / hybrid; torch suffixes -> swin_torch.py),
                 flat <-> nested params, key matching by name
  swin_torch.py  official / timm Swin torch and safetensors state dicts
  fit.py         the one fit of checkpoint params into a model (imports the readers;
                 they never import it)
"""

"""The dicts of tensors that pass between layers, named once (a leaf: torch only).

A batch goes from the data to the models' losses; a prediction goes from a model (``Recipe.predict``) or the gray
baseline to the metrics. Both layers spell these types, and the metrics may not import the models (imports run
one way), so they live here, below both.
"""

from __future__ import annotations

import torch

#: a batch on the training device: ``L`` (B,1,H,W) CIE L* in [0, 100], ``ab`` (B,2,H,W) a*, b* in Lab units,
#: ``label`` (B,) int64 class index or -1; a recipe's ``prepare_batch`` may add its own targets
Batch = dict[str, torch.Tensor]

#: what a colorizer returns: ``"ab"`` (B,2,H,W) a*b* in Lab units at the input's size; ``"palette"`` (B,256)
#: where the model predicts one (PalGAN family)
Prediction = dict[str, torch.Tensor]

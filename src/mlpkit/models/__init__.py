"""Models built from :mod:`mlpkit.blocks`; each module and subpackage imports torch when imported.

- :mod:`mlpkit.models.vit`: the Vision Transformer (Dosovitskiy et al. 2021), its blocks' MLPs
  :class:`mlpkit.blocks.MLP`; ``mlpkit train --model vit`` trains it on images.
- :mod:`mlpkit.models.ctr`: the classic click-through-rate models (LR, FM, FFM, DNN, IPNN, NFM,
  DeepFM, DCN, Transformer&Deep) on a :class:`~mlpkit.data.fields.FieldSpec`.

This package itself imports nothing, so ``import mlpkit.models`` stays free of torch.
"""

"""Model zoos built from :mod:`mlpkit.blocks`; each subpackage imports torch when imported.

- :mod:`mlpkit.models.ctr`: the classic click-through-rate models (LR, FM, FFM, DNN, IPNN, NFM,
  DeepFM, DCN, Transformer&Deep) on a :class:`~mlpkit.data.fields.FieldSpec`.

This package itself imports nothing, so ``import mlpkit.models`` stays free of torch.
"""

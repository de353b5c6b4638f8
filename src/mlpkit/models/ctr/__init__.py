"""The classic CTR models on a :class:`~mlpkit.data.fields.FieldSpec`, by name.

Every model takes ``(spec, *, keyword arguments)`` with shared names (``embedding_dim``,
``hidden_features``, ``dropout``, ``batch_norm``, ``act_layer``, ``embedding_layout``), maps the named
batch of :mod:`mlpkit.data.fields` to logits of shape (B,), and tells its embedding parameters
from the others (:meth:`~mlpkit.models.ctr._base.CTRModel.embedding_parameters`), so the trainer
can regularize them as BARS does. The defaults are BARS's Frappe_x1 runs, recorded per model as
``BARS_FRAPPE_X1`` (:data:`BARS_FRAPPE_X1` collects them); Transformer&Deep has none and borrows
DeepFM's tower.

Importing this package imports torch.

Examples
--------
>>> from mlpkit.data.fields import Field, FieldSpec
>>> spec = FieldSpec(tuple(Field(f"f{i}", "categorical", v) for i, v in enumerate((955, 4083, 351))))
>>> model = build_ctr_model("fm", spec, embedding_dim=10)
>>> sum(p.numel() for p in model.parameters())   # 5,389 · (10 + 1) + 1, BARS's FM count on Frappe_x1
59280
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from mlpkit.data.fields import FieldSpec
from mlpkit.errors import ConfigError
from mlpkit.models.ctr import dcn, dcnv2, deepfm, dnn, ffm, fm, ipnn, lr, nfm
from mlpkit.models.ctr._base import BarsRun, CTRModel
from mlpkit.models.ctr.dcn import DCN
from mlpkit.models.ctr.dcnmix import DCNMix, DCNMixStacked
from mlpkit.models.ctr.dcnv2 import DCNV2, DCNV2Stacked
from mlpkit.models.ctr.deepfm import DeepFM
from mlpkit.models.ctr.dnn import DNN
from mlpkit.models.ctr.ffm import FFM
from mlpkit.models.ctr.fm import FM
from mlpkit.models.ctr.ipnn import IPNN
from mlpkit.models.ctr.lr import LR
from mlpkit.models.ctr.nfm import NFM
from mlpkit.models.ctr.transformer_deep import TransformerDeep

__all__ = [
    "BARS_FRAPPE_X1",
    "CTR_MODELS",
    "DCN",
    "DCNV2",
    "DNN",
    "FFM",
    "FM",
    "IPNN",
    "LR",
    "NFM",
    "BarsRun",
    "CTRModel",
    "DCNMix",
    "DCNMixStacked",
    "DCNV2Stacked",
    "DeepFM",
    "TransformerDeep",
    "build_ctr_model",
    "model_arguments",
]

CTR_MODELS: dict[str, type[CTRModel]] = {
    "lr": LR,
    "fm": FM,
    "ffm": FFM,
    "dnn": DNN,
    "ipnn": IPNN,
    "nfm": NFM,
    "deepfm": DeepFM,
    "dcn": DCN,
    "dcnv2": DCNV2,
    "dcnv2-stacked": DCNV2Stacked,
    "dcnmix": DCNMix,
    "dcnmix-stacked": DCNMixStacked,
    "transformer-deep": TransformerDeep,
}
"""The CTR models by registry name."""

BARS_FRAPPE_X1: dict[str, BarsRun] = {
    "lr": lr.BARS_FRAPPE_X1,
    "fm": fm.BARS_FRAPPE_X1,
    "ffm": ffm.BARS_FRAPPE_X1,
    "dnn": dnn.BARS_FRAPPE_X1,
    "ipnn": ipnn.BARS_FRAPPE_X1,
    "nfm": nfm.BARS_FRAPPE_X1,
    "deepfm": deepfm.BARS_FRAPPE_X1,
    "dcn": dcn.BARS_FRAPPE_X1,
    "dcnv2": dcnv2.BARS_FRAPPE_X1,
}
"""The BARS Frappe_x1 run behind each model's defaults: its config file, regularizers, learning rate,
batch size, patience, parameter count and test AUC. Transformer&Deep, the stacked DCN-V2 and DCN-Mix
have no BARS Frappe_x1 run (the trainer uses DCN-V2's for the last three)."""


def _keywords(cls: type[CTRModel]) -> list[str]:
    """The keyword arguments ``cls`` takes: its own, or (a variant whose ``__init__`` passes
    ``**kwargs`` on) the nearest parent's, less those it pins (``fixed_arguments``)."""
    for klass in cls.__mro__:
        params = inspect.signature(klass.__init__).parameters  # type: ignore[misc]
        keywords = {p for p, info in params.items() if info.kind is inspect.Parameter.KEYWORD_ONLY}
        if keywords:
            return sorted(keywords - set(cls.fixed_arguments))
    return []


def model_arguments(name: str) -> list[str]:
    """The keyword arguments the CTR model ``name`` takes (``embedding_dim``, ``hidden_features``, ...)."""
    return _keywords(CTR_MODELS[name])


def _closest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def build_ctr_model(name: str, spec: FieldSpec, **kwargs: Any) -> CTRModel:
    """Build the CTR model registered as ``name`` on ``spec`` with keyword arguments.

    Parameters
    ----------
    name : str
        A key of :data:`CTR_MODELS`.
    spec : FieldSpec
    **kwargs
        The model's keyword arguments; any it does not take is refused.

    Returns
    -------
    CTRModel

    Raises
    ------
    ConfigError
        For an unknown model name or keyword argument, naming the valid ones and the closest.
    """
    if name not in CTR_MODELS:
        valid = sorted(CTR_MODELS)
        hint = _closest(name, valid) if isinstance(name, str) else ""
        raise ConfigError(f"unknown CTR model {name!r}{hint}; the models are {valid}")
    cls = CTR_MODELS[name]
    accepted = _keywords(cls)
    for key in sorted(kwargs):
        if key not in accepted:
            others = any(key in _keywords(other) for other in CTR_MODELS.values())
            hint = " (other CTR models do)" if others else _closest(key, accepted)
            raise ConfigError(f"CTR model {name!r} takes no argument {key!r}{hint}; it takes {accepted}")
    return cls(spec, **kwargs)

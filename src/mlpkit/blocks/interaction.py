"""Feature-interaction layers of the classic CTR models, on field embeddings of shape (B, F, E).

Every layer is vectorised: no Python loop over fields or field pairs.

- :class:`FMInteraction`: the factorization machine's pairwise term
  ``sum_{i<j} <v_i, v_j> = 1/2 sum_e ((sum_i v_ie)² - sum_i v_ie²)`` in O(F·E)
  (Rendle, ICDM 2010, Lemma 3.1), (B, F, E) -> (B, 1).
- :class:`BiInteraction`: NFM's Bi-Interaction pooling ``sum_{i<j} v_i ⊙ v_j``, the same identity
  without the sum over E (He & Chua, SIGIR 2017, sec. 3.1), (B, F, E) -> (B, E).
- :class:`InnerProduct`: IPNN's F(F-1)/2 pairwise inner products ``<v_i, v_j>``, i < j, in
  ``torch.triu_indices`` order (Qu et al., ICDM 2016, sec. III), (B, F, E) -> (B, F(F-1)/2).
- :class:`FFMInteraction`: the field-aware FM term ``sum_{i<j} <v_{i,f_j}, v_{j,f_i}>`` (Juan et al.,
  RecSys 2016, the φ_FFM model of sec. 3), where each field holds one vector per other field,
  (B, F, F-1, E) -> (B, 1).
- :class:`CrossNetV1`: DCN's cross network ``x_{l+1} = x_0 (x_l · w_l) + b_l + x_l``
  (Wang et al., ADKDD 2017, eq. 3), (B, D) -> (B, D).

The cross networks of DCN-V2 (``CrossNetV2``, ``CrossNetMix``) take the same
``(in_features, num_layers)`` arguments and the same (B, D) -> (B, D) shapes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mlpkit._checks import check_positive_int

__all__ = ["BiInteraction", "CrossNetV1", "FFMInteraction", "FMInteraction", "InnerProduct"]


def _check_fields(name: str, x: Tensor, ndim: int, num_fields: int | None = None) -> None:
    if x.ndim != ndim or (num_fields is not None and x.shape[1] != num_fields):
        shape = "(B, F, E)" if ndim == 3 else "(B, F, F-1, E)"
        fields = f" with F = {num_fields}" if num_fields is not None else ""
        raise ValueError(f"{name} expects a tensor of shape {shape}{fields}, got shape {tuple(x.shape)}")


class FMInteraction(nn.Module):
    """Sum of all pairwise inner products of the field vectors, in O(F·E).

    ``sum_{i<j} <v_i, v_j> = 1/2 sum_e ((sum_i v_ie)² - sum_i v_ie²)`` (Rendle 2010, Lemma 3.1).

    Examples
    --------
    >>> import torch
    >>> v = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])   # <1,2> + <1,3> + <2,3> = 11 + 17 + 39
    >>> FMInteraction()(v)
    tensor([[67.]])
    """

    def forward(self, x: Tensor) -> Tensor:
        """Pairwise term of each example.

        Parameters
        ----------
        x : Tensor of shape (B, F, E)

        Returns
        -------
        Tensor of shape (B, 1)
        """
        _check_fields("FMInteraction", x, 3)
        square_of_sum = x.sum(dim=1).square()  # (B, E)
        sum_of_squares = x.square().sum(dim=1)  # (B, E)
        return 0.5 * (square_of_sum - sum_of_squares).sum(dim=1, keepdim=True)  # (B, 1)


class BiInteraction(nn.Module):
    """NFM's Bi-Interaction pooling: ``sum_{i<j} v_i ⊙ v_j``, one E-vector per example.

    Computed as ``1/2 ((sum_i v_i)² - sum_i v_i²)`` element-wise (He & Chua 2017, sec. 3.1).

    Examples
    --------
    >>> import torch
    >>> v = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])   # 1·3 + 1·5 + 3·5, 2·4 + 2·6 + 4·6
    >>> BiInteraction()(v)
    tensor([[23., 44.]])
    """

    def forward(self, x: Tensor) -> Tensor:
        """Pool the pairwise element-wise products.

        Parameters
        ----------
        x : Tensor of shape (B, F, E)

        Returns
        -------
        Tensor of shape (B, E)
        """
        _check_fields("BiInteraction", x, 3)
        return 0.5 * (x.sum(dim=1).square() - x.square().sum(dim=1))  # (B, E)


class InnerProduct(nn.Module):
    """All F(F-1)/2 pairwise inner products ``<v_i, v_j>``, i < j, as IPNN's product signal.

    Parameters
    ----------
    num_fields : int
        F; the pairs are ``torch.triu_indices(F, F, offset=1)``: (0, 1), (0, 2), ..., (F-2, F-1).

    Examples
    --------
    >>> import torch
    >>> v = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])
    >>> InnerProduct(3)(v)   # <v0,v1>, <v0,v2>, <v1,v2>
    tensor([[11., 17., 39.]])
    """

    def __init__(self, num_fields: int) -> None:
        super().__init__()
        self.num_fields = check_positive_int("num_fields", num_fields)
        rows, cols = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    @property
    def out_features(self) -> int:
        """F(F-1)/2, the number of pairs."""
        return self.num_fields * (self.num_fields - 1) // 2

    def forward(self, x: Tensor) -> Tensor:
        """Inner product of every pair of fields.

        Parameters
        ----------
        x : Tensor of shape (B, F, E)

        Returns
        -------
        Tensor of shape (B, F(F-1)/2)
        """
        _check_fields("InnerProduct", x, 3, self.num_fields)
        gram = torch.bmm(x, x.transpose(1, 2))  # (B, F, F)
        return gram[:, self.rows, self.cols]  # (B, F(F-1)/2)


class FFMInteraction(nn.Module):
    """Field-aware pairwise term ``sum_{i<j} <v_{i,f_j}, v_{j,f_i}>``, all pairs at once.

    Field i holds F-1 vectors, one for each other field: slot ``j - 1`` for a partner ``j > i``
    and slot ``j`` for ``j < i`` (its own field has no slot). So the pair (i, j), i < j, reads
    ``x[:, i, j - 1]`` and ``x[:, j, i]``, the layout of FuxiCTR's ``FFM``, whose (F-1) tables
    hold the same numbers.

    Parameters
    ----------
    num_fields : int
        F, at least 2.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(4, 3, 2, 5)   # B = 4, F = 3, F - 1 = 2 slots, E = 5
    >>> FFMInteraction(3)(x).shape
    torch.Size([4, 1])
    """

    def __init__(self, num_fields: int) -> None:
        super().__init__()
        self.num_fields = check_positive_int("num_fields", num_fields)
        if num_fields < 2:
            raise ValueError(f"num_fields must be at least 2 for field pairs, got {num_fields}")
        rows, cols = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Field-aware pairwise term of each example.

        Parameters
        ----------
        x : Tensor of shape (B, F, F-1, E)
            ``x[:, i, s]`` is field i's vector for its s-th other field.

        Returns
        -------
        Tensor of shape (B, 1)
        """
        _check_fields("FFMInteraction", x, 4, self.num_fields)
        if x.shape[2] != self.num_fields - 1:
            raise ValueError(
                f"FFMInteraction expects F - 1 = {self.num_fields - 1} vectors per field, "
                f"got shape {tuple(x.shape)}"
            )
        left = x[:, self.rows, self.cols - 1]  # (B, P, E): v_{i, f_j}
        right = x[:, self.cols, self.rows]  # (B, P, E): v_{j, f_i}
        return (left * right).sum(dim=(1, 2)).unsqueeze(-1)  # (B, 1)


class CrossNetV1(nn.Module):
    """DCN's cross network: ``x_{l+1} = x_0 (x_l · w_l) + b_l + x_l`` for l = 0 .. L-1.

    Each layer has a weight vector ``w_l`` and a bias ``b_l``, both (D,): 2·L·D parameters.
    Weights start as FuxiCTR's ``nn.Linear(D, 1, bias=False)`` after its ``reset_parameters``
    (Xavier normal, std = sqrt(2 / (D + 1))), biases at 0.

    Parameters
    ----------
    in_features : int
        D.
    num_layers : int
        L.

    Examples
    --------
    >>> import torch
    >>> net = CrossNetV1(in_features=8, num_layers=2)
    >>> net(torch.randn(3, 8)).shape
    torch.Size([3, 8])
    """

    def __init__(self, in_features: int, num_layers: int = 3) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.weight = nn.Parameter(torch.empty(num_layers, in_features))
        self.bias = nn.Parameter(torch.zeros(num_layers, in_features))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Xavier normal weights (fan_in D, fan_out 1) and zero biases."""
        self.weight.normal_(0.0, math.sqrt(2.0 / (self.in_features + 1)), generator=generator)
        self.bias.zero_()

    def forward(self, x0: Tensor) -> Tensor:
        """Apply the L cross layers.

        Parameters
        ----------
        x0 : Tensor of shape (B, D)

        Returns
        -------
        Tensor of shape (B, D)
        """
        if x0.ndim != 2 or x0.shape[1] != self.in_features:
            raise ValueError(
                f"CrossNetV1 expects a tensor of shape (B, {self.in_features}), got shape {tuple(x0.shape)}"
            )
        x = x0
        for w, b in zip(self.weight, self.bias, strict=True):
            x = x0 * (x @ w).unsqueeze(-1) + b + x  # (B, D): x0 scaled by the scalar x_l · w_l
        return x

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
from mlpkit.blocks.activations import make_activation

__all__ = [
    "BiInteraction",
    "CrossNetMix",
    "CrossNetV1",
    "CrossNetV2",
    "FFMInteraction",
    "FMInteraction",
    "InnerProduct",
]


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


def _check_cross_input(name: str, x0: Tensor, in_features: int) -> None:
    if x0.ndim != 2 or x0.shape[1] != in_features:
        raise ValueError(f"{name} expects a tensor of shape (B, {in_features}), got shape {tuple(x0.shape)}")


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
        _check_cross_input("CrossNetV1", x0, self.in_features)
        x = x0
        for w, b in zip(self.weight, self.bias, strict=True):
            x = x0 * (x @ w).unsqueeze(-1) + b + x  # (B, D): x0 scaled by the scalar x_l · w_l
        return x


class CrossNetV2(nn.Module):
    """DCN-V2's full-rank cross network: ``x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l`` for l = 0 .. L-1.

    Wang, Shivanna, Cheng, Jain, Lin, Hong, Chi. "DCN V2: Improved Deep & Cross Network and
    Practical Lessons for Web-scale Learning to Rank Systems". WWW 2021, eq. (1). Each layer has a
    weight W_l (D, D) and a bias b_l (D,): L·(D² + D) parameters. Weights start Xavier normal
    (std sqrt(2 / (D + D))), biases at 0, as FuxiCTR's ``nn.Linear(D, D)`` after its
    ``reset_parameters``.

    Parameters
    ----------
    in_features : int
        D.
    num_layers : int
        L.

    Examples
    --------
    >>> import torch
    >>> net = CrossNetV2(in_features=8, num_layers=2)
    >>> net(torch.randn(1, 8)).shape
    torch.Size([1, 8])
    """

    def __init__(self, in_features: int, num_layers: int = 3) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.weight = nn.Parameter(torch.empty(num_layers, in_features, in_features))  # (L, D_out, D_in)
        self.bias = nn.Parameter(torch.zeros(num_layers, in_features))                 # (L, D)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Xavier normal weights (fan_in = fan_out = D) and zero biases."""
        self.weight.normal_(0.0, math.sqrt(1.0 / self.in_features), generator=generator)
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
        _check_cross_input("CrossNetV2", x0, self.in_features)
        x = x0
        for w, b in zip(self.weight, self.bias, strict=True):
            x = x0 * torch.addmm(b, x, w.t()) + x  # (B, D): x0 ⊙ (W_l x_l + b_l) + x_l
        return x


class CrossNetMix(nn.Module):
    """DCN-V2's mixture of low-rank cross experts (DCN-Mix), all experts of a layer in one product.

    Per layer l, K experts ``E_i(x_l) = x_0 ⊙ (U_i g(C_i g(V_iᵀ x_l)) + b_l)`` with U_i, V_i (D, r)
    and C_i (r, r), mixed by a softmax gate on x_l, plus the residual (Wang et al., WWW 2021,
    sec. 5, eq. (3)-(4))::

        x_{l+1} = Σ_i G_i(x_l) E_i(x_l) + x_l,    G(x_l) = softmax(x_l W_g),  W_g (D, K)

    ``g`` is the identity by default (the paper's default), or any activation (FuxiCTR uses tanh).
    Because the gates sum to one, ``Σ_i G_i E_i = x_0 ⊙ (Σ_i G_i U_i h_i + b_l)``: the gate scales
    each expert's r-vector ``h_i`` before the up-projection, so the K experts cost one (B, D) x
    (D, K·r + K) product down (the gate's scores ride along in the last K columns), one batched
    (r, r) product, and one (B, K·r) x (K·r, D) product up; no loop over experts and no (B, K, D)
    tensor; with ``g`` the identity, ``U_i C_i`` is formed on the weights' side and the batched (r, r)
    product disappears. Parameters per layer: K·(2·D·r + r²) + D·K + D; at D =
    100 (Frappe's 10 fields x 10) with K = 4 and r = 8 that is 7,156 against CrossNetV2's 10,100.

    Cost against :class:`CrossNetV2` (``benchmarks/crossnet_speed.py``: 3 layers, K = 4, r = 16,
    batch 1024, forward + backward, one CPU thread, two runs): 1.75-1.81x its time at D = 100,
    1.24-1.29x at D = 160, 0.52x at D = 400. At Frappe's width full rank is cheaper; the mixture
    pays off from a width between 160 and 400, where D² outgrows K·r·(2·D + r). Against the
    per-expert loop on (B, D, 1) columns of the public implementations: 0.22-0.24x.

    Each layer has its own gate W_g (D·K parameters a layer); FuxiCTR and DeepCTR-Torch share one
    gate across the layers, the paper's notation leaves it open.

    Initialisation: each U_i, V_i, C_i Xavier normal over its own 2-D shape, the gate Xavier normal
    (as a bias-free ``nn.Linear(D, K)``), biases 0. (FuxiCTR applies ``xavier_normal_`` to the
    stacked (K, D, r) tensors, whose fans then also count K; each expert's own fans are the
    standard reading.)

    Parameters
    ----------
    in_features : int
        D.
    num_layers : int
        L.
    num_experts : int
        K.
    low_rank : int
        r, at most D.
    activation : str, nn.Module class or None
        ``g``; None is the identity.

    Examples
    --------
    >>> import torch
    >>> net = CrossNetMix(in_features=8, num_layers=2, num_experts=3, low_rank=2)
    >>> net(torch.randn(5, 8)).shape
    torch.Size([5, 8])
    """

    def __init__(
        self,
        in_features: int,
        num_layers: int = 3,
        num_experts: int = 4,
        low_rank: int = 32,
        *,
        activation: str | type[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.num_experts = check_positive_int("num_experts", num_experts)
        self.low_rank = check_positive_int("low_rank", low_rank)
        if low_rank > in_features:
            raise ValueError(f"low_rank must be at most in_features={in_features}, got low_rank={low_rank}")
        self.activation: nn.Module = nn.Identity() if activation is None else make_activation(activation)
        L, K, D, r = num_layers, num_experts, in_features, low_rank
        # Stored packed, so that a layer's K projections are one matrix without a copy:
        # V[l] viewed (D, K·r) holds V_1 .. V_K side by side, U[l] viewed (K·r, D) holds U_1ᵀ .. U_Kᵀ
        # stacked (see :meth:`experts` for the per-expert matrices).
        self.V = nn.Parameter(torch.empty(L, D, K, r))      # down-projections: V[l, :, i] = V_i (D, r)
        self.C = nn.Parameter(torch.empty(L, K, r, r))      # C_i (r, r)
        self.U = nn.Parameter(torch.empty(L, K, r, D))      # up-projections: U[l, i] = U_iᵀ (r, D)
        self.gate = nn.Parameter(torch.empty(L, D, K))      # W_g
        self.bias = nn.Parameter(torch.zeros(L, D))         # b_l
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Xavier normal per expert matrix and for the gate; zero biases."""
        D, r, K = self.in_features, self.low_rank, self.num_experts
        self.V.normal_(0.0, math.sqrt(2.0 / (D + r)), generator=generator)
        self.U.normal_(0.0, math.sqrt(2.0 / (D + r)), generator=generator)
        self.C.normal_(0.0, math.sqrt(1.0 / r), generator=generator)
        self.gate.normal_(0.0, math.sqrt(2.0 / (D + K)), generator=generator)
        self.bias.zero_()

    def gates(self, x: Tensor, layer: int) -> Tensor:
        """G(x_l) of layer ``layer``: softmax over the K experts, (B, D) -> (B, K), rows summing to 1."""
        return torch.softmax(x @ self.gate[layer], dim=-1)

    def experts(self, layer: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(U, V, C)`` of layer ``layer``: U_i and V_i as (K, D, r), C_i as (K, r, r) (views)."""
        return self.U[layer].transpose(1, 2), self.V[layer].transpose(0, 1), self.C[layer]

    def expert_weights(self, layer: int) -> Tensor:
        """Each expert's low-rank matrix ``U_i V_iᵀ`` (K, D, D) of layer ``layer`` (for its spectrum)."""
        U, V, _ = self.experts(layer)
        return U @ V.transpose(1, 2)

    def forward(self, x0: Tensor) -> Tensor:
        """Apply the L mixture layers.

        Parameters
        ----------
        x0 : Tensor of shape (B, D)

        Returns
        -------
        Tensor of shape (B, D)
        """
        _check_cross_input("CrossNetMix", x0, self.in_features)
        B, K, D, r = x0.shape[0], self.num_experts, self.in_features, self.low_rank
        g = self.activation
        linear = isinstance(g, nn.Identity)
        x = x0
        for layer in range(self.num_layers):
            # Down and gate scores in one product: (B, D) @ (D, K·r + K) -> the K r-vectors and K scores.
            down = torch.cat([self.V[layer].view(D, K * r), self.gate[layer]], dim=1)
            both = x @ down                                                     # (B, K·r + K)
            h, scores = both[:, : K * r].view(B, K, r), both[:, K * r :]
            if linear:
                # With g the identity, U_i C_i is one (D, r) matrix: C is folded into the up-projection
                # on the weights' side, (K, r, r) @ (K, r, D), instead of a (K, B, r) product per batch.
                up = torch.bmm(self.C[layer].transpose(1, 2), self.U[layer]).view(K * r, D)  # (U_i C_i)ᵀ
            else:
                # C_i per expert: (K, B, r) @ (K, r, r)ᵀ -> (K, B, r), batched over the experts.
                h = g(torch.bmm(g(h).transpose(0, 1), self.C[layer].transpose(1, 2))).transpose(0, 1)
                up = self.U[layer].view(K * r, D)                               # U_iᵀ stacked (K·r, D)
            h = h * torch.softmax(scores, dim=-1).unsqueeze(-1)                 # (B, K, r): G_i h_i
            # Up: (B, K·r) @ (K·r, D) -> (B, D) = Σ_i G_i U_i h_i, all experts in one product.
            mixed = torch.addmm(self.bias[layer], h.reshape(B, K * r), up)      # (B, D)
            # Not addcmul: its backward multiplies both gradients by its scale once more (two extra
            # (B, D) passes a layer), which a product and a sum do not.
            x = x0 * mixed + x
        return x

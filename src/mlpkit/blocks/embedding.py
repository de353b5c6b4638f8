"""Field embeddings for CTR models: a named batch in, one vector per field out.

:class:`FieldEmbedding` maps the batch of :mod:`mlpkit.data.fields`
(``{"sparse": (B, F_cat), "dense": (B, N), "multi:<name>": (B, L)}``) to a tensor of shape
(B, F, E), one E-vector per field. The F axis holds, in this order, the categorical fields, the
multi-valued fields (:attr:`FieldSpec.embedded <mlpkit.data.fields.FieldSpec.embedded>` order), then
the numeric fields:

- a categorical field looks its id up in its rows of the table;
- a multi-valued field pools the rows of its non-padding ids (id 0 is padding) by mean or sum, as
  its ``Field.pooling`` says; a row with no id at all gives a zero vector;
- a numeric field ``j`` has one learned vector ``u_j`` scaled by its value: ``x_j * u_j``
  (FuxiCTR's numeric embedding, a bias-free ``Linear(1, E)`` per field), so numeric fields join
  the interactions like any other field.

:class:`LinearEmbedding` is the first-order (LR) term ``b + sum_f w_f``: the same lookup with E = 1,
summed over fields (FuxiCTR's "one-hot encoding by an embedding of dim 1").

Initialization follows FuxiCTR/BARS (``embedding_initializer: torch.nn.init.normal_(std=1e-4)``):
every table row is drawn from N(0, 1e-4²), first-order weights included. A numeric field's vector
is FuxiCTR's ``nn.Linear(1, E)`` weight after its ``reset_parameters``: Xavier normal,
std = sqrt(2 / (1 + E)).

Layouts
-------
``layout="per_field"`` (the default) keeps one table per field and looks each up in turn;
``layout="shared"`` keeps one table of ``spec.total_vocab`` rows and adds each field's offset
(:attr:`FieldSpec.offsets <mlpkit.data.fields.FieldSpec.offsets>`) to its ids, so all categorical
fields are one lookup. Both hold the same parameters, and with the same table contents they give
the same outputs and gradients (tests/blocks/test_embedding.py). Forward + backward of the
categorical lookup, batch 4096, E = 10, torch 2.13 CPU, fastest of 30 repeats on a shared
2-core machine (``benchmarks/ctr_embedding.py``, ``benchmarks/results/ctr_embedding_*.json``), in ms:

==================================================  =========  ======  =========  ======
sizes                                               per_field  shared  per_field  shared
                                                    2 threads          1 thread
==================================================  =========  ======  =========  ======
Frappe-like: 10 fields, 5,389 rows                  4.2        3.4     4.0        3.2
Criteo-like: 26 fields of 100,000 rows (2.6M rows)  18.5       48.7    23.7       77.0
==================================================  =========  ======  =========  ======

The shared table saves the F - 1 extra lookups (0.8 ms a step on Frappe sizes, under 1% of a
DeepFM training step of about 240 ms on one thread), but on large vocabularies it loses more: its
gradient is one dense table, 104 MB here, allocated afresh by every backward; above glibc's 32 MB
mmap threshold that memory comes as new pages each time (``torch.zeros`` of it takes 45 ms,
refilling existing memory 5 ms), while 26 gradients of 4 MB reuse freed heap. Hence
``"per_field"`` is the default. The id range check costs about 0.1 ms a step on Frappe sizes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from mlpkit._checks import check_choice, check_positive_float, check_positive_int
from mlpkit.errors import DataFormatError

if TYPE_CHECKING:  # blocks do not import the data layer; a FieldSpec is read through its attributes
    from mlpkit.data.fields import FieldSpec

_SPEC_ATTRIBUTES = ("fields", "categorical", "multi", "numeric", "embedded", "offsets", "total_vocab")

__all__ = ["EMBEDDING_INIT_STD", "EMBEDDING_LAYOUTS", "FieldEmbedding", "LinearEmbedding"]

EMBEDDING_LAYOUTS = ("shared", "per_field")
EMBEDDING_INIT_STD = 1e-4
"""FuxiCTR/BARS ``embedding_initializer``: ``torch.nn.init.normal_(std=1e-4)``."""


class FieldEmbedding(nn.Module):
    """One E-vector per field: categorical and multi-valued lookups, then scaled numeric vectors.

    Parameters
    ----------
    spec : FieldSpec
        The fields; every kind is embedded (numeric fields by a learned vector times the value).
    embedding_dim : int
        E, the width of every field's vector.
    layout : {"per_field", "shared"}
        One table per field, or one table for all fields with per-field offsets (see the module
        docstring for the measured speeds).
    init_std : float
        Standard deviation of the N(0, std²) table initialization.

    Attributes
    ----------
    table : nn.Embedding or None
        The shared table (``layout="shared"``), else None.
    tables : nn.ModuleList of nn.Embedding, or None
        One table per categorical then multi-valued field (``layout="per_field"``), else None.
    field_names : tuple of str
        The fields along the F axis of the output, in order.
    num_fields : int
        F.

    Examples
    --------
    >>> import torch
    >>> from mlpkit.data.fields import Field, FieldSpec
    >>> spec = FieldSpec((Field("user", "categorical", 5), Field("age", "numeric"),
    ...                   Field("tags", "multi", 7, max_len=3)))
    >>> emb = FieldEmbedding(spec, 4)
    >>> batch = {"sparse": torch.tensor([[1], [4]]), "dense": torch.tensor([[0.5], [2.0]]),
    ...          "multi:tags": torch.tensor([[2, 3, 0], [0, 0, 0]])}
    >>> emb.field_names, emb(batch).shape
    (('user', 'tags', 'age'), torch.Size([2, 3, 4]))
    """

    def __init__(
        self,
        spec: FieldSpec,
        embedding_dim: int,
        *,
        layout: str = "per_field",
        init_std: float = EMBEDDING_INIT_STD,
    ) -> None:
        super().__init__()
        if not all(hasattr(spec, name) for name in _SPEC_ATTRIBUTES):
            raise ValueError(f"spec must be a FieldSpec, got {type(spec).__name__}")
        if not spec.fields:
            raise ValueError("spec must have at least one field, got none")
        self.spec = spec
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        self.layout = check_choice("layout", layout, EMBEDDING_LAYOUTS)
        self.init_std = check_positive_float("init_std", init_std)
        self._categorical = tuple(f.name for f in spec.categorical)
        self._multi = tuple(f.name for f in spec.multi)
        self._numeric = tuple(f.name for f in spec.numeric)
        self.field_names = self._categorical + self._multi + self._numeric
        self.num_fields = len(self.field_names)
        embedded = spec.embedded
        n_cat = len(self._categorical)
        # Exactly one of the two holds the tables; the other is None.
        self.table: nn.Embedding | None = None
        self.tables: nn.ModuleList | None = None
        if self.layout == "shared":
            self.table = nn.Embedding(spec.total_vocab, embedding_dim) if embedded else None
        else:
            self.tables = nn.ModuleList(nn.Embedding(f.vocab_size, embedding_dim) for f in embedded)
        # Derived from the spec, so not saved in the state dict.
        self.register_buffer("cat_offsets", torch.tensor(spec.offsets[:n_cat], dtype=torch.int64), False)
        self.register_buffer(
            "cat_vocab", torch.tensor([f.vocab_size for f in spec.categorical], dtype=torch.int64), False
        )
        self._multi_fields = tuple(spec.multi)
        self._multi_offsets = spec.offsets[n_cat:]
        self._poolings = tuple(f.pooling for f in spec.multi)
        self.numeric_weight = (
            nn.Parameter(torch.empty(len(self._numeric), embedding_dim)) if self._numeric else None
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Redraw the tables from N(0, init_std²) and the numeric vectors from Xavier normal."""
        for table in self._table_modules():
            table.weight.normal_(0.0, self.init_std, generator=generator)
        if self.numeric_weight is not None:
            # FuxiCTR's nn.Linear(1, E) per numeric field, Xavier normal: std = sqrt(2 / (fan_in + fan_out))
            self.numeric_weight.normal_(0.0, math.sqrt(2.0 / (1 + self.embedding_dim)), generator=generator)

    def _table_modules(self) -> Iterator[nn.Embedding]:
        if self.layout == "shared":
            if self.table is not None:
                yield self.table
        else:
            yield from self.tables  # type: ignore[misc]

    def field_table(self, name: str) -> Tensor:
        """The rows of one field's table (a view, so writing into it changes the table).

        Parameters
        ----------
        name : str
            A categorical or multi-valued field, or a numeric one.

        Returns
        -------
        Tensor of shape (vocab_size, E), or (1, E) for a numeric field (its vector).
        """
        if name in self._numeric:
            j = self._numeric.index(name)
            return self.numeric_weight[j : j + 1]  # type: ignore[index]
        names = self._categorical + self._multi
        if name not in names:
            raise ValueError(f"no field named {name!r}; the fields are {list(self.field_names)}")
        i = names.index(name)
        if self.layout == "per_field":
            return self.tables[i].weight  # type: ignore[no-any-return]
        start = self.spec.offsets[i]
        return self.table.weight[start : start + self.spec.embedded[i].vocab_size]  # type: ignore[union-attr]

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Embed every field of a batch.

        Parameters
        ----------
        batch : mapping of str to Tensor
            ``"sparse"`` (B, F_cat) int ids when the spec has categorical fields, ``"dense"`` (B, N)
            float when it has numeric ones, ``"multi:<name>"`` (B, L) int ids (0 = padding) per
            multi-valued field.

        Returns
        -------
        Tensor of shape (B, F, E)
            Fields in :attr:`field_names` order.

        Raises
        ------
        DataFormatError
            A needed array is missing, has the wrong shape or dtype, the arrays disagree on B, or
            an id lies outside its field's vocabulary (which a shared table would otherwise read
            silently from the next field's rows).
        """
        parts: list[Tensor] = []
        batch_size: int | None = None
        if self._categorical:
            ids = _get_ids(batch, "sparse", len(self._categorical), self._categorical)
            batch_size = ids.shape[0]
            _check_range(ids, self.cat_vocab, "sparse", self._categorical)
            if self.layout == "shared":
                parts.append(self.table(ids + self.cat_offsets))  # (B, F_cat, E)
            else:
                cols = [self.tables[i](ids[:, i]) for i in range(len(self._categorical))]  # F_cat x (B, E)
                parts.append(torch.stack(cols, dim=1))  # (B, F_cat, E)
        for k, field in enumerate(self._multi_fields):
            key = f"multi:{field.name}"
            ids = _get_ids(batch, key, None, (field.name,))
            batch_size = _same_batch(batch_size, ids.shape[0], key)
            _check_range(ids, field.vocab_size, key, (field.name,))
            if self.layout == "shared":
                vectors = self.table(ids + self._multi_offsets[k])  # (B, L, E)
            else:
                vectors = self.tables[len(self._categorical) + k](ids)  # (B, L, E)
            mask = (ids != 0).unsqueeze(-1).to(vectors.dtype)  # (B, L, 1), 0 = padding
            pooled = (vectors * mask).sum(dim=1)  # (B, E)
            if self._poolings[k] == "mean":
                pooled = pooled / mask.sum(dim=1).clamp_min(1.0)  # an all-padding row stays 0
            parts.append(pooled.unsqueeze(1))  # (B, 1, E)
        if self._numeric:
            dense = batch.get("dense")
            if dense is None:
                raise DataFormatError(
                    f"batch has no 'dense' array, which the fields {list(self._numeric)} need; "
                    f"it has {sorted(batch)}"
                )
            if dense.ndim != 2 or dense.shape[1] != len(self._numeric) or not dense.is_floating_point():
                raise DataFormatError(
                    f"batch['dense'] must be a float (B, {len(self._numeric)}) tensor for the numeric "
                    f"fields {list(self._numeric)}, got {dense.dtype} of shape {tuple(dense.shape)}"
                )
            _same_batch(batch_size, dense.shape[0], "dense")
            parts.append(dense.unsqueeze(-1) * self.numeric_weight)  # (B, N, E)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # (B, F, E)


class LinearEmbedding(nn.Module):
    """The first-order (LR) term ``b + sum_f w_f``: a :class:`FieldEmbedding` of width 1, summed.

    A categorical field adds its id's weight, a multi-valued field the mean (or sum) of its ids'
    weights, a numeric field ``w_j * x_j``.

    Parameters
    ----------
    spec : FieldSpec
    layout : {"per_field", "shared"}
    bias : bool
        Whether to add a learned global bias ``b`` (initialized to 0).
    init_std : float
        Standard deviation of the N(0, std²) weight initialization.

    Examples
    --------
    >>> import torch
    >>> from mlpkit.data.fields import Field, FieldSpec
    >>> lr = LinearEmbedding(FieldSpec((Field("user", "categorical", 5), Field("item", "categorical", 9))))
    >>> sum(p.numel() for p in lr.parameters())  # 5 + 9 weights and the bias
    15
    >>> lr({"sparse": torch.tensor([[1, 2]])}).shape
    torch.Size([1, 1])
    """

    def __init__(
        self,
        spec: FieldSpec,
        *,
        layout: str = "per_field",
        bias: bool = True,
        init_std: float = EMBEDDING_INIT_STD,
    ) -> None:
        super().__init__()
        self.weights = FieldEmbedding(spec, 1, layout=layout, init_std=init_std)
        self.bias = nn.Parameter(torch.zeros(1)) if bias else None

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Sum the first-order weights of every field.

        Parameters
        ----------
        batch : mapping of str to Tensor
            As :meth:`FieldEmbedding.forward`.

        Returns
        -------
        Tensor of shape (B, 1)
        """
        out = self.weights(batch).sum(dim=1)  # (B, F, 1) -> (B, 1)
        return out + self.bias if self.bias is not None else out


def _get_ids(batch: Mapping[str, Tensor], key: str, width: int | None, names: tuple[str, ...]) -> Tensor:
    ids = batch.get(key)
    if ids is None:
        raise DataFormatError(
            f"batch has no {key!r} array, which the fields {list(names)} need; it has {sorted(batch)}"
        )
    wrong_width = width is not None and ids.ndim == 2 and ids.shape[1] != width
    if ids.dtype not in (torch.int64, torch.int32) or ids.ndim != 2 or wrong_width:
        expected = f"(B, {width})" if width is not None else "(B, L)"
        raise DataFormatError(
            f"batch[{key!r}] must be an int64 {expected} tensor of ids, "
            f"got {ids.dtype} of shape {tuple(ids.shape)}"
        )
    return ids


def _check_range(ids: Tensor, vocab: Tensor | int, key: str, names: tuple[str, ...]) -> None:
    """Raise if an id lies outside ``[0, vocab)``: (B, F) ids against (F,) sizes, or (B, L) against one.

    Not while ``torch.export`` traces the model (ONNX export): a branch on the ids' values has no
    place in a graph, and the runtime's own gather refuses an index outside the table.
    """
    if torch.compiler.is_exporting():
        return
    bad = (ids < 0) | (ids >= vocab)
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        if isinstance(vocab, int):
            field, size, where = names[0], vocab, f"row {row}, position {col}"
        else:
            field, size, where = names[col], int(vocab[col]), f"row {row}, column {col}"
        raise DataFormatError(
            f"batch[{key!r}] has id {int(ids[row, col])} for field {field!r} at {where}, "
            f"outside its vocabulary [0, {size})"
        )


def _same_batch(expected: int | None, got: int, key: str) -> int:
    if expected is not None and got != expected:
        raise DataFormatError(f"batch[{key!r}] has {got} rows, but the other arrays have {expected}")
    return got

"""MLPSpec: per-layer broadcasting, the shared layer order and shapes, validation, dict round trip."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from mlpkit.spec import ACTIVATION_NAMES, INIT_NAMES, MLPSpec


def test_defaults_describe_the_classic_network():
    spec = MLPSpec(784)
    assert spec.hidden_features == (256,)
    assert spec.out_features == 10
    assert spec.layer_names() == ("linear", "relu", "linear")
    assert spec.linear_shapes() == {
        "0.weight": (256, 784),
        "0.bias": (256,),
        "2.weight": (10, 256),
        "2.bias": (10,),
    }


def test_one_activation_and_dropout_broadcast_to_every_hidden_layer():
    spec = MLPSpec(4, (8, 6), 3, activation="tanh", dropout=0.25)
    assert spec.activations == ("tanh", "tanh")
    assert spec.dropouts == (0.25, 0.25)
    assert spec.layer_names() == ("linear", "tanh", "dropout", "linear", "tanh", "dropout", "linear")


def test_per_layer_activations_and_dropout():
    spec = MLPSpec(4, (8, 6, 5), 3, activation=("relu", "tanh", "gelu"), dropout=(0.1, 0.0, 0.2))
    # Dropout 0 adds no layer, so the indices after it shift by one less.
    assert spec.layer_names() == (
        "linear",
        "relu",
        "dropout",
        "linear",
        "tanh",
        "linear",
        "gelu",
        "dropout",
        "linear",
    )
    assert spec.linear_shapes() == {
        "0.weight": (8, 4),
        "0.bias": (8,),
        "3.weight": (6, 8),
        "3.bias": (6,),
        "5.weight": (5, 6),
        "5.bias": (5,),
        "8.weight": (3, 5),
        "8.bias": (3,),
    }


def test_lists_become_tuples_and_dropouts_floats():
    spec = MLPSpec(4, [8, 6], 3, activation=["relu", "silu"], dropout=[0, 0.5])
    assert spec.hidden_features == (8, 6)
    assert spec.activation == ("relu", "silu")
    assert spec.dropout == (0.0, 0.5)
    assert all(isinstance(p, float) for p in spec.dropouts)
    hash(spec)  # frozen and made of tuples: hashable


def test_no_hidden_layer_is_a_linear_model():
    spec = MLPSpec(4, (), 3)
    assert spec.layer_names() == ("linear",)
    assert spec.activations == () and spec.dropouts == ()
    assert spec.linear_shapes() == {"0.weight": (3, 4), "0.bias": (3,)}


def test_without_bias_only_weights():
    assert MLPSpec(4, (8,), 3, bias=False).linear_shapes() == {"0.weight": (8, 4), "2.weight": (3, 8)}


def test_spec_is_frozen():
    spec = MLPSpec(4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.in_features = 5  # type: ignore[misc]


# --- errors -------------------------------------------------------------------------------------


def test_unknown_activation_lists_the_valid_names():
    msg = f"activation must be one of {sorted(ACTIVATION_NAMES)}, got 'swish'"
    with pytest.raises(ValueError, match=re.escape(msg)):
        MLPSpec(4, (8,), 3, activation="swish")
    with pytest.raises(ValueError, match=re.escape(msg)):
        MLPSpec(4, (8, 6), 3, activation=("relu", "swish"))


def test_softmax_is_not_a_hidden_activation():
    with pytest.raises(
        ValueError, match=re.escape(f"activation must be one of {sorted(ACTIVATION_NAMES)}, got 'softmax'")
    ):
        MLPSpec(4, (8,), 3, activation="softmax")


def test_wrong_number_of_per_layer_activations():
    msg = "activation must be one value or one per hidden layer (2), got 3: ('relu', 'tanh', 'relu')"
    with pytest.raises(ValueError, match=re.escape(msg)):
        MLPSpec(4, (8, 6), 3, activation=("relu", "tanh", "relu"))


def test_wrong_number_of_per_layer_dropouts():
    msg = "dropout must be one value or one per hidden layer (2), got 1: (0.1,)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        MLPSpec(4, (8, 6), 3, dropout=(0.1,))


@pytest.mark.parametrize("p", [1.0, -0.1])
def test_dropout_outside_zero_one_is_rejected(p):
    with pytest.raises(ValueError, match=re.escape(f"dropout must be a float in [0, 1), got {p!r}")):
        MLPSpec(4, (8,), 3, dropout=p)
    with pytest.raises(ValueError, match=re.escape(f"dropout must be a float in [0, 1), got {p!r}")):
        MLPSpec(4, (8, 6), 3, dropout=(0.0, p))


def test_hidden_width_zero_is_rejected():
    with pytest.raises(ValueError, match="hidden_features must be a positive int, got 0"):
        MLPSpec(4, (8, 0), 3)


@pytest.mark.parametrize(
    "build",
    [lambda: MLPSpec(4, 256, 3), lambda: MLPSpec.from_dict({"in_features": 4, "hidden_features": 256})],
    ids=["constructor", "from_dict"],
)
def test_hidden_features_as_a_bare_int_is_a_value_error_naming_it(build):
    # `hidden_features = 256` instead of `[256]` is an easy slip in a config file; rule 4 wants a
    # ValueError naming the parameter, which the CLI turns into one line, not a TypeError traceback.
    try:
        build()
    except ValueError as exc:
        assert "hidden_features" in str(exc)
    except TypeError as exc:
        pytest.fail(
            f"ENGINE BUG: MLPSpec(hidden_features=256) raised TypeError({exc!s}) from tuple(256) in "
            "__post_init__, instead of a ValueError naming hidden_features"
        )
    else:
        pytest.fail("MLPSpec accepted hidden_features=256")


@pytest.mark.parametrize("field", ["in_features", "out_features"])
def test_zero_in_or_out_features_is_rejected(field):
    kwargs = {"in_features": 4, "out_features": 3, field: 0}
    with pytest.raises(ValueError, match=f"{field} must be a positive int, got 0"):
        MLPSpec(**kwargs)


def test_unknown_init_lists_the_valid_names():
    with pytest.raises(
        ValueError, match=re.escape(f"init must be one of {sorted(INIT_NAMES)}, got 'orthogonal'")
    ):
        MLPSpec(4, init="orthogonal")


def test_init_std_must_be_positive():
    with pytest.raises(ValueError, match=re.escape("init_std must be a positive float, got 0.0")):
        MLPSpec(4, init_std=0.0)


# --- dict round trip ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        MLPSpec(784),
        MLPSpec(
            4,
            (8, 6, 5),
            3,
            activation=("relu", "tanh", "gelu"),
            dropout=(0.1, 0.0, 0.2),
            init="kaiming_uniform",
            init_std=0.02,
            bias=False,
        ),
        MLPSpec(4, (), 2),
    ],
)
def test_to_dict_from_dict_round_trip_through_json(spec):
    raw = spec.to_dict()
    assert all(not isinstance(v, tuple) for v in raw.values())  # JSON-ready: lists, not tuples
    assert MLPSpec.from_dict(raw) == spec
    assert MLPSpec.from_dict(json.loads(json.dumps(raw))) == spec


def test_to_dict_content():
    raw = MLPSpec(4, (8, 6), 3, activation=("relu", "tanh")).to_dict()
    assert raw == {
        "in_features": 4,
        "hidden_features": [8, 6],
        "out_features": 3,
        "activation": ["relu", "tanh"],
        "dropout": 0.0,
        "init": "normal",
        "init_std": 0.01,
        "bias": True,
    }


def test_from_dict_unknown_key_lists_the_valid_keys():
    valid = sorted(f.name for f in dataclasses.fields(MLPSpec))
    msg = f"unknown MLPSpec key(s) ['hidden_units']; valid keys: {valid}"
    with pytest.raises(ValueError, match=re.escape(msg)):
        MLPSpec.from_dict({"in_features": 4, "hidden_units": [8]})


def test_from_dict_validates_values():
    with pytest.raises(ValueError, match="hidden_features must be a positive int, got 0"):
        MLPSpec.from_dict({"in_features": 4, "hidden_features": [0]})

"""Every registered model keeps the contract of agents/models/base.py."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from anamnesis.agents.models import MODEL_KINDS, Model, create_model


@pytest.fixture(params=sorted(MODEL_KINDS))
def model(request):
    return create_model(request.param, seed=3, sample_rate=48000)


def test_is_a_model(model):
    assert isinstance(model, Model)
    assert model.kind in MODEL_KINDS
    assert model.input_channels in (1, 2)


def test_weight_keys_name_state_arrays(model):
    state = model.get_state()
    assert set(model.WEIGHT_KEYS) <= set(state)
    assert all(state[k].dtype == np.float64 for k in model.WEIGHT_KEYS)


def test_specs_cover_params_and_defaults_validate(model):
    specs = model.param_specs()
    params = model.params()
    assert set(params) <= set(specs)
    for name, spec in specs.items():
        described = spec.describe()
        assert described["name"] == name
        if name in params:
            spec.validate(params[name])


def _input(model, frames):
    x = np.sin(2 * np.pi * 220.0 * np.arange(frames) / 48000.0)
    return x if model.input_channels == 1 else np.column_stack([x, -x])


def test_empty_block_and_out_buffer(model):
    assert model.process(_input(model, 0)).shape == (0,)
    out = np.empty(300)
    result = model.process(_input(model, 300), out=out)
    assert result is out and np.all(np.isfinite(out))


def test_reset_with_seed_replays(model):
    x = _input(model, 2000)
    first = model.process(x).copy()
    model.reset(3)
    assert_array_equal(model.process(x), first)


def test_unknown_parameter_is_a_clear_error(model):
    with pytest.raises(ValueError, match="nonsense"):
        model.set_param("nonsense", 1.0)

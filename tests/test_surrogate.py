"""Surrogate gradients: exact Heaviside forward, analytic derivative backward, registry behaviour."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from spaic_train.surrogate import SURROGATES, Surrogate, get_surrogate, spike

ALL = SURROGATES.names()

DEFAULTS = {
    "atan": 2.0,
    "sigmoid": 4.0,
    "fast_sigmoid": 25.0,
    "rectangle": 0.5,
    "gaussian": 0.5,
    "triangle": 1.0,
    "erf": 2.0,
    "piecewise_quadratic": 1.0,
}


def _points(sg: Surrogate, n: int = 2000) -> torch.Tensor:
    """Random points in a few widths around 0, away from the kinks of piecewise surrogates."""
    g = torch.Generator().manual_seed(0)
    scale = 3.0 / sg.alpha if sg.name in ("atan", "sigmoid", "fast_sigmoid", "erf", "piecewise_quadratic") \
        else 3.0 * sg.alpha
    x = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * scale
    kinks = torch.tensor([sg.alpha, 1 / sg.alpha], dtype=torch.float64)
    far = ((x.abs().unsqueeze(1) - kinks).abs() > 1e-6).all(1)
    return x[far]


def test_registry_has_all_members_with_documented_defaults():
    assert set(ALL) == set(DEFAULTS)
    for name, alpha in DEFAULTS.items():
        sg = get_surrogate(name)
        assert sg.alpha == alpha and sg.name == name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_forward_is_exact_heaviside(dtype):
    x = torch.tensor([-2.0, -1e-6, -0.0, 0.0, 1e-6, 3.0], dtype=dtype)
    for name in ALL:
        s = spike(x, name)
        assert s.dtype == dtype
        assert torch.equal(s, (x >= 0).to(dtype))
    assert spike(x, "atan").tolist() == [0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("alpha", [None, 0.7, 3.0])
def test_backward_equals_analytic_derivative_and_autograd_of_primitive(name, alpha):
    sg = get_surrogate(name, alpha=alpha)
    x = _points(sg)
    xr = x.clone().requires_grad_()
    w = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    (spike(xr, sg) * w).sum().backward()
    torch.testing.assert_close(xr.grad, w * sg.derivative(x), rtol=0, atol=1e-12)
    # the derivative is that of the smooth primitive (torch autograd)
    xp = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(sg.primitive(xp).sum(), xp)
    torch.testing.assert_close(sg.derivative(x), g, rtol=1e-9, atol=1e-12)
    # the in-place variant used by the fused kernels agrees and overwrites its argument
    buf = x.clone()
    out = sg.derivative_(buf)
    assert out.data_ptr() == buf.data_ptr()
    torch.testing.assert_close(out, sg.derivative(x), rtol=1e-12, atol=1e-12)
    # the primitive is a step-like function: 0 far left, 1 far right (fast_sigmoid is odd and unnormalised)
    if name not in ("fast_sigmoid", "rectangle"):
        far = torch.tensor([-1e3, 1e3], dtype=torch.float64)
        torch.testing.assert_close(sg.primitive(far), torch.tensor([0.0, 1.0], dtype=torch.float64), atol=1e-3,
                                   rtol=0)


def test_closed_forms():
    x = torch.linspace(-2, 2, 401, dtype=torch.float64)
    xr = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(torch.sigmoid(4.0 * xr).sum(), xr)
    torch.testing.assert_close(get_surrogate("sigmoid").derivative(x), g)
    xr = x.clone().requires_grad_()
    (g,) = torch.autograd.grad((torch.atan(math.pi / 2 * 2.0 * xr) / math.pi).sum(), xr)
    torch.testing.assert_close(get_surrogate("atan").derivative(x), g)
    assert get_surrogate("atan").derivative(torch.zeros(1)).item() == pytest.approx(1.0)
    # SPAIC STCA: 1 inside |x| < alpha, 0 outside
    r = get_surrogate("rectangle", alpha=0.5).derivative(torch.tensor([-0.6, -0.49, 0.0, 0.49, 0.6]))
    assert r.tolist() == [0, 1, 1, 1, 0]
    # SuperSpike / snnTorch fast sigmoid
    assert get_surrogate("fast_sigmoid").derivative(torch.tensor([0.1])).item() == pytest.approx(1 / 3.5 ** 2)
    # unit area of the normalised windows
    xs = torch.linspace(-20, 20, 400001, dtype=torch.float64)
    for name in ("gaussian", "triangle", "erf", "piecewise_quadratic", "sigmoid", "atan"):
        area = torch.trapezoid(get_surrogate(name).derivative(xs), xs).item()
        assert area == pytest.approx(1.0, abs=2e-2 if name == "atan" else 1e-4), name
    # triangle(w) == piecewise_quadratic(1/w)
    torch.testing.assert_close(get_surrogate("triangle", alpha=0.25).derivative(x),
                               get_surrogate("piecewise_quadratic", alpha=4.0).derivative(x))


def test_get_surrogate_resolution():
    assert isinstance(get_surrogate(None), type(get_surrogate("atan")))
    assert get_surrogate("ATan").name == "atan"
    assert get_surrogate("stca").name == "rectangle" and get_surrogate("stbp").name == "gaussian"
    assert get_surrogate("superspike").name == "fast_sigmoid"
    sg = get_surrogate("sigmoid", alpha=2.5)
    assert sg.alpha == 2.5
    assert get_surrogate(sg) is sg
    assert get_surrogate(sg, alpha=1.0) == get_surrogate("sigmoid", alpha=1.0)
    assert get_surrogate({"name": "erf", "alpha": 3.0}) == get_surrogate("erf", alpha=3.0)
    assert get_surrogate({"name": "erf"}, alpha=1.5).alpha == 1.5
    assert repr(get_surrogate("gaussian")) == "Gaussian(alpha=0.5)"


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as e:
        get_surrogate("atna")
    msg = str(e.value)
    for name in ALL:
        assert name in msg
    assert "Did you mean 'atan'" in msg


@pytest.mark.parametrize("alpha", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        get_surrogate("atan", alpha=alpha)


def test_bad_keyword_and_type():
    with pytest.raises(TypeError, match="beta"):
        get_surrogate("atan", beta=1.0)
    with pytest.raises(TypeError):
        get_surrogate(3)


def test_pickle_and_equality():
    for name in ALL:
        sg = get_surrogate(name, alpha=1.25)
        back = pickle.loads(pickle.dumps(sg))
        assert back == sg and hash(back) == hash(sg) and repr(back) == repr(sg)
    assert get_surrogate("atan") != get_surrogate("atan", alpha=1.0)
    assert get_surrogate("atan") != get_surrogate("erf")


def test_custom_surrogate_with_only_derivative():
    class Box(Surrogate):
        name = "box"

        def derivative(self, x):
            return (x.abs() < 1).to(x.dtype) * 0.5

    sg = Box()
    x = torch.tensor([-2.0, 0.5, 3.0], requires_grad=True)
    spike(x, sg).sum().backward()
    assert x.grad.tolist() == [0.0, 0.5, 0.0]
    buf = torch.tensor([0.0, 5.0])
    assert sg.derivative_(buf).tolist() == [0.5, 0.0]

    class Nothing(Surrogate):
        pass

    with pytest.raises(NotImplementedError):
        Nothing().derivative(torch.zeros(1))

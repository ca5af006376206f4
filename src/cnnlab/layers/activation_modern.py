"""The activations of recent networks, under PyTorch's names: ReLU6, SiLU, Hardswish, GELU.

The lecture's activations are in activation.py. GELU needs erf, which NumPy lacks; cnnlab
depends on NumPy alone, so `erf_erfc` below evaluates it vectorised with the rational
approximations of fdlibm's s_erf.c (Sun Microsystems, 1993; the erf of FreeBSD, musl and Go),
accurate to about one unit in the last place of a float64 (tests/test_activations_modern.py
checks it against math.erf and math.erfc).
"""

from __future__ import annotations

import math

import numpy as np

from cnnlab.layers.activation import Swish, _Elementwise

# ------------------------------------------------------------------------------------- erf
#: erf(1) rounded to single precision: region 2 approximates erf(a) − ERX
ERX = 8.45062911510467529297e-01
#: region 1, a < 0.84375: erf(a) = a + a·P(a²)/Q(a²)
PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
      -5.77027029648944159157e-03, -2.37630166566501626084e-05)
QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
      1.32494738004321644526e-04, -3.96022827877536812320e-06)
#: region 2, 0.84375 ≤ a < 1.25: erf(a) = ERX + P(s)/Q(s), s = a − 1
PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
      3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
      -2.16637559486879084300e-03)
QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
      1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
#: region 3, 1.25 ≤ a < 1/0.35: erfc(a) = exp(−a² − 0.5625 + R(s)/S(s))/a, s = 1/a²
RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
      -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
      -8.12874355063065934246e+01, -9.81432934416914548592e+00)
SA = (1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
      6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
      6.57024977031928170135e+00, -6.04244152148580987438e-02)
#: region 4, 1/0.35 ≤ a < 28: the same form with these; beyond 28 erfc(a) is below 1e-342, so 0
RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
      -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
      -4.83519191608651397019e+02)
SB = (1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
      3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
      -2.24409524465858183362e+01)


def _poly(s: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """c₀ + c₁s + c₂s² + … by Horner's rule."""
    out = np.full_like(s, coefficients[-1])
    for c in coefficients[-2::-1]:
        out *= s
        out += c
    return out


def _erfc_tail(a: np.ndarray) -> np.ndarray:
    """erfc(a) for 1.25 ≤ a < 28. exp(−a²) is taken as exp(−z²)·exp((z − a)(z + a)) with z = a
    cut to its top 21 mantissa bits: z² is then exact, so the large exponent adds no rounding."""
    s = 1 / (a * a)
    near = a < 1 / 0.35
    ratio = np.empty_like(a)
    ratio[near] = _poly(s[near], RA) / _poly(s[near], SA)
    ratio[~near] = _poly(s[~near], RB) / _poly(s[~near], SB)
    z = (a.view(np.uint64) & np.uint64(0xFFFFFFFF00000000)).view(np.float64)
    ratio += (z - a) * (z + a)
    z *= z
    z += 0.5625
    np.negative(z, out=z)
    out = np.exp(z)
    out *= np.exp(ratio, out=ratio)
    out /= a
    return out


def erf_erfc(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(erf(a), erfc(a)) for a ≥ 0 in float64, each to about one unit in its last place (erfc's
    tail to its own relative precision); erf(∞) = 1, erfc(∞) = 0, NaN stays NaN."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    erf, erfc = np.empty_like(a), np.empty_like(a)
    head, tail = a < 0.84375, (a >= 1.25) & (a < 28)
    mid = (a >= 0.84375) & (a < 1.25)
    x = a[head]
    z = x * x
    erf[head] = x + x * (_poly(z, PP) / _poly(z, QQ))
    erfc[head] = 1 - erf[head]
    s = a[mid] - 1
    above_erx = _poly(s, PA) / _poly(s, QA)  # erf(a) − ERX
    erf[mid], erfc[mid] = ERX + above_erx, (1 - ERX) - above_erx
    erfc[tail] = _erfc_tail(a[tail])
    erf[tail] = 1 - erfc[tail]
    far = a >= 28
    erf[far], erfc[far] = 1.0, 0.0
    nan = np.isnan(a)
    erf[nan], erfc[nan] = np.nan, np.nan
    return erf, erfc


#: x/√2 = 0.84375, region 1's end
HEAD_X = 0.84375 * math.sqrt(2)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x) = ½(1 + erf(x/√2)) in float64, of x's shape; for x < 0 outside the first region it is
    ½·erfc(|x|/√2), so that the left tail keeps its relative precision."""
    flat = np.ravel(np.asarray(x, dtype=np.float64))
    # region 1 holds most values of a layer's input: evaluated on the whole array (clipped, so
    # that nothing overflows), then the others are gathered and overwritten
    t = np.clip(flat, -HEAD_X, HEAD_X) * math.sqrt(0.5)
    z = t * t
    cdf = _poly(z, PP)
    cdf /= _poly(z, QQ)
    cdf *= t
    cdf += t
    cdf *= 0.5
    cdf += 0.5
    rest = np.flatnonzero(~(np.abs(flat) * math.sqrt(0.5) < 0.84375))  # NaN included
    if rest.size:
        x_rest = flat[rest]
        erf, erfc = erf_erfc(np.abs(x_rest) * math.sqrt(0.5))
        cdf[rest] = np.where(x_rest < 0, 0.5 * erfc, 0.5 + 0.5 * erf)
    return cdf.reshape(np.shape(x))


# ---------------------------------------------------------------------------- the layers
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
#: the cubic's coefficient in GELU's tanh approximation (Hendrycks & Gimpel, 2016)
KAPPA = 0.044715


def _tanh_argument(x: np.ndarray) -> np.ndarray:
    """u = √(2/π)(x + 0.044715x³) on x clipped to ±1e4, where tanh u is already ±1."""
    xc = np.clip(x, -1e4, 1e4)
    return SQRT_2_OVER_PI * (xc + KAPPA * xc * xc * xc)


class ReLU6(_Elementwise):
    """ReLU capped at 6 (MobileNet's; PyTorch's ReLU6).

    Forward:   y = min(max(0, x), 6)
    Backward:  dx = dy · [0 < x < 6]  (the derivative at 0 and at 6 is taken as 0, as PyTorch)
    Shape: x: (N, ...) → y: same;  no parameters.
    """

    formula = "min(max(0, x), 6)"
    preferred_init = "he"

    def forward(self, x, *, training=False):
        y = np.clip(self._check_input(x), 0, 6)
        if training:
            self._cache = y  # 0 < y < 6 exactly where 0 < x < 6
        return y

    def backward(self, dy):
        y = self._take_cache()
        return self._check_dy(dy, y) * ((y > 0) & (y < 6))


class SiLU(Swish):
    """Swish with β = 1 under PyTorch's name (saved and loaded as "SiLU", with no argument).

    Forward:   y = x · σ(x)
    Backward:  dx = dy · (σ(x) + x · σ(x) · (1 − σ(x)))
    Shape: x: (N, ...) → y: same;  no parameters.
    """

    def __init__(self) -> None:
        super().__init__(beta=1.0)

    def config(self) -> dict:
        return {}


class Hardswish(_Elementwise):
    """Swish with a piecewise-linear gate (MobileNetV3's; PyTorch's Hardswish).

    Forward:   y = x · min(max(x + 3, 0), 6)/6:  0 for x ≤ −3, x(x + 3)/6 between, x for x ≥ 3
    Backward:  dx = dy · (0 if x ≤ −3, x/3 + ½ if −3 < x < 3, 1 if x ≥ 3)  (PyTorch's choice at ±3)
    Shape: x: (N, ...) → y: same;  no parameters.
    """

    formula = "x·min(max(x + 3, 0), 6)/6"
    preferred_init = "he"

    def forward(self, x, *, training=False):
        x = self._check_input(x)
        if training:
            self._cache = x
        # the gate first, in [0, 1]: x · gate cannot overflow where x(x + 3) would
        return x * (np.clip(x + 3, 0, 6) / 6)

    def backward(self, dy):
        x = self._take_cache()
        dy = self._check_dy(dy, x)
        slope = np.where(x <= -3, 0, np.where(x < 3, x / 3 + 0.5, 1))
        return (dy * slope).astype(dy.dtype, copy=False)


class GELU(_Elementwise):
    """Gaussian error linear unit (BERT's, GPT's; PyTorch's GELU), exact or its tanh approximation.

    Forward, approximate="none":  y = x · Φ(x),  Φ(x) = ½(1 + erf(x/√2)) the normal CDF
    Backward:                     dx = dy · (Φ(x) + x · φ(x)),  φ(x) = e^(−x²/2)/√(2π)
    Forward, approximate="tanh":  y = ½x(1 + tanh u),  u = √(2/π) · (x + 0.044715x³)
    Backward:                     dx = dy · (½(1 + tanh u) + ½x(1 − tanh²u) · √(2/π)(1 + 3·0.044715x²))
    Φ is computed in float64 (cnnlab's own erf, `erf_erfc`) and rounded to x's dtype; u and φ
    use x clipped to ±1e4 and ±40, where tanh u is ±1 and φ is 0 in float64: nothing overflows.
    Shape: x: (N, ...) → y: same;  no parameters.
    """

    preferred_init = "he"
    APPROXIMATIONS = ("none", "tanh")

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if not isinstance(approximate, str) or approximate not in self.APPROXIMATIONS:
            raise ValueError(f"GELU: approximate must be 'none' (exact, erf) or 'tanh'. "
                             f"Received: approximate={approximate!r}")
        self.approximate = approximate

    @property
    def formula(self) -> str:
        if self.approximate == "tanh":
            return "½x(1 + tanh(√(2/π)(x + 0.044715x³)))"
        return "x·Φ(x), Φ(x) = ½(1 + erf(x/√2))"

    def config(self) -> dict:
        return {"approximate": self.approximate}

    def forward(self, x, *, training=False):
        x = self._check_input(x)
        if self.approximate == "tanh":
            gate = 0.5 * (1 + np.tanh(_tanh_argument(x)))
        else:
            gate = normal_cdf(x).astype(x.dtype, copy=False)
        if training:
            self._cache = (x, gate)
        return x * gate

    def backward(self, dy):
        x, gate = self._take_cache()
        dy = self._check_dy(dy, x)
        if self.approximate == "tanh":
            xc = np.clip(x, -1e4, 1e4)
            # 1 − tanh²u = 4·gate·(1 − gate) from the cached gate = ½(1 + tanh u): no cancellation
            sech2 = 4 * gate * (1 - gate)
            slope = gate + 0.5 * xc * sech2 * (SQRT_2_OVER_PI * (1 + 3 * KAPPA * xc * xc))
        else:
            xc = np.clip(x, -40, 40)
            slope = gate + xc * (np.exp(-0.5 * xc * xc) * INV_SQRT_2PI)
        return dy * slope

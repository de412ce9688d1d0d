"""FP8 (e4m3) inputs: FlashAttention-3's q_descale, k_descale and v_descale arguments as the
descriptor's per-tensor descale factors, and the dtype of O (bfloat16 by default, as
FlashAttention-3 returns)."""
import math

from . import _lib

E4M3 = _lib.DTYPE_E4M3
OUT_DTYPES = (_lib.DTYPE_F32, _lib.DTYPE_F16, _lib.DTYPE_BF16)
_FLT_MAX = 3.4028234663852886e38


def descale_value(name, x):
    """A descale argument as a float (0.0 for None, which means 1): a Python or NumPy
    number, or an array of one element (FlashAttention-3 passes tensors; polyattn's
    factors are per tensor, so a [batch, heads_kv] tensor of several values is refused)."""
    if x is None:
        return 0.0
    if isinstance(x, bool):
        raise ValueError(f"{name}: {x!r} is not a number")
    if isinstance(x, (int, float)):
        value = float(x)
    else:
        numel = getattr(x, "numel", None)  # torch; NumPy, CuPy and JAX have .size
        size = numel() if callable(numel) else getattr(x, "size", None)
        if type(size) is not int or not hasattr(x, "dtype"):
            raise ValueError(f"{name}: {type(x).__name__} is not a number or a 1-element "
                             "array")
        if size != 1:
            raise ValueError(f"{name}: shape {tuple(x.shape)} has {size} elements; polyattn "
                             "takes one descale per tensor (a number or a 1-element array)")
        kind = str(x.dtype).rsplit(".", 1)[-1]
        if kind.startswith(("int", "uint", "bool", "complex")):
            raise ValueError(f"{name}: dtype {x.dtype} is not a floating type")
        try:
            value = float(x.item() if hasattr(x, "item") else x)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}: cannot read {x!r} as a number") from e
    if not (math.isfinite(value) and 0.0 < value <= _FLT_MAX):
        raise ValueError(f"{name}: {value!r} is not a finite number > 0")
    return value


def descales(q_descale=None, k_descale=None, v_descale=None):
    """(q, k, v) descale factors, or None where all three are None."""
    if q_descale is None and k_descale is None and v_descale is None:
        return None
    return (descale_value("q_descale", q_descale), descale_value("k_descale", k_descale),
            descale_value("v_descale", v_descale))


def check(dtype, factors):
    """Descales go with e4m3 inputs only (1 is allowed with any dtype, as in the library)."""
    if factors is None or dtype == E4M3:
        return
    for name, value in zip(("q_descale", "k_descale", "v_descale"), factors):
        if value not in (0.0, 1.0):
            raise ValueError(f"{name}: {value} with {_lib.DTYPE_NAMES.get(dtype, dtype)} "
                             "inputs; descale factors are for e4m3 (float8_e4m3fn) inputs")


def key(x):
    """A descale argument in a fast-path signature: None, int or float as is; NO (never
    stored) otherwise, so a tensor's value is read on the checked path every call."""
    from ._fast import NO
    return x if x is None or type(x) in (int, float) else NO

"""Arguments the C library cannot honour yet.  Each gate is one entry here: the issue that
adds a feature to the library removes its gate (and passes the value to the descriptor).

Values are validated first (ValueError for a malformed value), then a well-formed value
that needs a missing feature raises NotImplementedError naming the argument."""


def _present(feature):
    def gate(name, value):
        if value is not None:
            raise NotImplementedError(f"{name}: {feature} is not in the C library yet "
                                      "(only None)")
    return gate


def _dropout(name, p):
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name}: {p} is not in [0, 1)")
    if p > 0.0:
        raise NotImplementedError(f"{name}={p}: dropout is not supported (only 0.0)")


# The score variants (window, softcap, ALiBi, bias, mask, sinks) are in the library: they
# are checked and passed on by _variants.py.
_GATES = {
    "dropout_p": _dropout,
    "rotary_cos": _present("rotary embedding"),
    "rotary_sin": _present("rotary embedding"),
    "cache_batch_idx": _present("a cache batch index"),
    "cache_leftpad": _present("left-padded caches"),
}


def check(**arguments):
    """check(dropout_p=0.0, rotary_cos=None, ...): each keyword is `gate=value` or, to
    name the caller's argument, `gate=(argument name, value)` through check_named."""
    for gate, value in arguments.items():
        _GATES[gate](gate, value)


def check_named(gate, name, value):
    _GATES[gate](name, value)

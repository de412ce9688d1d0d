"""Arguments the C library cannot honour yet.  Each gate is one entry here: the issue that
adds a feature to the library removes its gate (and passes the value to the descriptor).

Values are validated first (ValueError for a malformed value), then a well-formed value
that needs a missing feature raises NotImplementedError naming the argument."""


def _window(name, window):
    if window is None:
        return
    try:
        left, right = window
        left, right = int(left), int(right)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: expected a pair (left, right), got {window!r}") from e
    if left < -1 or right < -1:
        raise ValueError(f"{name}: {window!r} has a negative size (-1 means unbounded)")
    if (left, right) != (-1, -1):
        raise NotImplementedError(f"{name}={window!r}: sliding-window attention is not in the "
                                  "C library yet (only (-1, -1))")


def _softcap(name, softcap):
    softcap = float(softcap)
    if softcap < 0:
        raise ValueError(f"{name}: {softcap} is negative")
    if softcap != 0.0:
        raise NotImplementedError(f"{name}={softcap}: logit soft-capping is not in the C "
                                  "library yet (only 0.0)")


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


_GATES = {
    "window": _window,
    "softcap": _softcap,
    "alibi_slopes": _present("ALiBi"),
    "bias": _present("an additive attention bias"),
    "sinks": _present("attention sinks"),
    "block_table": _present("a paged KV cache"),
    "dropout_p": _dropout,
}


def check(**arguments):
    """check(window_size=(-1, -1), softcap=0.0, ...): each keyword is `gate=value` or, to
    name the caller's argument, `gate=(argument name, value)` through check_named."""
    for gate, value in arguments.items():
        _GATES[gate](gate, value)


def check_named(gate, name, value):
    _GATES[gate](name, value)

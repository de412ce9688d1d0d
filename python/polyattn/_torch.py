"""torch integration: an autograd.Function whose backward runs polyattn_backward (eager),
and torch.library custom ops (torch >= 2.4) that torch.compile and CUDA graphs can trace."""
import torch

from ._dense import Dense


class Runner:
    """Forward and backward of a Dense or Varlen problem, with the log-sum-exp the backward
    needs (dense: the returned one; varlen: per-sequence blocks)."""

    def __init__(self, problem, varlen):
        self.problem, self.varlen = problem, varlen

    def forward(self, q, k, v, out, want_lse, want_probs, want_backward):
        if self.varlen:
            return self.problem.forward(q, k, v, out, want_lse, want_probs, want_backward)
        o, lse, probs = self.problem.forward(q, k, v, out, want_lse, want_probs, want_backward)
        return o, lse, probs, lse

    def backward(self, q, k, v, o, saved_lse, d_o, want_bias_grad=False):
        """(dq, dk, dv, d_bias or None, d_sinks or None)."""
        if tuple(d_o.stride()) != tuple(o.stride()):
            d_o = torch.empty_strided(o.shape, o.stride(), dtype=o.dtype,
                                      device=o.device).copy_(d_o)
        if self.varlen:
            return tuple(self.problem.backward(q, k, v, o, saved_lse, d_o)) + (None, None)
        return self.problem.backward(q, k, v, o, saved_lse, d_o, want_bias_grad, True)


class AttentionFunction(torch.autograd.Function):
    """o, lse, probs = f(q, k, v, bias, sinks): bias and sinks (the variants' tensors, or
    None) are inputs so that autograd gives them their gradients."""

    @staticmethod
    def forward(ctx, runner, q, k, v, want_lse, want_probs, bias, sinks):
        o, lse, probs, saved = runner.forward(q, k, v, None, want_lse, want_probs, True)
        ctx.runner = runner
        ctx.save_for_backward(q, k, v, o, saved)
        none = q.new_empty(0)
        lse = lse if lse is not None else none
        probs = probs if probs is not None else none
        ctx.mark_non_differentiable(lse, probs)
        return o, lse, probs

    @staticmethod
    def backward(ctx, d_o, _d_lse, _d_probs):
        q, k, v, o, saved = ctx.saved_tensors
        want_bias_grad = ctx.needs_input_grad[6]
        dq, dk, dv, d_bias, d_sinks = ctx.runner.backward(q, k, v, o, saved, d_o.contiguous(),
                                                          want_bias_grad)
        if not ctx.needs_input_grad[7]:
            d_sinks = None
        return None, dq, dk, dv, None, None, d_bias, d_sinks


def apply(runner, q, k, v, want_lse, want_probs, bias=None, sinks=None):
    o, lse, probs = AttentionFunction.apply(runner, q, k, v, want_lse, want_probs, bias, sinks)
    return o, (lse if want_lse else None), (probs if want_probs else None)


def needs_autograd(*tensors):
    return torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def is_compiling():
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and getattr(compiler, "is_compiling", None)
                and compiler.is_compiling())


# ---- custom ops ---------------------------------------------------------------------------

HAS_CUSTOM_OP = hasattr(torch, "library") and hasattr(torch.library, "custom_op")


def _dense(layout, mask, scale, backend, device, algo, deterministic):
    return Dense(layout, mask, scale if scale > 0 else None, backend or None,
                 device if device >= 0 else None, algo, deterministic)


if HAS_CUSTOM_OP:
    @torch.library.custom_op("polyattn::attention", mutates_args=())
    def attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: str, mask: int,
                     scale: float, backend: str, device: int, algo: str, deterministic: bool,
                     want_backward: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense attention: (o, lse f32 [batch, heads_q, seq_q])."""
        o, lse, _ = _dense(layout, mask, scale, backend, device, algo, deterministic).forward(
            q, k, v, None, True, False, want_backward)
        return o, lse

    @attention_op.register_fake
    def _(q, k, v, layout, mask, scale, backend, device, algo, deterministic, want_backward):
        if layout == "bshd":
            b, sq, hq, _ = q.shape
            o = q.new_empty((b, sq, hq, v.shape[3]))
        else:
            b, hq, sq, _ = q.shape
            o = q.new_empty((b, hq, sq, v.shape[3]))
        return o, q.new_empty((b, hq, sq), dtype=torch.float32)

    @torch.library.custom_op("polyattn::attention_backward", mutates_args=())
    def attention_backward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              o: torch.Tensor, lse: torch.Tensor, d_o: torch.Tensor,
                              layout: str, mask: int, scale: float, backend: str, device: int,
                              algo: str, deterministic: bool
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if tuple(d_o.stride()) != tuple(o.stride()):
            d_o = torch.empty_strided(o.shape, o.stride(), dtype=o.dtype,
                                      device=o.device).copy_(d_o)
        return _dense(layout, mask, scale, backend, device, algo, deterministic).backward(
            q, k, v, o, lse, d_o)

    @attention_backward_op.register_fake
    def _(q, k, v, o, lse, d_o, layout, mask, scale, backend, device, algo, deterministic):
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    def _setup_context(ctx, inputs, output):
        q, k, v = inputs[:3]
        ctx.args = inputs[3:10]
        ctx.save_for_backward(q, k, v, output[0], output[1])

    def _backward(ctx, d_o, _d_lse):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = attention_backward_op(q, k, v, o, lse, d_o.contiguous(), *ctx.args)
        return (dq, dk, dv) + (None,) * 8

    attention_op.register_autograd(_backward, setup_context=_setup_context)


def op_call(dense, q, k, v, algo_name):
    """The custom op for a Dense problem: (o, lse)."""
    if not HAS_CUSTOM_OP:
        raise NotImplementedError("torch.compile needs torch >= 2.4 (torch.library.custom_op)")
    return attention_op(q, k, v, dense.layout, dense.mask, dense.scale, dense.backend or "",
                        -1 if dense.device is None else int(dense.device), algo_name,
                        dense.deterministic, needs_autograd(q, k, v))

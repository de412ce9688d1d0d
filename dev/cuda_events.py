"""Timing by CUDA events for the dev/ A/B scripts that run through PyTorch."""
import torch


def median_ms(f, warmup=3, reps=15):
    """Median of `reps` timed calls of f (CUDA events, ms) after `warmup` untimed ones."""
    for _ in range(warmup): f()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); f(); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
    return sorted(ts)[len(ts) // 2]

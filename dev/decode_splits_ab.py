# Decode A/B of key-split counts (and paged caches of block size 16 and 256) through the Python package in one process (CUDA events):
# num_splits 0 (the plan's choice) and fixed counts, beside PyTorch SDPA flash and cudnn on the
# same tensors.  Prints one JSON line per measurement.  Used by dev/hopper_optin_gpu_run.sh.
# Usage: decode_splits_ab.py [KEYS,...]  (default 8192,32768,131072)
import json
import sys

import polyattn
import torch
from cuda_events import median_ms
torch.manual_seed(0)
res = []


# device-to-device copy bandwidth (read + write), the yardstick of the GB/s columns
x = torch.empty(1 << 30, device="cuda", dtype=torch.uint8).random_(0, 255)
y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record()
for _ in range(10): y.copy_(x)
e.record(); torch.cuda.synchronize()
print(json.dumps(dict(copy_gbps=2 * 10 * x.numel() / s.elapsed_time(e) / 1e6)), flush=True)
del x, y
for keys in [int(k) for k in (sys.argv[1] if len(sys.argv) > 1 else "8192,32768,131072").split(",")]:
    b, hq, hkv, d = 8, 32, 8, 128
    q = torch.randn(b, 1, hq, d, device="cuda", dtype=torch.bfloat16)
    kc = torch.randn(b, keys, hkv, d, device="cuda", dtype=torch.bfloat16)
    vc = torch.randn(b, keys, hkv, d, device="cuda", dtype=torch.bfloat16)
    lens = torch.full((b,), keys, device="cuda", dtype=torch.int32)
    ref = None
    for ns in (0, 5, 4, 8, 16):
        f = lambda: polyattn.flash_attn_with_kvcache(q, kc, vc, cache_seqlens=lens, causal=True, num_splits=ns)
        o = f()
        if ref is None: ref = o
        err = (o.float() - ref.float()).abs().max().item()
        ms = median_ms(f)
        gb = (2 * b * keys * hkv * d * 2 + 2 * b * hq * d * 2) / ms / 1e6
        r = dict(keys=keys, num_splits=ns, ms=ms, gbps=gb, max_diff_vs_auto=err)
        res.append(r); print(json.dumps(r), flush=True)
    # the same cache paged (blocks shuffled), at the plan's split count
    for bs in (16, 256):
        nb = keys // bs
        perm = torch.randperm(b * nb, device="cuda")
        kp = torch.empty(b * nb, bs, hkv, d, device="cuda", dtype=torch.bfloat16)
        vp = torch.empty_like(kp)
        kp[perm] = kc.reshape(b * nb, bs, hkv, d)
        vp[perm] = vc.reshape(b * nb, bs, hkv, d)
        table = perm.reshape(b, nb).to(torch.int32)
        f = lambda: polyattn.flash_attn_with_kvcache(q, kp, vp, cache_seqlens=lens, block_table=table, causal=True)
        o = f()
        err = (o.float() - ref.float()).abs().max().item()
        ms = median_ms(f)
        gb = (2 * b * keys * hkv * d * 2 + 2 * b * hq * d * 2) / ms / 1e6
        print(json.dumps(dict(keys=keys, paged_block_size=bs, ms=ms, gbps=gb, max_diff_vs_auto=err)), flush=True)
        del kp, vp
    # torch's fastest on the same data
    qt, kt, vt = q.transpose(1, 2), kc.transpose(1, 2), vc.transpose(1, 2)
    from torch.nn.attention import sdpa_kernel, SDPBackend
    for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
        try:
            with sdpa_kernel(be):
                g = lambda: torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, enable_gqa=True)
                ms = median_ms(g)
            print(json.dumps(dict(keys=keys, torch=name, ms=ms)), flush=True)
        except Exception as ex:
            print(json.dumps(dict(keys=keys, torch=name, error=str(ex)[:100])), flush=True)

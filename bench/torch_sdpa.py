"""PyTorch's scaled_dot_product_attention timed per backend the way `polyattn bench` times
polyattn (warm-up, CUDA events or graph replays, rotated input sets, median), each output
first checked against a float64 reference on sampled rows: the torch side of
bench/compare_torch.py."""
import math

SHAPE_KEYS = ("batch", "heads_q", "heads_kv", "seq_q", "seq_kv", "head_dim", "head_dim_v")


def torch_available():
    try:
        import torch  # noqa: F401
    except Exception as e:  # ImportError, or a broken install
        return None, "PyTorch is not installed (%s)" % e
    import torch
    if not torch.cuda.is_available():
        return None, "PyTorch %s sees no CUDA device" % torch.__version__
    return torch, None


class TorchBench:
    def __init__(self, torch, args, say, flops, stop):
        """self.say(text): progress; self.flops(shape, backward): the FLOPs of a shape; stop: a list whose
        first element a signal handler sets to end the run early."""
        self.say, self.flops, self.stop = say, flops, stop
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
        self.torch, self.F, self.sdpa_kernel, self.args = torch, F, sdpa_kernel, args
        self.backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                         "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
        self.dtypes = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
        self.tolerance = {"f32": 5e-3, "f16": 1e-2, "bf16": 6e-2}  # as polyattn bench's gate
        self.grad_tolerance = {"f32": 5e-3, "f16": 2e-2, "bf16": 1e-1}  # bench --backward's
        self._refs = None
        props = torch.cuda.get_device_properties(0)
        self.device_name = props.name
        self.device_mem = props.total_memory
        try:
            cudnn = torch.backends.cudnn.version()
        except Exception:
            cudnn = None
        self.info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn,
                     "device": self.device_name}

    def mask_call(self, s):
        """Keyword arguments giving SDPA polyattn's mask for shape s."""
        sq, skv = s["seq_q"], s["seq_kv"]
        if s["mask"] == "none":
            return {}
        if s["mask"] == "causal-top-left" or sq == skv:
            return {"is_causal": True}
        if sq == 1:  # bottom-right: the only query sees every key
            return {}
        from torch.nn.attention.bias import causal_lower_right
        return {"attn_mask": causal_lower_right(sq, skv)}

    def make_sets(self, s):
        torch = self.torch
        dt = self.dtypes[s["dtype"]]
        b, hq, hk = s["batch"], s["heads_q"], s["heads_kv"]
        sq, skv, d, dv = s["seq_q"], s["seq_kv"], s["head_dim"], s["head_dim_v"]
        esize = torch.tensor([], dtype=dt).element_size()
        set_bytes = (b * hq * sq * d + b * hk * skv * (d + dv)) * esize
        if self.args.backward:  # each set also holds dO (and the graph keeps O)
            set_bytes += 2 * b * hq * sq * dv * esize
        if self.args.rotate:
            n = self.args.rotate
        else:
            n = min(4, (256 << 20) // max(set_bytes, 1) + 1)
            while n > 1 and n * set_bytes > self.device_mem // 4:
                n -= 1
        gen = torch.Generator(device="cuda").manual_seed(0x5eed)
        sets = []
        for _ in range(n):
            def rand(*shape):
                x = torch.rand(*shape, device="cuda", dtype=torch.float32, generator=gen) * 2 - 1
                x[x == 0] = 0.5  # never time on zeros
                x = x.to(dt)
                return x.requires_grad_(True) if self.args.backward else x
            one = (rand(b, hq, sq, d), rand(b, hk, skv, d), rand(b, hk, skv, dv))
            if self.args.backward:
                one += (rand(b, hq, sq, dv).detach(),)
            sets.append(one)
        return sets

    def masked_scores(self, s, qs, ks, rows):
        """scale * qs @ ks^T in float64 with polyattn's mask for the given query rows."""
        torch = self.torch
        scores = (qs @ ks.T) / math.sqrt(s["head_dim"])
        if s["mask"] != "none":
            offset = 0 if s["mask"] == "causal-top-left" else s["seq_kv"] - s["seq_q"]
            i = torch.as_tensor(rows, device=qs.device).unsqueeze(1)
            j = torch.arange(s["seq_kv"], device=qs.device).unsqueeze(0)
            scores = scores.masked_fill(j > i + offset, float("-inf"))
        return scores

    def softmax(self, scores):
        p = self.torch.softmax(scores, dim=-1)
        return self.torch.nan_to_num(p, nan=0.0)  # a query that sees no key: P = 0

    def reference_rows(self, s, q, k, v, batch, head, rows):
        """float64 reference of O for query head `head` of `batch`, the given rows."""
        group = s["heads_q"] // s["heads_kv"]
        qs = q[batch, head, rows].detach().double()
        ks = k[batch, head // group].detach().double()
        vs = v[batch, head // group].detach().double()
        return self.softmax(self.masked_scores(s, qs, ks, rows)) @ vs

    def validate(self, s, out, q, k, v):
        """Max error relative to max |O| on sampled slices (first and last rows)."""
        m = min(64, s["seq_q"])
        worst = 0.0
        for batch, head, rows in ((0, 0, list(range(m))),
                                  (s["batch"] - 1, s["heads_q"] - 1,
                                   list(range(s["seq_q"] - m, s["seq_q"])))):
            ref = self.reference_rows(s, q, k, v, batch, head, rows)
            got = out[batch, head, rows].detach().double()
            diff = (got - ref).abs().max().item()
            scale = max(ref.abs().max().item(), 1e-20)
            err = diff / scale if diff == diff else float("inf")
            worst = max(worst, err)
        return worst

    def reference_grads(self, s, sample):
        """float64 gradients of set 0 on two samples: (batch 0, KV head 0, first rows and
        keys) and (last batch, last KV head, last rows and keys).  dQ rows from their own
        rows of P; dK and dV rows from every query of the KV group (in chunks).  Cached
        per shape: every SDPA backend is checked against the same numbers."""
        torch = self.torch
        q, k, v, do = (t.detach() for t in sample)
        group = s["heads_q"] // s["heads_kv"]
        sq, skv = s["seq_q"], s["seq_kv"]
        mq, mk = min(32, sq), min(32, skv)
        chunk = max(1, min(sq, (256 << 20) // (8 * 3 * skv)))
        refs = []
        for last in (False, True):
            b = s["batch"] - 1 if last else 0
            g = s["heads_kv"] - 1 if last else 0
            qrows = list(range(sq - mq, sq)) if last else list(range(mq))
            keys = list(range(skv - mk, skv)) if last else list(range(mk))
            qset = set(qrows)
            ks, vs = k[b, g].double(), v[b, g].double()
            dq = {}
            dk = torch.zeros(mk, s["head_dim"], dtype=torch.float64, device=q.device)
            dv = torch.zeros(mk, s["head_dim_v"], dtype=torch.float64, device=q.device)
            for h in range(g * group, (g + 1) * group):
                for r0 in range(0, sq, chunk):
                    rows = list(range(r0, min(sq, r0 + chunk)))
                    qs, dos = q[b, h, r0:r0 + len(rows)].double(), do[b, h, r0:r0 + len(rows)].double()
                    p = self.softmax(self.masked_scores(s, qs, ks, rows))
                    dp = dos @ vs.T
                    delta = (p * dp).sum(-1, keepdim=True)
                    ds = p * (dp - delta) / math.sqrt(s["head_dim"])
                    dk += ds[:, keys].T @ qs
                    dv += p[:, keys].T @ dos
                    want = [i for i in rows if i in qset]
                    if want:
                        idx = [i - r0 for i in want]
                        dq[h] = torch.cat([dq[h], ds[idx] @ ks]) if h in dq else ds[idx] @ ks
            refs.append((b, g, qrows, keys, dq, dk, dv))
        return refs

    def validate_grads(self, s, refs, grads):
        """Max error of dQ, dK, dV (each relative to its max |ref|) against reference_grads."""
        errs = []
        for t in range(3):
            diff, top = 0.0, 0.0
            for b, g, qrows, keys, dq, dk, dv in refs:
                if t == 0:
                    pairs = [(grads[0][b, h, qrows].double(), dq[h]) for h in dq]
                else:
                    pairs = [(grads[t][b, g, keys].double(), dk if t == 1 else dv)]
                for got, ref in pairs:
                    dd = (got - ref).abs().max().item()
                    diff = max(diff, dd) if dd == dd else float("inf")
                    top = max(top, ref.abs().max().item())
            errs.append(diff / max(top, 1e-20))
        return errs

    def time_graph(self, call, sets, reps, warmup):
        """Sorted times (ms per call) of `reps` replays of a CUDA graph of --graph calls."""
        torch, n = self.torch, self.args.graph
        side = torch.cuda.Stream()  # warm-up off the default stream, as capture wants
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for i in range(max(warmup, 1)):
                call(*sets[(i + 1) % len(sets)])
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outs = [call(*sets[(i + 1) % len(sets)]) for i in range(n)]
        graph.replay()
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(reps + 1)]
        ev[0].record()
        for i in range(reps):
            graph.replay()
            ev[i + 1].record()
        torch.cuda.synchronize()
        del outs, graph
        return sorted(ev[i].elapsed_time(ev[i + 1]) / n for i in range(reps))

    def time_backend(self, s, name, sets):
        torch, F = self.torch, self.F
        backward = self.args.backward
        rec = {"impl": "torch", "backend": name, "algo": name, "status": "ok", "reason": "",
               "pass": "backward" if backward else "forward"}
        kw = self.mask_call(s)
        gqa = {"enable_gqa": True} if s["heads_q"] != s["heads_kv"] else {}
        tol = self.tolerance[s["dtype"]]

        def call(q, k, v, *rest):
            return F.scaled_dot_product_attention(q, k, v, **kw, **gqa)

        def grad(out, q, k, v, do):
            return torch.autograd.grad(out, (q, k, v), do)
        try:
            with self.sdpa_kernel([self.backends[name]]):
                q, k, v = sets[0][:3]
                torch.cuda.synchronize()
                t0 = torch.cuda.Event(enable_timing=True)
                t1 = torch.cuda.Event(enable_timing=True)
                t0.record()
                out = call(q, k, v)
                t1.record()
                torch.cuda.synchronize()
                first_s = t0.elapsed_time(t1) * 1e-3
                err = self.validate(s, out, q, k, v)
                rec["max_err"] = err
                if not err <= tol:
                    rec.update(status="invalid",
                               reason="wrong result: error %.3g of max |O| (tolerance %g)"
                               % (err, tol))
                    return rec
                if backward:
                    t0.record()
                    grads = grad(out, *sets[0])
                    t1.record()
                    torch.cuda.synchronize()
                    first_s = t0.elapsed_time(t1) * 1e-3
                    if self._refs is None:
                        self._refs = self.reference_grads(s, sets[0])
                    errs = self.validate_grads(s, self._refs, grads)
                    del grads
                    rec.update(max_err=max(errs), max_err_dq=errs[0], max_err_dk=errs[1],
                               max_err_dv=errs[2])
                    gtol = self.grad_tolerance[s["dtype"]]
                    if not max(errs) <= gtol:
                        rec.update(status="invalid",
                                   reason="wrong gradient: error dQ %.3g dK %.3g dV %.3g of "
                                   "max |ref| (tolerance %g)" % (errs[0], errs[1], errs[2], gtol))
                        return rec
                del out
                reps, warmup = self.args.reps, self.args.warmup
                if self.args.max_seconds > 0 and first_s * (reps + warmup) > self.args.max_seconds:
                    warmup = min(warmup, 1)
                    reps = max(3, min(reps, int(self.args.max_seconds / max(first_s, 1e-9)) - warmup))
                if backward:
                    # Each backward after its own untimed forward: events around the
                    # backward alone, all queued before one synchronization.
                    for i in range(warmup):
                        one = sets[(i + 1) % len(sets)]
                        grad(call(*one), *one)
                    ev = [(torch.cuda.Event(enable_timing=True),
                           torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
                    for i in range(reps):
                        one = sets[(i + 1 + warmup) % len(sets)]
                        out = call(*one)
                        ev[i][0].record()
                        grad(out, *one)
                        ev[i][1].record()
                        del out
                    torch.cuda.synchronize()
                    times = sorted(a.elapsed_time(b) for a, b in ev)
                elif self.args.graph:
                    times = self.time_graph(call, sets, reps, warmup)
                else:
                    for i in range(warmup):
                        call(*sets[(i + 1) % len(sets)])
                    # Chained events: ev[i]..ev[i+1] brackets call i, calls back to back.
                    ev = [torch.cuda.Event(enable_timing=True) for _ in range(reps + 1)]
                    ev[0].record()
                    for i in range(reps):
                        call(*sets[(i + 1 + warmup) % len(sets)])
                        ev[i + 1].record()
                    torch.cuda.synchronize()
                    times = sorted(ev[i].elapsed_time(ev[i + 1]) for i in range(reps))
                ms = times[reps // 2] if reps % 2 else 0.5 * (times[reps // 2 - 1] + times[reps // 2])
                rec.update(timing="graph%d" % self.args.graph if self.args.graph and not backward
                           else "events")
                rec.update(reps=reps, ms=ms, ms_min=times[0], ms_max=times[-1],
                           tflops=self.flops(s, backward) / (ms * 1e-3) / 1e12)
        except Exception as e:  # the backend refuses the shape, or out of memory
            text = " ".join(str(e).split()) or type(e).__name__
            oom = "out of memory" in text.lower()
            rec.update(status="oom" if oom else "unsupported", reason=text[:300])
        finally:
            torch.cuda.empty_cache()
        return rec

    def run(self, shapes, on_result=None):
        results = []
        for s in shapes:
            if self.stop[0]:
                self.say("torch: interrupted; writing what was measured")
                break
            self.say("torch: b %d hq %d hkv %d sq %d skv %d d %d %s %s%s" % (
                s["batch"], s["heads_q"], s["heads_kv"], s["seq_q"], s["seq_kv"], s["head_dim"],
                s["mask"], s["dtype"], " backward" if self.args.backward else ""))
            self._refs = None
            try:
                sets = self.make_sets(s)
            except Exception as e:
                text = " ".join(str(e).split())[:300]
                for name in self.args.torch_list:
                    r = dict(s, impl="torch", backend=name, algo=name, status="unsupported",
                             reason="inputs: " + text,
                             **{"pass": "backward" if self.args.backward else "forward"})
                    results.append(r)
                    if on_result:
                        on_result(r)
                self.torch.cuda.empty_cache()
                continue
            for name in self.args.torch_list:
                r = self.time_backend(s, name, sets)
                r.update({k: s[k] for k in SHAPE_KEYS + ("mask", "dtype")})
                r["suite"] = s.get("suite", self.args.suite)
                r["device"] = self.device_name
                results.append(r)
                if on_result:
                    on_result(r)
                self.say("  %-9s %-11s %s" % (name, r["status"],
                    "%.4f ms" % r["ms"] if r["status"] == "ok" else r["reason"][:150]))
            del sets
            self._refs = None
            self.torch.cuda.empty_cache()
        return results


# ---- reports -------------------------------------------------------------------------


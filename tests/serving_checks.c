/* The serving checks of every backend (serving_fixture.h): a case's forward (every element of
 * O, LSE and the caches; rows outside every sequence untouched) and its varlen backward
 * (dQ, dK, dV, d_sinks; zeros outside the sequences), against the fixture's double reference. */
#include "serving_fixture.h"

polyattn_status serving_plan(const built *w, const serving_run *run, int backward,
                             polyattn_plan **plan)
{
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = run->algo;
    opt.want_lse = 1;
    opt.want_backward = backward;
    opt.deterministic = run->deterministic;
    opt.num_splits = run->num_splits;
    opt.check_device_inputs = run->check_device_inputs;
    return polyattn_plan_create(ctx, &w->desc, &opt, plan);
}

/* ---- forward: every element of O, LSE and the caches ---- */

int serving_check_forward(const scase *c, const serving_run *run, uint64_t seed,
                          polyattn_plan_info *info_out)
{
    const polyattn_algo algo = run->algo;
    built w;
    build(&w, c, seed);
    const polyattn_dtype dt = c->dtype;
    const size_t es = polyattn_dtype_size(dt);
    polyattn_plan *plan = NULL;
    polyattn_status st = serving_plan(&w, run, 0, &plan);
    if (st == POLYATTN_STATUS_UNSUPPORTED && run->allow_unsupported) {
        unbuild(&w);
        return 2;
    }
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "  %s (%s): plan: %s\n", c->name, polyattn_algo_name(algo),
                polyattn_context_last_error(ctx));
        unbuild(&w);
        return 1;
    }
    if (info_out) {
        memset(info_out, 0, sizeof *info_out);
        info_out->struct_size = sizeof *info_out;
        polyattn_plan_get_info(plan, info_out);
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_plan_get_info(plan, &info);
    polyattn_buffer *ws = info.workspace_bytes ? upload(NULL, info.workspace_bytes) : NULL;
    const int failures_before = failures;
    st = polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, ws, &w.extra);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS)
        fprintf(stderr, "  %s (%s): forward: %s\n", c->name, polyattn_algo_name(algo),
                polyattn_context_last_error(ctx));
    unsigned char *o = malloc(w.o_bytes), *k = malloc(w.k_bytes), *v = malloc(w.v_bytes);
    float *lse = malloc(w.lse_elems * 4);
    unsigned char *written = calloc(w.o_bytes / es, 1), *lse_written = calloc(w.lse_elems, 1);
    polyattn_buffer_read(w.bo, 0, o, w.o_bytes),
        polyattn_buffer_read(w.blse, 0, lse, w.lse_elems * 4);
    polyattn_buffer_read(w.bk, 0, k, w.k_bytes), polyattn_buffer_read(w.bv, 0, v, w.v_bytes);
    const double o_tol = (dt == POLYATTN_DTYPE_F32   ? 2e-5
                          : dt == POLYATTN_DTYPE_F16 ? 2e-3
                                                     : 1.6e-2) *
                         (run->tol_scale > 0 ? run->tol_scale : 1.0);
    double *ro = malloc((size_t)c->dv * sizeof *ro);
    long long bad = 0;
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->hq; h++)
            for (int64_t i = 0; i < w.lq[b]; i++) {
                ref_row rr;
                ref_row_init(&w, b, h, i, &rr);
                ref_o(&w, b, h, i, &rr, ro);
                for (int64_t x = 0; x < c->dv; x++) {
                    int64_t e = at(&w.desc.o, c->varlen_q ? 0 : b, h, w.q0[b] + i, x);
                    float got;
                    pa_tk_decode(&got, o + (size_t)e * es, 1, dt);
                    written[e] = 1;
                    if (!(fabs(got - ro[x]) <= o_tol) && bad++ < 4)
                        fprintf(stderr,
                                "  %s (%s): seq %lld head %lld query %lld O[%lld] = %g, want %g\n",
                                c->name, polyattn_algo_name(algo), (long long)b, (long long)h,
                                (long long)i, (long long)x, got, ro[x]);
                }
                int64_t li = lse_index(&w, b, h, i);
                lse_written[li] = 1;
                double want = rr.lse, got = lse[li];
                int ok = isinf(want) ? got == want : fabs(got - want) <= 2e-5 * (1.0 + fabs(want));
                if (!ok && bad++ < 4)
                    fprintf(stderr, "  %s (%s): seq %lld head %lld query %lld LSE %g, want %g\n",
                            c->name, polyattn_algo_name(algo), (long long)b, (long long)h,
                            (long long)i, got, want);
            }
    /* Rows outside every sequence keep their poison. */
    long long touched = 0;
    for (size_t e = 0; e < w.o_bytes / es; e++)
        if (!written[e] && memcmp(o + e * es, w.o_img + e * es, es) != 0) touched++;
    float poison;
    pa_tk_poison(&poison, 1, POLYATTN_DTYPE_F32);
    for (size_t e = 0; e < w.lse_elems; e++)
        if (!lse_written[e] && memcmp(&lse[e], &poison, 4) != 0) touched++;
    /* Caches: exactly the appended rows written (or nothing without append). */
    const unsigned char *k_want = c->seq_new ? w.k_after : w.k_img,
                        *v_want = c->seq_new ? w.v_after : w.v_img;
    long long cache_bad = memcmp(k, k_want, w.k_bytes) != 0 || memcmp(v, v_want, w.v_bytes) != 0;
    CHECK(bad == 0);
    CHECK(touched == 0);
    CHECK(cache_bad == 0);
    if (bad || touched || cache_bad)
        fprintf(stderr, "  %s (%s): %lld bad, %lld padding elements written, caches %s\n", c->name,
                polyattn_algo_name(algo), bad, touched, cache_bad ? "wrong" : "right");
    free(o), free(k), free(v), free(lse), free(written), free(lse_written), free(ro);
    polyattn_buffer_free(ws);
    polyattn_plan_destroy(plan);
    unbuild(&w);
    return failures != failures_before;
}

/* ---- backward of varlen: dQ, dK, dV, d_sinks against the reference's gradients ---- */

int serving_check_backward(const scase *c, const serving_run *run, uint64_t seed)
{
    const polyattn_algo algo = run->algo;
    built w;
    build(&w, c, seed);
    const size_t es = 4; /* f32 only */
    polyattn_plan *plan = NULL;
    polyattn_status st = serving_plan(&w, run, 1, &plan);
    if (st == POLYATTN_STATUS_UNSUPPORTED && run->allow_unsupported) {
        unbuild(&w);
        return 2;
    }
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "  %s backward (%s): plan: %s\n", c->name, polyattn_algo_name(algo),
                polyattn_context_last_error(ctx));
        unbuild(&w);
        return 1;
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_plan_get_info(plan, &info);
    polyattn_buffer *ws = info.workspace_bytes ? upload(NULL, info.workspace_bytes) : NULL;
    polyattn_buffer *bws =
        info.backward_workspace_bytes ? upload(NULL, info.backward_workspace_bytes) : NULL;
    const int failures_before = failures;
    pa_tk_rng r;
    pa_tk_rng_seed(&r, seed ^ 0x5eed);
    const size_t on = w.o_bytes / es, qn = w.q_bytes / es, kn = w.k_bytes / es, vn = w.v_bytes / es;
    float *d_o = malloc(on * 4);
    for (size_t e = 0; e < on; e++)
        d_o[e] = (float)pa_tk_rng_uniform(&r);
    polyattn_buffer *bdo = upload(d_o, on * 4), *bdq = upload(NULL, qn * 4);
    polyattn_buffer *bdk = upload(NULL, kn * 4), *bdv = upload(NULL, vn * 4);
    polyattn_buffer *bds = c->sinks ? upload(NULL, (size_t)c->hq * 4) : NULL;
    float *poison = malloc((qn > kn ? (qn > vn ? qn : vn) : (kn > vn ? kn : vn)) * 4);
    pa_tk_poison(poison, qn > kn ? (qn > vn ? qn : vn) : (kn > vn ? kn : vn), POLYATTN_DTYPE_F32);
    polyattn_buffer_write(bdq, 0, poison, qn * 4), polyattn_buffer_write(bdk, 0, poison, kn * 4);
    polyattn_buffer_write(bdv, 0, poison, vn * 4);
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, ws, &w.extra) ==
          POLYATTN_STATUS_SUCCESS);
    polyattn_extra_tensors ex = w.extra;
    ex.d_sinks = bds;
    st = polyattn_backward_ex(plan, w.bq, w.bk, w.bv, w.bo, bdo, w.blse, bdq, bdk, bdv, bws, &ex);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS)
        fprintf(stderr, "  backward: %s\n", polyattn_context_last_error(ctx));
    float *dq = malloc(qn * 4), *dk = malloc(kn * 4), *dv = malloc(vn * 4),
          *ds = malloc((size_t)c->hq * 4);
    polyattn_buffer_read(bdq, 0, dq, qn * 4), polyattn_buffer_read(bdk, 0, dk, kn * 4);
    polyattn_buffer_read(bdv, 0, dv, vn * 4);
    if (bds) polyattn_buffer_read(bds, 0, ds, (size_t)c->hq * 4);
    /* Reference gradients in the physical layouts (zeros outside the sequences). */
    double *rq = calloc(qn, sizeof *rq), *rk = calloc(kn, sizeof *rk), *rv = calloc(vn, sizeof *rv);
    double *rs = calloc((size_t)c->hq, sizeof *rs);
    double *ro = malloc((size_t)c->dv * sizeof *ro),
           *dp = malloc((size_t)(w.total_kv + 64) * sizeof *dp);
    const double scale = 1.0 / sqrt((double)c->d);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->hq; h++)
            for (int64_t i = 0; i < w.lq[b]; i++) {
                const int64_t hk = h / (c->hq / c->hkv), qa = c->varlen_q ? 0 : b;
                ref_row rr;
                ref_row_init(&w, b, h, i, &rr);
                if (rr.lse == -INFINITY) continue;
                ref_o(&w, b, h, i, &rr, ro);
                const float *g = d_o; /* dO of the row at o's strides */
                double D = 0.0, dc;
                for (int64_t x = 0; x < c->dv; x++)
                    D += (double)g[at(&w.desc.o, qa, h, w.q0[b] + i, x)] * ro[x];
                for (int64_t j = 0; j < w.lk[b]; j++) {
                    if (!visible(c, rr.diag, j)) continue;
                    const double p = exp(score(&w, b, h, i, j, rr.diag, &dc) - rr.lse);
                    int64_t a, row;
                    kv_pos(&w, b, j, &a, &row);
                    double dpj = 0.0;
                    for (int64_t x = 0; x < c->dv; x++) {
                        const double gx = g[at(&w.desc.o, qa, h, w.q0[b] + i, x)];
                        dpj += gx * w.V[b][(hk * w.lk[b] + j) * c->dv + x];
                        rv[at(&w.desc.v, a, hk, row, x)] += p * gx;
                    }
                    const double dsj = p * (dpj - D) * dc * scale;
                    for (int64_t x = 0; x < c->d; x++) {
                        rq[at(&w.desc.q, qa, h, w.q0[b] + i, x)] +=
                            dsj * w.K[b][(hk * w.lk[b] + j) * c->d + x];
                        rk[at(&w.desc.k, a, hk, row, x)] +=
                            dsj * w.Q[b][(h * w.lq[b] + i) * c->d + x];
                    }
                }
                if (c->sinks) rs[h] -= exp(rr.sink - rr.lse) * D;
            }
    double mq = 1e-30, mk = 1e-30, mv = 1e-30;
    for (size_t e = 0; e < qn; e++)
        mq = fmax(mq, fabs(rq[e]));
    for (size_t e = 0; e < kn; e++)
        mk = fmax(mk, fabs(rk[e]));
    for (size_t e = 0; e < vn; e++)
        mv = fmax(mv, fabs(rv[e]));
    long long bad = 0;
    const double tol = 1e-4;
    for (size_t e = 0; e < qn; e++)
        bad += !(fabs(dq[e] - rq[e]) <= tol * mq);
    for (size_t e = 0; e < kn; e++)
        bad += !(fabs(dk[e] - rk[e]) <= tol * mk);
    for (size_t e = 0; e < vn; e++)
        bad += !(fabs(dv[e] - rv[e]) <= tol * mv);
    for (int64_t h = 0; c->sinks && h < c->hq; h++)
        bad += !(fabs(ds[h] - rs[h]) <= 1e-4 * (1.0 + fabs(rs[h])));
    CHECK(bad == 0);
    if (bad)
        fprintf(stderr, "  %s backward (%s): %lld bad gradient elements\n", c->name,
                polyattn_algo_name(algo), bad);
    free(d_o), free(poison), free(dq), free(dk), free(dv), free(ds), free(rq), free(rk), free(rv),
        free(rs);
    free(ro), free(dp);
    polyattn_buffer_free(bdo), polyattn_buffer_free(bdq), polyattn_buffer_free(bdk);
    polyattn_buffer_free(bdv), polyattn_buffer_free(bds);
    polyattn_buffer_free(ws), polyattn_buffer_free(bws);
    polyattn_plan_destroy(plan);
    unbuild(&w);
    return failures != failures_before;
}

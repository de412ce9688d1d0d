/*
 * The opencl.* keys of POLYATTN_FORCE (read once per context by the core; parsed here at
 * plan time).  A bad value or an unknown opencl.* key fails planning with a sentence that
 * names POLYATTN_FORCE and the key.  The keys are documented in the README ("Forcing a
 * path"):
 *   opencl.flash=tiled|rows          flash forward kernel
 *   opencl.tiles=BMxBN:RGxCG:DK:VN   forward tile of the flash (tiled) and fused kernels
 *   opencl.bwd=tiled|rows            flash backward kernels (flash and fused plans)
 *   opencl.bwd_tiles=RxC:RGxCG:DK:VN tile of the tiled flash backward
 *   opencl.unfused_chunk=N           unfused: at most N matrices (forward) or GQA groups
 *                                    (backward) per CLBlast pass
 *   opencl.serving=coop|rows         serving forward kernel (cooperative decode or rows)
 *   opencl.coop=batched|serial       the cooperative decode kernel's shape
 */
#include "ocl_algos.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "opencl."

static const char *const known[] = {"flash",         "bwd",     "tiles", "bwd_tiles",
                                    "unfused_chunk", "serving", "coop"};

static int tiled_or_rows(const char *v)
{
    return !strcmp(v, "tiled") ? OCL_FORCE_TILED : !strcmp(v, "rows") ? OCL_FORCE_ROWS : 0;
}

/* "AxB:CxD:E:F" -> six positive ints. */
static int six_ints(const char *v, int out[6])
{
    char tail;
    return sscanf(v, "%dx%d:%dx%d:%d:%d%c", &out[0], &out[1], &out[2], &out[3], &out[4], &out[5],
                  &tail) == 6;
}

static const char *bad(ocl_device *d, const char *key, const char *value, const char *want)
{
    snprintf(d->force_error, sizeof d->force_error, "POLYATTN_FORCE: " PREFIX "%s=%s: %s", key,
             value, want);
    return d->force_error;
}

const char *ocl_force_read(ocl_device *d, ocl_force *f)
{
    memset(f, 0, sizeof *f);
    /* Unknown opencl.* keys are typos: refuse them rather than ignore them. */
    for (const char *s = d->base.force; *s;) {
        const char *end = strchr(s, ',');
        if (!end) end = s + strlen(s);
        const char *eq = memchr(s, '=', (size_t)(end - s));
        if (eq && !strncmp(s, PREFIX, strlen(PREFIX))) {
            const char *key = s + strlen(PREFIX);
            int ok = 0;
            for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
                if ((size_t)(eq - key) == strlen(known[i]) &&
                    !strncmp(key, known[i], strlen(known[i])))
                    ok = 1;
            if (!ok) {
                snprintf(d->force_error, sizeof d->force_error,
                         "POLYATTN_FORCE: unknown key %.*s (OpenCL keys: " PREFIX "flash, " PREFIX
                         "tiles, " PREFIX "bwd, " PREFIX "bwd_tiles, " PREFIX
                         "unfused_chunk, " PREFIX "serving, " PREFIX "coop)",
                         (int)(eq - s), s);
                return d->force_error;
            }
            size_t n = strlen(f->text);
            snprintf(f->text + n, sizeof f->text - n, "%s%.*s", n ? "," : "", (int)(end - s), s);
        }
        s = *end ? end + 1 : end;
    }
    char v[64];
    if (pa_force_get(&d->base, PREFIX "flash", v, sizeof v) && !(f->flash = tiled_or_rows(v)))
        return bad(d, "flash", v, "expected tiled or rows");
    if (pa_force_get(&d->base, PREFIX "bwd", v, sizeof v) && !(f->bwd = tiled_or_rows(v)))
        return bad(d, "bwd", v, "expected tiled or rows");
    if (pa_force_get(&d->base, PREFIX "serving", v, sizeof v) &&
        !(f->serving = !strcmp(v, "coop")   ? OCL_FORCE_COOP
                       : !strcmp(v, "rows") ? OCL_FORCE_ROWS
                                            : 0))
        return bad(d, "serving", v, "expected coop or rows");
    if (pa_force_get(&d->base, PREFIX "coop", v, sizeof v) &&
        !(f->coop = !strcmp(v, "batched")  ? OCL_COOP_BATCHED
                    : !strcmp(v, "serial") ? OCL_COOP_SERIAL
                                           : 0))
        return bad(d, "coop", v, "expected batched or serial");
    int x[6];
    if (pa_force_get(&d->base, PREFIX "tiles", v, sizeof v)) {
        if (!six_ints(v, x))
            return bad(d, "tiles", v, "expected BMxBN:RGxCG:DK:VN (64x64:16x8:32:32)");
        f->tiles = (ocl_tiles){x[0], x[1], x[2], x[3], x[4], x[5]};
        if (!ocl_tiles_valid(&f->tiles))
            return bad(d, "tiles", v,
                       "sizes must be positive with RG dividing BM, CG and VN "
                       "dividing BN");
        f->has_tiles = 1;
    }
    if (pa_force_get(&d->base, PREFIX "bwd_tiles", v, sizeof v)) {
        if (!six_ints(v, x))
            return bad(d, "bwd_tiles", v, "expected RxC:RGxCG:DK:VN (64x64:16x16:32:16)");
        f->bwd_tiles = (ocl_bwd_tiles){x[0], x[1], x[2], x[3], x[4], x[5]};
        if (!ocl_bwd_tiles_valid(&f->bwd_tiles))
            return bad(d, "bwd_tiles", v,
                       "sizes must be positive with RG dividing R, CG and VN "
                       "dividing C");
        f->has_bwd_tiles = 1;
    }
    if (pa_force_get(&d->base, PREFIX "unfused_chunk", v, sizeof v)) {
        char *end = NULL;
        long long n = strtoll(v, &end, 10);
        if (!end || *end || n < 1) return bad(d, "unfused_chunk", v, "expected a positive count");
        f->unfused_chunk = (uint64_t)n;
    }
    return NULL;
}

/*
 * Independent contexts on several threads at once: concurrent context creation (the
 * registry's first probe), validation messages per thread, plans and forwards.  Each
 * thread's result must equal the single-threaded reference bit for bit.
 */
#define _POSIX_C_SOURCE 200809L
#include "pa_testkit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_THREADS = 4, ROUNDS = 3 };

typedef struct job {
    int id;
    const pa_tk_problem *p;
    int failures;
    char why[256];
    float *out; /* O of the last round, compared with the reference after the join */
} job;

static void *worker(void *arg)
{
    job *j = (job *)arg;
    polyattn_context *ctx = NULL;
    int round;
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        snprintf(j->why, sizeof j->why, "context: %s", polyattn_last_error());
        j->failures++;
        return NULL;
    }
    for (round = 0; round < ROUNDS; round++) {
        polyattn_attention_desc bad = j->p->desc;
        const char *message = NULL;
        polyattn_plan_options opt;
        polyattn_plan *plan = NULL;
        polyattn_buffer *q = NULL, *k = NULL, *v = NULL, *o = NULL;
        float *out = (float *)malloc(j->p->o_elems * sizeof(float));
        if (out) pa_tk_poison(out, j->p->o_elems, POLYATTN_DTYPE_F32);
        /* a thread-specific invalid field: its message must name that field, not another
         * thread's */
        bad.k.shape[3] = 1000 + j->id;
        if (polyattn_attention_desc_validate(&bad, &message) != POLYATTN_STATUS_INVALID_ARGUMENT ||
            !message || !strstr(message, "k.shape[3]")) {
            snprintf(j->why, sizeof j->why, "validation message: %s", message ? message : "(null)");
            j->failures++;
        } else {
            char want[32];
            snprintf(want, sizeof want, "%d", 1000 + j->id);
            if (!strstr(message, want)) {
                snprintf(j->why, sizeof j->why, "message of another thread: %s", message);
                j->failures++;
            }
        }
        polyattn_plan_options_init(&opt);
        opt.algo = (j->id & 1) ? POLYATTN_ALGO_FLASH : POLYATTN_ALGO_UNFUSED;
        if (!out || polyattn_plan_create(ctx, &j->p->desc, &opt, &plan) ||
            polyattn_buffer_alloc(ctx, j->p->q_elems * 4, &q) ||
            polyattn_buffer_alloc(ctx, j->p->k_elems * 4, &k) ||
            polyattn_buffer_alloc(ctx, j->p->v_elems * 4, &v) ||
            polyattn_buffer_alloc(ctx, j->p->o_elems * 4, &o) ||
            polyattn_buffer_write(q, 0, j->p->q_data, j->p->q_elems * 4) ||
            polyattn_buffer_write(k, 0, j->p->k_data, j->p->k_elems * 4) ||
            polyattn_buffer_write(v, 0, j->p->v_data, j->p->v_elems * 4) ||
            polyattn_forward(plan, q, k, v, o, NULL, NULL, NULL) ||
            polyattn_buffer_read(o, 0, out, j->p->o_elems * 4)) {
            snprintf(j->why, sizeof j->why, "run: %s", polyattn_context_last_error(ctx));
            j->failures++;
        } else if (j->out && memcmp(out, j->out, j->p->o_elems * 4) != 0) {
            snprintf(j->why, sizeof j->why, "O differs between rounds");
            j->failures++;
        }
        free(j->out);
        j->out = out;
        out = NULL;
        polyattn_buffer_free(q);
        polyattn_buffer_free(k);
        polyattn_buffer_free(v);
        polyattn_buffer_free(o);
        polyattn_plan_destroy(plan);
        free(out);
    }
    polyattn_context_destroy(ctx);
    return NULL;
}

int main(void)
{
    pa_tk_case c = {"threads",  2,    4,    2, 57, 75, 32, 32, POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT,
                    PA_TK_BHSD, 0.0f, 1.0f, 1};
    pa_tk_problem p;
    pthread_t threads[N_THREADS];
    job jobs[N_THREADS];
    int i, failures = 0;
    char err[256];
    if (pa_tk_problem_init(&p, &c, POLYATTN_DTYPE_F32, 3) != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "cannot build inputs\n");
        return 1;
    }
    /* The threads start before anything touched the registry: they race on its first
     * probe.  The reference comes after the join. */
    for (i = 0; i < N_THREADS; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].id = i;
        jobs[i].p = &p;
    }
    for (i = 0; i < N_THREADS; i++)
        if (pthread_create(&threads[i], NULL, worker, &jobs[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    for (i = 0; i < N_THREADS; i++)
        pthread_join(threads[i], NULL);
    if (pa_tk_problem_reference(&p, err, sizeof err) != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    for (i = 0; i < N_THREADS; i++) {
        if (!jobs[i].failures &&
            (!jobs[i].out || memcmp(jobs[i].out, p.ref_o, p.o_elems * 4) != 0)) {
            snprintf(jobs[i].why, sizeof jobs[i].why,
                     "O differs from the single-threaded reference");
            jobs[i].failures++;
        }
        free(jobs[i].out);
        if (jobs[i].failures) {
            fprintf(stderr, "thread %d: %d failure(s), last: %s\n", i, jobs[i].failures,
                    jobs[i].why);
            failures += jobs[i].failures;
        }
    }
    pa_tk_problem_free(&p);
    pa_tk_shutdown();
    if (failures) return 1;
    printf("test_threads: %d threads x %d rounds agree with the reference\n", N_THREADS, ROUNDS);
    return 0;
}

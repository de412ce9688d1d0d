/*
 * The tensor-core flash backward's tile walks on the host (the device's code): for random
 * lengths, both causal alignments and windows, the queries a dK/dV block walks
 * (bwd_queries_of_keys) and the key tiles a dQ block walks (bwd_key_tiles) hold every pair
 * pa_gpu_visible_range leaves visible, and, where no row is empty, nothing more.  A walk that
 * misses a pair loses its gradient; one that walks too much only wastes time, which the
 * second check catches.  Runs wherever the CUDA backend builds, CI included.
 */
#include "flash_tc_bwd.cuh"

#include <cstdio>
#include <cstdlib>
#include <cstring>

using pa_tc_bwd::bwd_key_tiles;
using pa_tc_bwd::bwd_queries_of_keys;

namespace
{

int bad = 0, checks = 0;

void fail(const pa_gpu_args &a, const char *what, int at, int first, int end, int want_first,
          int want_end)
{
    if (bad++ < 10)
        std::printf("FAIL %s at %d: seq_q %d seq_kv %d mask %d window %d (%d, %d): [%d, %d), "
                    "want [%d, %d)\n",
                    what, at, a.seq_q, a.seq_kv, a.mask, a.has_window, a.window_left,
                    a.window_right, first, end, want_first, want_end);
}

/* Whether query i sees a key of [k0, k1). */
bool sees(const pa_gpu_args &a, int i, int k0, int k1)
{
    int lo, hi;
    pa_gpu_visible_range(a, i, lo, hi);
    return lo < hi && lo < k1 && hi > k0;
}

void check(const pa_gpu_args &a, bool no_empty_row)
{
    for (int bn : {16, 64, 128}) { /* dK/dV: the queries of each key tile */
        for (int key0 = 0; key0 < a.seq_kv; key0 += bn) {
            const int k1 = key0 + bn < a.seq_kv ? key0 + bn : a.seq_kv;
            int first, end, lo = -1, hi = -1;
            bwd_queries_of_keys(a, key0, bn, first, end);
            for (int i = 0; i < a.seq_q; ++i)
                if (sees(a, i, key0, k1)) {
                    if (lo < 0) lo = i;
                    hi = i + 1;
                }
            ++checks;
            const bool covers = lo < 0 || (first <= lo && end >= hi);
            const bool tight = lo < 0 ? end <= first : first == lo && end == hi;
            if (!covers || (no_empty_row && !tight))
                fail(a, "queries of key tile", key0, first, end, lo, hi);
        }
    }
    for (int bm : {16, 64}) /* dQ: the key tiles of each query tile */
        for (int bn : {64, 128})
            for (int row0 = 0; row0 < a.seq_q; row0 += bm) {
                const int row_last = (row0 + bm < a.seq_q ? row0 + bm : a.seq_q) - 1;
                int first, end, lo = -1, hi = -1;
                bwd_key_tiles(a, row0, row_last, bn, first, end);
                for (int t = 0; t * bn < a.seq_kv; ++t)
                    for (int i = row0; i <= row_last; ++i)
                        if (sees(a, i, t * bn, t * bn + bn)) {
                            if (lo < 0) lo = t;
                            hi = t + 1;
                            break;
                        }
                ++checks;
                const bool covers = lo < 0 || (first <= lo && end >= hi);
                const bool tight = lo < 0 ? end <= first : first == lo && end == hi;
                if (!covers || (no_empty_row && !tight))
                    fail(a, "key tiles of query tile", row0, first, end, lo, hi);
            }
}

} // namespace

int main()
{
    std::srand(7);
    for (int n = 0; n < 3000; ++n) {
        pa_gpu_args a;
        std::memset(&a, 0, sizeof a);
        a.seq_q = 1 + std::rand() % 300;
        a.seq_kv = 1 + std::rand() % 300;
        a.mask = std::rand() % 3;
        a.has_window = std::rand() % 4 != 0;
        const int r = std::rand() % 5;
        a.window_left = a.has_window ? (r == 0 ? -1 : r == 1 ? 2147483000 : std::rand() % 200) : -1;
        a.window_right = a.has_window ? (std::rand() % 3 == 0 ? -1 : std::rand() % 200) : -1;
        bool no_empty_row = true;
        for (int i = 0; i < a.seq_q; ++i) {
            int lo, hi;
            pa_gpu_visible_range(a, i, lo, hi);
            no_empty_row = no_empty_row && lo < hi;
        }
        check(a, no_empty_row);
    }
    std::printf("%d walks checked, %d wrong\n", checks, bad);
    return bad ? 1 : 0;
}

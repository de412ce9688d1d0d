/*
 * The balanced schedule of the wide flash kernels (backends/cuda/flash_split.h), checked on
 * the CPU: no GPU needed, so it runs in CI.  For many shapes, masks, key tiles and chunks,
 * the blocks' segments (pa_flash_walk) must cover every key tile of every query tile exactly
 * once, write O directly only where one segment covers a whole query tile, use each partial
 * slot once (2b or 2b + 1 in block b, below the plan's slot count); the blocks' records
 * (pa_flash_note, as the kernels keep them) must name every cut query tile exactly once,
 * in the block of its first piece, and the combine's slot enumeration (pa_flash_piece_slot
 * over the covering blocks) find exactly the slots the pieces were written to.  The planner's own choices are checked the
 * same way, and its workspace size against what the walk addresses; and the wgmma kernel's
 * plan at the shapes it was measured on.
 */
#include "flash_split.cuh"
#include "flash_wgmma.h"

#include <stdio.h>
#include <string.h>

#include <set>
#include <vector>

namespace
{

int failures = 0;
long long checked = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (failures++ < 20) {                                                                 \
                printf("FAIL %s: ", #cond);                                                        \
                printf(__VA_ARGS__);                                                               \
                printf("\n");                                                                      \
            }                                                                                      \
        }                                                                                          \
    } while (0)

struct Piece {
    int block, t0, t1, slot;
};

/* Walks every block of plan s for problem a and checks the invariants above. */
void check_plan(const pa_gpu_args &a, pa_flash_split s, const char *what)
{
    if (!s.chunk) return;
    ++checked;
    const int bh_count = a.batch * a.heads_q;
    const size_t es = a.dtype == 0 ? 4 : 2;
    const size_t part_bytes = (size_t)s.slots * s.tile_m * (a.head_dim_v * es + sizeof(float));
    const size_t tile_count = (size_t)bh_count * s.q_tiles;
    const size_t bytes = part_bytes + (size_t)s.blocks * sizeof(pa_flash_record);
    CHECK(pa_flash_split_bytes(&a, &s) >= bytes, "%s: workspace %llu too small", what,
          (unsigned long long)pa_flash_split_bytes(&a, &s));
    std::vector<unsigned char> ws(bytes, 0xff); /* records land here, as on the GPU */
    s.part = ws.data();
    pa_flash_record *records = pa_flash_records(a, s);
    CHECK((unsigned char *)records == ws.data() + part_bytes, "%s: records offset", what);
    std::vector<std::vector<Piece>> pieces(tile_count);
    std::set<int> slots_used;
    for (int b = 0; b < s.blocks; ++b) {
        pa_flash_record rec = {-1, 0, 0, 0};
        pa_flash_walk(a, s, b, [&](const pa_flash_work &w) {
            pa_flash_note(a, w, rec);
            CHECK(w.batch >= 0 && w.batch < a.batch && w.head >= 0 && w.head < a.heads_q &&
                      w.qt >= 0 && w.qt < s.q_tiles,
                  "%s: block %d segment outside the problem", what, b);
            const int bh = w.batch * a.heads_q + w.head;
            pieces[(size_t)bh * s.q_tiles + w.qt].push_back({b, w.t0, w.t1, w.slot});
            if (w.slot >= 0) {
                CHECK(w.slot == 2 * b || w.slot == 2 * b + 1, "%s: block %d slot %d", what, b,
                      w.slot);
                CHECK(w.slot < s.slots, "%s: slot %d of %d", what, w.slot, s.slots);
                CHECK(slots_used.insert(w.slot).second, "%s: slot %d used twice", what, w.slot);
            }
        });
        records[b] = rec;
    }
    for (int bh = 0; bh < bh_count; ++bh)
        for (int qt = 0; qt < s.q_tiles; ++qt) {
            const std::vector<Piece> &p = pieces[(size_t)bh * s.q_tiles + qt];
            const int tiles = pa_flash_tiles(a, s, qt);
            CHECK(!p.empty(), "%s: bh %d query tile %d has no segment", what, bh, qt);
            if (p.empty()) continue;
            /* key tiles [0, tiles) covered in order, once */
            int next = 0;
            for (const Piece &x : p) {
                CHECK(x.t0 == next && x.t1 >= x.t0, "%s: bh %d qt %d covers [%d,%d) after %d", what,
                      bh, qt, x.t0, x.t1, next);
                next = x.t1;
            }
            CHECK(next == tiles, "%s: bh %d qt %d covers %d of %d key tiles", what, bh, qt, next,
                  tiles);
            /* direct write iff one piece */
            for (const Piece &x : p)
                CHECK((x.slot < 0) == (p.size() == 1), "%s: bh %d qt %d: %zu pieces, slot %d", what,
                      bh, qt, p.size(), x.slot);
            /* the combine's view: named once, by the record of the first piece's block */
            if (p.size() < 2) continue;
            std::vector<int> by;
            for (int b = 0; b < s.blocks; ++b)
                if (records[b].bh == bh && records[b].qt == qt) by.push_back(b);
            CHECK(by.size() == 1 && by[0] == p[0].block,
                  "%s: bh %d qt %d cut in %zu pieces "
                  "from block %d, named by %zu records",
                  what, bh, qt, p.size(), p[0].block, by.size());
            if (by.size() != 1) continue;
            const pa_flash_record &rec = records[by[0]];
            CHECK(rec.units == pa_flash_units(a, s, qt), "%s: bh %d qt %d record units %d", what,
                  bh, qt, rec.units);
            const int b0 = by[0], b1 = (rec.first + rec.units - 1) / s.chunk;
            CHECK(b0 == rec.first / s.chunk, "%s: bh %d qt %d recorded by block %d, starts in %d",
                  what, bh, qt, b0, rec.first / s.chunk);
            CHECK(b1 - b0 + 1 == (int)p.size(),
                  "%s: bh %d qt %d: combine spans %d blocks, %zu "
                  "pieces",
                  what, bh, qt, b1 - b0 + 1, p.size());
            if (b1 - b0 + 1 == (int)p.size())
                for (int b = b0; b <= b1; ++b) {
                    const Piece &x = p[b - b0];
                    const int slot = pa_flash_piece_slot(s, rec.first, b);
                    CHECK(x.block == b && x.slot == slot,
                          "%s: bh %d qt %d: combine reads slot %d of block %d, piece in slot %d "
                          "of block %d",
                          what, bh, qt, slot, b, x.slot, x.block);
                }
        }
    /* and names nothing else */
    int named = 0, cut = 0;
    for (int b = 0; b < s.blocks; ++b)
        named += records[b].bh >= 0;
    for (const std::vector<Piece> &p : pieces)
        cut += p.size() > 1;
    CHECK(named == cut, "%s: %d records for %d cut tiles", what, named, cut);
}

/* Causal top-left, one head, seq_q == seq_kv: the article's shapes' form. */
pa_gpu_args causal_args(int dtype, int batch, int seq, int dim)
{
    pa_gpu_args a;
    memset(&a, 0, sizeof a);
    a.dtype = dtype, a.batch = batch, a.heads_q = a.heads_kv = 1;
    a.seq_q = a.seq_kv = seq, a.mask = 1, a.head_dim = a.head_dim_v = dim;
    return a;
}

} // namespace

int main()
{
    const int seqs_q[] = {1, 31, 33, 100, 257};
    const int seqs_kv[] = {1, 40, 129, 300};
    const int key_tiles[] = {8, 16, 32};
    const int forced[] = {1, 2, 3, 7, 50};
    const int sms[] = {4, 132};
    for (int mask = 0; mask <= 2; ++mask)
        for (int bhc = 1; bhc <= 3; bhc += 2)
            for (int sq : seqs_q)
                for (int skv : seqs_kv)
                    for (int kt : key_tiles)
                        for (int dtype = 0; dtype <= 1; ++dtype) {
                            pa_gpu_args a;
                            memset(&a, 0, sizeof a);
                            a.dtype = dtype;
                            a.batch = bhc, a.heads_q = 1, a.heads_kv = 1;
                            a.seq_q = sq, a.seq_kv = skv, a.mask = mask;
                            a.head_dim = a.head_dim_v = 512;
                            char what[160];
                            for (int f : forced) {
                                pa_flash_split s;
                                pa_flash_split_plan(&a, PA_FLASH_TILE_M, kt, 132, f, &s);
                                snprintf(what, sizeof what,
                                         "mask %d bh %d seq %dx%d key tile %d forced %d", mask, bhc,
                                         sq, skv, kt, f);
                                check_plan(a, s, what);
                            }
                            for (int n : sms) {
                                pa_flash_split s;
                                pa_flash_split_plan(&a, PA_FLASH_TILE_M, kt, n, -1, &s);
                                snprintf(what, sizeof what,
                                         "mask %d bh %d seq %dx%d key tile %d auto on %d SMs", mask,
                                         bhc, sq, skv, kt, n);
                                check_plan(a, s, what);
                            }
                        }
    /* The article's shapes on the H100's 132 SMs, as the planner chooses. */
    const int seed[5][3] = {
        {4096, 1024, 1}, {2048, 1024, 2}, {1024, 1024, 4}, {512, 768, 8}, {128, 512, 16}};
    int article_split = 0;
    for (int dtype = 0; dtype <= 1; ++dtype)
        for (const auto &sh : seed) {
            const pa_gpu_args a = causal_args(dtype, sh[2], sh[0], sh[1]);
            const int kt = dtype ? 32 : (sh[1] >= 1024 ? 8 : sh[1] >= 768 ? 16 : 32);
            pa_flash_split s;
            pa_flash_split_plan(&a, PA_FLASH_TILE_M, kt, 132, -1, &s);
            article_split += s.chunk > 0;
            check_plan(a, s, "article shape");
            /* key halves (sm_90): where measured a gain (bench/results/2026-11-24-h100-cuda-wide-schedules.md: every article shape
             * but the 16-bit 16x128), and not with more than two waves of clusters */
            const bool halves = !dtype || sh[0] != 128;
            CHECK(pa_flash_halves_fit(&a, &s, 132, 0) == (halves ? 1 : 0),
                  "seed %s %dx%d: key halves %d", dtype ? "16-bit" : "f32", sh[2], sh[0],
                  pa_flash_halves_fit(&a, &s, 132, 0));
            CHECK(!pa_flash_halves_fit(&a, &s, 32, 0), "seed %dx%d: key halves in 4 waves or more",
                  sh[2], sh[0]);
            /* column halves (sm_90): f32 gains at every article shape; 16-bit only at 16x128 (one
             * wave, short chains; bench/results/2026-11-24-h100-cuda-column-halves-*.md); forced, they run anywhere */
            CHECK(pa_flash_col_halves_fit(&a, 32, 132, 0) == (!dtype || sh[0] == 128),
                  "seed %s %dx%d: column halves %d", dtype ? "16-bit" : "f32", sh[2], sh[0],
                  pa_flash_col_halves_fit(&a, 32, 132, 0));
            CHECK(pa_flash_col_halves_fit(&a, 32, 132, 1), "seed %dx%d: column halves forced",
                  sh[2], sh[0]);
        }
    CHECK(article_split > 0, "the planner splits none of the article's shapes");
    /* Beyond the article's shapes (bench/results/2026-11-24-h100-cuda-wide-schedules.md, GPU time): 16-bit 4x512 D 768 halves (one
     * wave, 16-tile chains); f32 32x128 D 512 and 16-bit 16x256 do not (short chains). */
    const struct {
        int dtype, batch, seq, dim, halves;
    } more[] = {
        {1, 4, 512, 768, 1}, {0, 32, 128, 512, 0}, {1, 16, 256, 512, 0}, {1, 32, 128, 512, 0}};
    for (const auto &m : more) {
        const pa_gpu_args a = causal_args(m.dtype, m.batch, m.seq, m.dim);
        pa_flash_split s;
        pa_flash_split_plan(&a, PA_FLASH_TILE_M, 32, 132, 0, &s);
        CHECK(pa_flash_halves_fit(&a, &s, 132, 0) == m.halves, "%s %dx%d D%d: key halves %d",
              m.dtype ? "16-bit" : "f32", m.batch, m.seq, m.dim,
              pa_flash_halves_fit(&a, &s, 132, 0));
    }
    /* Column halves beyond the article's shapes (bench/results/2026-11-24-h100-cuda-column-halves-two-waves.md, -16bit.md): f32 D 1024 in many
     * waves yes (8x1024 1.74x); f32 D 512 and 768 in more than two waves no (64x512 D 512
     * 0.84x); 16-bit in one wave with short chains yes (8x256 D 768 1.14x), in two waves no
     * (16x256 0.92x, 32x128 0.84x), with 16-tile chains no (1x512 D 768: key halves). */
    const struct {
        int dtype, batch, seq, dim, cols;
    } wide[] = {{0, 8, 1024, 1024, 1}, {0, 64, 512, 512, 0},  {0, 16, 512, 768, 0},
                {0, 32, 128, 512, 1},  {1, 8, 1024, 1024, 0}, {1, 8, 256, 768, 1},
                {1, 16, 256, 512, 0},  {1, 32, 128, 512, 0},  {1, 1, 512, 768, 0}};
    for (const auto &m : wide) {
        const pa_gpu_args a = causal_args(m.dtype, m.batch, m.seq, m.dim);
        CHECK(pa_flash_col_halves_fit(&a, 32, 132, 0) == m.cols, "%s %dx%d D%d: column halves %d",
              m.dtype ? "16-bit" : "f32", m.batch, m.seq, m.dim,
              pa_flash_col_halves_fit(&a, 32, 132, 0));
    }
    { /* one key tile: nothing to halve, even forced */
        const pa_gpu_args a = causal_args(1, 1, 20, 512);
        pa_flash_split s;
        pa_flash_split_plan(&a, PA_FLASH_TILE_M, 32, 132, 0, &s);
        CHECK(!pa_flash_halves_fit(&a, &s, 132, 1), "key halves of a single key tile");
    }
    /* The wgmma kernel's plan (flash_wgmma_plan.cu) on 132 SMs: the fastest at each shape of
     * bench/results/2026-11-25-h100-cuda-wgmma-plans.md (16-bit; batch x heads x seq, D, causal). */
    const struct {
        int batch, heads, seq, dim, mask, plan;
    } wg[] = {{16, 1, 128, 512, 1, PA_WGMMA_NARROW},    {8, 1, 128, 512, 1, PA_WGMMA_NARROW},
              {16, 1, 128, 512, 0, PA_WGMMA_NARROW},    {32, 1, 128, 512, 1, PA_WGMMA_WIDE},
              {8, 1, 512, 768, 1, PA_WGMMA_WIDE},       {4, 4, 1024, 512, 0, PA_WGMMA_WIDE},
              {1, 1, 512, 512, 1, PA_WGMMA_KEY_SPLIT},  {2, 1, 1024, 512, 1, PA_WGMMA_KEY_SPLIT},
              {1, 1, 4096, 512, 1, PA_WGMMA_KEY_SPLIT}, {4, 1, 256, 768, 1, PA_WGMMA_KEY_SPLIT}};
    for (const auto &m : wg) {
        pa_gpu_args a = causal_args(1, m.batch, m.seq, m.dim);
        a.heads_q = a.heads_kv = m.heads, a.mask = m.mask;
        const int plan = pa_cuda_flash_wgmma_plan(&a, 132, NULL);
        CHECK(plan == m.plan, "%dx%dx%d D%d mask %d: wgmma plan %s", m.batch, m.heads, m.seq, m.dim,
              m.mask, pa_cuda_flash_wgmma_plan_name(plan));
        for (int p = 0; p < PA_WGMMA_PLANS; ++p) /* forced by name */
            CHECK(pa_cuda_flash_wgmma_plan(&a, 132, pa_cuda_flash_wgmma_plan_name(p)) == p,
                  "forced %d", p);
        CHECK(pa_cuda_flash_wgmma_plan(&a, 132, "bogus") == plan, "an unknown name forces nothing");
    }
    printf("test_flash_schedule: %lld plans walked, %d failures\n", checked, failures);
    return failures ? 1 : 0;
}

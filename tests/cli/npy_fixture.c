/*
 * Test helper for the CLI tests (no numpy needed):
 *   npy_fixture gen FILE D0,D1,... SEED [VERSION]   random float32 .npy (values in
 *                                                    [-2, -0.1] U [0.1, 2]; VERSION 1, 2, 3)
 *   npy_fixture bad KIND FILE                        a malformed or unsupported .npy
 *   npy_fixture check FILE D0,D1,...                 exit 0 if FILE reads back with that shape
 *                                                    and only finite values
 *   npy_fixture selftest                             writer/reader round trip, conversions
 */
#include "cli.h"
#include "npy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int parse_dims(const char *text, int64_t *dims)
{
    int rank = 0;
    const char *p = text;
    while (*p && rank < PA_NPY_MAX_RANK) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0) return -1;
        dims[rank++] = v;
        p = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0') return -1;
    }
    return rank;
}

static uint64_t rng_state = 1;
static float random_value(void)
{
    /* xorshift64*: reproducible without libc rand() differences. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 2685821657736338717ull;
    double u = (double)(r >> 11) / 9007199254740992.0; /* [0, 1) */
    double mag = 0.1 + 1.9 * fmod(u * 2.0, 1.0);       /* never zero: tests must not see 0s */
    return (float)(u < 0.5 ? -mag : mag);
}

/* Header dict text for a shape, Python style. */
static void shape_dict(char *buf, size_t size, const char *descr, const char *order,
                       const int64_t *dims, int rank)
{
    int n = snprintf(buf, size, "{'descr': '%s', 'fortran_order': %s, 'shape': (", descr, order);
    for (int i = 0; i < rank; i++)
        n += snprintf(buf + n, size - (size_t)n, "%lld%s", (long long)dims[i],
                      rank == 1 ? "," : (i + 1 < rank ? ", " : ""));
    snprintf(buf + n, size - (size_t)n, "), }");
}

/* Writes magic, version, header (padded to 64 bytes), then nbytes of data. */
static int write_raw(const char *path, int major, const char *dict, const void *data, size_t nbytes)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    size_t prefix = major == 1 ? 10 : 12, len = strlen(dict);
    size_t pad = (64 - (prefix + len + 1) % 64) % 64, hlen = len + pad + 1;
    unsigned char pre[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', (unsigned char)major, 0};
    for (size_t i = 0; i < prefix - 8; i++)
        pre[8 + i] = (unsigned char)(hlen >> (8 * i));
    fwrite(pre, 1, prefix, f);
    fwrite(dict, 1, len, f);
    for (size_t i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    if (nbytes) fwrite(data, 1, nbytes, f);
    return fclose(f) != 0;
}

static int cmd_gen(const char *path, const char *shape, const char *seed, const char *version)
{
    int64_t dims[PA_NPY_MAX_RANK];
    int rank = parse_dims(shape, dims);
    if (rank < 0) return 2;
    rng_state = 0x9e3779b97f4a7c15ull ^ (uint64_t)strtoull(seed, NULL, 10);
    uint64_t count = 1;
    for (int i = 0; i < rank; i++)
        count *= (uint64_t)dims[i];
    float *data = malloc(count * 4 + 4);
    for (uint64_t i = 0; i < count; i++)
        data[i] = random_value();
    int major = version ? atoi(version) : 1, rc;
    if (major == 1) {
        FILE *f = fopen(path, "wb");
        rc = !f || pa_npy_write_f32(f, data, rank, dims) != 0;
        if (f && fclose(f) != 0) rc = 1;
    } else {
        char dict[256];
        shape_dict(dict, sizeof dict, "<f4", "False", dims, rank);
        rc = write_raw(path, major, dict, data, count * 4);
    }
    free(data);
    return rc;
}

static int cmd_bad(const char *kind, const char *path)
{
    static const int64_t dims4[4] = {1, 2, 7, 8};
    static float data[1 * 2 * 7 * 8 * 2];
    for (size_t i = 0; i < sizeof data / sizeof data[0]; i++)
        data[i] = 0.5f + (float)i;
    const size_t bytes4 = 1 * 2 * 7 * 8 * 4;
    char dict[256];
    if (strcmp(kind, "magic") == 0) {
        FILE *f = fopen(path, "wb");
        fputs("\x93NUMPX\x01\x00garbage", f);
        return fclose(f) != 0;
    }
    if (strcmp(kind, "text") == 0) {
        FILE *f = fopen(path, "wb");
        fputs("q,k,v\n1,2,3\n", f);
        return fclose(f) != 0;
    }
    if (strcmp(kind, "empty") == 0) {
        FILE *f = fopen(path, "wb");
        return fclose(f) != 0;
    }
    if (strcmp(kind, "version") == 0) {
        shape_dict(dict, sizeof dict, "<f4", "False", dims4, 4);
        return write_raw(path, 9, dict, data, bytes4);
    }
    if (strcmp(kind, "f8") == 0) {
        shape_dict(dict, sizeof dict, "<f8", "False", dims4, 4);
        return write_raw(path, 1, dict, data, bytes4 * 2);
    }
    if (strcmp(kind, "f2") == 0) {
        shape_dict(dict, sizeof dict, "<f2", "False", dims4, 4);
        return write_raw(path, 1, dict, data, bytes4 / 2);
    }
    if (strcmp(kind, "bigendian") == 0) {
        shape_dict(dict, sizeof dict, ">f4", "False", dims4, 4);
        return write_raw(path, 1, dict, data, bytes4);
    }
    if (strcmp(kind, "fortran") == 0) {
        shape_dict(dict, sizeof dict, "<f4", "True", dims4, 4);
        return write_raw(path, 1, dict, data, bytes4);
    }
    if (strcmp(kind, "rank3") == 0) {
        shape_dict(dict, sizeof dict, "<f4", "False", dims4 + 1, 3);
        return write_raw(path, 1, dict, data, bytes4);
    }
    if (strcmp(kind, "truncated") == 0) {
        shape_dict(dict, sizeof dict, "<f4", "False", dims4, 4);
        return write_raw(path, 1, dict, data, bytes4 - 12);
    }
    if (strcmp(kind, "trailing") == 0) {
        shape_dict(dict, sizeof dict, "<f4", "False", dims4, 4);
        return write_raw(path, 1, dict, data, bytes4 + 8);
    }
    if (strcmp(kind, "header") == 0)
        return write_raw(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, oops}",
                         data, bytes4);
    if (strcmp(kind, "headerlen") == 0) {
        /* Announces a header longer than the file. */
        FILE *f = fopen(path, "wb");
        unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0x7f};
        fwrite(pre, 1, 10, f);
        fputs("{'descr': '<f4'", f);
        return fclose(f) != 0;
    }
    fprintf(stderr, "npy_fixture: unknown kind '%s'\n", kind);
    return 2;
}

static int cmd_check(const char *path, const char *shape)
{
    int64_t dims[PA_NPY_MAX_RANK];
    int rank = parse_dims(shape, dims);
    pa_npy_array a;
    char err[512];
    if (pa_npy_read_f32(path, &a, err, sizeof err) != 0) {
        fprintf(stderr, "check %s: %s\n", path, err);
        return 1;
    }
    int rc = 0;
    if (a.rank != rank || memcmp(a.shape, dims, sizeof(int64_t) * (size_t)rank) != 0) {
        fprintf(stderr, "check %s: shape differs (rank %d)\n", path, a.rank);
        rc = 1;
    }
    uint64_t nonfinite = 0, ninf = 0;
    for (uint64_t i = 0; i < a.count; i++) {
        if (isinf(a.data[i]) && a.data[i] < 0) ninf++;
        else if (!isfinite(a.data[i])) nonfinite++;
    }
    if (nonfinite) {
        fprintf(stderr, "check %s: %llu NaN or +inf values\n", path, (unsigned long long)nonfinite);
        rc = 1;
    }
    printf("%s: %llu values, %llu -inf\n", path, (unsigned long long)a.count,
           (unsigned long long)ninf);
    pa_npy_free(&a);
    return rc;
}

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "selftest: %s:%d: %s\n", __FILE__, __LINE__, #cond);                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static int cmd_selftest(const char *dir)
{
    int failures = 0;
    char path[1024];
    /* Round trip of every rank 0..5, header alignment. */
    for (int rank = 0; rank <= 5; rank++) {
        int64_t dims[5] = {3, 1, 4, 1, 5};
        uint64_t count = 1;
        for (int i = 0; i < rank; i++)
            count *= (uint64_t)dims[i];
        float data[60];
        for (uint64_t i = 0; i < count; i++)
            data[i] = random_value();
        snprintf(path, sizeof path, "%s/selftest_rank%d.npy", dir, rank);
        FILE *f = fopen(path, "wb");
        EXPECT(f && pa_npy_write_f32(f, data, rank, dims) == 0);
        if (f) {
            long size = ftell(f);
            EXPECT(size >= 0 && (size - (long)count * 4) % 64 == 0);
            fclose(f);
        }
        pa_npy_array a;
        char err[256];
        EXPECT(pa_npy_read_f32(path, &a, err, sizeof err) == 0);
        EXPECT(a.rank == rank && a.count == count);
        EXPECT(a.data && memcmp(a.data, data, count * 4) == 0);
        pa_npy_free(&a);
    }
    /* f16: exact values, ties to even, overflow, subnormals, NaN. */
    EXPECT(pa_cli_f32_to_f16(1.0f) == 0x3c00);
    EXPECT(pa_cli_f32_to_f16(-2.0f) == 0xc000);
    EXPECT(pa_cli_f32_to_f16(65504.0f) == 0x7bff);
    EXPECT(pa_cli_f32_to_f16(65519.0f) == 0x7bff);
    EXPECT(pa_cli_f32_to_f16(65520.0f) == 0x7c00);
    EXPECT(pa_cli_f32_to_f16(1.0f + 1.0f / 2048.0f) == 0x3c00); /* tie -> even */
    EXPECT(pa_cli_f32_to_f16(1.0f + 3.0f / 2048.0f) == 0x3c02); /* tie -> even */
    EXPECT(pa_cli_f32_to_f16(1.0f + 1.0f / 2048.0f + 1.0f / 65536.0f) == 0x3c01);
    EXPECT(pa_cli_f32_to_f16(ldexpf(1.0f, -24)) == 0x0001); /* min subnormal */
    EXPECT(pa_cli_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000); /* tie -> 0 */
    EXPECT(pa_cli_f32_to_f16(ldexpf(1.5f, -25)) == 0x0001);
    EXPECT(pa_cli_f32_to_f16(ldexpf(3.0f, -25)) == 0x0002); /* 1.5 ulp tie -> 2 */
    EXPECT(pa_cli_f32_to_f16(ldexpf(1023.0f, -24)) == 0x03ff);
    EXPECT(pa_cli_f32_to_f16(ldexpf(1.0f, -14)) == 0x0400);
    EXPECT((pa_cli_f32_to_f16(NAN) & 0x7fff) > 0x7c00);
    EXPECT(pa_cli_f32_to_f16(-INFINITY) == 0xfc00);
    EXPECT(pa_cli_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    EXPECT(pa_cli_f16_to_f32(0x7bff) == 65504.0f);
    EXPECT(pa_cli_f16_to_f32(0x8000) == 0.0f && signbit(pa_cli_f16_to_f32(0x8000)));
    /* Every f16 value survives f16 -> f32 -> f16. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;
        if (pa_cli_f32_to_f16(pa_cli_f16_to_f32((uint16_t)h)) != h) {
            fprintf(stderr, "selftest: f16 0x%04x does not round-trip\n", h);
            failures++;
            break;
        }
    }
    /* bf16. */
    EXPECT(pa_cli_f32_to_bf16(1.0f) == 0x3f80);
    EXPECT(pa_cli_f32_to_bf16(1.0f + 1.0f / 256.0f) == 0x3f80); /* tie -> even */
    EXPECT(pa_cli_f32_to_bf16(1.0f + 3.0f / 256.0f) == 0x3f82); /* tie -> even */
    EXPECT(pa_cli_f32_to_bf16(1.0f + 1.0f / 256.0f + 1.0f / 65536.0f) == 0x3f81);
    EXPECT(pa_cli_bf16_to_f32(0x3f81) == 1.0f + 1.0f / 128.0f);
    EXPECT(isnan(pa_cli_bf16_to_f32(pa_cli_f32_to_bf16(NAN))));
    EXPECT(pa_cli_f32_to_bf16(3.4028235e38f) == 0x7f80); /* max float rounds up to inf */
    printf("selftest: %s (%d failures)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && strcmp(argv[1], "gen") == 0)
        return cmd_gen(argv[2], argv[3], argv[4], argc >= 6 ? argv[5] : NULL);
    if (argc == 4 && strcmp(argv[1], "bad") == 0) return cmd_bad(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "check") == 0) return cmd_check(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "selftest") == 0) return cmd_selftest(argv[2]);
    fprintf(stderr, "usage: npy_fixture gen|bad|check|selftest ...\n");
    return 2;
}

/*
 * POLYATTN_FORCE: the one environment override that changes which kernel runs, for tests
 * and benchmarks that must reach every path.  It is read once when a context is made,
 * checked for shape (comma-separated key=value pairs), logged under POLYATTN_LOG=dispatch
 * and kept in the device; planning reads it, forward never does.
 *
 *   POLYATTN_FORCE=algo=flash                  AUTO takes this algorithm first (core)
 *   POLYATTN_FORCE=cuda.flash=wgmma,...        backend keys: see the README
 */
#include "pa_core.h"

#include <stdlib.h>
#include <string.h>

static int key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_';
}

static int value_char(char c) { return key_char(c) || c == '-' || c == 'x' || c == ':'; }

/* 1 when text is "k=v(,k=v)*" with non-empty keys and values of the allowed characters. */
static int well_formed(const char *text)
{
    const char *s = text;
    while (*s) {
        const char *key = s;
        while (key_char(*s))
            s++;
        if (s == key || *s != '=') return 0;
        const char *value = ++s;
        while (value_char(*s))
            s++;
        if (s == value) return 0;
        if (*s == ',') {
            s++;
            if (!*s) return 0;
        } else if (*s) {
            return 0;
        }
    }
    return 1;
}

polyattn_status pa_force_read(pa_device *dev)
{
    dev->force[0] = '\0';
    const char *env = getenv("POLYATTN_FORCE");
    if (!env || !*env) return POLYATTN_STATUS_SUCCESS;
    if (strlen(env) >= sizeof dev->force || !well_formed(env)) {
        pa_set_global_error("POLYATTN_FORCE: \"%.200s\" is not a list of key=value pairs "
                            "(letters, digits, '.', '_' in keys) shorter than %zu characters",
                            env, sizeof dev->force);
        return POLYATTN_STATUS_INVALID_ARGUMENT;
    }
    memcpy(dev->force, env, strlen(env) + 1);
    char algo[16];
    if (pa_force_get(dev, "algo", algo, sizeof algo) && strcmp(algo, "unfused") &&
        strcmp(algo, "fused") && strcmp(algo, "flash")) {
        pa_set_global_error("POLYATTN_FORCE: algo=%s is not unfused, fused or flash", algo);
        dev->force[0] = '\0';
        return POLYATTN_STATUS_INVALID_ARGUMENT;
    }
    pa_log(POLYATTN_LOG_DISPATCH, "POLYATTN_FORCE=%s (%s device %d)", dev->force,
           dev->ops ? dev->ops->name : "?", dev->index);
    return POLYATTN_STATUS_SUCCESS;
}

int pa_force_get(const pa_device *dev, const char *key, char *value, size_t n)
{
    const size_t key_len = strlen(key);
    for (const char *s = dev->force; *s;) {
        const char *eq = strchr(s, '=');
        const char *end = strchr(s, ',');
        if (!end) end = s + strlen(s);
        if (eq && eq < end && (size_t)(eq - s) == key_len && !strncmp(s, key, key_len)) {
            size_t len = (size_t)(end - eq - 1);
            if (n) {
                if (len >= n) len = n - 1;
                memcpy(value, eq + 1, len);
                value[len] = '\0';
            }
            return 1;
        }
        s = *end ? end + 1 : end;
    }
    return 0;
}

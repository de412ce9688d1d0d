/* Logging: a replaceable sink and categories enabled by POLYATTN_LOG or the API. */
#include "pa_core.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static polyattn_log_fn log_fn;
static void *log_user;
static int log_mask_set;
static unsigned log_mask = POLYATTN_LOG_ERROR;

static unsigned mask_from_env(void)
{
    const char *env = getenv("POLYATTN_LOG");
    unsigned mask = POLYATTN_LOG_ERROR;
    if (!env) return mask;
    if (strstr(env, "all")) return 0xF;
    if (strstr(env, "dispatch")) mask |= POLYATTN_LOG_DISPATCH;
    if (strstr(env, "build")) mask |= POLYATTN_LOG_BUILD;
    if (strstr(env, "profile")) mask |= POLYATTN_LOG_PROFILE;
    return mask;
}

void polyattn_set_log_callback(polyattn_log_fn fn, void *user_data)
{
    pthread_mutex_lock(&log_lock);
    log_fn = fn;
    log_user = user_data;
    pthread_mutex_unlock(&log_lock);
}

void polyattn_set_log_mask(unsigned mask)
{
    pthread_mutex_lock(&log_lock);
    log_mask = mask | POLYATTN_LOG_ERROR;
    log_mask_set = 1;
    pthread_mutex_unlock(&log_lock);
}

int pa_log_enabled(polyattn_log_category category)
{
    pthread_mutex_lock(&log_lock);
    if (!log_mask_set) {
        log_mask = mask_from_env();
        log_mask_set = 1;
    }
    unsigned mask = log_mask;
    pthread_mutex_unlock(&log_lock);
    return (mask & (unsigned)category) != 0;
}

static const char *category_name(polyattn_log_category category)
{
    switch (category) {
    case POLYATTN_LOG_ERROR: return "error";
    case POLYATTN_LOG_DISPATCH: return "dispatch";
    case POLYATTN_LOG_BUILD: return "build";
    case POLYATTN_LOG_PROFILE: return "profile";
    }
    return "log";
}

static void log_message(polyattn_log_category category, const char *message)
{
    pthread_mutex_lock(&log_lock);
    polyattn_log_fn fn = log_fn;
    void *user = log_user;
    pthread_mutex_unlock(&log_lock);
    if (fn) fn(category, message, user);
    else if (category != POLYATTN_LOG_ERROR || getenv("POLYATTN_LOG"))
        /* Errors reach the caller as statuses and last-error strings; print them only
         * when logging was asked for, so a CLI can own its stderr. */
        fprintf(stderr, "polyattn[%s]: %s\n", category_name(category), message);
}

void pa_log(polyattn_log_category category, const char *fmt, ...)
{
    if (!pa_log_enabled(category)) return;
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_message(category, buf);
}

polyattn_status pa_fail(pa_device *dev, polyattn_status status, const char *fmt, ...)
{
    char buf[sizeof dev->last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (dev) memcpy(dev->last_error, buf, sizeof buf);
    pa_log(POLYATTN_LOG_ERROR, "%s: %s", polyattn_status_name(status), buf);
    return status;
}

/* rate_limiter.c - Firecracker's token-bucket rate limiter (bytes and ops buckets).
 *
 * Semantics (see rate_limiter.h):
 *  - a bucket holds at most `size` tokens and refills linearly, `size` tokens
 *    per refill_time; refill is computed lazily at consume time, exactly (no
 *    fractional token is lost: last_update only advances by the time the
 *    credited tokens took);
 *  - the one-time burst is spent before the budget and never refilled;
 *  - a request is all-or-nothing: when refused nothing is taken (Firecracker
 *    throws away the burst it had already used; we do not), and the timerfd
 *    is armed for the exact time until the missing tokens are there;
 *  - a request larger than `size` (and than burst + budget) is allowed only
 *    when the budget is full. The budget then drops to 0 and the excess is
 *    paid as debt: refill restarts only after excess * refill_time / size,
 *    and the timer is armed for that time, so the device stays blocked
 *    (rl_is_blocked) until the debt is paid. The long-run rate stays
 *    size per refill_time.
 */
#include "rate_limiter_internal.h"
#include "rate_limiter.h"

#include <errno.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

typedef unsigned __int128 u128;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t sat_u64(u128 v)
{
    return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

static void bucket_init(struct tbucket *b, const struct rate_bucket *cfg, uint64_t now)
{
    memset(b, 0, sizeof(*b));
    if (!cfg->set || cfg->size == 0 || cfg->refill_time_ms == 0)
        return; /* no limit */
    b->active = true;
    b->size = cfg->size;
    b->one_time_burst = cfg->one_time_burst;
    b->refill_time_ns = cfg->refill_time_ms * 1000000u; /* <= CONFIG_REFILL_MAX_MS */
    b->budget = cfg->size;
    b->burst_left = cfg->one_time_burst;
    b->last_update_ns = now;
}

/* Credit the tokens refilled since last_update (never above size). */
static void bucket_refill(struct tbucket *b, uint64_t now)
{
    if (now <= b->last_update_ns) /* still paying a debt, or clock did not move */
        return;
    if (b->budget >= b->size) {
        b->last_update_ns = now;
        return;
    }
    uint64_t elapsed = now - b->last_update_ns;
    u128 add = (u128)elapsed * b->size / b->refill_time_ns;
    if (add >= b->size - b->budget) {
        b->budget = b->size;
        b->last_update_ns = now;
        return;
    }
    b->budget += (uint64_t)add;
    /* Advance by the time the credited tokens took, rounded up (<= elapsed). */
    u128 used = ((u128)add * b->refill_time_ns + b->size - 1) / b->size;
    b->last_update_ns += (uint64_t)used;
}

/* Nanoseconds from `now` until the budget holds `want` tokens (want <= size). */
static uint64_t bucket_wait(const struct tbucket *b, uint64_t want, uint64_t now)
{
    if (want <= b->budget && now >= b->last_update_ns)
        return 0;
    uint64_t missing = want > b->budget ? want - b->budget : 0;
    u128 need = ((u128)missing * b->refill_time_ns + b->size - 1) / b->size;
    u128 ready_at = (u128)b->last_update_ns + need;
    if (ready_at <= now)
        return 1;
    return sat_u64(ready_at - now);
}

static void timer_arm(struct rl *r, uint64_t ns)
{
    if (r->timer_fd < 0 || r->timer_armed)
        return;
    if (ns == 0)
        ns = 1; /* a zero it_value would disarm */
    struct itimerspec its = {0};
    its.it_value.tv_sec = (time_t)(ns / 1000000000ull);
    its.it_value.tv_nsec = (long)(ns % 1000000000ull);
    if (timerfd_settime(r->timer_fd, 0, &its, NULL) == 0)
        r->timer_armed = true;
}

static void timer_disarm(struct rl *r)
{
    if (r->timer_fd >= 0) {
        struct itimerspec its = {0};
        timerfd_settime(r->timer_fd, 0, &its, NULL);
        uint64_t v;
        ssize_t rc = read(r->timer_fd, &v, sizeof(v));
        (void)rc;
    }
    r->timer_armed = false;
}

static bool cfg_has_limit(const struct rate_limiter *cfg)
{
    const struct rate_bucket *bs[2] = {&cfg->bandwidth, &cfg->ops};
    for (int i = 0; i < 2; i++)
        if (bs[i]->set && bs[i]->size && bs[i]->refill_time_ms)
            return true;
    return false;
}

int rl_init(struct rl *r, const struct rate_limiter *cfg)
{
    memset(r, 0, sizeof(*r));
    r->timer_fd = -1;
    return rl_update(r, cfg);
}

void rl_destroy(struct rl *r)
{
    if (r->timer_fd >= 0)
        close(r->timer_fd);
    r->timer_fd = -1;
    r->timer_armed = false;
    memset(r->bucket, 0, sizeof(r->bucket));
}

/* An existing timerfd is kept (disarmed) even if the new config has no limit,
 * so the caller's loop registration stays valid; a timerfd is created when
 * the first limit appears (the caller registers r->timer_fd if it changed). */
int rl_update(struct rl *r, const struct rate_limiter *cfg)
{
    if (cfg && cfg_has_limit(cfg) && r->timer_fd < 0) {
        int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (fd < 0)
            return -errno;
        r->timer_fd = fd;
    }
    timer_disarm(r);
    uint64_t now = now_ns();
    static const struct rate_bucket none;
    bucket_init(&r->bucket[RL_BYTES], cfg ? &cfg->bandwidth : &none, now);
    bucket_init(&r->bucket[RL_OPS], cfg ? &cfg->ops : &none, now);
    return 0;
}

bool rl_consume_at(struct rl *r, enum rl_kind kind, uint64_t tokens, uint64_t now)
{
    struct tbucket *b = &r->bucket[kind];
    if (!b->active || tokens == 0)
        return true;
    if (b->burst_left >= tokens) {
        b->burst_left -= tokens;
        return true;
    }
    bucket_refill(b, now);
    uint64_t rest = tokens - b->burst_left; /* > 0 */
    if (rest <= b->budget) {
        b->burst_left = 0;
        b->budget -= rest;
        return true;
    }
    if (rest > b->size) {
        if (b->budget == b->size && now >= b->last_update_ns) {
            /* Oversized request on a full bucket: allowed, paid as debt. */
            uint64_t excess = rest - b->size;
            uint64_t debt = sat_u64(((u128)excess * b->refill_time_ns + b->size - 1) / b->size);
            b->burst_left = 0;
            b->budget = 0;
            b->last_update_ns = now + debt < now ? UINT64_MAX : now + debt;
            if (debt)
                timer_arm(r, debt);
            return true;
        }
        timer_arm(r, bucket_wait(b, b->size, now)); /* until full */
        return false;
    }
    timer_arm(r, bucket_wait(b, rest, now));
    return false;
}

bool rl_consume(struct rl *r, enum rl_kind kind, uint64_t tokens)
{
    if (!r->bucket[kind].active)
        return true;
    return rl_consume_at(r, kind, tokens, now_ns());
}

void rl_manual_replenish(struct rl *r, enum rl_kind kind, uint64_t tokens)
{
    struct tbucket *b = &r->bucket[kind];
    if (!b->active)
        return;
    b->budget = tokens >= b->size - b->budget ? b->size : b->budget + tokens;
}

bool rl_is_blocked(const struct rl *r)
{
    return r->timer_armed;
}

void rl_timer_expired(struct rl *r)
{
    if (r->timer_fd >= 0) {
        uint64_t v;
        ssize_t rc = read(r->timer_fd, &v, sizeof(v));
        (void)rc;
    }
    r->timer_armed = false;
}

void rl_save(const struct rl *r, struct rl_state *s)
{
    memset(s, 0, sizeof(*s));
    uint64_t now = now_ns();
    for (int k = 0; k < 2; k++) {
        const struct tbucket *b = &r->bucket[k];
        s->bucket[k].budget = b->budget;
        s->bucket[k].burst_left = b->burst_left;
        s->bucket[k].since_update_ns = (int64_t)(now - b->last_update_ns);
    }
    if (r->timer_armed && r->timer_fd >= 0) {
        struct itimerspec its;
        if (timerfd_gettime(r->timer_fd, &its) == 0)
            s->timer_left_ns = (uint64_t)its.it_value.tv_sec * 1000000000ull +
                               (uint64_t)its.it_value.tv_nsec;
        if (!s->timer_left_ns)
            s->timer_left_ns = 1; /* fired, not yet handled: due now */
    }
}

void rl_restore(struct rl *r, const struct rl_state *s)
{
    uint64_t now = now_ns();
    for (int k = 0; k < 2; k++) {
        struct tbucket *b = &r->bucket[k];
        if (!b->active)
            continue;
        b->budget = s->bucket[k].budget < b->size ? s->bucket[k].budget : b->size;
        b->burst_left = s->bucket[k].burst_left < b->one_time_burst ? s->bucket[k].burst_left
                                                                    : b->one_time_burst;
        b->last_update_ns = now - (uint64_t)s->bucket[k].since_update_ns;
    }
    timer_disarm(r);
    if (s->timer_left_ns)
        timer_arm(r, s->timer_left_ns);
}

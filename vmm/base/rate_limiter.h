/* rate_limiter.h - Firecracker's token-bucket rate limiter.
 *
 * Two buckets (bandwidth in bytes, ops in requests), each with `size` tokens
 * refilled linearly over `refill_time_ms`, plus an `one_time_burst` that is
 * spent first and never refilled. A device asks rl_consume() before doing a
 * request; if it is refused the device stops processing that queue and arms
 * the limiter's timerfd (rl_timer_fd, on the main loop), whose expiry
 * (rl_timer_expired) means "try again". A limiter built from a config with no
 * bucket set never throttles and never arms its timer.
 */
#ifndef EMBER_RATE_LIMITER_H
#define EMBER_RATE_LIMITER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct tbucket {
    bool active;
    uint64_t size, one_time_burst, refill_time_ns;
    uint64_t budget;         /* tokens available now (<= size) */
    uint64_t burst_left;     /* remaining one-time burst */
    uint64_t last_update_ns; /* CLOCK_MONOTONIC of the last refill */
};

enum rl_kind { RL_BYTES = 0, RL_OPS = 1 };

struct rl {
    struct tbucket bucket[2]; /* [RL_BYTES], [RL_OPS] */
    int timer_fd;             /* timerfd (CLOCK_MONOTONIC, non-blocking), -1 if no limit */
    bool timer_armed;
};

/* Build from the config (copies the numbers; creates the timerfd only when a
 * bucket is set). Returns 0 or -errno. */
int rl_init(struct rl *r, const struct rate_limiter *cfg);
void rl_destroy(struct rl *r);
/* Replace the buckets (PATCH after boot): budgets restart full, the timer is
 * disarmed (not blocked any more: re-poll the queue). An existing timerfd is
 * kept even if the new config has no limit; one is created when the first
 * limit appears, so if timer_fd was -1 before, register the new one. */
int rl_update(struct rl *r, const struct rate_limiter *cfg);

/* Take `tokens` from bucket `kind`; true if allowed. The one-time burst is
 * spent first. All or nothing: a refused request takes no tokens, and the
 * timer is armed for the time the missing tokens take to refill. A request
 * larger than size (+ burst left) is allowed only when the budget is full: the
 * budget goes to 0 and the excess is a debt (no refill, and the timer armed,
 * i.e. rl_is_blocked(), for excess * refill_time / size), as Firecracker's
 * over-consumption. */
bool rl_consume(struct rl *r, enum rl_kind kind, uint64_t tokens);
/* Give back tokens taken by rl_consume() for a request that was not done. */
void rl_manual_replenish(struct rl *r, enum rl_kind kind, uint64_t tokens);
/* True while the timer is armed (the device must not process the queue). */
bool rl_is_blocked(const struct rl *r);
/* Main loop: the timer fired; drain it and clear the blocked state. */
void rl_timer_expired(struct rl *r);

/* A limiter as a snapshot keeps it: each bucket's tokens, and the times
 * relative to the moment of saving (a restored limiter goes on where it was,
 * whatever the clock reads then). The sizes come from the configuration. */
struct rl_state {
    struct {
        uint64_t budget, burst_left;
        int64_t since_update_ns; /* now - last_update (negative: a debt still to pay) */
    } bucket[2];
    uint64_t timer_left_ns; /* 0: not blocked */
};
void rl_save(const struct rl *r, struct rl_state *s);
/* Into a limiter built from the same configuration (rl_init). */
void rl_restore(struct rl *r, const struct rl_state *s);

#endif

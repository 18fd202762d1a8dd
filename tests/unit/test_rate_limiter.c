/* test_rate_limiter.c - unit tests for the token-bucket rate limiter
 * (virtio/rate_limiter.c): refill math, one-time burst, independent bytes and
 * ops buckets, oversized requests, no-limit configs, rl_update, the timerfd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../../vmm/base/rate_limiter_internal.h"

#define MS 1000000ull

static struct rate_limiter cfg_of(uint64_t bw_size, uint64_t bw_burst, uint64_t bw_ms,
                                  uint64_t ops_size, uint64_t ops_burst, uint64_t ops_ms)
{
    struct rate_limiter c;
    memset(&c, 0, sizeof(c));
    if (bw_size) {
        c.bandwidth.set = true;
        c.bandwidth.size = bw_size;
        c.bandwidth.one_time_burst = bw_burst;
        c.bandwidth.refill_time_ms = bw_ms;
    }
    if (ops_size) {
        c.ops.set = true;
        c.ops.size = ops_size;
        c.ops.one_time_burst = ops_burst;
        c.ops.refill_time_ms = ops_ms;
    }
    return c;
}

/* Remaining time on the limiter's timer, in ns (0: disarmed). */
static uint64_t timer_left(const struct rl *r)
{
    struct itimerspec its;
    assert_int_equal(timerfd_gettime(r->timer_fd, &its), 0);
    return (uint64_t)its.it_value.tv_sec * 1000000000ull + (uint64_t)its.it_value.tv_nsec;
}

static void test_no_limit(void **state)
{
    (void)state;
    struct rl r;
    struct rate_limiter c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(rl_init(&r, &c), 0);
    assert_int_equal(r.timer_fd, -1);
    for (int i = 0; i < 1000; i++) {
        assert_true(rl_consume(&r, RL_BYTES, UINT64_MAX / 2));
        assert_true(rl_consume(&r, RL_OPS, 1000000));
    }
    assert_false(rl_is_blocked(&r));
    rl_destroy(&r);

    /* size 0 or refill_time 0 also mean "no limit" (as Firecracker). */
    c.bandwidth.set = true;
    c.bandwidth.size = 0;
    c.bandwidth.refill_time_ms = 100;
    c.ops.set = true;
    c.ops.size = 10;
    c.ops.refill_time_ms = 0;
    assert_int_equal(rl_init(&r, &c), 0);
    assert_int_equal(r.timer_fd, -1);
    assert_true(rl_consume(&r, RL_BYTES, 1u << 30));
    assert_true(rl_consume(&r, RL_OPS, 1u << 30));
    assert_false(rl_is_blocked(&r));
    rl_destroy(&r);
}

static void test_refill_math(void **state)
{
    (void)state;
    struct rl r;
    struct rate_limiter c = cfg_of(1000, 0, 1000, 0, 0, 0); /* 1000 B per second */
    assert_int_equal(rl_init(&r, &c), 0);
    assert_true(r.timer_fd >= 0);
    uint64_t t0 = r.bucket[RL_BYTES].last_update_ns;

    assert_true(rl_consume_at(&r, RL_BYTES, 1000, t0)); /* full bucket */
    assert_int_equal(r.bucket[RL_BYTES].budget, 0);
    assert_false(rl_consume_at(&r, RL_BYTES, 1, t0));
    assert_true(rl_is_blocked(&r));
    rl_timer_expired(&r);
    assert_false(rl_is_blocked(&r));

    /* 0.5 ms refills nothing (1 token per ms); 100 ms refills 100 tokens. */
    assert_false(rl_consume_at(&r, RL_BYTES, 1, t0 + MS / 2));
    rl_timer_expired(&r);
    assert_true(rl_consume_at(&r, RL_BYTES, 100, t0 + 100 * MS));
    assert_false(rl_consume_at(&r, RL_BYTES, 1, t0 + 100 * MS));
    rl_timer_expired(&r);

    /* Fractions are not lost: 1.5 ms then 0.5 ms more gives 2 tokens. */
    assert_true(rl_consume_at(&r, RL_BYTES, 1, t0 + 101 * MS + MS / 2));
    assert_false(rl_consume_at(&r, RL_BYTES, 1, t0 + 101 * MS + MS / 2));
    rl_timer_expired(&r);
    assert_true(rl_consume_at(&r, RL_BYTES, 1, t0 + 102 * MS));

    /* The budget never exceeds size, however long the idle time. */
    assert_true(rl_consume_at(&r, RL_BYTES, 1000, t0 + 3600000 * MS));
    assert_false(rl_consume_at(&r, RL_BYTES, 1, t0 + 3600000 * MS));
    rl_timer_expired(&r);

    /* Over 10 s of greedy 10-byte requests, about 10 * 1000 bytes pass. */
    uint64_t passed = 0, t = t0 + 3600000 * MS;
    for (uint64_t k = 1; k <= 10000; k++)
        if (rl_consume_at(&r, RL_BYTES, 10, t + k * MS))
            passed += 10;
    assert_true(passed >= 9990 && passed <= 10000);
    rl_destroy(&r);
}

static void test_refused_takes_nothing_and_arms_timer(void **state)
{
    (void)state;
    struct rl r;
    struct rate_limiter c = cfg_of(0, 0, 0, 10, 0, 100); /* 10 ops per 100 ms */
    assert_int_equal(rl_init(&r, &c), 0);
    uint64_t t0 = r.bucket[RL_OPS].last_update_ns;
    assert_true(rl_consume_at(&r, RL_OPS, 8, t0));
    assert_false(rl_is_blocked(&r));
    assert_false(rl_consume_at(&r, RL_OPS, 5, t0)); /* 2 left, 3 missing = 30 ms */
    assert_int_equal(r.bucket[RL_OPS].budget, 2);
    assert_true(rl_is_blocked(&r));
    uint64_t left = timer_left(&r);
    assert_true(left > 0 && left <= 30 * MS);
    /* The timer really fires (armed relative to the real clock). */
    struct pollfd p = {.fd = r.timer_fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    rl_timer_expired(&r);
    assert_false(rl_is_blocked(&r));
    assert_int_equal(timer_left(&r), 0);
    /* Manual replenish gives tokens back, capped at size. */
    rl_manual_replenish(&r, RL_OPS, 3);
    assert_int_equal(r.bucket[RL_OPS].budget, 5);
    rl_manual_replenish(&r, RL_OPS, 100);
    assert_int_equal(r.bucket[RL_OPS].budget, 10);
    rl_destroy(&r);
}

static void test_burst(void **state)
{
    (void)state;
    struct rl r;
    struct rate_limiter c = cfg_of(100, 500, 1000, 0, 0, 0);
    assert_int_equal(rl_init(&r, &c), 0);
    uint64_t t0 = r.bucket[RL_BYTES].last_update_ns;
    /* Burst first: the budget is untouched. */
    assert_true(rl_consume_at(&r, RL_BYTES, 450, t0));
    assert_int_equal(r.bucket[RL_BYTES].burst_left, 50);
    assert_int_equal(r.bucket[RL_BYTES].budget, 100);
    assert_true(rl_consume_at(&r, RL_BYTES, 120, t0));
    assert_int_equal(r.bucket[RL_BYTES].burst_left, 0);
    assert_int_equal(r.bucket[RL_BYTES].budget, 30);
    /* Refused: nothing taken. */
    assert_false(rl_consume_at(&r, RL_BYTES, 31, t0));
    assert_int_equal(r.bucket[RL_BYTES].budget, 30);
    rl_timer_expired(&r);
    /* The burst is never refilled. */
    assert_true(rl_consume_at(&r, RL_BYTES, 100, t0 + 10000 * MS));
    assert_int_equal(r.bucket[RL_BYTES].burst_left, 0);
    assert_false(rl_consume_at(&r, RL_BYTES, 1, t0 + 10000 * MS));
    rl_destroy(&r);
}

static void test_bytes_ops_independent(void **state)
{
    (void)state;
    struct rl r;
    struct rate_limiter c = cfg_of(1000, 0, 1000, 2, 0, 1000);
    assert_int_equal(rl_init(&r, &c), 0);
    uint64_t t0 = r.bucket[RL_OPS].last_update_ns;
    assert_true(rl_consume_at(&r, RL_OPS, 1, t0));
    assert_true(rl_consume_at(&r, RL_OPS, 1, t0));
    assert_false(rl_consume_at(&r, RL_OPS, 1, t0));
    rl_timer_expired(&r);
    /* Bytes still has its whole budget. */
    assert_true(rl_consume_at(&r, RL_BYTES, 1000, t0));
    assert_false(rl_consume_at(&r, RL_BYTES, 1, t0));
    rl_timer_expired(&r);
    /* And only ops limited: bytes never refuse. */
    rl_destroy(&r);
    c = cfg_of(0, 0, 0, 1, 0, 1000);
    assert_int_equal(rl_init(&r, &c), 0);
    t0 = r.bucket[RL_OPS].last_update_ns;
    for (int i = 0; i < 100; i++)
        assert_true(rl_consume_at(&r, RL_BYTES, 1u << 20, t0));
    assert_true(rl_consume_at(&r, RL_OPS, 1, t0));
    assert_false(rl_consume_at(&r, RL_OPS, 1, t0));
    rl_destroy(&r);
}

static void test_oversized(void **state)
{
    (void)state;
    struct rl r;
    struct rate_limiter c = cfg_of(100, 0, 100, 0, 0, 0); /* 1 token per ms */
    assert_int_equal(rl_init(&r, &c), 0);
    uint64_t t0 = r.bucket[RL_BYTES].last_update_ns;
    /* Not full: an oversized request is refused, timer until full (10 ms). */
    assert_true(rl_consume_at(&r, RL_BYTES, 10, t0));
    assert_false(rl_consume_at(&r, RL_BYTES, 250, t0));
    assert_int_equal(r.bucket[RL_BYTES].budget, 90);
    uint64_t left = timer_left(&r);
    assert_true(left > 0 && left <= 10 * MS);
    rl_timer_expired(&r);
    /* Full: allowed; budget 0 and 150 tokens of debt = 150 ms blocked. */
    assert_true(rl_consume_at(&r, RL_BYTES, 250, t0 + 10 * MS));
    assert_int_equal(r.bucket[RL_BYTES].budget, 0);
    assert_true(rl_is_blocked(&r));
    left = timer_left(&r);
    assert_true(left > 100 * MS && left <= 150 * MS);
    rl_timer_expired(&r);
    /* While the debt runs nothing refills... */
    assert_false(rl_consume_at(&r, RL_BYTES, 1, t0 + 150 * MS));
    rl_timer_expired(&r);
    /* ...then refill restarts: at +160+50 ms, 50 tokens. */
    assert_true(rl_consume_at(&r, RL_BYTES, 50, t0 + 210 * MS));
    assert_false(rl_consume_at(&r, RL_BYTES, 1, t0 + 210 * MS));
    rl_destroy(&r);
}

static void test_update(void **state)
{
    (void)state;
    struct rl r;
    struct rate_limiter c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(rl_init(&r, &c), 0);
    assert_int_equal(r.timer_fd, -1);
    /* Adding a limit creates the timer. */
    c = cfg_of(10, 0, 1000, 0, 0, 0);
    assert_int_equal(rl_update(&r, &c), 0);
    assert_true(r.timer_fd >= 0);
    int fd = r.timer_fd;
    uint64_t t0 = r.bucket[RL_BYTES].last_update_ns;
    assert_true(rl_consume_at(&r, RL_BYTES, 10, t0));
    assert_false(rl_consume_at(&r, RL_BYTES, 5, t0));
    assert_true(rl_is_blocked(&r));
    /* A new config restarts full and unblocked; the timer fd is kept. */
    c = cfg_of(20, 0, 1000, 0, 0, 0);
    assert_int_equal(rl_update(&r, &c), 0);
    assert_int_equal(r.timer_fd, fd);
    assert_false(rl_is_blocked(&r));
    assert_int_equal(timer_left(&r), 0);
    t0 = r.bucket[RL_BYTES].last_update_ns;
    assert_true(rl_consume_at(&r, RL_BYTES, 20, t0));
    assert_false(rl_consume_at(&r, RL_BYTES, 1, t0));
    /* Removing the limit: never throttles again. */
    memset(&c, 0, sizeof(c));
    assert_int_equal(rl_update(&r, &c), 0);
    assert_false(rl_is_blocked(&r));
    assert_true(rl_consume(&r, RL_BYTES, 1u << 30));
    rl_destroy(&r);
    assert_int_equal(r.timer_fd, -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_limit),
        cmocka_unit_test(test_refill_math),
        cmocka_unit_test(test_refused_takes_nothing_and_arms_timer),
        cmocka_unit_test(test_burst),
        cmocka_unit_test(test_bytes_ops_independent),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_update),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

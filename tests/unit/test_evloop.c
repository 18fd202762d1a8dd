/* test_evloop.c - unit tests for the main thread's event loop
 * (vmm/base/evloop.c), its polling phase above all: a poller that finds work
 * is run and disarmed, one that finds none is told it expired only once its
 * budget is spent, several armed pollers are all served, ready fds go before
 * any poller, a budget of 0 disarms, budgets are capped at
 * EVLOOP_POLL_MAX_US, and a poller cancelled by another's run() is not
 * called. Timing assertions only ever check lower bounds (elapsed >= budget,
 * CLOCK_MONOTONIC); nothing waits on a sleep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../../vmm/base/container_of.h"
#include "../../vmm/base/evloop.h"

#define DEADLINE_NS (5ull * 1000000000ull) /* for any loop that waits for something */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A test poller: counts its calls, ready after `ready_after` looks (< 0:
 * never). */
struct tp {
    struct ev_poller p;
    struct evloop *ev;
    int ready_after;
    int n_ready, n_run, n_expired;
    uint64_t expired_at;     /* now_ns() in expired() */
    bool extend;             /* ready() keeps the budget from running out first */
    struct tp *cancel_other; /* run() cancels this one */
    unsigned rearm_us;       /* run() arms itself again for this long */
    bool armed_in_run;       /* the poller was already disarmed when run() ran */
};

static bool tp_ready(struct ev_poller *p)
{
    struct tp *t = container_of(p, struct tp, p);
    t->n_ready++;
    bool ready = t->ready_after >= 0 && t->n_ready > t->ready_after;
    if (!ready && t->extend)
        evloop_poll(t->ev, p, EVLOOP_POLL_MAX_US); /* extends: it is armed */
    return ready;
}

static void tp_run(struct ev_poller *p)
{
    struct tp *t = container_of(p, struct tp, p);
    t->n_run++;
    t->armed_in_run = p->until_ns != 0;
    if (t->cancel_other)
        evloop_poll_cancel(t->ev, &t->cancel_other->p);
    if (t->rearm_us)
        evloop_poll(t->ev, p, t->rearm_us);
}

static void tp_expired(struct ev_poller *p)
{
    struct tp *t = container_of(p, struct tp, p);
    t->n_expired++;
    t->expired_at = now_ns();
}

static void tp_init(struct tp *t, struct evloop *ev, int ready_after)
{
    memset(t, 0, sizeof(*t));
    t->p = (struct ev_poller){.ready = tp_ready, .run = tp_run, .expired = tp_expired};
    t->ev = ev;
    t->ready_after = ready_after;
}

static bool is_armed(const struct evloop *ev, const struct ev_poller *p)
{
    for (const struct ev_poller *q = ev->polling; q; q = q->next)
        if (q == p)
            return true;
    return false;
}

static unsigned n_armed(const struct evloop *ev)
{
    unsigned n = 0;
    for (const struct ev_poller *q = ev->polling; q; q = q->next)
        n++;
    return n;
}

/* Run the loop until nothing is armed (deadline-bounded). */
static void run_until_idle(struct evloop *ev)
{
    uint64_t deadline = now_ns() + DEADLINE_NS;
    while (evloop_polling(ev)) {
        if (now_ns() >= deadline)
            fail_msg("pollers still armed after the deadline");
        assert_true(evloop_run_once(ev, 0) >= 0);
    }
}

/* An fd handler: counts, and drains its eventfd. */
struct fdh {
    struct ev_handler h;
    int n;
    struct tp *seen_poller; /* its counters when the fd was served */
    int poller_ready_then, poller_run_then;
};

static void fdh_cb(struct ev_handler *h, uint32_t events)
{
    struct fdh *f = container_of(h, struct fdh, h);
    assert_true(events & EPOLLIN);
    f->n++;
    uint64_t v;
    assert_int_equal(read(h->fd, &v, sizeof(v)), (ssize_t)sizeof(v));
    if (f->seen_poller) {
        f->poller_ready_then = f->seen_poller->n_ready;
        f->poller_run_then = f->seen_poller->n_run;
    }
}

/* A fresh eventfd served by `f` on the loop; returns the eventfd. */
static int fdh_add(struct evloop *ev, struct fdh *f)
{
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(efd >= 0);
    assert_int_equal(evloop_add(ev, &f->h, efd, EPOLLIN, fdh_cb), 0);
    return efd;
}

static int setup(void **state)
{
    static struct evloop ev;
    assert_int_equal(evloop_init(&ev), 0);
    assert_false(evloop_polling(&ev));
    *state = &ev;
    return 0;
}

static int teardown(void **state)
{
    evloop_close(*state);
    return 0;
}

/* ---- tests ---- */

/* ready() turns true after a few looks: run() once, disarmed before it, never
 * expired(). */
static void test_ready_then_run(void **state)
{
    struct evloop *ev = *state;
    struct tp a;
    tp_init(&a, ev, 3);
    a.extend = true; /* however slow this machine, the budget cannot end it first */
    evloop_poll(ev, &a.p, 500);
    assert_true(evloop_polling(ev));
    assert_true(a.p.until_ns != 0);
    assert_int_equal(evloop_run_once(ev, -1), 1);
    assert_int_equal(a.n_ready, 4); /* three times nothing, then work */
    assert_int_equal(a.n_run, 1);
    assert_int_equal(a.n_expired, 0);
    assert_false(a.armed_in_run); /* disarmed before run() */
    assert_int_equal(a.p.until_ns, 0);
    assert_false(evloop_polling(ev));
    /* Nothing armed, nothing ready: the loop does not call it again. */
    assert_int_equal(evloop_run_once(ev, 0), 0);
    assert_int_equal(a.n_ready, 4);
    assert_int_equal(a.n_run, 1);
}

/* Nothing ever comes: expired() once, only after the whole budget. */
static void test_expires_after_budget(void **state)
{
    struct evloop *ev = *state;
    const unsigned budgets[] = {1, 200, EVLOOP_POLL_MAX_US};
    for (unsigned i = 0; i < sizeof(budgets) / sizeof(budgets[0]); i++) {
        struct tp a;
        tp_init(&a, ev, -1);
        uint64_t t0 = now_ns();
        evloop_poll(ev, &a.p, budgets[i]);
        assert_int_equal(evloop_run_once(ev, -1), 1);
        assert_int_equal(a.n_expired, 1);
        assert_int_equal(a.n_run, 0);
        assert_true(a.n_ready >= 1);
        assert_true(a.expired_at - t0 >= (uint64_t)budgets[i] * 1000u);
        assert_int_equal(a.p.until_ns, 0);
        assert_false(evloop_polling(ev));
    }
}

/* Two armed pollers: each is served (run once, or expired once), whatever
 * order the loop takes them in. */
static void test_two_pollers_served(void **state)
{
    struct evloop *ev = *state;
    struct tp a, b;
    tp_init(&a, ev, 0);
    tp_init(&b, ev, 2);
    b.extend = true;
    evloop_poll(ev, &a.p, 500);
    evloop_poll(ev, &b.p, 500);
    assert_int_equal(n_armed(ev), 2);
    assert_int_equal(evloop_run_once(ev, -1), 1); /* one poller per turn */
    assert_int_equal(a.n_run + b.n_run, 1);
    assert_int_equal(n_armed(ev), 1);
    run_until_idle(ev);
    assert_int_equal(a.n_run, 1);
    assert_int_equal(b.n_run, 1);
    assert_int_equal(a.n_expired + b.n_expired, 0);

    /* One with work, one without: the first runs, the second expires. */
    struct tp c, d;
    tp_init(&c, ev, 1);
    tp_init(&d, ev, -1);
    uint64_t t0 = now_ns();
    evloop_poll(ev, &d.p, 300);
    evloop_poll(ev, &c.p, EVLOOP_POLL_MAX_US);
    c.extend = true;
    run_until_idle(ev);
    assert_int_equal(c.n_run, 1);
    assert_int_equal(c.n_expired, 0);
    assert_int_equal(d.n_run, 0);
    assert_int_equal(d.n_expired, 1);
    assert_true(d.expired_at - t0 >= 300000u);
}

/* With the fds due (never looked at, or not for EVLOOP_FD_CHECK_US), a ready
 * fd is served before any poller is looked at; the poller runs on the next
 * turn. */
static void test_fd_before_pollers(void **state)
{
    struct evloop *ev = *state;
    struct fdh f = {0};
    int efd = fdh_add(ev, &f);
    struct tp a;
    tp_init(&a, ev, 0); /* work at once */
    f.seen_poller = &a;
    evloop_poll(ev, &a.p, EVLOOP_POLL_MAX_US);
    uint64_t one = 1;
    assert_int_equal(write(efd, &one, sizeof(one)), (ssize_t)sizeof(one));
    assert_int_equal(evloop_run_once(ev, -1), 1);
    assert_int_equal(f.n, 1);
    assert_int_equal(f.poller_ready_then, 0);
    assert_int_equal(f.poller_run_then, 0);
    assert_int_equal(a.n_ready, 0); /* not even looked at this turn */
    assert_true(is_armed(ev, &a.p));
    assert_int_equal(evloop_run_once(ev, -1), 1);
    assert_int_equal(a.n_run, 1);
    assert_int_equal(f.n, 1);
    assert_false(evloop_polling(ev));
    /* With nothing armed the loop waits for the fd (deadline-bounded). */
    assert_int_equal(write(efd, &one, sizeof(one)), (ssize_t)sizeof(one));
    assert_int_equal(evloop_run_once(ev, 5000), 1);
    assert_int_equal(f.n, 2);
    evloop_del(ev, &f.h);
    assert_null(f.h.cb);
    close(efd);
}

/* While a poller finds work on every turn, the loop looks at the fds once
 * per EVLOOP_FD_CHECK_US, but a ready fd is still served while the poller
 * keeps running: it does not wait for the poller to stop. */
static void test_fd_not_starved_by_busy_poller(void **state)
{
    struct evloop *ev = *state;
    struct fdh f = {0};
    int efd = fdh_add(ev, &f);
    struct tp a;
    tp_init(&a, ev, 0);              /* work on every look */
    a.rearm_us = EVLOOP_POLL_MAX_US; /* and more work after each run */
    evloop_poll(ev, &a.p, EVLOOP_POLL_MAX_US);
    assert_int_equal(evloop_run_once(ev, -1), 1);
    assert_int_equal(a.n_run, 1);
    uint64_t one = 1;
    assert_int_equal(write(efd, &one, sizeof(one)), (ssize_t)sizeof(one));
    uint64_t deadline = now_ns() + DEADLINE_NS;
    while (f.n == 0) {
        if (now_ns() >= deadline)
            fail_msg("a ready fd waited behind a busy poller past the deadline");
        assert_int_equal(evloop_run_once(ev, -1), 1);
    }
    assert_true(is_armed(ev, &a.p)); /* served while the poller still had work */
    evloop_poll_cancel(ev, &a.p);
    evloop_del(ev, &f.h);
    close(efd);
}

/* evloop_poll(.., 0) and evloop_poll_cancel() disarm; disarming what is not
 * armed is a no-op; arming twice extends, it does not list the poller twice. */
static void test_disarm(void **state)
{
    struct evloop *ev = *state;
    struct tp a, b;
    tp_init(&a, ev, 0);
    tp_init(&b, ev, 0);
    evloop_poll(ev, &a.p, 0); /* not armed: nothing happens */
    assert_false(evloop_polling(ev));
    assert_int_equal(a.p.until_ns, 0);
    evloop_poll(ev, &a.p, 100);
    evloop_poll(ev, &b.p, 100);
    uint64_t until = a.p.until_ns;
    evloop_poll(ev, &a.p, 500); /* extends */
    assert_true(a.p.until_ns >= until);
    evloop_poll(ev, &a.p, 1); /* never shortens */
    assert_true(a.p.until_ns >= until);
    assert_int_equal(n_armed(ev), 2);
    evloop_poll(ev, &a.p, 0);
    assert_int_equal(a.p.until_ns, 0);
    assert_false(is_armed(ev, &a.p));
    assert_true(is_armed(ev, &b.p));
    evloop_poll_cancel(ev, &b.p);
    evloop_poll_cancel(ev, &b.p); /* twice: harmless */
    assert_int_equal(b.p.until_ns, 0);
    assert_false(evloop_polling(ev));
    assert_int_equal(evloop_run_once(ev, 0), 0);
    assert_int_equal(a.n_ready + a.n_run + a.n_expired, 0);
    assert_int_equal(b.n_ready + b.n_run + b.n_expired, 0);
}

/* A budget above EVLOOP_POLL_MAX_US is cut to it. */
static void test_budget_capped(void **state)
{
    struct evloop *ev = *state;
    struct tp a;
    tp_init(&a, ev, -1);
    uint64_t t0 = now_ns();
    evloop_poll(ev, &a.p, 1000000000u); /* 1000 s asked */
    uint64_t t1 = now_ns();
    assert_true(a.p.until_ns >= t0 + EVLOOP_POLL_MAX_US * 1000ull);
    assert_true(a.p.until_ns <= t1 + EVLOOP_POLL_MAX_US * 1000ull);
    /* An extension is capped the same way. */
    evloop_poll(ev, &a.p, 5000000u);
    uint64_t t2 = now_ns();
    assert_true(a.p.until_ns <= t2 + EVLOOP_POLL_MAX_US * 1000ull);
    assert_int_equal(evloop_run_once(ev, -1), 1);
    assert_int_equal(a.n_expired, 1);
    assert_true(a.expired_at - t0 >= EVLOOP_POLL_MAX_US * 1000ull);
}

/* A poller cancelled from another's run() is not called afterwards. Each
 * cancels the other, so whichever the loop serves first, the other must
 * never be looked at again. */
static void test_cancel_in_run(void **state)
{
    struct evloop *ev = *state;
    struct tp a, b;
    tp_init(&a, ev, 0);
    tp_init(&b, ev, 0);
    a.cancel_other = &b;
    b.cancel_other = &a;
    evloop_poll(ev, &a.p, EVLOOP_POLL_MAX_US);
    evloop_poll(ev, &b.p, EVLOOP_POLL_MAX_US);
    assert_int_equal(evloop_run_once(ev, -1), 1);
    assert_false(evloop_polling(ev));
    struct tp *ran = a.n_run ? &a : &b, *other = a.n_run ? &b : &a;
    assert_int_equal(ran->n_run, 1);
    int looked = other->n_ready; /* at most looked at before the other ran */
    assert_int_equal(other->n_run, 0);
    assert_int_equal(other->n_expired, 0);
    assert_int_equal(other->p.until_ns, 0);
    assert_int_equal(evloop_run_once(ev, 0), 0);
    assert_int_equal(other->n_ready, looked);
    assert_int_equal(other->n_run + other->n_expired, 0);

    /* Three armed, the first served cancels a second: the third is still
     * served, the cancelled one never. */
    struct tp c, d, e;
    tp_init(&c, ev, 0);
    tp_init(&d, ev, 0);
    tp_init(&e, ev, -1);
    c.cancel_other = &d;
    d.cancel_other = &c;
    evloop_poll(ev, &e.p, 200);
    evloop_poll(ev, &c.p, EVLOOP_POLL_MAX_US);
    evloop_poll(ev, &d.p, EVLOOP_POLL_MAX_US);
    run_until_idle(ev);
    assert_int_equal(c.n_run + d.n_run, 1);
    assert_int_equal(c.n_expired + d.n_expired, 0);
    assert_int_equal(e.n_expired, 1);
    assert_int_equal(e.n_run, 0);
}

/* run() may arm its poller again: it is served again on a later turn. */
static void test_rearm_in_run(void **state)
{
    struct evloop *ev = *state;
    struct tp a;
    tp_init(&a, ev, 0);
    a.rearm_us = 100;
    evloop_poll(ev, &a.p, 100);
    assert_int_equal(evloop_run_once(ev, -1), 1);
    assert_int_equal(a.n_run, 1);
    assert_true(is_armed(ev, &a.p));
    a.rearm_us = 0;
    assert_int_equal(evloop_run_once(ev, -1), 1);
    assert_int_equal(a.n_run, 2);
    assert_false(evloop_polling(ev));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ready_then_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expires_after_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_pollers_served, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fd_not_starved_by_busy_poller, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fd_before_pollers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disarm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_in_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rearm_in_run, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

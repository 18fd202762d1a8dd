/* rate_limiter_internal.h - rl_consume() with the clock given, for unit tests. */
#ifndef EMBER_RATE_LIMITER_INTERNAL_H
#define EMBER_RATE_LIMITER_INTERNAL_H

#include "rate_limiter.h"

/* rl_consume() at time now_ns (CLOCK_MONOTONIC nanoseconds). */
bool rl_consume_at(struct rl *r, enum rl_kind kind, uint64_t tokens, uint64_t now_ns);

#endif

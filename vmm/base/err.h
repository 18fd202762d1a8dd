/* err.h - one error message per failing call chain.
 *
 * Functions return 0 or -errno. The function that detects a failure records
 * one human-readable line naming the thing that failed (path, field, device)
 * with err_set(); callers only propagate the code. main() prints err_msg().
 */
#ifndef EMBER_ERR_H
#define EMBER_ERR_H

/* Record a message for the current thread; returns `neg_errno` unchanged so
 * callers can write `return err_set(-EINVAL, "...")`. */
int err_set(int neg_errno, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last message recorded by this thread ("" if none). */
const char *err_msg(void);

/* Forget the last message. */
void err_clear(void);

#endif

/* version.h - the versions Ember reports.
 *
 * Clients gate on Firecracker's version (Kata needs `--version`'s second word
 * to be at least 0.21.1; SDKs read GET /version), so what Ember reports as
 * "the version" is the Firecracker release whose API and flags it implements
 * (EMBER_FC_VERSION: `--version`'s second word, GET / vmm_version, GET
 * /version firecracker_version). Ember's own release (EMBER_VERSION) is
 * reported beside it: in parentheses after `--version`'s second word and as
 * "ember_version" in both GET bodies.
 */
#ifndef EMBER_VERSION_H
#define EMBER_VERSION_H

#ifndef EMBER_VERSION
#define EMBER_VERSION "0.1.0"
#endif
#define EMBER_FC_VERSION "1.17.0"

#endif

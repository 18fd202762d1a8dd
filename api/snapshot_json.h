/* snapshot_json.h - strict parsers for PUT /snapshot/create and PUT /snapshot/load bodies
 * (Firecracker's SnapshotCreateParams and SnapshotLoadParams).
 *
 * Accepted as Firecracker does: snapshot_type Full (default) or Diff; mem_backend
 * {backend_type File|Uffd, backend_path} or the older mem_file_path (exactly
 * one of them); track_dirty_pages or the older enable_diff_snapshots;
 * resume_vm; clock_realtime; network_overrides [{iface_id, host_dev_name}];
 * huge_pages "None" (or "Snapshot", the same here: the snapshot's guest RAM is
 * on normal pages). vsock_override is refused (Ember has no vsock). Errors
 * name the field; on error *out is left zeroed.
 */
#ifndef EMBER_API_SNAPSHOT_JSON_H
#define EMBER_API_SNAPSHOT_JSON_H

#include <json-c/json.h>

#include "../vmm/base/config.h"

int config_parse_snapshot_create(struct json_object *o, struct snapshot_create_params *out);
int config_parse_snapshot_load(struct json_object *o, struct snapshot_load_params *out);

#endif

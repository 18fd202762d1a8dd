/* snapshot_json.c - PUT /snapshot/create and /snapshot/load bodies (see snapshot_json.h). */
#include "snapshot_json.h"

#include "../vmm/base/err.h"
#include "json_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define OPT 0u
#define REQ (JU_REQUIRED | JU_NONEMPTY)

int config_parse_snapshot_create(struct json_object *o, struct snapshot_create_params *out)
{
    static const char *const keys[] = {"snapshot_type", "snapshot_path", "mem_file_path", "version",
                                       NULL};
    memset(out, 0, sizeof(*out));
    const char *path = "snapshot-create", *type = NULL;
    int rc;
    if ((rc = ju_check_keys(o, path, keys)) < 0 ||
        (rc = ju_get_string(o, path, "snapshot_type", OPT, 16, &type)) < 0)
        return rc;
    if (type && strcmp(type, "Full") != 0 && strcmp(type, "Diff") != 0) {
        char v[80];
        ju_printable(v, sizeof(v), type, strlen(type));
        return err_set(-EINVAL,
                       "snapshot-create.snapshot_type: expected \"Full\" or \"Diff\", got "
                       "\"%s\"",
                       v);
    }
    out->type = type && strcmp(type, "Diff") == 0 ? SNAPSHOT_DIFF : SNAPSHOT_FULL;
    /* `version` (a format version to write) was dropped by Firecracker 1.5; Ember writes one. */
    if (json_object_object_get_ex(o, "version", NULL))
        return err_set(-EINVAL, "snapshot-create.version: not supported (Ember writes its one "
                                "snapshot format version)");
    if ((rc = ju_dup_string(o, path, "snapshot_path", REQ, CONFIG_PATH_MAX, &out->snapshot_path)) <
            0 ||
        (rc = ju_dup_string(o, path, "mem_file_path", REQ, CONFIG_PATH_MAX, &out->mem_file_path)) <
            0) {
        config_snapshot_create_free(out);
        return rc;
    }
    return 0;
}

static int parse_backend(struct json_object *o, struct snapshot_load_params *out)
{
    static const char *const keys[] = {"backend_type", "backend_path", NULL};
    const char *path = "snapshot-load.mem_backend", *type = NULL;
    int rc;
    if ((rc = ju_expect_object(o, path)) < 0 || (rc = ju_check_keys(o, path, keys)) < 0 ||
        (rc = ju_get_string(o, path, "backend_type", JU_REQUIRED, 16, &type)) < 0)
        return rc;
    if (strcmp(type, "File") == 0)
        out->backend = MEM_BACKEND_FILE;
    else if (strcmp(type, "Uffd") == 0)
        out->backend = MEM_BACKEND_UFFD;
    else {
        char v[80];
        ju_printable(v, sizeof(v), type, strlen(type));
        return err_set(-EINVAL, "%s.backend_type: expected \"File\" or \"Uffd\", got \"%s\"", path,
                       v);
    }
    return ju_dup_string(o, path, "backend_path", REQ, CONFIG_PATH_MAX, &out->backend_path);
}

static int parse_overrides(struct json_object *arr, struct snapshot_load_params *out)
{
    static const char *const keys[] = {"iface_id", "host_dev_name", NULL};
    size_t n = json_object_array_length(arr);
    if (n > CONFIG_MAX_NETS)
        return err_set(-EINVAL, "snapshot-load.network_overrides: at most %d entries, got %zu",
                       CONFIG_MAX_NETS, n);
    for (size_t i = 0; i < n; i++) {
        char p[JU_PATH_MAX];
        ju_index(p, sizeof(p), "snapshot-load.network_overrides", i);
        struct json_object *e = json_object_array_get_idx(arr, i);
        struct net_override *ov = &out->overrides[i];
        int rc;
        if ((rc = ju_expect_object(e, p)) < 0 || (rc = ju_check_keys(e, p, keys)) < 0 ||
            (rc = ju_dup_string(e, p, "iface_id", REQ, CONFIG_ID_MAX, &ov->iface_id)) < 0)
            return rc;
        out->n_overrides = (int)i + 1;
        if ((rc = ju_dup_string(e, p, "host_dev_name", REQ, 15, &ov->host_dev_name)) < 0)
            return rc;
        if (!config_id_valid(ov->iface_id))
            return err_set(-EINVAL, "%s.iface_id: invalid id (letters, digits, '_', at most 64)",
                           p);
        for (size_t j = 0; j < i; j++)
            if (strcmp(out->overrides[j].iface_id, ov->iface_id) == 0)
                return err_set(-EINVAL, "%s.iface_id: \"%s\" is overridden twice", p, ov->iface_id);
    }
    return 0;
}

static int parse_load(struct json_object *o, struct snapshot_load_params *out)
{
    static const char *const keys[] = {"snapshot_path",
                                       "mem_file_path",
                                       "mem_backend",
                                       "enable_diff_snapshots",
                                       "track_dirty_pages",
                                       "resume_vm",
                                       "network_overrides",
                                       "vsock_override",
                                       "clock_realtime",
                                       "huge_pages",
                                       NULL};
    const char *path = "snapshot-load", *hp = NULL;
    struct json_object *backend = NULL, *ov = NULL;
    bool diff = false, track = false;
    int rc, has_file, has_backend, has_diff, has_track;
    if ((rc = ju_check_keys(o, path, keys)) < 0 ||
        (rc = ju_dup_string(o, path, "snapshot_path", REQ, CONFIG_PATH_MAX, &out->snapshot_path)) <
            0)
        return rc;
    if (json_object_object_get_ex(o, "vsock_override", NULL))
        return err_set(-EINVAL, "snapshot-load.vsock_override: Ember has no vsock device");
    if ((has_file = ju_dup_string(o, path, "mem_file_path", JU_NONEMPTY, CONFIG_PATH_MAX,
                                  &out->backend_path)) < 0 ||
        (has_backend = ju_get_typed(o, path, "mem_backend", OPT, json_type_object, &backend)) < 0)
        return has_file < 0 ? has_file : has_backend;
    if (has_file && has_backend)
        return err_set(-EINVAL,
                       "snapshot-load: give either mem_backend or mem_file_path, not both");
    if (!has_file && !has_backend)
        return err_set(-EINVAL, "snapshot-load.mem_backend: missing required field (or the older "
                                "mem_file_path)");
    if (has_backend && (rc = parse_backend(backend, out)) < 0)
        return rc;
    if ((has_diff = ju_get_bool(o, path, "enable_diff_snapshots", OPT, &diff)) < 0 ||
        (has_track = ju_get_bool(o, path, "track_dirty_pages", OPT, &track)) < 0)
        return has_diff < 0 ? has_diff : has_track;
    if (has_diff && has_track)
        return err_set(-EINVAL, "snapshot-load: give either track_dirty_pages or the deprecated "
                                "enable_diff_snapshots, not both");
    out->track_dirty_pages = diff || track;
    if ((rc = ju_get_bool(o, path, "resume_vm", OPT, &out->resume_vm)) < 0 ||
        (rc = ju_get_bool(o, path, "clock_realtime", OPT, &out->clock_realtime)) < 0 ||
        (rc = ju_get_string(o, path, "huge_pages", OPT, 16, &hp)) < 0)
        return rc;
    if (hp && strcmp(hp, "None") != 0 && strcmp(hp, "Snapshot") != 0) {
        char v[80];
        ju_printable(v, sizeof(v), hp, strlen(hp));
        return err_set(-EINVAL,
                       "snapshot-load.huge_pages: \"%s\" is not supported for a restore "
                       "(\"None\" or \"Snapshot\": guest RAM on normal pages)",
                       v);
    }
    if ((rc = ju_get_typed(o, path, "network_overrides", OPT, json_type_array, &ov)) < 0)
        return rc;
    return rc ? parse_overrides(ov, out) : 0;
}

int config_parse_snapshot_load(struct json_object *o, struct snapshot_load_params *out)
{
    memset(out, 0, sizeof(*out));
    int rc = ju_expect_object(o, "snapshot-load");
    if (rc == 0)
        rc = parse_load(o, out);
    if (rc < 0)
        config_snapshot_load_free(out);
    return rc < 0 ? rc : 0;
}

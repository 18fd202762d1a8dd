/* config.c - the configuration model: defaults, freeing, and the checks that
 * span more than one field (see config.h). JSON lives in api/config_json.c. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

void config_init(struct vm_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->machine.vcpu_count = 1;
    cfg->machine.mem_size_mib = 128;
    cfg->logger.level = LOG_INFO;
}

void config_boot_source_free(struct boot_source *b)
{
    free(b->kernel_image_path);
    free(b->initrd_path);
    free(b->boot_args);
    memset(b, 0, sizeof(*b));
}

void config_drive_free(struct drive_config *d)
{
    free(d->drive_id);
    free(d->path_on_host);
    free(d->partuuid);
    memset(d, 0, sizeof(*d));
}

void config_net_free(struct net_config *n)
{
    free(n->iface_id);
    free(n->host_dev_name);
    memset(n, 0, sizeof(*n));
}

void config_logger_free(struct logger_config *l)
{
    free(l->log_path);
    free(l->module);
    memset(l, 0, sizeof(*l));
    l->level = LOG_INFO;
}

void config_metrics_free(struct metrics_config *m)
{
    for (int i = 0; i < m->n_properties; i++) {
        free(m->properties[i].key);
        free(m->properties[i].value);
    }
    free(m->properties);
    free(m->metrics_path);
    memset(m, 0, sizeof(*m));
}

void config_serial_free(struct serial_config *s)
{
    free(s->serial_out_path);
    memset(s, 0, sizeof(*s));
}

void config_free(struct vm_config *cfg)
{
    config_boot_source_free(&cfg->boot);
    free(cfg->machine.cpu_template);
    for (int i = 0; i < cfg->n_drives && i < CONFIG_MAX_DRIVES; i++)
        config_drive_free(&cfg->drives[i]);
    for (int i = 0; i < cfg->n_nets && i < CONFIG_MAX_NETS; i++)
        config_net_free(&cfg->nets[i]);
    config_logger_free(&cfg->logger);
    config_metrics_free(&cfg->metrics);
    config_serial_free(&cfg->serial);
    free(cfg->cpu_config);
    config_init(cfg);
}

bool config_id_valid(const char *id)
{
    size_t n = 0;
    if (!id)
        return false;
    for (; id[n]; n++) {
        char c = id[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return n >= 1 && n <= CONFIG_ID_MAX;
}

int config_validate(const struct vm_config *cfg)
{
    const struct machine_config *m = &cfg->machine;
    int root = -1;

    if (m->vcpu_count < 1 || m->vcpu_count > CONFIG_MAX_VCPUS)
        return err_set(-EINVAL, "machine-config.vcpu_count: must be between 1 and %d, got %u",
                       CONFIG_MAX_VCPUS, m->vcpu_count);
    if (m->mem_size_mib < 1 || m->mem_size_mib > CONFIG_MEM_MAX_MIB)
        return err_set(-EINVAL, "machine-config.mem_size_mib: must be between 1 and %u, got %llu",
                       CONFIG_MEM_MAX_MIB, (unsigned long long)m->mem_size_mib);
    if (m->smt && m->vcpu_count > 1 && m->vcpu_count % 2)
        return err_set(-EINVAL,
                       "machine-config.vcpu_count: must be 1 or an even number when smt is true, "
                       "got %u",
                       m->vcpu_count);
    if (m->huge_pages != HUGE_PAGES_NONE && m->mem_size_mib % 2)
        return err_set(-EINVAL,
                       "machine-config.mem_size_mib: must be a multiple of 2 MiB with huge_pages, "
                       "got %llu",
                       (unsigned long long)m->mem_size_mib);
    if (cfg->has_boot_source && !cfg->boot.kernel_image_path)
        return err_set(-EINVAL, "boot-source.kernel_image_path: missing required field");

    if (cfg->n_drives < 0 || cfg->n_drives > CONFIG_MAX_DRIVES)
        return err_set(-EINVAL, "drives: at most %d drives, got %d", CONFIG_MAX_DRIVES,
                       cfg->n_drives);
    for (int i = 0; i < cfg->n_drives; i++) {
        const struct drive_config *d = &cfg->drives[i];
        if (!config_id_valid(d->drive_id))
            return err_set(-EINVAL,
                           "drives[%d].drive_id: must be 1 to %d characters of "
                           "A-Z, a-z, 0-9 and _",
                           i, CONFIG_ID_MAX);
        if (!d->path_on_host)
            return err_set(-EINVAL, "drives[%d].path_on_host: missing required field", i);
        for (int j = 0; j < i; j++)
            if (strcmp(cfg->drives[j].drive_id, d->drive_id) == 0)
                return err_set(-EINVAL, "drives[%d].drive_id: duplicate id \"%s\" (drives[%d])", i,
                               d->drive_id, j);
        if (d->is_root_device) {
            if (root >= 0)
                return err_set(-EINVAL,
                               "drives[%d].is_root_device: only one drive can be the root "
                               "device (drives[%d] \"%s\" already is)",
                               i, root, cfg->drives[root].drive_id);
            root = i;
        }
    }

    if (cfg->n_nets < 0 || cfg->n_nets > CONFIG_MAX_NETS)
        return err_set(-EINVAL, "network-interfaces: at most %d interfaces, got %d",
                       CONFIG_MAX_NETS, cfg->n_nets);
    if (cfg->n_drives + cfg->n_nets > CONFIG_MAX_DEVICES)
        return err_set(-EINVAL,
                       "drives, network-interfaces: at most %d devices in all (one interrupt line "
                       "each), got %d drives and %d interfaces",
                       CONFIG_MAX_DEVICES, cfg->n_drives, cfg->n_nets);
    for (int i = 0; i < cfg->n_nets; i++) {
        const struct net_config *n = &cfg->nets[i];
        if (!config_id_valid(n->iface_id))
            return err_set(-EINVAL,
                           "network-interfaces[%d].iface_id: must be 1 to %d "
                           "characters of A-Z, a-z, 0-9 and _",
                           i, CONFIG_ID_MAX);
        if (!n->host_dev_name)
            return err_set(-EINVAL, "network-interfaces[%d].host_dev_name: missing required field",
                           i);
        for (int j = 0; j < i; j++) {
            const struct net_config *o = &cfg->nets[j];
            if (strcmp(o->iface_id, n->iface_id) == 0)
                return err_set(-EINVAL,
                               "network-interfaces[%d].iface_id: duplicate id \"%s\" "
                               "(network-interfaces[%d])",
                               i, n->iface_id, j);
            if (strcmp(o->host_dev_name, n->host_dev_name) == 0)
                return err_set(-EINVAL,
                               "network-interfaces[%d].host_dev_name: \"%s\" is already used by "
                               "network-interfaces[%d]",
                               i, n->host_dev_name, j);
            if (n->has_mac && o->has_mac && memcmp(n->guest_mac, o->guest_mac, 6) == 0)
                return err_set(-EINVAL,
                               "network-interfaces[%d].guest_mac: "
                               "%02x:%02x:%02x:%02x:%02x:%02x is already used by "
                               "network-interfaces[%d]",
                               i, n->guest_mac[0], n->guest_mac[1], n->guest_mac[2],
                               n->guest_mac[3], n->guest_mac[4], n->guest_mac[5], j);
        }
    }

    if (cfg->has_metrics && !cfg->metrics.metrics_path)
        return err_set(-EINVAL, "metrics.metrics_path: missing required field");
    return 0;
}

void config_snapshot_create_free(struct snapshot_create_params *p)
{
    free(p->snapshot_path);
    free(p->mem_file_path);
    memset(p, 0, sizeof(*p));
}

void config_snapshot_load_free(struct snapshot_load_params *p)
{
    free(p->snapshot_path);
    free(p->backend_path);
    for (int i = 0; i < p->n_overrides; i++) {
        free(p->overrides[i].iface_id);
        free(p->overrides[i].host_dev_name);
    }
    memset(p, 0, sizeof(*p));
}

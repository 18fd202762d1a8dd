/* cpuid.c - CPUID normalization and CPU template files (see cpuid.h). */
#include "cpuid.h"

#include "base/err.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

int cpuid_get_supported(int kvm_fd, struct cpuid_table *t)
{
    struct {
        struct kvm_cpuid2 hdr;
        struct kvm_cpuid_entry2 e[CPUID_MAX_ENTRIES];
    } buf;
    memset(&buf, 0, sizeof(buf));
    buf.hdr.nent = CPUID_MAX_ENTRIES;
    if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, &buf) < 0) {
        int e = errno;
        return err_set(-e, "/dev/kvm: KVM_GET_SUPPORTED_CPUID failed: %s", strerror(e));
    }
    t->n = buf.hdr.nent;
    memcpy(t->e, buf.e, t->n * sizeof(t->e[0]));
    return 0;
}

struct kvm_cpuid_entry2 *cpuid_find(struct cpuid_table *t, uint32_t leaf, uint32_t subleaf)
{
    for (unsigned i = 0; i < t->n; i++) {
        struct kvm_cpuid_entry2 *e = &t->e[i];
        if (e->function != leaf)
            continue;
        if (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == subleaf)
            return e;
    }
    return NULL;
}

static struct kvm_cpuid_entry2 *cpuid_add(struct cpuid_table *t, uint32_t leaf, uint32_t subleaf,
                                          bool indexed)
{
    if (t->n == CPUID_MAX_ENTRIES)
        return NULL;
    struct kvm_cpuid_entry2 *e = &t->e[t->n++];
    memset(e, 0, sizeof(*e));
    e->function = leaf;
    e->index = subleaf;
    e->flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
    return e;
}

static void cpuid_remove_leaf(struct cpuid_table *t, uint32_t leaf)
{
    unsigned j = 0;
    for (unsigned i = 0; i < t->n; i++)
        if (t->e[i].function != leaf)
            t->e[j++] = t->e[i];
    t->n = j;
}

static unsigned bits_for(unsigned n)
{
    unsigned b = 0;
    while ((1u << b) < n)
        b++;
    return b;
}

/* Leaf 0xb / 0x1f: level 0 = SMT (`threads` per core), level 1 = core. */
static void topology_leaf(struct cpuid_table *t, uint32_t leaf, unsigned n_vcpus, unsigned threads)
{
    cpuid_remove_leaf(t, leaf);
    for (uint32_t sub = 0; sub < 3; sub++) {
        struct kvm_cpuid_entry2 *e = cpuid_add(t, leaf, sub, true);
        if (!e)
            return;
        e->ecx = sub;
        if (sub == 0) {
            e->eax = bits_for(threads);
            e->ebx = threads;
            e->ecx |= 1u << 8; /* SMT level */
        } else if (sub == 1) {
            e->eax = bits_for(n_vcpus);
            e->ebx = n_vcpus;
            e->ecx |= 2u << 8; /* core level */
        }
    }
}

void cpuid_normalize(struct cpuid_table *t, unsigned n_vcpus, bool tsc_deadline, bool smt)
{
    /* SMT: vCPUs 2k and 2k+1 are the two threads of core k (APIC ids are the
     * vCPU index, so bit 0 is the thread), as Firecracker's normalization. */
    unsigned threads = smt && n_vcpus > 1 ? 2 : 1;
    struct kvm_cpuid_entry2 *e = cpuid_find(t, 0, 0);
    uint32_t max_leaf = e ? e->eax : 0;

    if ((e = cpuid_find(t, 1, 0))) {
        e->ecx |= 1u << 31; /* running under a hypervisor */
        if (tsc_deadline)
            e->ecx |= 1u << 24;
        e->ecx &= ~(1u << 15); /* PDCM: no perf capabilities MSR */
        e->ebx &= 0x0000ffff;  /* APIC id set per vCPU */
        e->ebx |= (n_vcpus & 0xff) << 16;
        if (n_vcpus > 1)
            e->edx |= 1u << 28; /* HTT: more than one logical processor */
        else
            e->edx &= ~(1u << 28);
    }
    /* Deterministic cache parameters: cores per package, sharing. */
    for (unsigned i = 0; i < t->n; i++) {
        e = &t->e[i];
        if (e->function != 4)
            continue;
        unsigned level = (e->eax >> 5) & 7;
        unsigned sharing = level >= 3 ? n_vcpus - 1 : threads - 1;
        unsigned n_cores = n_vcpus / threads;
        unsigned cores = n_cores - 1 > 63 ? 63 : n_cores - 1;
        e->eax &= 0x3fff;
        e->eax |= (sharing & 0xfff) << 14;
        if (e->eax & 0x1f) /* a real cache entry */
            e->eax |= cores << 26;
    }
    /* No virtual PMU. */
    if ((e = cpuid_find(t, 0xa, 0)))
        e->eax = e->ebx = e->ecx = e->edx = 0;
    if (max_leaf >= 0xb)
        topology_leaf(t, 0xb, n_vcpus, threads);
    if (max_leaf >= 0x1f)
        topology_leaf(t, 0x1f, n_vcpus, threads);
}

void cpuid_for_vcpu(struct cpuid_table *t, unsigned index)
{
    for (unsigned i = 0; i < t->n; i++) {
        struct kvm_cpuid_entry2 *e = &t->e[i];
        if (e->function == 1)
            e->ebx = (e->ebx & 0x00ffffff) | (index << 24);
        else if (e->function == 0xb || e->function == 0x1f)
            e->edx = index;
    }
}

/* ---- CPU template files ---- */

static int parse_u32(struct json_object *o, const char *field, uint32_t *out)
{
    if (json_object_is_type(o, json_type_int)) {
        int64_t v = json_object_get_int64(o);
        if (v < 0 || v > UINT32_MAX)
            return err_set(-EINVAL, "cpu template: %s: out of range", field);
        *out = (uint32_t)v;
        return 0;
    }
    if (json_object_is_type(o, json_type_string)) {
        const char *s = json_object_get_string(o);
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 0);
        if (*s == '\0' || *end != '\0' || errno || v > UINT32_MAX || *s == '-')
            return err_set(-EINVAL, "cpu template: %s: \"%s\" is not a 32-bit number", field, s);
        *out = (uint32_t)v;
        return 0;
    }
    return err_set(-EINVAL, "cpu template: %s: expected a number or a string", field);
}

/* "0b" followed by exactly `bits` characters of 0, 1 or x (x: keep). */
static int parse_bitmap(struct json_object *o, const char *field, unsigned bits, uint64_t *mask,
                        uint64_t *value)
{
    if (!json_object_is_type(o, json_type_string))
        return err_set(-EINVAL, "cpu template: %s: expected a \"0b...\" string", field);
    const char *s = json_object_get_string(o);
    if (strncmp(s, "0b", 2) != 0 || strlen(s) != bits + 2)
        return err_set(-EINVAL, "cpu template: %s: expected \"0b\" and %u characters of 0, 1 or x",
                       field, bits);
    *mask = *value = 0;
    for (unsigned i = 0; i < bits; i++) {
        char c = s[2 + i];
        uint64_t bit = 1ULL << (bits - 1 - i);
        if (c == '1') {
            *mask |= bit;
            *value |= bit;
        } else if (c == '0') {
            *mask |= bit;
        } else if (c != 'x') {
            return err_set(-EINVAL, "cpu template: %s: bad character '%c'", field, c);
        }
    }
    return 0;
}

static int check_keys(struct json_object *o, const char *where, const char *const *allowed)
{
    json_object_object_foreach(o, key, val)
    {
        (void)val;
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            ok |= strcmp(*a, key) == 0;
        if (!ok)
            return err_set(-EINVAL, "cpu template: %s.%s: unknown field", where, key);
    }
    return 0;
}

static int parse_cpuid_modifiers(struct json_object *arr, struct cpu_template *tpl)
{
    static const char *const leaf_keys[] = {"leaf", "subleaf", "flags", "modifiers", NULL};
    static const char *const mod_keys[] = {"register", "bitmap", NULL};
    static const char *const regs[] = {"eax", "ebx", "ecx", "edx"};
    char where[64];
    if (!json_object_is_type(arr, json_type_array))
        return err_set(-EINVAL, "cpu template: cpuid_modifiers: expected an array");
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        struct json_object *l = json_object_array_get_idx(arr, i), *v;
        snprintf(where, sizeof(where), "cpuid_modifiers[%zu]", i);
        if (!json_object_is_type(l, json_type_object))
            return err_set(-EINVAL, "cpu template: %s: expected an object", where);
        int rc = check_keys(l, where, leaf_keys);
        if (rc)
            return rc;
        uint32_t leaf, subleaf = 0;
        if (!json_object_object_get_ex(l, "leaf", &v))
            return err_set(-EINVAL, "cpu template: %s.leaf: missing", where);
        if ((rc = parse_u32(v, "leaf", &leaf)))
            return rc;
        if (json_object_object_get_ex(l, "subleaf", &v) && (rc = parse_u32(v, "subleaf", &subleaf)))
            return rc;
        struct json_object *mods;
        if (!json_object_object_get_ex(l, "modifiers", &mods) ||
            !json_object_is_type(mods, json_type_array))
            return err_set(-EINVAL, "cpu template: %s.modifiers: expected an array", where);
        for (size_t j = 0; j < json_object_array_length(mods); j++) {
            struct json_object *m = json_object_array_get_idx(mods, j), *r, *b;
            char mwhere[96];
            snprintf(mwhere, sizeof(mwhere), "%s.modifiers[%zu]", where, j);
            if (!json_object_is_type(m, json_type_object))
                return err_set(-EINVAL, "cpu template: %s: expected an object", mwhere);
            if ((rc = check_keys(m, mwhere, mod_keys)))
                return rc;
            if (!json_object_object_get_ex(m, "register", &r) ||
                !json_object_object_get_ex(m, "bitmap", &b))
                return err_set(-EINVAL, "cpu template: %s: needs register and bitmap", mwhere);
            int reg = -1;
            for (int k = 0; k < 4; k++)
                if (json_object_is_type(r, json_type_string) &&
                    strcmp(json_object_get_string(r), regs[k]) == 0)
                    reg = k;
            if (reg < 0)
                return err_set(-EINVAL, "cpu template: %s.register: expected eax, ebx, ecx or edx",
                               mwhere);
            if (tpl->n_cpuid == CPU_TEMPLATE_MAX)
                return err_set(-E2BIG, "cpu template: more than %d cpuid modifiers",
                               CPU_TEMPLATE_MAX);
            uint64_t mask, value;
            if ((rc = parse_bitmap(b, "bitmap", 32, &mask, &value)))
                return rc;
            tpl->cpuid[tpl->n_cpuid++] = (struct cpuid_modifier){leaf, subleaf, (enum cpuid_reg)reg,
                                                                 (uint32_t)mask, (uint32_t)value};
        }
    }
    return 0;
}

static int parse_msr_modifiers(struct json_object *arr, struct cpu_template *tpl)
{
    static const char *const keys[] = {"addr", "bitmap", NULL};
    if (!json_object_is_type(arr, json_type_array))
        return err_set(-EINVAL, "cpu template: msr_modifiers: expected an array");
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        struct json_object *m = json_object_array_get_idx(arr, i), *a, *b;
        char where[64];
        snprintf(where, sizeof(where), "msr_modifiers[%zu]", i);
        if (!json_object_is_type(m, json_type_object))
            return err_set(-EINVAL, "cpu template: %s: expected an object", where);
        int rc = check_keys(m, where, keys);
        if (rc)
            return rc;
        if (!json_object_object_get_ex(m, "addr", &a) ||
            !json_object_object_get_ex(m, "bitmap", &b))
            return err_set(-EINVAL, "cpu template: %s: needs addr and bitmap", where);
        if (tpl->n_msr == CPU_TEMPLATE_MAX)
            return err_set(-E2BIG, "cpu template: more than %d msr modifiers", CPU_TEMPLATE_MAX);
        struct msr_modifier *mm = &tpl->msr[tpl->n_msr];
        if ((rc = parse_u32(a, "addr", &mm->addr)) ||
            (rc = parse_bitmap(b, "bitmap", 64, &mm->mask, &mm->value)))
            return rc;
        tpl->n_msr++;
    }
    return 0;
}

int cpu_template_parse(const char *text, struct cpu_template *tpl)
{
    static const char *const top_keys[] = {"cpuid_modifiers", "msr_modifiers", "kvm_capabilities",
                                           "vcpu_features",   "reg_modifiers", NULL};
    memset(tpl, 0, sizeof(*tpl));
    enum json_tokener_error jerr;
    struct json_object *root = json_tokener_parse_verbose(text, &jerr);
    if (!root)
        return err_set(-EINVAL, "cpu template: malformed JSON: %s", json_tokener_error_desc(jerr));
    int rc = 0;
    struct json_object *v;
    if (!json_object_is_type(root, json_type_object)) {
        rc = err_set(-EINVAL, "cpu template: expected a JSON object");
        goto out;
    }
    if ((rc = check_keys(root, "template", top_keys)))
        goto out;
    if (json_object_object_get_ex(root, "cpuid_modifiers", &v) &&
        (rc = parse_cpuid_modifiers(v, tpl)))
        goto out;
    if (json_object_object_get_ex(root, "msr_modifiers", &v) && (rc = parse_msr_modifiers(v, tpl)))
        goto out;
out:
    json_object_put(root);
    return rc;
}

int cpu_template_load(const char *path, struct cpu_template *tpl)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        return err_set(-e, "cpu template %s: %s", path, strerror(e));
    }
    char *buf = malloc(65536);
    if (!buf) {
        fclose(f);
        return -ENOMEM;
    }
    size_t n = fread(buf, 1, 65535, f);
    bool more = !feof(f);
    fclose(f);
    buf[n] = '\0';
    int rc;
    if (more)
        rc = err_set(-EFBIG, "cpu template %s: larger than 64 KiB", path);
    else if ((rc = cpu_template_parse(buf, tpl))) {
        char why[512];
        snprintf(why, sizeof(why), "%s", err_msg());
        err_set(rc, "%s: %s", path, why);
    }
    free(buf);
    return rc;
}

int cpu_template_apply_cpuid(const struct cpu_template *tpl, struct cpuid_table *t)
{
    for (unsigned i = 0; i < tpl->n_cpuid; i++) {
        const struct cpuid_modifier *m = &tpl->cpuid[i];
        struct kvm_cpuid_entry2 *e = cpuid_find(t, m->leaf, m->subleaf);
        if (!e && !(e = cpuid_add(t, m->leaf, m->subleaf, m->subleaf != 0)))
            return err_set(-E2BIG, "cpu template: CPUID table full");
        uint32_t *r = m->reg == CPUID_EAX   ? &e->eax
                      : m->reg == CPUID_EBX ? &e->ebx
                      : m->reg == CPUID_ECX ? &e->ecx
                                            : &e->edx;
        *r = (*r & ~m->mask) | (m->value & m->mask);
    }
    return 0;
}

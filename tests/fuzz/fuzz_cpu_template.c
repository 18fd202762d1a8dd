/* fuzz_cpu_template.c - libFuzzer harness: CPU template JSON parsing. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../vmm/cpuid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cpu_template tpl;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    cpu_template_parse(text, &tpl);
    free(text);
    return 0;
}

/* fuzz_config.c - libFuzzer harness: Firecracker JSON configuration parsing,
 * and the round trip of whatever parses (serialize, parse again, compare). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/config_json.h"
#include "../../vmm/base/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vm_config cfg, again;
    config_init(&cfg);
    if (config_parse_json((const char *)data, size, &cfg) == 0) {
        char *text = config_to_json(&cfg);
        if (!text)
            abort();
        config_init(&again);
        if (config_parse_json(text, strlen(text), &again) != 0)
            abort(); /* our own output must parse */
        char *text2 = config_to_json(&again);
        if (!text2 || strcmp(text, text2) != 0)
            abort(); /* and reproduce itself */
        free(text2);
        free(text);
        config_free(&again);
    }
    config_free(&cfg);
    return 0;
}

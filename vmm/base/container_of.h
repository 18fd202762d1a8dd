/* container_of.h - the struct that embeds a member, from a pointer to the member. */
#ifndef EMBER_CONTAINER_OF_H
#define EMBER_CONTAINER_OF_H

#include <stddef.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif

#include "version.h"

/* Functions rather than the macros, so that a program linked against the
 * shared library learns which release it actually runs with. */
const char *tern_version(void)
{
        return TERN_VERSION_STRING;
}

unsigned tern_version_number(void)
{
        return TERN_VERSION_NUMBER;
}

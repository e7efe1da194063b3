/* The runtime version matches the headers, and the encoding orders versions. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "tern.h"

Test(version, runtime_matches_headers)
{
        cr_assert_str_eq(tern_version(), TERN_VERSION_STRING);
        cr_assert_eq(tern_version_number(), TERN_VERSION_NUMBER);
}

Test(version, string_is_the_three_numbers)
{
        char expect[32];
        snprintf(expect, sizeof(expect), "%d.%d.%d", TERN_VERSION_MAJOR, TERN_VERSION_MINOR,
                 TERN_VERSION_PATCH);
        cr_assert_str_eq(tern_version(), expect);
}

Test(version, encoding_orders_versions)
{
        cr_assert_lt(TERN_VERSION_ENCODE(0, 1, 9), TERN_VERSION_ENCODE(0, 2, 0));
        cr_assert_lt(TERN_VERSION_ENCODE(0, 255, 255), TERN_VERSION_ENCODE(1, 0, 0));
        cr_assert_eq(TERN_VERSION_ENCODE(1, 2, 3), 0x010203u);
        cr_assert_eq(
            TERN_VERSION_NUMBER,
            TERN_VERSION_ENCODE(TERN_VERSION_MAJOR, TERN_VERSION_MINOR, TERN_VERSION_PATCH));
}

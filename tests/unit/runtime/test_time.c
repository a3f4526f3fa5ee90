/* RFC 3339 times as dobj restore --at and the admin endpoint take them. */
#include <criterion/criterion.h>

#include "runtime.h"

Test(rfc3339, utc_fraction_and_offsets)
{
    int64_t us;
    cr_assert_eq(rt_parse_rfc3339("2026-12-04T18:00:00Z", &us), 0);
    cr_assert_eq(us, 1796407200ll * 1000000);
    cr_assert_eq(rt_parse_rfc3339("2026-12-04T18:00:00.5Z", &us), 0);
    cr_assert_eq(us, 1796407200ll * 1000000 + 500000);
    cr_assert_eq(rt_parse_rfc3339("2026-12-04T18:00:00.123456789Z", &us), 0);
    cr_assert_eq(us, 1796407200ll * 1000000 + 123456, "digits past microseconds are dropped");
    cr_assert_eq(rt_parse_rfc3339("2026-12-04T19:30:00+01:30", &us), 0);
    cr_assert_eq(us, 1796407200ll * 1000000);
    cr_assert_eq(rt_parse_rfc3339("2026-12-04t16:00:00-02:00", &us), 0);
    cr_assert_eq(us, 1796407200ll * 1000000);
}

Test(rfc3339, malformed_times_are_refused)
{
    static const char *const bad[] = {"",
                                      "2026-12-04",
                                      "2026-12-04T18:00:00",
                                      "2026-12-04T18:00Z",
                                      "2026-13-04T18:00:00Z",
                                      "2026-12-04T24:00:00Z",
                                      "2026-12-04T18:00:00.Z",
                                      "2026-12-04T18:00:00Zjunk",
                                      "2026-12-04T18:00:00+0100",
                                      "26-12-04T18:00:00Z",
                                      "1796407200"};
    int64_t us;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(rt_parse_rfc3339(bad[i], &us), -1, "\"%s\" accepted", bad[i]);
}

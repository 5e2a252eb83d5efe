/* graph_upload_next_offset: where an upload session says the next range begins. Outlook
 * answers a single "{start}", OneDrive ranges "start-end" or "start-"; anything else (no
 * array, not a number, a sign, overflow) is -1. */
#include <string.h>

#include "check.h"
#include "graph_upload.h"

static long long next(const char *s) { return graph_upload_next_offset(s, strlen(s)); }

int main(void)
{
    CHECK(next("{\"nextExpectedRanges\":[\"2097152\"]}") == 2097152);
    CHECK(next("{\"expirationDateTime\":\"2019-09-25T01:09:30Z\",\"nextExpectedRanges\":[\"0-\"]}")
          == 0);
    CHECK(next("{\"nextExpectedRanges\":[\"12-26\",\"40-\"]}") == 12);
    CHECK(next("{\"nextExpectedRanges\":[]}") == -1);
    CHECK(next("{\"nextExpectedRanges\":\"5\"}") == -1);
    CHECK(next("{\"nextExpectedRanges\":[5]}") == -1);
    CHECK(next("{\"nextExpectedRanges\":[\"-5\"]}") == -1);
    CHECK(next("{\"nextExpectedRanges\":[\"5x\"]}") == -1);
    CHECK(next("{\"nextExpectedRanges\":[\"99999999999999999999\"]}") == -1);
    CHECK(next("{\"NextExpectedRanges\":[\"5\"]}") == -1);
    CHECK(next("not json") == -1);
    CHECK(next("") == -1);
    CHECK(graph_upload_next_offset("{\"nextExpectedRanges\":[\"77\"]}xyz", 30) == 77);
    return CHECK_DONE();
}

/* Unit tests of submit_verdict: the provider error codes as SMTP replies, the admin's hints and
 * the Retry-After conversion shared by EWS and Graph. */
#include <limits.h>
#include <string.h>

#include "check.h"
#include "submit_verdict.h"

static void test_code_reply(void)
{
    CHECK(strcmp(submit_code_reply("ErrorSendAsDenied"),
                 "550 5.7.60 The mailbox is not allowed to send as this sender") == 0);
    CHECK(strcmp(submit_code_reply("ErrorServerBusy"), SUBMIT_REPLY_BUSY) == 0);
    CHECK(strcmp(submit_code_reply("ErrorMessageSizeExceeded"), SUBMIT_REPLY_SIZE) == 0);
    /* Graph's name for the same thing maps to the same reply. */
    CHECK(strcmp(submit_code_reply("RequestBodyTooLarge"), SUBMIT_REPLY_SIZE) == 0);
    CHECK(strcmp(submit_code_reply("ErrorRecipientNotFound"),
                 submit_code_reply("ErrorInvalidRecipients")) == 0);
    CHECK(strcmp(submit_code_reply("ErrorQuotaExceeded"),
                 "452 4.2.2 The sending mailbox is over its quota") == 0);
    CHECK(submit_code_reply("ErrorSomethingNew") == NULL);
    CHECK(submit_code_reply("") == NULL);
    CHECK(submit_code_reply("errorsendasdenied") == NULL); /* codes are case-sensitive */
}

static void test_code_hint(void)
{
    CHECK(strstr(submit_code_hint("ErrorSendAsDenied"), "Send As") != NULL);
    CHECK(strstr(submit_code_hint("ErrorInvalidServerVersion"), "ews_version") != NULL);
    CHECK(submit_code_hint("ErrorServerBusy") == NULL);
    CHECK(submit_code_hint("nothing") == NULL);
}

static void test_retry_after(void)
{
    CHECK(submit_retry_after_ms(-1) == -1);
    CHECK(submit_retry_after_ms(-5) == -1);
    CHECK(submit_retry_after_ms(0) == 0);
    CHECK(submit_retry_after_ms(7) == 7000);
    CHECK(submit_retry_after_ms(LONG_MAX / 1000) == LONG_MAX / 1000 * 1000);
    CHECK(submit_retry_after_ms(LONG_MAX / 1000 + 1) == LONG_MAX);
    CHECK(submit_retry_after_ms(LONG_MAX) == LONG_MAX);
}

int main(void)
{
    test_code_reply();
    test_code_hint();
    test_retry_after();
    return CHECK_DONE();
}

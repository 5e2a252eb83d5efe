#include "submit_verdict.h"

#include <limits.h>
#include <stddef.h>
#include <string.h>

#define REPLY_SENDAS "550 5.7.60 The mailbox is not allowed to send as this sender"
#define REPLY_RCPT "550 5.1.1 Recipient address rejected by the mail provider"

static const struct {
    const char *code;
    const char *reply;
} submit_code_table[] = {
    {"ErrorSendAsDenied", REPLY_SENDAS},
    {"ErrorMessageSizeExceeded", SUBMIT_REPLY_SIZE},
    {"ErrorInvalidRecipients", REPLY_RCPT},
    {"ErrorMailRecipientNotFound", REPLY_RCPT},
    {"ErrorServerBusy", SUBMIT_REPLY_BUSY},
    {"ErrorTooManyObjectsOpened", SUBMIT_REPLY_BUSY},
    {"ErrorExceededConnectionCount", SUBMIT_REPLY_BUSY},
    {"ErrorInsufficientResources", SUBMIT_REPLY_BUSY},
    {"ErrorTimeoutExpired", SUBMIT_REPLY_TEMP},
    {"ErrorInternalServerTransientError", SUBMIT_REPLY_TEMP},
    {"ErrorMailboxStoreUnavailable", SUBMIT_REPLY_TEMP},
    {"ErrorMailboxMoveInProgress", SUBMIT_REPLY_TEMP},
    {"ErrorConnectionFailed", SUBMIT_REPLY_TEMP},
    {"ErrorBatchProcessingStopped", SUBMIT_REPLY_TEMP},
    {"ErrorQuotaExceeded", "452 4.2.2 The sending mailbox is over its quota"},
    {"ErrorAccessDenied", SUBMIT_REPLY_AUTH},
    {"ErrorImpersonateUserDenied", SUBMIT_REPLY_AUTH},
    {"ErrorImpersonationDenied", SUBMIT_REPLY_AUTH},
    {"ErrorNonExistentMailbox", SUBMIT_REPLY_AUTH},
    {"ErrorInvalidUser", SUBMIT_REPLY_AUTH},
    {"MailboxNotEnabledForRESTAPI", SUBMIT_REPLY_AUTH},
    {"ErrorSchemaValidation", SUBMIT_REPLY_SCHEMA},
    {"ErrorInvalidRequest", SUBMIT_REPLY_SCHEMA},
    {"ErrorInvalidServerVersion", SUBMIT_REPLY_SCHEMA},
    {"ErrorMimeContentConversionFailed", SUBMIT_REPLY_SCHEMA},
    {"ErrorMimeContentInvalid", SUBMIT_REPLY_SCHEMA},
    {"ErrorMimeContentInvalidBase64String", SUBMIT_REPLY_SCHEMA},
    /* Graph's own names for the same things */
    {"ErrorMessageSubmissionBlocked", SUBMIT_REPLY_AUTH},
    {"RequestBodyTooLarge", SUBMIT_REPLY_SIZE},
    {"ErrorRecipientNotFound", REPLY_RCPT},
};

static const struct {
    const char *code;
    const char *hint;
} submit_hint_table[] = {
    {"ErrorSendAsDenied", "the From address is not the mailbox: grant Send As, or set "
                          "header_from = account"},
    {"ErrorImpersonateUserDenied", "the app may not impersonate this mailbox: grant the "
                                   "ApplicationImpersonation role (on-premises) or "
                                   "full_access_as_app"},
    {"ErrorAccessDenied", "missing permission: EWS.AccessAsUser.All / full_access_as_app, or "
                          "Graph Mail.Send"},
    {"ErrorNonExistentMailbox", "the username is not a mailbox on this server"},
    {"ErrorInvalidServerVersion", "set ews_version to a RequestServerVersion the server knows"},
    {"ErrorSchemaValidation", "xoauthd sent a request the server refused: report a bug"},
    {"ErrorQuotaExceeded", "the sending mailbox is full (the copy in Sent Items)"},
};

const char *submit_code_reply(const char *code)
{
    for (size_t i = 0; i < sizeof submit_code_table / sizeof submit_code_table[0]; i++)
        if (strcmp(code, submit_code_table[i].code) == 0)
            return submit_code_table[i].reply;
    return NULL;
}

const char *submit_code_hint(const char *code)
{
    for (size_t i = 0; i < sizeof submit_hint_table / sizeof submit_hint_table[0]; i++)
        if (strcmp(code, submit_hint_table[i].code) == 0)
            return submit_hint_table[i].hint;
    return NULL;
}

long submit_retry_after_ms(long retry_after)
{
    /* Retry-After comes from the server: seconds * 1000 overflowed a long (undefined
     * behaviour) for values above LONG_MAX / 1000; found by tests/fuzz/fuzz_ews_graph. */
    if (retry_after < 0)
        return -1;
    return retry_after > LONG_MAX / 1000 ? LONG_MAX : retry_after * 1000;
}

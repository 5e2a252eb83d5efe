/* ews_mailbox: the EWS operations on a mailbox's content, beside the send path (proxy/submit/ews):
 * appending a message to a folder (CreateItem SaveOnly, marked as not a draft), GetItem with MIME
 * content, CopyItem, DeleteItem and DeleteFolder (HardDelete), and UpdateItem setting
 * message:IsRead. They are what POP3 and IMAP served from a mailbox need; today the test tool
 * tests/rig/ews_probe.c drives them (tests/e2e/test_ews_ops.py). Requests use ews's envelope,
 * escaping and call, so a result is an ews_result like the send path's. */
#ifndef XOAUTHD_EWS_MAILBOX_H
#define XOAUTHD_EWS_MAILBOX_H

#include "ews.h"
#include "http.h"
#include "message_capture.h"

/* A folder: a distinguished name ("inbox", "sentitems", ...) or an EWS FolderId. */
struct ews_folder {
    const char *id;
    const char *change_key; /* FolderId only; may be NULL */
    int distinguished;
};

enum ews_mailbox_op {
    EWS_MAILBOX_SAVE,          /* CreateItem SaveOnly into params.folder */
    EWS_MAILBOX_GET_MIME,      /* GetItem IdOnly + MimeContent */
    EWS_MAILBOX_COPY,          /* CopyItem to params.folder */
    EWS_MAILBOX_DELETE_ITEM,   /* DeleteItem HardDelete */
    EWS_MAILBOX_DELETE_FOLDER, /* DeleteFolder HardDelete of params.folder */
    EWS_MAILBOX_SET_READ       /* UpdateItem message:IsRead = params.is_read */
};

struct ews_mailbox_params {
    const char *item_id;
    const char *change_key; /* optional for COPY/DELETE; recommended for SET_READ */
    struct ews_folder folder;
    int is_read;
};

/* The request for op: *head is the whole SOAP envelope, or for SAVE everything up to the base64
 * MIME content with *tail the rest (else *tail is ""). Both malloc'ed. 0 / -1. */
int ews_mailbox_build_request(enum ews_mailbox_op op, const struct ews_target *t,
                              const struct ews_mailbox_params *p, char **head, char **tail);

/* msg is read only for SAVE (it must stay readable until the callback). Returns NULL when the
 * request cannot start (the reason is logged); cb never runs then. ews_cancel() cancels. */
struct ews_call *ews_mailbox_start(struct http *http, const struct ews_target *t,
                                   enum ews_mailbox_op op, const struct ews_mailbox_params *p,
                                   const struct capture_source *msg, const char *sid, ews_cb cb,
                                   void *arg);

#endif

#include "ews_mailbox.h"

#include <stddef.h>

/* GetItem of a large message, in base64: the send path's 1 MiB bound would refuse it. */
#define EWS_MAX_MIME_RESPONSE ((size_t)200 << 20)

static void mailbox_folder(struct ews_buf *b, const struct ews_folder *f)
{
    if (f->distinguished) {
        ews_buf_str(b, "<t:DistinguishedFolderId Id=\"");
        ews_buf_esc(b, f->id);
        ews_buf_str(b, "\"/>");
    } else {
        ews_buf_str(b, "<t:FolderId Id=\"");
        ews_buf_esc(b, f->id);
        if (f->change_key != NULL) {
            ews_buf_str(b, "\" ChangeKey=\"");
            ews_buf_esc(b, f->change_key);
        }
        ews_buf_str(b, "\"/>");
    }
}

static void mailbox_item_id(struct ews_buf *b, const struct ews_mailbox_params *p)
{
    ews_buf_str(b, "<t:ItemId Id=\"");
    ews_buf_esc(b, p->item_id);
    if (p->change_key != NULL) {
        ews_buf_str(b, "\" ChangeKey=\"");
        ews_buf_esc(b, p->change_key);
    }
    ews_buf_str(b, "\"/>");
}

int ews_mailbox_build_request(enum ews_mailbox_op op, const struct ews_target *t,
                              const struct ews_mailbox_params *p, char **head, char **tail)
{
    struct ews_buf b = {0}, tb = {0};
    static const struct ews_mailbox_params none;
    if (p == NULL)
        p = &none;
    *head = *tail = NULL;
    int needs_item = op != EWS_MAILBOX_SAVE && op != EWS_MAILBOX_DELETE_FOLDER;
    int needs_folder = op == EWS_MAILBOX_SAVE || op == EWS_MAILBOX_COPY ||
                       op == EWS_MAILBOX_DELETE_FOLDER;
    if ((needs_item && (p->item_id == NULL || p->item_id[0] == '\0')) ||
        (needs_folder && p->folder.id == NULL))
        return -1;
    ews_envelope_open(&b, t);
    switch (op) {
    case EWS_MAILBOX_SAVE:
        ews_buf_str(&b, "<m:CreateItem MessageDisposition=\"SaveOnly\"><m:SavedItemFolderId>");
        mailbox_folder(&b, &p->folder);
        ews_buf_str(&b, "</m:SavedItemFolderId>"
                        "<m:Items><t:Message><t:MimeContent CharacterSet=\"UTF-8\">");
        /* PR_MESSAGE_FLAGS (0x0E07) = MSGFLAG_READ: without it Exchange files a MIME upload as
         * an unsent draft; an append is a received message. */
        ews_buf_str(&tb, "</t:MimeContent>"
                         "<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag=\"3591\" "
                         "PropertyType=\"Integer\"/><t:Value>1</t:Value></t:ExtendedProperty>"
                         "</t:Message></m:Items></m:CreateItem>\n");
        ews_envelope_close(&tb);
        return ews_request_finish(&b, &tb, head, tail);
    case EWS_MAILBOX_GET_MIME:
        ews_buf_str(&b, "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>"
                        "<t:IncludeMimeContent>true</t:IncludeMimeContent></m:ItemShape>"
                        "<m:ItemIds>");
        mailbox_item_id(&b, p);
        ews_buf_str(&b, "</m:ItemIds></m:GetItem>\n");
        break;
    case EWS_MAILBOX_COPY:
        ews_buf_str(&b, "<m:CopyItem><m:ToFolderId>");
        mailbox_folder(&b, &p->folder);
        ews_buf_str(&b, "</m:ToFolderId><m:ItemIds>");
        mailbox_item_id(&b, p);
        ews_buf_str(&b, "</m:ItemIds></m:CopyItem>\n");
        break;
    case EWS_MAILBOX_DELETE_ITEM:
        ews_buf_str(&b, "<m:DeleteItem DeleteType=\"HardDelete\"><m:ItemIds>");
        mailbox_item_id(&b, p);
        ews_buf_str(&b, "</m:ItemIds></m:DeleteItem>\n");
        break;
    case EWS_MAILBOX_DELETE_FOLDER:
        ews_buf_str(&b, "<m:DeleteFolder DeleteType=\"HardDelete\"><m:FolderIds>");
        mailbox_folder(&b, &p->folder);
        ews_buf_str(&b, "</m:FolderIds></m:DeleteFolder>\n");
        break;
    case EWS_MAILBOX_SET_READ:
        ews_buf_str(&b, "<m:UpdateItem ConflictResolution=\"AlwaysOverwrite\" "
                        "MessageDisposition=\"SaveOnly\"><m:ItemChanges><t:ItemChange>");
        mailbox_item_id(&b, p);
        ews_buf_str(&b, "<t:Updates><t:SetItemField><t:FieldURI FieldURI=\"message:IsRead\"/>"
                        "<t:Message><t:IsRead>");
        ews_buf_str(&b, p->is_read ? "true" : "false");
        ews_buf_str(&b, "</t:IsRead></t:Message></t:SetItemField></t:Updates></t:ItemChange>"
                        "</m:ItemChanges></m:UpdateItem>\n");
        break;
    }
    ews_envelope_close(&b);
    return ews_request_finish(&b, &tb, head, tail);
}

struct ews_call *ews_mailbox_start(struct http *http, const struct ews_target *t,
                                   enum ews_mailbox_op op, const struct ews_mailbox_params *p,
                                   const struct capture_source *msg, const char *sid, ews_cb cb,
                                   void *arg)
{
    char *head, *tail;
    int with_mime = op == EWS_MAILBOX_SAVE;
    if (with_mime && msg == NULL)
        return NULL;
    int built = ews_mailbox_build_request(op, t, p, &head, &tail);
    return ews_call_start(http, t, built, head, tail, with_mime ? msg : NULL,
                          op == EWS_MAILBOX_GET_MIME ? EWS_MAX_MIME_RESPONSE : 0, sid, cb, arg);
}

/* Sender rules: allowed senders, the MAIL FROM rewrite, and the From: header filter fed whole,
 * one byte at a time and in every two-piece split. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sender_rules.h"

static struct config_account test_acct(enum config_envelope_from ef, enum config_header_from hf)
{
    struct config_account a;
    memset(&a, 0, sizeof a);
    a.name = "scanner";
    a.username = "scanner@contoso.com";
    a.envelope_from = ef;
    a.header_from = hf;
    return a;
}

static void test_allowed(void)
{
    struct config_account a = test_acct(CONFIG_ENVFROM_KEEP, CONFIG_HDRFROM_KEEP);
    CHECK(sender_rules_allowed(&a, "anyone@anywhere", 15));
    CHECK(sender_rules_allowed(&a, "", 0));
    char *list[] = {"printer@printer.local", "*@contoso.com"};
    a.allowed_senders = list;
    a.n_allowed_senders = 2;
    CHECK(sender_rules_allowed(&a, "printer@printer.local", 21));
    CHECK(sender_rules_allowed(&a, "PRINTER@Printer.Local", 21));
    CHECK(sender_rules_allowed(&a, "bob@contoso.com", 15));
    CHECK(sender_rules_allowed(&a, "bob@CONTOSO.COM", 15));
    CHECK(!sender_rules_allowed(&a, "bob@evil.contoso.com", 20));
    CHECK(!sender_rules_allowed(&a, "bob@contoso.com.evil", 20));
    CHECK(!sender_rules_allowed(&a, "printer@printer.locals", 22));
    CHECK(!sender_rules_allowed(&a, "", 0));
    CHECK(!sender_rules_allowed(&a, "contoso.com", 11));
    char *list2[] = {"<>"};
    a.allowed_senders = list2;
    a.n_allowed_senders = 1;
    CHECK(sender_rules_allowed(&a, "", 0));
    CHECK(!sender_rules_allowed(&a, "x@y", 3));
}

static void test_mail_line(void)
{
    char out[600];
    struct config_account a = test_acct(CONFIG_ENVFROM_KEEP, CONFIG_HDRFROM_KEEP);
    CHECK(sender_rules_mail_line(&a, "p@printer.local", 15, "", 0, out, sizeof out) == 0);
    a.envelope_from = CONFIG_ENVFROM_ACCOUNT;
    long n = sender_rules_mail_line(&a, "p@printer.local", 15, "SIZE=100 BODY=8BITMIME", 22, out,
                                    sizeof out);
    CHECK(n > 0 && strcmp(out, "MAIL FROM:<scanner@contoso.com> SIZE=100 BODY=8BITMIME") == 0);
    n = sender_rules_mail_line(&a, "", 0, "", 0, out, sizeof out);
    CHECK(n > 0 && strcmp(out, "MAIL FROM:<scanner@contoso.com>") == 0);
    CHECK(sender_rules_mail_line(&a, "Scanner@Contoso.com", 19, "", 0, out, sizeof out) == 0);
    CHECK(sender_rules_mail_line(&a, "p@q", 3, "", 0, out, 10) == -1);
}

/* Runs the filter over in as its callers do: fed in pieces (of step bytes, the first one of
 * first bytes when first > 0; step 0: whole), then finished. Returns the output. */
static char *run_filter(const struct config_account *a, const char *in, size_t first, size_t step)
{
    struct sender_filter f;
    sender_filter_init(&f, a);
    size_t len = strlen(in), cap = len * 2 + 1024, o = 0;
    char *out = malloc(cap);
    const char *p;
    size_t pl;
    for (size_t i = 0; i < len;) {
        size_t n = i == 0 && first > 0 ? first : step == 0 ? len - i : step;
        if (n > len - i)
            n = len - i;
        CHECK(sender_filter_feed(&f, in + i, n, &p, &pl) == 0);
        CHECK(o + pl < cap);
        memcpy(out + o, p, pl);
        o += pl;
        i += n;
    }
    CHECK(sender_filter_finish(&f, &p, &pl) == 0);
    CHECK(o + pl < cap);
    memcpy(out + o, p, pl);
    o += pl;
    out[o] = '\0';
    sender_filter_reset(&f);
    return out;
}

static void check_one(const struct config_account *a, const char *in, size_t first, size_t step,
                      const char *want)
{
    char *got = run_filter(a, in, first, step);
    CHECK(strcmp(got, want) == 0);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "first %zu step %zu:\n--- got ---\n%s\n--- want ---\n%s\n", first, step,
                got, want);
    free(got);
}

static void check_filter(const struct config_account *a, const char *in, const char *want)
{
    size_t len = strlen(in);
    for (size_t step = 0; step <= len; step = step == 0 ? 1 : step * 2 + 1)
        check_one(a, in, 0, step, want);
    /* Every two-piece split. */
    for (size_t cut = 1; cut < len; cut++)
        check_one(a, in, cut, 0, want);
}

static void test_filter(void)
{
    const char *msg = "Received: by printer\r\n"
                      "From: \"Scanner 3rd floor\" <scan@printer.local>\r\n"
                      "To: bob@contoso.com\r\n"
                      "Subject: scan\r\n"
                      "\r\n"
                      "From: not a header in the body\r\n"
                      "..stuffed\r\n"
                      ".\r\n";
    struct config_account keep = test_acct(CONFIG_ENVFROM_KEEP, CONFIG_HDRFROM_KEEP);
    check_filter(&keep, msg, msg);

    struct config_account acct = test_acct(CONFIG_ENVFROM_KEEP, CONFIG_HDRFROM_ACCOUNT);
    check_filter(&acct, msg,
                 "Received: by printer\r\n"
                 "From: scanner@contoso.com\r\n"
                 "Reply-To: \"Scanner 3rd floor\" <scan@printer.local>\r\n"
                 "To: bob@contoso.com\r\n"
                 "Subject: scan\r\n"
                 "\r\n"
                 "From: not a header in the body\r\n"
                 "..stuffed\r\n"
                 ".\r\n");

    struct config_account named = test_acct(CONFIG_ENVFROM_KEEP, CONFIG_HDRFROM_ACCOUNT_WITH_NAME);
    check_filter(&named, msg,
                 "Received: by printer\r\n"
                 "From: \"Scanner 3rd floor\" <scanner@contoso.com>\r\n"
                 "Reply-To: \"Scanner 3rd floor\" <scan@printer.local>\r\n"
                 "To: bob@contoso.com\r\n"
                 "Subject: scan\r\n"
                 "\r\n"
                 "From: not a header in the body\r\n"
                 "..stuffed\r\n"
                 ".\r\n");

    /* Folded From:, an existing Reply-To: is kept, comment form. */
    check_filter(&named,
                 "from:\r\n scan@printer.local\r\n (Front desk)\r\nReply-To: desk@contoso.com\r\n"
                 "\r\nbody\r\n.\r\n",
                 "From: scanner@contoso.com (Front desk)\r\nReply-To: desk@contoso.com\r\n"
                 "\r\nbody\r\n.\r\n");

    /* Already the mailbox: untouched. */
    const char *same = "From: Scanner <SCANNER@contoso.com>\r\n\r\nx\r\n.\r\n";
    check_filter(&named, same, same);

    /* No From: at all: one is added. No body separator: the end of data ends the headers. */
    check_filter(&acct, "Subject: x\r\n.\r\n", "Subject: x\r\nFrom: scanner@contoso.com\r\n.\r\n");

    /* Bare address. */
    check_filter(&acct, "From: scan@printer.local\r\n\r\n.\r\n",
                 "From: scanner@contoso.com\r\nReply-To: scan@printer.local\r\n\r\n.\r\n");

    /* A header block larger than the limit is refused (a From: past the limit would go out
     * unchanged otherwise); nothing of it was passed on. */
    size_t big = SENDER_FILTER_MAX_HEADER + 4096;
    char *huge = malloc(big + 256);
    size_t o = 0;
    o += (size_t)sprintf(huge, "From: a@b.c\r\n");
    while (o < big)
        o += (size_t)sprintf(huge + o, "X-Pad: %070d\r\n", 0);
    o += (size_t)sprintf(huge + o, "\r\nbody\r\n.\r\n");
    struct sender_filter f;
    sender_filter_init(&f, &acct);
    size_t got = 0, i = 0;
    int r = 0;
    const char *p;
    size_t pl;
    for (; i < o && r == 0; i += 1000) {
        r = sender_filter_feed(&f, huge + i, o - i < 1000 ? o - i : 1000, &p, &pl);
        got += pl;
    }
    CHECK(r == -1 && f.gave_up && !f.rewritten && got == 0);
    CHECK(i > SENDER_FILTER_MAX_HEADER && i <= SENDER_FILTER_MAX_HEADER + 2000);
    /* And it stays refused: the body does not pass either. */
    CHECK(sender_filter_feed(&f, "\r\nbody\r\n", 8, &p, &pl) == -1 && pl == 0 && p != NULL);
    CHECK(sender_filter_finish(&f, &p, &pl) == 0 && pl == 0);
    sender_filter_reset(&f);
    /* One endless line is bounded the same way. */
    memset(huge, 'x', big);
    memcpy(huge, "Subject: ", 9);
    sender_filter_init(&f, &acct);
    for (i = 0, r = 0; i < big && r == 0; i += 1000)
        r = sender_filter_feed(&f, huge + i, 1000, &p, &pl);
    CHECK(r == -1 && f.gave_up && i <= SENDER_FILTER_MAX_HEADER + 2000);
    sender_filter_reset(&f);
    free(huge);
}

/* Every From: of the header block, however it is spelt, is replaced by the one mailbox; the
 * Reply-To: keeps the first address the device claimed. */
static void test_every_from(void)
{
    struct config_account acct = test_acct(CONFIG_ENVFROM_KEEP, CONFIG_HDRFROM_ACCOUNT);
    struct config_account named = test_acct(CONFIG_ENVFROM_KEEP, CONFIG_HDRFROM_ACCOUNT_WITH_NAME);
    /* Two From: headers: one From:, where the first was. */
    check_filter(&acct,
                 "From: first@printer.local\r\nTo: bob@contoso.com\r\nFrom: ceo@contoso.com\r\n"
                 "\r\nFrom: body line\r\n.\r\n",
                 "From: scanner@contoso.com\r\nReply-To: first@printer.local\r\n"
                 "To: bob@contoso.com\r\n\r\nFrom: body line\r\n.\r\n");
    /* Obsolete syntax (WSP before the colon), any case, folded, several at once. */
    check_filter(&named,
                 "FROM : \"Desk\" <desk@printer.local>\r\nfrom\t: a@x\r\nFrOm:\r\n b@y\r\n"
                 "Subject: s\r\nFrom  :\r\n\t(folded) c@z\r\n\r\nbody\r\n.\r\n",
                 "From: \"Desk\" <scanner@contoso.com>\r\nReply-To: \"Desk\" <desk@printer.local>\r\n"
                 "Subject: s\r\n\r\nbody\r\n.\r\n");
    /* A lone obsolete From : is rewritten, not kept beside a new one. */
    check_filter(&acct, "From : x@printer.local\r\n\r\nb\r\n.\r\n",
                 "From: scanner@contoso.com\r\nReply-To: x@printer.local\r\n\r\nb\r\n.\r\n");
    /* Folding before the colon, and WSP before the name on the first line, are no header field
     * to a strict parser but may be to a lenient one: they go too. */
    check_filter(&acct, " From: a@x\r\nFrom\r\n : b@y\r\n\r\nb\r\n.\r\n",
                 "From: scanner@contoso.com\r\nReply-To: a@x\r\n\r\nb\r\n.\r\n");
    /* The first From: is already the mailbox, a later one is not: the later one goes, and no
     * Reply-To: points at the mailbox itself. */
    check_filter(&acct, "From: scanner@contoso.com\r\nFrom: ceo@contoso.com\r\n\r\nb\r\n.\r\n",
                 "From: scanner@contoso.com\r\n\r\nb\r\n.\r\n");
    /* An obsolete Reply-To : is a Reply-To: too (kept, none added). */
    check_filter(&acct, "Reply-To : desk@contoso.com\r\nFrom: a@x\r\n\r\nb\r\n.\r\n",
                 "Reply-To : desk@contoso.com\r\nFrom: scanner@contoso.com\r\n\r\nb\r\n.\r\n");
    /* Names that only start like From are other fields. */
    const char *other = "From-Printer: a\r\nFromage: b\r\nX-From: c\r\nFrom: scanner@contoso.com\r\n"
                        "\r\nb\r\n.\r\n";
    check_filter(&acct, other, other);
    /* An empty From: claims nothing: no empty Reply-To:. */
    check_filter(&acct, "From:\r\n\r\nb\r\n.\r\n", "From: scanner@contoso.com\r\n\r\nb\r\n.\r\n");
    /* A dot-stuffed line ("..X" is the field ".X" once unstuffed) does not end the block: the
     * From: after it is seen. */
    check_filter(&acct, "From: a@x\r\n..X: y\r\nFrom: b@y\r\n\r\nb\r\n.\r\n",
                 "From: scanner@contoso.com\r\nReply-To: a@x\r\n..X: y\r\n\r\nb\r\n.\r\n");
    /* A From: (or Reply-To:) behind a stuffing dot is what the provider reads once it takes
     * the dot away (RFC 5321 4.5.2): replaced like any other. "..From:" is the field ".From"
     * after unstuffing, and kept. */
    check_filter(&acct, ".From: ceo@victim.com\r\nSubject: x\r\n\r\nb\r\n.\r\n",
                 "From: scanner@contoso.com\r\nReply-To: ceo@victim.com\r\nSubject: x\r\n"
                 "\r\nb\r\n.\r\n");
    check_filter(&acct, "From: a@x\r\n.From: ceo@victim.com\r\n.Reply-To: r@x\r\n\r\nb\r\n.\r\n",
                 "From: scanner@contoso.com\r\n.Reply-To: r@x\r\n\r\nb\r\n.\r\n");
    check_filter(&acct, "From: a@x\r\n..From: y\r\n\r\nb\r\n.\r\n",
                 "From: scanner@contoso.com\r\nReply-To: a@x\r\n..From: y\r\n\r\nb\r\n.\r\n");
    /* In the unstuffed stream a "." line inside the block is a line of the message, not its
     * end. */
    check_filter(&acct, "From: a@x\r\n.\r\nFrom: b@y\r\n\r\nb\r\n",
                 "From: scanner@contoso.com\r\nReply-To: a@x\r\n.\r\n\r\nb\r\n");
    /* No From: and a last line without CRLF (the unstuffed capture): the From: goes on a line
     * of its own. */
    check_filter(&acct, "Subject: x", "Subject: x\r\nFrom: scanner@contoso.com\r\n");
    /* Bare LF lines. */
    check_filter(&acct, "From: a@x\nFrom : b@y\n\nb\n.\n",
                 "From: scanner@contoso.com\r\nReply-To: a@x\r\n\nb\n.\n");
}

/* account-with-name keeps the device's display name, but never as something that adds an
 * address to the From: (a name "boss@example.com," would make it a list of two). */
static void test_display_name(void)
{
    struct config_account named = test_acct(CONFIG_ENVFROM_KEEP, CONFIG_HDRFROM_ACCOUNT_WITH_NAME);
    static const struct {
        const char *from, *want;
    } cases[] = {
        /* Phrases stay as written: atoms, obsolete dots, quoted strings, encoded words. */
        {"Dr. Who <d@p.l>", "Dr. Who <scanner@contoso.com>"},
        {"John \"J\\\"r\" Doe <d@p.l>", "John \"J\\\"r\" Doe <scanner@contoso.com>"},
        {"=?utf-8?q?Caf=C3=A9?= <d@p.l>", "=?utf-8?q?Caf=C3=A9?= <scanner@contoso.com>"},
        {"Caf\xc3\xa9 <d@p.l>", "Caf\xc3\xa9 <scanner@contoso.com>"},
        /* Anything else becomes one quoted string. */
        {"boss@example.com, <d@p.l>", "\"boss@example.com,\" <scanner@contoso.com>"},
        {"a <b@c>, <d@p.l>", "a <scanner@contoso.com>"},
        {"\"open <d@p.l>", "scanner@contoso.com"},
        {"a\\b, c <d@p.l>", "\"a\\\\b, c\" <scanner@contoso.com>"},
        {"a \"b\" c, d <d@p.l>", "\"a \\\"b\\\" c, d\" <scanner@contoso.com>"},
        /* An unbalanced quote swallows the rest: no address outside it, none kept. */
        {"x\\\" y, z <d@p.l>", "scanner@contoso.com"},
        /* A comment keeps ctext only: it cannot close early. */
        {"d@p.l (a), boss@example.com (b)", "scanner@contoso.com (a, boss@example.com b)"},
        {"d@p.l (a\\) b)", "scanner@contoso.com (a b)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char in[256], want[512];
        snprintf(in, sizeof in, "From: %s\r\n\r\nb\r\n", cases[i].from);
        snprintf(want, sizeof want, "From: %s\r\nReply-To: %s\r\n\r\nb\r\n", cases[i].want,
                 cases[i].from);
        check_filter(&named, in, want);
    }
}

/* The unstuffed stream of the EWS/Graph capture has no "." end marker: a message without an
 * empty line is flushed by sender_filter_finish. */
static void test_finish(void)
{
    struct config_account acct = test_acct(CONFIG_ENVFROM_KEEP, CONFIG_HDRFROM_ACCOUNT);
    struct sender_filter f;
    const char *p;
    size_t pl;
    sender_filter_init(&f, &acct);
    const char *held = "From: a@b.c\r\nSubject: x\r\n";
    CHECK(sender_filter_feed(&f, held, strlen(held), &p, &pl) == 0 && pl == 0);
    CHECK(p != NULL);
    CHECK(sender_filter_finish(&f, &p, &pl) == 0);
    const char *want = "From: scanner@contoso.com\r\nReply-To: a@b.c\r\nSubject: x\r\n";
    CHECK(pl == strlen(want) && memcmp(p, want, pl) == 0);
    CHECK(sender_filter_finish(&f, &p, &pl) == 0 && pl == 0);
    sender_filter_reset(&f);
    /* Nothing held: nothing to flush. */
    sender_filter_init(&f, &acct);
    CHECK(sender_filter_finish(&f, &p, &pl) == 0 && pl == 0);
    sender_filter_reset(&f);
    sender_filter_init(&f, &acct);
    const char *whole = "From: a@b.c\r\n\r\nbody\r\n";
    CHECK(sender_filter_feed(&f, whole, strlen(whole), &p, &pl) == 0 && pl > 0);
    CHECK(sender_filter_finish(&f, &p, &pl) == 0 && pl == 0);
    sender_filter_reset(&f);
}

int main(void)
{
    test_finish();
    test_allowed();
    test_mail_line();
    test_filter();
    test_every_from();
    test_display_name();
    return CHECK_DONE();
}

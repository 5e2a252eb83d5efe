/* Unit tests for sasl.c: PLAIN, LOGIN, XOAUTH2, OAUTHBEARER, error challenges.
 * Expected encodings were computed independently with Python's base64 module. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base64.h"
#include "sasl.h"

static void test_plain(void)
{
    struct sasl_cred c;
    /* "\0tim\0tanstaaftanstaaf" (RFC 4616 section 4) */
    const char *v1 = "AHRpbQB0YW5zdGFhZnRhbnN0YWFm";
    CHECK(sasl_plain_decode(v1, strlen(v1), &c) == 0);
    CHECK(strcmp(c.authzid, "") == 0);
    CHECK(strcmp(c.user, "tim") == 0);
    CHECK(strcmp(c.password, "tanstaaftanstaaf") == 0);
    sasl_cred_clear(&c);
    CHECK(c.user[0] == '\0' && c.password[0] == '\0');

    /* "admin\0tim\0pw" */
    const char *v2 = "YWRtaW4AdGltAHB3";
    CHECK(sasl_plain_decode(v2, strlen(v2), &c) == 0);
    CHECK(strcmp(c.authzid, "admin") == 0 && strcmp(c.user, "tim") == 0 &&
          strcmp(c.password, "pw") == 0);

    struct {
        const char *raw;
        size_t len;
    } bad[] = {
        {"timpw", 5},              /* no NUL */
        {"tim\0pw", 6},            /* one NUL */
        {"\0\0pw", 4},             /* empty user */
        {"\0tim\0", 5},            /* empty password */
        {"\0tim\0pw\0", 8},        /* three NULs */
        {"a\0tim\0p\0w", 9},       /* three NULs */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *e = base64_encode((const uint8_t *)bad[i].raw, bad[i].len, 0);
        CHECK(e != NULL);
        if (e == NULL)
            continue;
        CHECK(sasl_plain_decode(e, strlen(e), &c) == -1);
        free(e);
    }
    CHECK(sasl_plain_decode("AHRpbQB0YW5zdGFhZnRhbnN0YWFm!", 29, &c) == -1);
    CHECK(sasl_plain_decode("", 0, &c) == -1);

    /* Field length limits: exactly SASL_MAX_FIELD is fine, one more is not. */
    char raw[3 * SASL_MAX_FIELD + 8];
    for (int which = 0; which < 3; which++) {
        for (int extra = 0; extra <= 1; extra++) {
            size_t lens[3] = {1, 1, 1};
            lens[which] = SASL_MAX_FIELD + (size_t)extra;
            size_t o = 0;
            for (int f = 0; f < 3; f++) {
                memset(raw + o, 'a' + f, lens[f]);
                o += lens[f];
                if (f < 2)
                    raw[o++] = '\0';
            }
            char *e = base64_encode((const uint8_t *)raw, o, 0);
            CHECK(e != NULL);
            if (e == NULL)
                continue;
            int rc = sasl_plain_decode(e, strlen(e), &c);
            CHECK(rc == (extra ? -1 : 0));
            if (rc == 0) {
                CHECK(strlen(which == 0 ? c.authzid : which == 1 ? c.user : c.password) ==
                      SASL_MAX_FIELD);
            }
            free(e);
        }
    }
    /* Far oversized input is refused before any copy. */
    char *huge = malloc(8192 + 1);
    CHECK(huge != NULL);
    if (huge != NULL) {
        memset(huge, 'A', 8192);
        huge[8192] = '\0';
        CHECK(sasl_plain_decode(huge, 8192, &c) == -1);
        free(huge);
    }
}

static void test_login(void)
{
    char out[SASL_MAX_FIELD + 1];
    /* "dGVzdA==" = "test"; "VXNlcm5hbWU6" = "Username:" */
    CHECK(sasl_login_decode("dGVzdA==", 8, out) == 0 && strcmp(out, "test") == 0);
    CHECK(sasl_login_decode("VXNlcm5hbWU6", 12, out) == 0 && strcmp(out, "Username:") == 0);
    CHECK(sasl_login_decode("", 0, out) == 0 && out[0] == '\0');
    CHECK(sasl_login_decode("dGVzdA", 6, out) == -1);
    CHECK(sasl_login_decode("AGE=", 4, out) == -1); /* "\0a": embedded NUL */
    char raw[SASL_MAX_FIELD + 1];
    memset(raw, 'x', sizeof raw);
    char *e = base64_encode((const uint8_t *)raw, SASL_MAX_FIELD, 0);
    CHECK(e != NULL && sasl_login_decode(e, strlen(e), out) == 0 &&
          strlen(out) == SASL_MAX_FIELD);
    free(e);
    e = base64_encode((const uint8_t *)raw, SASL_MAX_FIELD + 1, 0);
    CHECK(e != NULL && sasl_login_decode(e, strlen(e), out) == -1);
    free(e);
}

/* The server side of both exchanges, as every front drives them. */
static void test_server_exchange(void)
{
    struct sasl_server x;
    struct sasl_cred c;
    memset(&x, 0, sizeof x);
    CHECK(sasl_mech_parse("login", 5) == SASL_MECH_LOGIN);
    CHECK(sasl_mech_parse("PLAIN", 5) == SASL_MECH_PLAIN);
    CHECK(sasl_mech_parse("CRAM-MD5", 8) == SASL_MECH_UNKNOWN);
    CHECK(sasl_mech_parse("LOGINX", 5) == SASL_MECH_LOGIN); /* the length decides */
    CHECK(sasl_mech_parse("LOGINX", 6) == SASL_MECH_UNKNOWN);

    /* LOGIN without an initial response: "Username:", "Password:" ("dXNlcg==" = "user",
     * "cGFzcw==" = "pass") */
    CHECK(sasl_server_start(&x, SASL_MECH_LOGIN, NULL, 0, &c) == SASL_STEP_CHALLENGE);
    CHECK(strcmp(x.challenge, "VXNlcm5hbWU6") == 0);
    CHECK(sasl_server_step(&x, "dXNlcg==", 8, &c) == SASL_STEP_CHALLENGE);
    CHECK(strcmp(x.challenge, "UGFzc3dvcmQ6") == 0);
    CHECK(sasl_server_step(&x, "cGFzcw==", 8, &c) == SASL_STEP_DONE);
    CHECK(strcmp(c.user, "user") == 0 && strcmp(c.password, "pass") == 0 && c.authzid[0] == 0);
    CHECK(x.mech == SASL_MECH_UNKNOWN && x.user[0] == '\0'); /* nothing kept after the end */
    sasl_cred_clear(&c);

    /* LOGIN with the user name as initial response (SMTP, SASL-IR, RFC 5034) */
    CHECK(sasl_server_start(&x, SASL_MECH_LOGIN, "dXNlcg==", 8, &c) == SASL_STEP_CHALLENGE);
    CHECK(strcmp(x.challenge, "UGFzc3dvcmQ6") == 0);
    CHECK(sasl_server_step(&x, "", 0, &c) == SASL_STEP_DONE); /* an empty password: checked */
    CHECK(strcmp(c.user, "user") == 0 && c.password[0] == '\0');
    sasl_cred_clear(&c);

    /* cancel at either step, and what the mechanism cannot take */
    CHECK(sasl_server_start(&x, SASL_MECH_LOGIN, NULL, 0, &c) == SASL_STEP_CHALLENGE);
    CHECK(sasl_server_step(&x, "*", 1, &c) == SASL_STEP_CANCELLED);
    CHECK(sasl_server_start(&x, SASL_MECH_LOGIN, "dXNlcg==", 8, &c) == SASL_STEP_CHALLENGE);
    CHECK(sasl_server_step(&x, "*", 1, &c) == SASL_STEP_CANCELLED);
    CHECK(x.user[0] == '\0' && c.user[0] == '\0');
    CHECK(sasl_server_start(&x, SASL_MECH_LOGIN, "=", 1, &c) == SASL_STEP_INVALID); /* no user */
    CHECK(sasl_server_start(&x, SASL_MECH_LOGIN, NULL, 0, &c) == SASL_STEP_CHALLENGE);
    CHECK(sasl_server_step(&x, "dXNlcg", 6, &c) == SASL_STEP_INVALID);
    CHECK(sasl_server_start(&x, SASL_MECH_LOGIN, "dXNlcg==", 8, &c) == SASL_STEP_CHALLENGE);
    CHECK(sasl_server_step(&x, "AGE=", 4, &c) == SASL_STEP_INVALID); /* a NUL in the password */
    CHECK(c.user[0] == '\0');

    /* PLAIN: "" challenge, one response; "AHVzZXIAcGFzcw==" = "\0user\0pass" */
    CHECK(sasl_server_start(&x, SASL_MECH_PLAIN, NULL, 0, &c) == SASL_STEP_CHALLENGE);
    CHECK(strcmp(x.challenge, "") == 0);
    CHECK(sasl_server_step(&x, "AHVzZXIAcGFzcw==", 16, &c) == SASL_STEP_DONE);
    CHECK(strcmp(c.user, "user") == 0 && strcmp(c.password, "pass") == 0);
    sasl_cred_clear(&c);
    CHECK(sasl_server_start(&x, SASL_MECH_PLAIN, "AHVzZXIAcGFzcw==", 16, &c) == SASL_STEP_DONE);
    sasl_cred_clear(&c);
    CHECK(sasl_server_start(&x, SASL_MECH_PLAIN, "=", 1, &c) == SASL_STEP_INVALID);
    /* "b3RoZXIAdXNlcgBwYXNz" = "other\0user\0pass": another authorization identity */
    CHECK(sasl_server_start(&x, SASL_MECH_PLAIN, "b3RoZXIAdXNlcgBwYXNz", 20, &c) ==
          SASL_STEP_AUTHZID);
    CHECK(c.user[0] == '\0' && c.password[0] == '\0');
    /* "dXNlcgB1c2VyAHBhc3M=" = "user\0user\0pass": the same one is fine */
    CHECK(sasl_server_start(&x, SASL_MECH_PLAIN, "dXNlcgB1c2VyAHBhc3M=", 20, &c) ==
          SASL_STEP_DONE);
    sasl_cred_clear(&c);
    CHECK(sasl_server_start(&x, SASL_MECH_UNKNOWN, NULL, 0, &c) == SASL_STEP_INVALID);
    /* a step without an exchange */
    sasl_server_clear(&x);
    CHECK(sasl_server_step(&x, "dXNlcg==", 8, &c) == SASL_STEP_INVALID);
}

static void test_xoauth2(void)
{
    /* Google's documented example. */
    char *r = sasl_xoauth2_response("someuser@example.com",
                                    "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg");
    CHECK(r != NULL &&
          strcmp(r, "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRj"
                    "Mk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==") == 0);
    sasl_secret_free(r);
    CHECK(sasl_xoauth2_response("a\x01" "b", "tok") == NULL);
    CHECK(sasl_xoauth2_response("a", "to\x01k") == NULL);
    CHECK(sasl_xoauth2_response(NULL, "tok") == NULL);
    CHECK(strcmp(sasl_error_challenge_answer(0), "") == 0);
    CHECK(strcmp(sasl_error_challenge_answer(1), "AQ==") == 0);
}

static void test_oauthbearer(void)
{
    char *r = sasl_oauthbearer_response("user@example.com", "server.example.com", 143,
                                        "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==");
    CHECK(r != NULL &&
          strcmp(r, "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQz"
                    "AWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9"
                    "PQEB") == 0);
    sasl_secret_free(r);
    /* RFC 5801: ',' -> =2C and '=' -> =3D in the gs2 authzid. */
    r = sasl_oauthbearer_response("a=b,c@example.com", "imap.example.com", 993, "tok");
    CHECK(r != NULL &&
          strcmp(r, "bixhPWE9M0RiPTJDY0BleGFtcGxlLmNvbSwBaG9zdD1pbWFwLmV4YW1wbGUuY29tAXBvcnQ9"
                    "OTkzAWF1dGg9QmVhcmVyIHRvawEB") == 0);
    sasl_secret_free(r);
    CHECK(sasl_oauthbearer_response("u", "h\x01", 1, "t") == NULL);
    CHECK(sasl_oauthbearer_response("u", "h", 70000, "t") == NULL);
}

static void test_challenge(void)
{
    char out[256];
    const char *gmail = "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJodHRwczov"
                        "L21haWwuZ29vZ2xlLmNvbS8ifQ==";
    sasl_describe_challenge(gmail, strlen(gmail), out, sizeof out);
    CHECK(strcmp(out, "{\"status\":\"401\",\"schemes\":\"bearer\","
                      "\"scope\":\"https://mail.google.com/\"}") == 0);
    sasl_describe_challenge("not base64!", 11, out, sizeof out);
    CHECK(strcmp(out, "(undecodable)") == 0);
    /* "a\x01\x02" "b\n" -> only printable characters kept. */
    char *e = base64_encode((const uint8_t *)"a\x01\x02" "b\n", 5, 0);
    CHECK(e != NULL);
    sasl_describe_challenge(e, strlen(e), out, sizeof out);
    CHECK(strcmp(out, "ab") == 0);
    free(e);
    char tiny[5];
    sasl_describe_challenge(gmail, strlen(gmail), tiny, sizeof tiny);
    CHECK(strcmp(tiny, "{\"st") == 0);
    sasl_describe_challenge("", 0, out, sizeof out);
    CHECK(strcmp(out, "") == 0);
}

int main(void)
{
    test_plain();
    test_login();
    test_server_exchange();
    test_xoauth2();
    test_oauthbearer();
    test_challenge();
    return CHECK_DONE();
}

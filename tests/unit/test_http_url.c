/* Unit tests for http_url_split (libcurl's URL parser behind the loopback and redirect URI
 * checks) and http_form_escape. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "http.h"

static int split_is(const char *url, const char *scheme, const char *host, int port,
                    int userinfo, const char *path_query)
{
    struct http_url u;
    if (http_url_split(url, &u) != 0)
        return 0;
    int ok = strcmp(u.scheme, scheme) == 0 && strcmp(u.host, host) == 0 && u.port == port &&
             u.has_userinfo == userinfo && strcmp(u.path_query, path_query) == 0;
    http_url_clear(&u);
    return ok;
}

static int split_fails(const char *url)
{
    struct http_url u;
    return http_url_split(url, &u) == -1 && u.path_query == NULL;
}

int main(void)
{
    CHECK(split_is("http://127.0.0.1/", "http", "127.0.0.1", 0, 0, "/"));
    CHECK(split_is("http://localhost", "http", "localhost", 0, 0, "/"));
    CHECK(split_is("HTTP://[::1]:8080/cb?x=1#frag", "http", "::1", 8080, 0, "/cb?x=1"));
    CHECK(split_is("https://user:pw@login.example/t/token", "https", "login.example", 0, 1,
                   "/t/token"));
    CHECK(split_is("http://127.0.0.1:5555/a@b/c", "http", "127.0.0.1", 5555, 0, "/a@b/c"));
    CHECK(split_fails("ftp://127.0.0.1/"));
    CHECK(split_fails("file:///etc/passwd"));
    CHECK(split_fails("not a url"));
    CHECK(split_fails("http://127.0.0.1:99999/"));
    CHECK(split_fails("http://[::1/"));
    CHECK(split_fails(""));
    CHECK(split_fails(NULL));
    char *esc = http_form_escape("");
    CHECK(esc != NULL && esc[0] == '\0');
    free(esc);
    esc = http_form_escape("AZaz09-._* ~");
    CHECK(esc != NULL && strcmp(esc, "AZaz09-._*+%7E") == 0);
    free(esc);
    return CHECK_DONE();
}

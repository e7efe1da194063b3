/*
 * Differential test of proto/http against http_parser 2.9 (Node's former
 * parser, libhttp-parser-dev): every stream of the fuzz corpus is decoded by
 * both, whole, and they must agree.
 *
 * What is asserted:
 *   1. A request both deliver is the same request: method, path, version,
 *      header and trailer fields (name and value), body, keep-alive.
 *   2. When http_parser rejects a stream, tern rejects it too, at the same
 *      request or an earlier one.
 * What is not: tern rejecting a stream http_parser accepts. That is the
 * deliberate direction (tern is stricter, mostly against smuggling); each
 * such case is counted by tern's reason and listed, and docs/http.md says
 * why each reason is refused.
 *
 * Deliberate differences the comparison allows for:
 *   - Extension methods: tern accepts any token as a method (RFC 9110
 *     section 9.1); http_parser knows a fixed list. A stream http_parser
 *     rejects for HPE_INVALID_METHOD while tern delivered the request with
 *     method_id TERN_HTTP_OTHER does not count against rule 2.
 *   - Upgrade / CONNECT: http_parser stops parsing after such a request
 *     (the bytes after it belong to another protocol); tern hands the
 *     request over and would go on decoding, since switching protocols is
 *     the application's business (it replaces the codec). Comparison stops
 *     after that request.
 *   - Trailing whitespace in field values: http_parser keeps it in some
 *     states; tern trims it (RFC 9112 section 5). Values are compared trimmed.
 *
 * Input layout of a corpus file, as fuzz_http.c reads it: one config byte,
 * n, n cut bytes, then the stream. Usage: diff_http DIR|FILE...
 * Exit status 0 when every file agrees.
 */
#include <dirent.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "http.h"

#define MAX_REQS 64

/* A request reduced to text, so that both parsers' views compare with strcmp. */
struct req {
        char *text;
        size_t len, cap;
};

struct side {
        struct req reqs[MAX_REQS];
        int n;
        bool failed;
        bool stopped;     /* http_parser: upgrade or CONNECT ended parsing */
        bool pending;     /* tern: the stream ended inside a request */
        int other_method; /* tern: index of the first request with an extension method */
        const char *why;  /* tern's reason, or http_parser's error name */
};

static void put(struct req *r, const void *p, size_t n)
{
        if (r->len + n + 1 > r->cap) {
                r->cap = (r->len + n + 1) * 2 + 64;
                r->text = realloc(r->text, r->cap);
                if (!r->text)
                        abort();
        }
        memcpy(r->text + r->len, p, n);
        r->len += n;
        r->text[r->len] = '\0';
}

static void puts_(struct req *r, const char *s)
{
        put(r, s, strlen(s));
}

/* Trailing SP / HTAB removed (see the header comment). */
static void put_value(struct req *r, const char *p, size_t n)
{
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
                n--;
        put(r, p, n);
}

/* "name: value\n", the value trimmed. */
static void put_field(struct req *r, const char *name, size_t nlen, const char *value, size_t vlen)
{
        put(r, name, nlen);
        puts_(r, ": ");
        put_value(r, value, vlen);
        puts_(r, "\n");
}

/* Fields of one section, then the separator. */
static void put_fields(struct req *r, const struct tern_http_header *h, size_t n)
{
        for (size_t i = 0; i < n; i++)
                put_field(r, h[i].name, h[i].name_len, h[i].value, h[i].value_len);
        puts_(r, "--\n");
}

static void side_free(struct side *s)
{
        for (int i = 0; i < MAX_REQS; i++)
                free(s->reqs[i].text);
        memset(s, 0, sizeof(*s));
}

/* ---- tern ---- */

static void tern_side(const uint8_t *in, size_t len, struct side *out)
{
        struct tern_http_state *st = tern_http_state_new(NULL);
        size_t off = 0;

        out->other_method = -1;
        while (off < len && out->n < MAX_REQS) {
                struct tern_frame f = {.kind = TERN_FRAME_NONE};
                ssize_t r = tern_http_decode(st, in + off, len - off, &f);
                if (r < 0) {
                        out->failed = true;
                        out->why = tern_http_state_reason(st);
                        break;
                }
                if (r == 0) {
                        out->pending = true;
                        break;
                }
                off += (size_t)r;
                const struct tern_http_request *q = tern_http_request_of(&f);
                if (!q || q->part != TERN_HTTP_PART_WHOLE)
                        continue;
                struct req *d = &out->reqs[out->n];
                char v[64];
                if (q->method_id == TERN_HTTP_OTHER && out->other_method < 0)
                        out->other_method = out->n;
                put(d, q->method, q->method_len);
                puts_(d, " ");
                put(d, q->path, q->path_len);
                snprintf(v, sizeof(v), " 1.%d ka=%d\n", q->version_minor, q->keep_alive);
                puts_(d, v);
                put_fields(d, q->headers, q->nheaders);
                put_fields(d, q->trailers, q->ntrailers);
                put(d, q->body ? (const char *)q->body : "", q->body_len);
                out->n++;
        }
        tern_http_state_free(st);
}

/* ---- http_parser ---- */

struct hp {
        struct side *out;
        struct req url, field, value, body;
        struct req fields; /* "name: value\n" lines of the head */
        struct req trailers;
        bool in_trailers;
        bool in_value;
};

static void hp_reset(struct req *r)
{
        r->len = 0;
        if (r->text)
                r->text[0] = '\0';
}

static void hp_flush_field(struct hp *h)
{
        if (!h->in_value)
                return;
        struct req *dst = h->in_trailers ? &h->trailers : &h->fields;
        put_field(dst, h->field.text ? h->field.text : "", h->field.len,
                  h->value.text ? h->value.text : "", h->value.len);
        hp_reset(&h->field);
        hp_reset(&h->value);
        h->in_value = false;
}

static int hp_begin(http_parser *p)
{
        struct hp *h = p->data;
        hp_reset(&h->url);
        hp_reset(&h->field);
        hp_reset(&h->value);
        hp_reset(&h->body);
        hp_reset(&h->fields);
        hp_reset(&h->trailers);
        h->in_trailers = false;
        h->in_value = false;
        return 0;
}

static int hp_url(http_parser *p, const char *at, size_t n)
{
        put(&((struct hp *)p->data)->url, at, n);
        return 0;
}

static int hp_field(http_parser *p, const char *at, size_t n)
{
        struct hp *h = p->data;
        hp_flush_field(h);
        put(&h->field, at, n);
        return 0;
}

static int hp_value(http_parser *p, const char *at, size_t n)
{
        struct hp *h = p->data;
        h->in_value = true;
        put(&h->value, at, n);
        return 0;
}

static int hp_headers_done(http_parser *p)
{
        struct hp *h = p->data;
        hp_flush_field(h);
        h->in_trailers = true;
        return 0;
}

static int hp_body(http_parser *p, const char *at, size_t n)
{
        put(&((struct hp *)p->data)->body, at, n);
        return 0;
}

static int hp_complete(http_parser *p)
{
        struct hp *h = p->data;
        hp_flush_field(h);
        if (h->out->n >= MAX_REQS)
                return 1;
        struct req *d = &h->out->reqs[h->out->n++];
        char v[64];
        puts_(d, http_method_str((enum http_method)p->method));
        puts_(d, " ");
        put(d, h->url.text ? h->url.text : "", h->url.len);
        snprintf(v, sizeof(v), " %d.%d ka=%d\n", p->http_major, p->http_minor,
                 http_should_keep_alive(p));
        puts_(d, v);
        put(d, h->fields.text ? h->fields.text : "", h->fields.len);
        puts_(d, "--\n");
        put(d, h->trailers.text ? h->trailers.text : "", h->trailers.len);
        puts_(d, "--\n");
        put(d, h->body.text ? h->body.text : "", h->body.len);
        if (p->upgrade || p->method == HTTP_CONNECT)
                h->out->stopped = true;
        return 0;
}

static void hp_side(const uint8_t *in, size_t len, struct side *out)
{
        static const http_parser_settings cb = {
            .on_message_begin = hp_begin,
            .on_url = hp_url,
            .on_header_field = hp_field,
            .on_header_value = hp_value,
            .on_headers_complete = hp_headers_done,
            .on_body = hp_body,
            .on_message_complete = hp_complete,
        };
        struct hp h = {.out = out};
        http_parser p;

        http_parser_init(&p, HTTP_REQUEST);
        p.data = &h;
        size_t n = http_parser_execute(&p, &cb, (const char *)in, len);
        if (HTTP_PARSER_ERRNO(&p) != HPE_OK && !out->stopped) {
                out->failed = true;
                out->why = http_errno_name(HTTP_PARSER_ERRNO(&p));
        }
        (void)n;
        free(h.url.text);
        free(h.field.text);
        free(h.value.text);
        free(h.body.text);
        free(h.fields.text);
        free(h.trailers.text);
}

/* ---- the comparison ---- */

struct tally {
        int files, agree, stricter, method_ext, undecided;
        int bad;
        char reasons[32][64];
        int reason_count[32];
        int nreasons;
};

static void count_reason(struct tally *t, const char *why)
{
        for (int i = 0; i < t->nreasons; i++)
                if (strcmp(t->reasons[i], why) == 0) {
                        t->reason_count[i]++;
                        return;
                }
        if (t->nreasons < 32) {
                snprintf(t->reasons[t->nreasons], sizeof(t->reasons[0]), "%s", why);
                t->reason_count[t->nreasons++] = 1;
        }
}

static void compare(const char *name, const uint8_t *in, size_t len, struct tally *t)
{
        struct side ours = {0}, theirs = {0};
        tern_side(in, len, &ours);
        hp_side(in, len, &theirs);
        t->files++;

        if (ours.pending && !ours.failed && (theirs.failed || theirs.n > ours.n)) {
                /* The stream ended before tern's verdict: tern judges a line
                 * when it is complete, http_parser byte by byte (and it takes
                 * a CR without LF as the end of a head). End the head and ask
                 * tern again. */
                uint8_t *more = malloc(len + 4);
                if (!more)
                        abort();
                memcpy(more, in, len);
                memcpy(more + len, "\r\n\r\n", 4);
                side_free(&ours);
                tern_side(more, len + 4, &ours);
                free(more);
                if (!ours.failed && ours.pending && ours.n == theirs.n) {
                        t->undecided++; /* inside a body: no verdict either way */
                        goto out;
                }
        }

        int common = ours.n < theirs.n ? ours.n : theirs.n;
        for (int i = 0; i < common; i++) {
                if (strcmp(ours.reqs[i].text, theirs.reqs[i].text) != 0) {
                        fprintf(stderr,
                                "%s: request %d differs\n--- tern:\n%s\n--- http_parser:\n%s\n",
                                name, i, ours.reqs[i].text, theirs.reqs[i].text);
                        t->bad++;
                        goto out;
                }
                if (theirs.stopped && i == theirs.n - 1)
                        goto agreed; /* upgrade / CONNECT: nothing to compare after it */
        }
        if (theirs.failed) {
                /* Rule 2: they rejected request theirs.n; we must have
                 * rejected it or an earlier one. */
                bool ext = ours.other_method >= 0 && ours.other_method <= theirs.n &&
                           strcmp(theirs.why, "HPE_INVALID_METHOD") == 0;
                if (ext) {
                        t->method_ext++;
                        goto out;
                }
                if (!ours.failed || ours.n > theirs.n) {
                        fprintf(stderr,
                                "%s: http_parser rejects request %d (%s); tern delivered %d "
                                "request(s)%s\n",
                                name, theirs.n, theirs.why, ours.n,
                                ours.failed ? " then rejected" : "");
                        t->bad++;
                        goto out;
                }
                t->agree++;
                goto out;
        }
        if (ours.failed && ours.n <= theirs.n) {
                t->stricter++;
                count_reason(t, ours.why ? ours.why : "?");
                goto out;
        }
        if (ours.n != theirs.n) {
                fprintf(stderr, "%s: tern delivered %d request(s), http_parser %d\n", name, ours.n,
                        theirs.n);
                t->bad++;
                goto out;
        }
agreed:
        t->agree++;
out:
        side_free(&ours);
        side_free(&theirs);
}

/* The stream inside a corpus file, after fuzz_http.c's config and cut bytes. */
static void compare_file(const char *path, struct tally *t)
{
        FILE *f = fopen(path, "rb");
        if (!f) {
                perror(path);
                t->bad++;
                return;
        }
        static uint8_t buf[1 << 20];
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        size_t at = 1;
        size_t ncuts = n > at ? buf[at++] : 0;
        at += ncuts;
        if (at > n)
                at = n;
        compare(path, buf + at, n - at, t);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
        return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv)
{
        struct tally t = {0};

        if (argc < 2) {
                fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
                return 2;
        }
        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) != 0) {
                        perror(argv[i]);
                        return 2;
                }
                if (!S_ISDIR(st.st_mode)) {
                        compare_file(argv[i], &t);
                        continue;
                }
                struct dirent **names;
                int n = scandir(argv[i], &names, NULL, by_name);
                for (int k = 0; k < n; k++) {
                        if (names[k]->d_name[0] != '.') {
                                char path[4096];
                                snprintf(path, sizeof(path), "%s/%s", argv[i], names[k]->d_name);
                                compare_file(path, &t);
                        }
                        free(names[k]);
                }
                free(names);
        }
        printf("diff_http: %d streams: %d agree, %d rejected only by tern (stricter), "
               "%d extension methods, %d ended inside a body tern still waits for, "
               "%d disagreements\n",
               t.files, t.agree, t.stricter, t.method_ext, t.undecided, t.bad);
        for (int i = 0; i < t.nreasons; i++)
                printf("  stricter: %-50s %d\n", t.reasons[i], t.reason_count[i]);
        return t.bad || t.files == 0 ? 1 : 0;
}

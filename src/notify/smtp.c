/*
 * Email channel: libcurl SMTP (STARTTLS with smtp_starttls, implicit TLS with smtps://). We
 * build the RFC 5322 message ourselves: From, To, Subject (RFC 2047 encoded words when not
 * plain ASCII), Date (from the request timestamp), Message-ID "<delivery_id@rta>" (the same on
 * every retry, so receivers can drop duplicates), MIME headers, Auto-Submitted (RFC 3834, no
 * auto-replies), List-Unsubscribe, then the text as quoted-printable (7-bit clean, lines
 * under 78 columns whatever the input). curl dot-stuffs lines starting with "." and sends the
 * final "CRLF.CRLF" itself.
 *
 * Answers: curl completes = 250 = OK; otherwise the last SMTP reply code decides: 4xx RETRY,
 * 5xx PERMANENT; no code (connection, TLS, timeout) RETRY.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "notify/notify_internal.h"

#define SUBJECT_MAX 400 /* input bytes kept; longer subjects are cut at a UTF-8 boundary */

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
    notify_xfer *x = ud;
    size_t room = size * nitems, left = x->upload.len - x->upload_off;
    size_t n = left < room ? left : room;
    memcpy(buf, x->upload.data + x->upload_off, n);
    x->upload_off += n;
    return n;
}

/* An address we accept as recipient or envelope sender: local@domain, no spaces, no syntax
 * characters that could break out of "<...>" on the SMTP command line or in a header. */
static int valid_address(const char *s, size_t len)
{
    if (len == 0 || len > 254 || memchr(s, '@', len) == NULL)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || strchr("<>()[],;:\"\\", c) != NULL)
            return 0;
    }
    return 1;
}

static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static void format_date(int64_t ts, char *out, size_t outlen)
{
    static const char *days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)ts;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Length of the UTF-8 sequence starting with byte c (1 for stray bytes). */
static size_t utf8_len(unsigned char c)
{
    if (c >= 0xf0 && c < 0xf8)
        return 4;
    if (c >= 0xe0)
        return c < 0xf0 ? 3 : 1;
    if (c >= 0xc0)
        return 2;
    return 1;
}

static int put_subject(rta_dbuf *b, const char *subject)
{
    char s[SUBJECT_MAX + 1];
    const char *src = subject ? subject : "";
    size_t len = strlen(src);
    int plain = 1;
    if (len > SUBJECT_MAX) { /* cut before a continuation byte, not inside a character */
        len = SUBJECT_MAX;
        while (len > 0 && ((unsigned char)src[len] & 0xc0) == 0x80)
            len--;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        s[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c; /* no header injection */
        if (c >= 0x80)
            plain = 0;
    }
    s[len] = '\0';
    if (plain && strstr(s, "=?") == NULL)
        return rta_dbuf_printf(b, "Subject: %s\r\n", s);
    /* RFC 2047: encoded words of at most 75 chars, each holding whole UTF-8 characters */
    if (rta_dbuf_puts(b, "Subject:") != 0)
        return -1;
    for (size_t i = 0; i < len;) {
        size_t chunk = 0;
        while (i + chunk < len) {
            size_t cl = utf8_len((unsigned char)s[i + chunk]);
            if (chunk + cl > 45 || i + chunk + cl > len)
                break;
            chunk += cl;
        }
        if (chunk == 0)
            chunk = 1; /* a truncated sequence at the end */
        char enc[64];
        EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)s + i, (int)chunk);
        if (rta_dbuf_printf(b, " =?UTF-8?B?%s?=%s", enc, i + chunk < len ? "\r\n" : "") != 0)
            return -1;
        i += chunk;
    }
    return rta_dbuf_puts(b, "\r\n");
}

/* Quoted-printable body (RFC 2045 6.7), CRLF line ends, soft breaks before column 76. */
static int put_qp(rta_dbuf *b, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t col = 0;
    for (const char *p = text ? text : ""; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n' || (c == '\r' && p[1] == '\n')) {
            if (c == '\r')
                p++;
            if (rta_dbuf_puts(b, "\r\n") != 0)
                return -1;
            col = 0;
            continue;
        }
        int at_eol = p[1] == '\0' || p[1] == '\n' || (p[1] == '\r' && p[2] == '\n');
        char tok[4];
        size_t tl;
        if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !at_eol)) {
            tok[0] = (char)c;
            tl = 1;
        } else {
            tok[0] = '=';
            tok[1] = hex[c >> 4];
            tok[2] = hex[c & 15];
            tl = 3;
        }
        if (col + tl > 75) {
            if (rta_dbuf_puts(b, "=\r\n") != 0)
                return -1;
            col = 0;
        }
        if (rta_dbuf_append(b, tok, tl) != 0)
            return -1;
        col += tl;
    }
    return rta_dbuf_puts(b, "\r\n");
}

static int build_message(notify_xfer *x)
{
    rta_notify *n = x->n;
    const rta_notify_request *r = &x->req;
    rta_dbuf *b = &x->upload;
    char date[64];
    format_date(r->timestamp_s, date, sizeof date);
    if (rta_dbuf_printf(b, "From: %s\r\nTo: <%s>\r\n", n->mail_from, r->target) != 0 ||
        put_subject(b, r->subject) != 0 ||
        rta_dbuf_printf(b,
                        "Date: %s\r\n"
                        "Message-ID: <%s@rta>\r\n"
                        "MIME-Version: 1.0\r\n"
                        "Content-Type: text/plain; charset=utf-8\r\n"
                        "Content-Transfer-Encoding: quoted-printable\r\n"
                        "Auto-Submitted: auto-generated\r\n",
                        date, r->delivery_id) != 0)
        return -1;
    if (n->unsubscribe_url &&
        rta_dbuf_printf(b, "List-Unsubscribe: <%s>\r\n", n->unsubscribe_url) != 0)
        return -1;
    if (rta_dbuf_puts(b, "\r\n") != 0 || put_qp(b, r->text) != 0)
        return -1;
    return 0;
}

int rta__smtp_setup(notify_xfer *x)
{
    rta_notify *n = x->n;
    const rta_notify_request *r = &x->req;
    if (n->smtp_url == NULL || n->mail_from == NULL)
        return rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "email not configured");
    snprintf(x->host, sizeof x->host, "%s", n->smtp_host);
    if (!valid_address(r->target, strlen(r->target)))
        return rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "bad email address");
    /* envelope sender: the part in <...> of "Name <addr>", or the whole value */
    const char *from = n->mail_from, *lt = strchr(from, '<'), *gt = lt ? strchr(lt, '>') : NULL;
    size_t flen = lt && gt ? (size_t)(gt - lt - 1) : strlen(from);
    const char *faddr = lt && gt ? lt + 1 : from;
    if (has_ctl(from) || !valid_address(faddr, flen))
        return rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "bad mail_from");
    if (n->unsubscribe_url && (has_ctl(n->unsubscribe_url) || strchr(n->unsubscribe_url, '>')))
        return rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "bad unsubscribe_url");
    if ((r->text && strlen(r->text) > NOTIFY_BODY_MAX / 3) || build_message(x) != 0)
        return rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "email too large");

    char envelope_from[300], rcpt[300];
    snprintf(envelope_from, sizeof envelope_from, "<%.*s>", (int)flen, faddr);
    snprintf(rcpt, sizeof rcpt, "<%s>", r->target);
    CURL *e = rta__notify_easy_new(x, n->smtp_url);
    if (e == NULL || (x->rcpt = curl_slist_append(NULL, rcpt)) == NULL)
        return rta__notify_fail(x, RTA_NOTIFY_RETRY, "out of memory");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(e, CURLOPT_MAIL_FROM, envelope_from);
    curl_easy_setopt(e, CURLOPT_MAIL_RCPT, x->rcpt);
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(e, CURLOPT_READDATA, x);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->upload.len);
    /* also bounds the QUIT exchange curl does when a cached connection is closed */
    long secs = (long)((n->opts.webhook_timeout_ms + 999) / 1000);
    curl_easy_setopt(e, CURLOPT_SERVER_RESPONSE_TIMEOUT, secs);
    if (n->opts.smtp_starttls)
        curl_easy_setopt(e, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    if (n->opts.smtp_insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (n->smtp_user)
        curl_easy_setopt(e, CURLOPT_USERNAME, n->smtp_user);
    if (n->smtp_password)
        curl_easy_setopt(e, CURLOPT_PASSWORD, n->smtp_password);
    return 0;
}

void rta__smtp_finish(notify_xfer *x, CURLcode rc)
{
    rta_notify_result *res = &x->res;
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    res->status_code = (int)code;
    if (rc == CURLE_OK) {
        res->outcome = RTA_NOTIFY_OK;
        return;
    }
    if (code >= 400 && code < 600) {
        res->outcome = code < 500 ? RTA_NOTIFY_RETRY : RTA_NOTIFY_PERMANENT;
        snprintf(res->error, sizeof res->error, "SMTP %ld: %s", code,
                 x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
        return;
    }
    rta__notify_transport_error(x, rc);
}

/* hd-noise-vectors FILE...: checks the Noise implementation against test vectors in the
 * cacophony JSON format ({"vectors": [...]}). Vectors for protocols this implementation does not
 * speak (other patterns or primitives, PSKs, fallback) are counted as skipped.
 *
 * Prints one line per failing vector and a closing "N passed, N failed[, N skipped]" line.
 * Exit status: 0 if nothing failed and at least one vector passed, 1 otherwise, 2 when a file
 * cannot be read or is not valid JSON. */
#include "common.h"
#include "noise.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * A small JSON parser (RFC 8259) into a tree. Strings are decoded to UTF-8 and NUL-terminated;
 * a string holding \u0000 keeps its length in `len`.
 */

typedef enum { J_NULL, J_FALSE, J_TRUE, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT } jtype_t;

typedef struct jvalue jvalue_t;
struct jvalue {
  jtype_t type;
  char *str;        /* J_STRING: the text; J_NUMBER: the literal */
  size_t len;       /* J_STRING: length; J_ARRAY/J_OBJECT: number of items */
  char **keys;      /* J_OBJECT */
  jvalue_t **items; /* J_ARRAY, J_OBJECT */
};

typedef struct jparser {
  const char *s, *end, *p;
  char err[200];
} jparser_t;

#define JSON_MAX_DEPTH 64

static void jfree(jvalue_t *v) {
  if (v == NULL) return;
  for (size_t i = 0; i < v->len && v->items != NULL; i++) {
    jfree(v->items[i]);
    if (v->keys != NULL) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->str);
  free(v);
}

static void jerror(jparser_t *jp, const char *fmt, ...) HD__PRINTF(2, 3);
static void jerror(jparser_t *jp, const char *fmt, ...) {
  if (jp->err[0] != '\0') return; /* keep the first, innermost error */
  int line = 1, col = 1;
  for (const char *q = jp->s; q < jp->p && q < jp->end; q++) {
    if (*q == '\n') line++, col = 1;
    else col++;
  }
  char msg[150];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(jp->err, sizeof jp->err, "line %d, column %d: %s", line, col, msg);
}

static void skip_ws(jparser_t *jp) {
  while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\t' || *jp->p == '\n' || *jp->p == '\r'))
    jp->p++;
}

static jvalue_t *jnew(jparser_t *jp, jtype_t type) {
  jvalue_t *v = calloc(1, sizeof *v);
  if (v == NULL) jerror(jp, "out of memory");
  else v->type = type;
  return v;
}

/* Appends to a growable byte buffer; returns 0 or -1 when out of memory. */
typedef struct buf {
  char *data;
  size_t len, cap;
} buf_t;

static int buf_put(buf_t *b, const char *bytes, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 32;
    while (cap < b->len + n + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    if (d == NULL) return -1;
    b->data = d, b->cap = cap;
  }
  memcpy(b->data + b->len, bytes, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

static int hex4(jparser_t *jp, unsigned *out) {
  if (jp->end - jp->p < 4) return -1;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = jp->p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return -1;
  }
  jp->p += 4;
  *out = v;
  return 0;
}

static int put_utf8(buf_t *b, unsigned cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) u[0] = (char)cp, n = 1;
  else if (cp < 0x800) u[0] = (char)(0xc0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
  else if (cp < 0x10000)
    u[0] = (char)(0xe0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f)),
    u[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
  else
    u[0] = (char)(0xf0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
  return buf_put(b, u, n);
}

/* At the opening quote. Returns the decoded string (caller frees) or NULL with jp->err set. */
static char *parse_string(jparser_t *jp, size_t *len_out) {
  buf_t b = {0};
  jp->p++;
  if (buf_put(&b, "", 0) != 0) goto oom;
  for (;;) {
    if (jp->p >= jp->end) {
      jerror(jp, "unterminated string");
      goto fail;
    }
    unsigned char c = (unsigned char)*jp->p;
    if (c == '"') {
      jp->p++;
      break;
    }
    if (c < 0x20) {
      jerror(jp, "control character 0x%02x in a string", c);
      goto fail;
    }
    if (c != '\\') {
      const char *start = jp->p;
      while (jp->p < jp->end && *jp->p != '"' && *jp->p != '\\' && (unsigned char)*jp->p >= 0x20)
        jp->p++;
      if (buf_put(&b, start, (size_t)(jp->p - start)) != 0) goto oom;
      continue;
    }
    jp->p++;
    if (jp->p >= jp->end) {
      jerror(jp, "unterminated string");
      goto fail;
    }
    char e = *jp->p++, out;
    switch (e) {
      case '"': out = '"'; break;
      case '\\': out = '\\'; break;
      case '/': out = '/'; break;
      case 'b': out = '\b'; break;
      case 'f': out = '\f'; break;
      case 'n': out = '\n'; break;
      case 'r': out = '\r'; break;
      case 't': out = '\t'; break;
      case 'u': {
        unsigned cp, lo;
        if (hex4(jp, &cp) != 0) {
          jerror(jp, "bad \\u escape");
          goto fail;
        }
        if (cp >= 0xd800 && cp < 0xdc00) {
          /* a high surrogate must pair with a low one to name a code point */
          if (jp->end - jp->p < 2 || jp->p[0] != '\\' || jp->p[1] != 'u') {
            jerror(jp, "unpaired surrogate in \\u escape");
            goto fail;
          }
          jp->p += 2;
          if (hex4(jp, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff) {
            jerror(jp, "unpaired surrogate in \\u escape");
            goto fail;
          }
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        } else if (cp >= 0xdc00 && cp < 0xe000) {
          jerror(jp, "unpaired surrogate in \\u escape");
          goto fail;
        }
        if (put_utf8(&b, cp) != 0) goto oom;
        continue;
      }
      default:
        jp->p--;
        jerror(jp, "invalid escape '\\%c'", e);
        goto fail;
    }
    if (buf_put(&b, &out, 1) != 0) goto oom;
  }
  *len_out = b.len;
  return b.data;
oom:
  jerror(jp, "out of memory");
fail:
  free(b.data);
  return NULL;
}

static int is_digit(const jparser_t *jp) {
  return jp->p < jp->end && *jp->p >= '0' && *jp->p <= '9';
}

static jvalue_t *parse_number(jparser_t *jp) {
  const char *start = jp->p;
  if (jp->p < jp->end && *jp->p == '-') jp->p++;
  if (!is_digit(jp)) {
    jerror(jp, "invalid number");
    return NULL;
  }
  if (*jp->p == '0') {
    jp->p++;
    if (is_digit(jp)) {
      jerror(jp, "number with a leading zero");
      return NULL;
    }
  } else {
    while (is_digit(jp)) jp->p++;
  }
  if (jp->p < jp->end && *jp->p == '.') {
    jp->p++;
    if (!is_digit(jp)) {
      jerror(jp, "invalid number: digits expected after '.'");
      return NULL;
    }
    while (is_digit(jp)) jp->p++;
  }
  if (jp->p < jp->end && (*jp->p == 'e' || *jp->p == 'E')) {
    jp->p++;
    if (jp->p < jp->end && (*jp->p == '+' || *jp->p == '-')) jp->p++;
    if (!is_digit(jp)) {
      jerror(jp, "invalid number: digits expected in the exponent");
      return NULL;
    }
    while (is_digit(jp)) jp->p++;
  }
  jvalue_t *v = jnew(jp, J_NUMBER);
  if (v == NULL) return NULL;
  size_t n = (size_t)(jp->p - start);
  v->str = malloc(n + 1);
  if (v->str == NULL) {
    jerror(jp, "out of memory");
    free(v);
    return NULL;
  }
  memcpy(v->str, start, n);
  v->str[n] = '\0';
  return v;
}

static jvalue_t *parse_value(jparser_t *jp, int depth);

/* Adds `item` (and `key` for objects) to a container; frees them on failure. */
static int jappend(jparser_t *jp, jvalue_t *c, char *key, jvalue_t *item, size_t *cap) {
  if (c->len == *cap) {
    size_t ncap = *cap ? *cap * 2 : 8;
    jvalue_t **items = realloc(c->items, ncap * sizeof *items);
    if (items != NULL) c->items = items;
    char **keys = NULL;
    if (items != NULL && c->type == J_OBJECT) {
      keys = realloc(c->keys, ncap * sizeof *keys);
      if (keys != NULL) c->keys = keys;
    }
    if (items == NULL || (c->type == J_OBJECT && keys == NULL)) {
      jerror(jp, "out of memory");
      free(key);
      jfree(item);
      return -1;
    }
    *cap = ncap;
  }
  if (c->type == J_OBJECT) c->keys[c->len] = key;
  c->items[c->len++] = item;
  return 0;
}

static jvalue_t *parse_container(jparser_t *jp, int depth, int object) {
  char close = object ? '}' : ']';
  size_t cap = 0;
  jvalue_t *c = jnew(jp, object ? J_OBJECT : J_ARRAY);
  if (c == NULL) return NULL;
  jp->p++;
  skip_ws(jp);
  if (jp->p < jp->end && *jp->p == close) {
    jp->p++;
    return c;
  }
  for (;;) {
    char *key = NULL;
    skip_ws(jp);
    if (object) {
      size_t klen;
      if (jp->p >= jp->end || *jp->p != '"') {
        jerror(jp, "object key (a string) expected");
        goto fail;
      }
      if ((key = parse_string(jp, &klen)) == NULL) goto fail;
      skip_ws(jp);
      if (jp->p >= jp->end || *jp->p != ':') {
        free(key);
        jerror(jp, "':' expected after an object key");
        goto fail;
      }
      jp->p++;
    }
    jvalue_t *item = parse_value(jp, depth + 1);
    if (item == NULL) {
      free(key);
      goto fail;
    }
    if (jappend(jp, c, key, item, &cap) != 0) goto fail;
    skip_ws(jp);
    if (jp->p < jp->end && *jp->p == ',') {
      jp->p++;
      continue;
    }
    if (jp->p < jp->end && *jp->p == close) {
      jp->p++;
      return c;
    }
    jerror(jp, "',' or '%c' expected", close);
    goto fail;
  }
fail:
  jfree(c);
  return NULL;
}

static jvalue_t *parse_literal(jparser_t *jp, const char *word, jtype_t type) {
  size_t n = strlen(word);
  if ((size_t)(jp->end - jp->p) < n || memcmp(jp->p, word, n) != 0) {
    jerror(jp, "unexpected character '%c'", *jp->p);
    return NULL;
  }
  jp->p += n;
  return jnew(jp, type);
}

static jvalue_t *parse_value(jparser_t *jp, int depth) {
  if (depth > JSON_MAX_DEPTH) {
    jerror(jp, "nested more than %d levels deep", JSON_MAX_DEPTH);
    return NULL;
  }
  skip_ws(jp);
  if (jp->p >= jp->end) {
    jerror(jp, "unexpected end of input");
    return NULL;
  }
  switch (*jp->p) {
    case '{':
      return parse_container(jp, depth, 1);
    case '[':
      return parse_container(jp, depth, 0);
    case '"': {
      size_t len;
      char *s = parse_string(jp, &len);
      if (s == NULL) return NULL;
      jvalue_t *v = jnew(jp, J_STRING);
      if (v == NULL) {
        free(s);
        return NULL;
      }
      v->str = s, v->len = len;
      return v;
    }
    case 't':
      return parse_literal(jp, "true", J_TRUE);
    case 'f':
      return parse_literal(jp, "false", J_FALSE);
    case 'n':
      return parse_literal(jp, "null", J_NULL);
    default:
      if (*jp->p == '-' || (*jp->p >= '0' && *jp->p <= '9')) return parse_number(jp);
      if ((unsigned char)*jp->p >= 0x20 && (unsigned char)*jp->p < 0x7f)
        jerror(jp, "unexpected character '%c'", *jp->p);
      else
        jerror(jp, "unexpected byte 0x%02x", (unsigned char)*jp->p);
      return NULL;
  }
}

static jvalue_t *json_parse(const char *text, size_t len, char *err, size_t err_size) {
  jparser_t jp = {text, text + len, text, ""};
  jvalue_t *v = parse_value(&jp, 0);
  if (v != NULL) {
    skip_ws(&jp);
    if (jp.p != jp.end) {
      jerror(&jp, "trailing data after the JSON value");
      jfree(v);
      v = NULL;
    }
  }
  if (v == NULL) snprintf(err, err_size, "%s", jp.err);
  return v;
}

static const jvalue_t *jget(const jvalue_t *obj, const char *key) {
  if (obj == NULL || obj->type != J_OBJECT) return NULL;
  for (size_t i = 0; i < obj->len; i++)
    if (strcmp(obj->keys[i], key) == 0) return obj->items[i];
  return NULL;
}

static const char *jget_string(const jvalue_t *obj, const char *key) {
  const jvalue_t *v = jget(obj, key);
  return v != NULL && v->type == J_STRING ? v->str : NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Running one vector.
 */

#define MSG_CAP (HD__NOISE_MAX_MESSAGE + 1)

typedef struct run {
  const char *file;
  size_t index;
  const char *name;
  char why[300]; /* the first failure */
} run_t;

static int failf(run_t *r, const char *fmt, ...) HD__PRINTF(2, 3);
static int failf(run_t *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->why, sizeof r->why, fmt, ap);
  va_end(ap);
  return -1;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes field `key` of `obj` into `out` (at most `cap` bytes); `want` > 0 demands that length. */
static int field_hex(run_t *r, const jvalue_t *obj, const char *key, uint8_t *out, size_t cap,
                     size_t want, size_t *out_len) {
  const jvalue_t *v = jget(obj, key);
  if (v == NULL) return failf(r, "field %s is missing", key);
  if (v->type != J_STRING) return failf(r, "field %s is not a string", key);
  if (v->len % 2 != 0 || v->len / 2 > cap)
    return failf(r, "field %s: odd or too long hex (%zu digits)", key, v->len);
  size_t n = v->len / 2;
  if (want > 0 && n != want) return failf(r, "field %s: %zu bytes, %zu expected", key, n, want);
  for (size_t i = 0; i < n; i++) {
    int hi = hexval(v->str[2 * i]), lo = hexval(v->str[2 * i + 1]);
    if (hi < 0 || lo < 0) return failf(r, "field %s is not hexadecimal", key);
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  if (out_len != NULL) *out_len = n;
  return 0;
}

static int is_true(const jvalue_t *v) { return v != NULL && v->type == J_TRUE; }

static int nonempty(const jvalue_t *v) {
  if (v == NULL || v->type == J_NULL || v->type == J_FALSE) return 0;
  if (v->type == J_ARRAY || v->type == J_STRING) return v->len > 0;
  return 1;
}

/* The pattern for a vector this implementation can run, or 0 to skip it. */
static hd__noise_pattern_t supported(const jvalue_t *vec) {
  const char *name = jget_string(vec, "protocol_name");
  if (name == NULL) return 0;
  if (is_true(jget(vec, "fallback")) || nonempty(jget(vec, "fallback_pattern")) ||
      nonempty(jget(vec, "hybrid")) || nonempty(jget(vec, "init_psks")) ||
      nonempty(jget(vec, "resp_psks")))
    return 0;
  if (strcmp(name, "Noise_IK_25519_ChaChaPoly_BLAKE2b") == 0) return HD__NOISE_IK;
  if (strcmp(name, "Noise_XX_25519_ChaChaPoly_BLAKE2b") == 0) return HD__NOISE_XX;
  return 0;
}

/* Scratch space for one vector, kept off the stack (about 400 KiB). */
typedef struct scratch {
  uint8_t prologue[2][MSG_CAP];
  uint8_t payload[MSG_CAP], ct[MSG_CAP], out[MSG_CAP], got[MSG_CAP];
} scratch_t;

static int check_message(run_t *r, size_t i, const jvalue_t *m, hd__handshake_t hs[2],
                         hd__cipher_t send[2], hd__cipher_t recv[2], scratch_t *b) {
  size_t plen, clen, olen = 0, glen = 0;
  if (m == NULL || m->type != J_OBJECT) return failf(r, "message %zu is not an object", i);
  if (field_hex(r, m, "payload", b->payload, HD__NOISE_MAX_MESSAGE, 0, &plen) != 0 ||
      field_hex(r, m, "ciphertext", b->ct, HD__NOISE_MAX_MESSAGE, 0, &clen) != 0) {
    char why[sizeof r->why];
    memcpy(why, r->why, sizeof why);
    return failf(r, "message %zu: %s", i, why);
  }
  int s = (i % 2 == 0) ? 0 : 1, d = 1 - s; /* 0 = initiator, 1 = responder */
  int rc;
  if (!hd__handshake_is_done(&hs[s])) {
    if (!hd__handshake_my_turn(&hs[s]))
      return failf(r, "message %zu: not the %s's turn", i, s ? "responder" : "initiator");
    rc = hd__handshake_write_message(&hs[s], b->payload, plen, b->out, MSG_CAP, &olen);
    if (rc != 0)
      return failf(r, "message %zu: write failed: %s: %s", i, hd_err_name(rc),
                   hd_last_error_message());
    if (olen != clen || memcmp(b->out, b->ct, clen) != 0)
      return failf(r, "message %zu: handshake ciphertext differs", i);
    rc = hd__handshake_read_message(&hs[d], b->ct, clen, b->got, MSG_CAP, &glen);
    if (rc != 0)
      return failf(r, "message %zu: read failed: %s: %s", i, hd_err_name(rc),
                   hd_last_error_message());
  } else {
    if (clen != plen + HD__NOISE_TAGLEN)
      return failf(r, "message %zu: transport ciphertext has the wrong length", i);
    if ((rc = hd__cipher_encrypt(&send[s], NULL, 0, b->payload, plen, b->out)) != 0)
      return failf(r, "message %zu: encrypt failed: %s", i, hd_err_name(rc));
    if (memcmp(b->out, b->ct, clen) != 0)
      return failf(r, "message %zu: transport ciphertext differs", i);
    if ((rc = hd__cipher_decrypt(&recv[d], NULL, 0, b->ct, clen, b->got)) != 0)
      return failf(r, "message %zu: decrypt failed: %s", i, hd_err_name(rc));
    glen = plen;
  }
  if (glen != plen || memcmp(b->got, b->payload, plen) != 0)
    return failf(r, "message %zu: decrypted payload differs", i);
  return 0;
}

/* After the last handshake message: both sides agree on h (and the vector's, if given). */
static int finish_handshake(run_t *r, size_t i, const jvalue_t *vec, hd__handshake_t hs[2],
                            hd__cipher_t send[2], hd__cipher_t recv[2]) {
  uint8_t want[HD__NOISE_HASHLEN];
  if (memcmp(hd__handshake_hash(&hs[0]), hd__handshake_hash(&hs[1]), HD__NOISE_HASHLEN) != 0)
    return failf(r, "message %zu: the two sides' handshake hashes differ", i);
  if (jget(vec, "handshake_hash") != NULL) {
    if (field_hex(r, vec, "handshake_hash", want, sizeof want, sizeof want, NULL) != 0)
      return -1;
    if (memcmp(hd__handshake_hash(&hs[0]), want, sizeof want) != 0)
      return failf(r, "message %zu: handshake_hash differs", i);
  }
  for (int side = 0; side < 2; side++) {
    int rc = hd__handshake_split(&hs[side], &send[side], &recv[side]);
    if (rc != 0) return failf(r, "message %zu: split failed: %s", i, hd_err_name(rc));
  }
  return 0;
}

static int run_vector(run_t *r, const jvalue_t *vec, hd__noise_pattern_t pattern, scratch_t *b) {
  static const char *const prefix[2] = {"init", "resp"};
  hd__handshake_t hs[2];
  hd__cipher_t send[2], recv[2];
  memset(hs, 0, sizeof hs);
  memset(send, 0, sizeof send);
  memset(recv, 0, sizeof recv);
  int rc = -1;

  for (int side = 0; side < 2; side++) {
    char key[64];
    uint8_t s[32], e[32], rs[32];
    size_t plen;
    int has_rs = 0;
    snprintf(key, sizeof key, "%s_prologue", prefix[side]);
    if (jget(vec, key) == NULL) plen = 0;
    else if (field_hex(r, vec, key, b->prologue[side], MSG_CAP, 0, &plen) != 0) goto out;
    snprintf(key, sizeof key, "%s_static", prefix[side]);
    if (field_hex(r, vec, key, s, 32, 32, NULL) != 0) goto out;
    snprintf(key, sizeof key, "%s_ephemeral", prefix[side]);
    if (field_hex(r, vec, key, e, 32, 32, NULL) != 0) goto out;
    snprintf(key, sizeof key, "%s_remote_static", prefix[side]);
    if (jget(vec, key) != NULL) {
      if (field_hex(r, vec, key, rs, 32, 32, NULL) != 0) goto out;
      has_rs = 1;
    }
    int err = hd__handshake_init(&hs[side], pattern, side == 0, b->prologue[side], plen, s,
                                 has_rs ? rs : NULL);
    sodium_memzero(s, sizeof s);
    if (err != 0) {
      failf(r, "%s: handshake init failed: %s: %s", prefix[side], hd_err_name(err),
            hd_last_error_message());
      goto out;
    }
    hd__handshake_fix_ephemeral(&hs[side], e);
  }

  const jvalue_t *msgs = jget(vec, "messages");
  if (msgs == NULL || msgs->type != J_ARRAY) {
    failf(r, "field messages is missing or not an array");
    goto out;
  }
  for (size_t i = 0; i < msgs->len; i++) {
    int was_done = hd__handshake_is_done(&hs[0]);
    if (check_message(r, i, msgs->items[i], hs, send, recv, b) != 0) goto out;
    if (!was_done && hd__handshake_is_done(&hs[0]) && hd__handshake_is_done(&hs[1]) &&
        finish_handshake(r, i, vec, hs, send, recv) != 0)
      goto out;
  }
  rc = 0;
out:
  for (int side = 0; side < 2; side++) {
    hd__handshake_wipe(&hs[side]);
    hd__cipher_wipe(&send[side]);
    hd__cipher_wipe(&recv[side]);
  }
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Files.
 */

typedef struct totals {
  int passed, failed, skipped;
} totals_t;

/* Reads the whole file; NULL with a message on stderr on failure. */
static char *read_file(const char *path, size_t *len_out) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "hd-noise-vectors: cannot open %s: %s\n", path, strerror(errno));
    return NULL;
  }
  buf_t b = {0};
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (buf_put(&b, chunk, n) != 0) {
      fprintf(stderr, "hd-noise-vectors: %s: out of memory\n", path);
      goto fail;
    }
  }
  if (ferror(f)) {
    fprintf(stderr, "hd-noise-vectors: cannot read %s: %s\n", path, strerror(errno));
    goto fail;
  }
  fclose(f);
  if (b.data == NULL && buf_put(&b, "", 0) != 0) return NULL;
  *len_out = b.len;
  return b.data;
fail:
  fclose(f);
  free(b.data);
  return NULL;
}

/* Returns 0, or 2 when the file cannot be used at all. */
static int run_file(const char *path, totals_t *t, scratch_t *b) {
  size_t len;
  char err[256];
  char *text = read_file(path, &len);
  if (text == NULL) return 2;
  jvalue_t *root = json_parse(text, len, err, sizeof err);
  free(text);
  if (root == NULL) {
    fprintf(stderr, "hd-noise-vectors: %s: invalid JSON: %s\n", path, err);
    return 2;
  }
  const jvalue_t *vectors = jget(root, "vectors");
  if (vectors == NULL || vectors->type != J_ARRAY) {
    fprintf(stderr, "hd-noise-vectors: %s: no \"vectors\" array at the top level\n", path);
    jfree(root);
    return 2;
  }
  for (size_t i = 0; i < vectors->len; i++) {
    const jvalue_t *vec = vectors->items[i];
    run_t r = {path, i, jget_string(vec, "protocol_name"), ""};
    if (r.name == NULL) r.name = "(no protocol_name)";
    hd__noise_pattern_t pattern = supported(vec);
    if (pattern == 0) {
      t->skipped++;
      continue;
    }
    int rc = run_vector(&r, vec, pattern, b);
    /* "fail": true marks a vector whose handshake must not succeed. */
    if (is_true(jget(vec, "fail"))) {
      if (rc == 0) {
        failf(&r, "expected to fail, but every message checked");
        rc = -1;
      } else {
        rc = 0;
      }
    }
    if (rc == 0) {
      t->passed++;
    } else {
      t->failed++;
      const char *label = jget_string(vec, "name");
      printf("FAIL %s: vector %zu (%s%s%s): %s\n", path, i, r.name, label ? ", " : "",
             label ? label : "", r.why);
    }
  }
  jfree(root);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: hd-noise-vectors FILE...\n");
    return 2;
  }
  if (hd_init() != 0) {
    fprintf(stderr, "hd-noise-vectors: %s\n", hd_last_error_message());
    return 2;
  }
  scratch_t *b = malloc(sizeof *b);
  if (b == NULL) {
    fprintf(stderr, "hd-noise-vectors: out of memory\n");
    return 2;
  }
  totals_t t = {0, 0, 0};
  int status = 0;
  for (int i = 1; i < argc && status == 0; i++) status = run_file(argv[i], &t, b);
  free(b);
  if (status != 0) return status;
  if (t.skipped > 0)
    printf("%d passed, %d failed, %d skipped\n", t.passed, t.failed, t.skipped);
  else
    printf("%d passed, %d failed\n", t.passed, t.failed);
  return t.failed == 0 && t.passed > 0 ? 0 : 1;
}

/* The strict reader of the Prometheus text format (prom_text.h). */
#include "prom_text.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cursor {
  const char *p, *end;
  int line;
  pt_text_t *t;
} cursor_t;

static int fail(cursor_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(cursor_t *c, const char *fmt, ...) {
  char what[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  snprintf(c->t->error, sizeof c->t->error, "line %d: %s", c->line, what);
  return -1;
}

/* The error of a check over the whole text (no line). */
static int seterr(pt_text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int seterr(pt_text_t *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->error, sizeof t->error, fmt, ap);
  va_end(ap);
  return -1;
}

static int is_ws(char ch) { return ch == ' ' || ch == '\t'; }
static void skip_ws(cursor_t *c) {
  while (c->p < c->end && is_ws(*c->p)) c->p++;
}
static int name_start(char ch, int colon) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || (colon && ch == ':');
}
static int name_char(char ch, int colon) { return name_start(ch, colon) || (ch >= '0' && ch <= '9'); }

/* A metric name (colon 1) or a label name (colon 0) into out; -1 if there is none. */
static int read_name(cursor_t *c, int colon, char *out, size_t cap) {
  const char *s = c->p;
  if (c->p == c->end || !name_start(*c->p, colon)) return -1;
  while (c->p < c->end && name_char(*c->p, colon)) c->p++;
  size_t n = (size_t)(c->p - s);
  if (n >= cap) return -1;
  memcpy(out, s, n);
  out[n] = '\0';
  return 0;
}

/* A token: up to whitespace or the line's end. */
static size_t read_token(cursor_t *c, char *out, size_t cap) {
  const char *s = c->p;
  while (c->p < c->end && !is_ws(*c->p)) c->p++;
  size_t n = (size_t)(c->p - s);
  if (n >= cap) n = cap - 1; /* too long to be a number: refused by the caller's check */
  memcpy(out, s, n);
  out[n] = '\0';
  return (size_t)(c->p - s);
}

/* A float as the format writes one: [+-]digits[.digits][e[+-]digits] (or .digits), NaN, +Inf,
 * -Inf, Inf. */
static int parse_float(const char *s, double *out) {
  if (strcmp(s, "NaN") == 0) { *out = NAN; return 0; }
  if (strcmp(s, "+Inf") == 0 || strcmp(s, "Inf") == 0) { *out = INFINITY; return 0; }
  if (strcmp(s, "-Inf") == 0) { *out = -INFINITY; return 0; }
  const char *p = s;
  if (*p == '+' || *p == '-') p++;
  int digits = 0;
  while (*p >= '0' && *p <= '9') { p++; digits++; }
  if (*p == '.') {
    p++;
    while (*p >= '0' && *p <= '9') { p++; digits++; }
  }
  if (digits == 0) return -1;
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-') p++;
    if (!(*p >= '0' && *p <= '9')) return -1;
    while (*p >= '0' && *p <= '9') p++;
  }
  if (*p != '\0') return -1;
  *out = strtod(s, NULL);
  return 0;
}

static int parse_int(const char *s) {
  const char *p = s;
  if (*p == '-') p++;
  if (*p == '\0') return -1;
  for (; *p; p++) if (*p < '0' || *p > '9') return -1;
  return strlen(s) <= 20 ? 0 : -1;
}

static pt_family_t *family_of(pt_text_t *t, const char *name, int create) {
  for (size_t i = 0; i < t->nf; i++) if (strcmp(t->families[i].name, name) == 0) return &t->families[i];
  if (!create) return NULL;
  if (t->nf == t->capf) {
    size_t cap = t->capf ? 2 * t->capf : 16;
    pt_family_t *f = realloc(t->families, cap * sizeof *f);
    if (f == NULL) return NULL;
    t->families = f;
    t->capf = cap;
  }
  pt_family_t *f = &t->families[t->nf++];
  memset(f, 0, sizeof *f);
  snprintf(f->name, sizeof f->name, "%s", name);
  return f;
}

/* The grouping rule: a family's lines come together. `cur` is the family of the last line. */
static int enter_family(cursor_t *c, char *cur, const char *name, char *done, size_t done_cap) {
  if (strcmp(cur, name) == 0) return 0;
  /* `done` holds "\n"-separated names of families left behind */
  char key[160];
  snprintf(key, sizeof key, "\n%s\n", name);
  if (strstr(done, key) != NULL) return fail(c, "%s: its lines are not in one group", name);
  if (cur[0] != '\0') {
    size_t n = strlen(done);
    snprintf(done + n, done_cap - n, "%s\n", cur);
  }
  snprintf(cur, 128, "%s", name);
  return 0;
}

static int comment(cursor_t *c, char *cur, char *done, size_t done_cap) {
  c->p++; /* '#' */
  skip_ws(c);
  char word[16];
  const char *s = c->p;
  while (c->p < c->end && !is_ws(*c->p) && (size_t)(c->p - s) < sizeof word - 1) c->p++;
  size_t n = (size_t)(c->p - s);
  memcpy(word, s, n);
  word[n] = '\0';
  int help = strcmp(word, "HELP") == 0, type = strcmp(word, "TYPE") == 0;
  if (!help && !type) return 0; /* another comment */
  if (c->p == c->end || !is_ws(*c->p)) return fail(c, "# %s without a metric name", word);
  skip_ws(c);
  char name[128];
  if (read_name(c, 1, name, sizeof name) != 0) return fail(c, "# %s: bad metric name", word);
  if (enter_family(c, cur, name, done, done_cap) != 0) return -1;
  pt_family_t *f = family_of(c->t, name, 1);
  if (f == NULL) return fail(c, "out of memory");
  if (help) {
    if (f->has_help) return fail(c, "a second HELP for %s", name);
    f->has_help = 1;
    if (c->p < c->end && !is_ws(*c->p)) return fail(c, "HELP %s: bad metric name", name);
    for (const char *q = c->p; q < c->end; q++) {
      if (*q == '\\') {
        if (q + 1 == c->end || (q[1] != '\\' && q[1] != 'n')) {
          return fail(c, "HELP %s: an escape other than \\\\ and \\n", name);
        }
        q++;
      }
    }
    return 0;
  }
  if (f->type[0] != '\0') return fail(c, "a second TYPE for %s", name);
  if (f->samples > 0) return fail(c, "TYPE %s after its samples", name);
  if (c->p == c->end || !is_ws(*c->p)) return fail(c, "TYPE %s without a type", name);
  skip_ws(c);
  char ty[16];
  read_token(c, ty, sizeof ty);
  skip_ws(c);
  if (c->p != c->end) return fail(c, "TYPE %s: more than one type", name);
  static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
  for (size_t i = 0; i < 5; i++) {
    if (strcmp(ty, types[i]) == 0) {
      snprintf(f->type, sizeof f->type, "%s", ty);
      return 0;
    }
  }
  return fail(c, "TYPE %s: unknown type \"%s\"", name, ty);
}

typedef struct label {
  char name[64];
  char value[256]; /* as written, escapes kept */
} label_t;

static int cmp_label(const void *a, const void *b) {
  return strcmp(((const label_t *)a)->name, ((const label_t *)b)->name);
}

static int labels(cursor_t *c, pt_sample_t *s) {
  label_t l[16];
  size_t n = 0;
  c->p++; /* '{' */
  for (;;) {
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') {
      c->p++;
      break;
    }
    if (n == 16) return fail(c, "%s: more than 16 labels", s->name);
    if (read_name(c, 0, l[n].name, sizeof l[n].name) != 0) return fail(c, "%s: bad label name", s->name);
    if (strncmp(l[n].name, "__", 2) == 0) return fail(c, "%s: label %s is reserved", s->name, l[n].name);
    for (size_t i = 0; i < n; i++) {
      if (strcmp(l[i].name, l[n].name) == 0) return fail(c, "%s: label %s twice", s->name, l[n].name);
    }
    skip_ws(c);
    if (c->p == c->end || *c->p != '=') return fail(c, "%s: no '=' after label %s", s->name, l[n].name);
    c->p++;
    skip_ws(c);
    if (c->p == c->end || *c->p != '"') return fail(c, "%s: label %s not quoted", s->name, l[n].name);
    c->p++;
    size_t k = 0;
    for (;;) {
      if (c->p == c->end) return fail(c, "%s: label %s not closed", s->name, l[n].name);
      char ch = *c->p++;
      if (ch == '"') break;
      if (k + 2 >= sizeof l[n].value) return fail(c, "%s: label %s too long", s->name, l[n].name);
      l[n].value[k++] = ch;
      if (ch == '\\') {
        if (c->p == c->end || (*c->p != '\\' && *c->p != '"' && *c->p != 'n')) {
          return fail(c, "%s: label %s: an escape other than \\\\, \\\" and \\n", s->name,
                      l[n].name);
        }
        l[n].value[k++] = *c->p++;
      }
    }
    l[n].value[k] = '\0';
    n++;
    skip_ws(c);
    if (c->p < c->end && *c->p == ',') {
      c->p++;
      continue;
    }
    if (c->p < c->end && *c->p == '}') {
      c->p++;
      break;
    }
    return fail(c, "%s: expected ',' or '}' after a label", s->name);
  }
  qsort(l, n, sizeof l[0], cmp_label);
  size_t used = 0, rest = 0;
  for (size_t i = 0; i < n; i++) {
    used += (size_t)snprintf(s->labels + used, sizeof s->labels - used, "%s%s=\"%s\"",
                             i ? "," : "", l[i].name, l[i].value);
    if (strcmp(l[i].name, "le") == 0) {
      snprintf(s->le, sizeof s->le, "%s", l[i].value);
      continue;
    }
    rest += (size_t)snprintf(s->rest + rest, sizeof s->rest - rest, "%s%s=\"%s\"",
                             rest ? "," : "", l[i].name, l[i].value);
    if (used >= sizeof s->labels || rest >= sizeof s->rest) return fail(c, "labels too long");
  }
  return 0;
}

static int ends_with(const char *s, const char *suffix, char *base) {
  size_t n = strlen(s), m = strlen(suffix);
  if (n <= m || strcmp(s + n - m, suffix) != 0) return 0;
  memcpy(base, s, n - m);
  base[n - m] = '\0';
  return 1;
}

/* The family a sample name belongs to: itself, or a histogram's or summary's base. */
static pt_family_t *family_of_sample(pt_text_t *t, const char *name) {
  pt_family_t *f = family_of(t, name, 0);
  if (f != NULL && f->type[0] != '\0') return f;
  static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
  char base[128];
  for (size_t i = 0; i < 3; i++) {
    if (!ends_with(name, suffixes[i], base)) continue;
    pt_family_t *b = family_of(t, base, 0);
    if (b == NULL) continue;
    if (strcmp(b->type, "histogram") == 0) return b;
    if (strcmp(b->type, "summary") == 0 && i > 0) return b;
  }
  return NULL;
}

static int sample(cursor_t *c, char *cur, char *done, size_t done_cap) {
  pt_sample_t s;
  memset(&s, 0, sizeof s);
  if (read_name(c, 1, s.name, sizeof s.name) != 0) return fail(c, "bad metric name");
  const char *after_name = c->p;
  skip_ws(c);
  int spaced = c->p != after_name;
  if (c->p < c->end && *c->p == '{') {
    if (labels(c, &s) != 0) return -1;
    spaced = c->p < c->end && is_ws(*c->p);
  }
  pt_family_t *f = family_of_sample(c->t, s.name);
  if (f == NULL) return fail(c, "%s: a sample before its TYPE", s.name);
  snprintf(s.family, sizeof s.family, "%s", f->name);
  if (enter_family(c, cur, f->name, done, done_cap) != 0) return -1;
  if (strcmp(f->type, "histogram") == 0 && strcmp(s.name, f->name) == 0) {
    return fail(c, "%s: a histogram's sample must be _bucket, _sum or _count", s.name);
  }
  if (!spaced || c->p == c->end) return fail(c, "%s: no value after a space", s.name);
  skip_ws(c);
  char tok[64];
  if (read_token(c, tok, sizeof tok) >= sizeof tok || parse_float(tok, &s.value) != 0) {
    return fail(c, "%s: value \"%s\" is not a float", s.name, tok);
  }
  skip_ws(c);
  if (c->p != c->end) {
    if (read_token(c, tok, sizeof tok) >= sizeof tok || parse_int(tok) != 0) {
      return fail(c, "%s: timestamp \"%s\" is not an integer", s.name, tok);
    }
    skip_ws(c);
    if (c->p != c->end) return fail(c, "%s: something after the timestamp", s.name);
  }
  if (strcmp(f->type, "counter") == 0 && !(s.value >= 0)) {
    return fail(c, "%s: a counter below 0", s.name);
  }
  pt_text_t *t = c->t;
  for (size_t i = 0; i < t->n; i++) {
    if (strcmp(t->samples[i].name, s.name) == 0 && strcmp(t->samples[i].labels, s.labels) == 0) {
      return fail(c, "%s{%s}: the same series twice", s.name, s.labels);
    }
  }
  if (t->n == t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 64;
    pt_sample_t *m = realloc(t->samples, cap * sizeof *m);
    if (m == NULL) return fail(c, "out of memory");
    t->samples = m;
    t->cap = cap;
  }
  t->samples[t->n++] = s;
  f->samples++;
  return 0;
}

/* A histogram's series (one label set but `le`): buckets ascending and cumulative, +Inf last and
 * equal to _count, _sum there. */
static int check_series(pt_text_t *t, const pt_family_t *f, const char *rest) {
  char bucket[160], sum[160], count[160];
  snprintf(bucket, sizeof bucket, "%s_bucket", f->name);
  snprintf(sum, sizeof sum, "%s_sum", f->name);
  snprintf(count, sizeof count, "%s_count", f->name);
  double prev_le = -INFINITY, prev_v = 0, inf_v = -1;
  int nb = 0, has_sum = 0, has_count = 0;
  double count_v = 0;
  for (size_t i = 0; i < t->n; i++) {
    const pt_sample_t *s = &t->samples[i];
    if (strcmp(s->rest, rest) != 0) continue;
    if (strcmp(s->name, sum) == 0) has_sum = 1;
    if (strcmp(s->name, count) == 0) {
      has_count = 1;
      count_v = s->value;
    }
    if (strcmp(s->name, bucket) != 0) continue;
    double le;
    if (s->le[0] == '\0' || parse_float(s->le, &le) != 0 || isnan(le)) {
      seterr(t, "%s{%s}: no le, or le not a float", bucket, s->labels);
      return -1;
    }
    if (inf_v >= 0) {
      seterr(t, "%s{%s}: a bucket after +Inf", bucket, rest);
      return -1;
    }
    if (nb > 0 && !(le > prev_le)) {
      seterr(t, "%s{%s}: le %s not above the previous", bucket, rest, s->le);
      return -1;
    }
    if (!(s->value >= prev_v)) {
      seterr(t, "%s{%s}: le %s: %g below the previous bucket (not "
               "cumulative)", bucket, rest, s->le, s->value);
      return -1;
    }
    prev_le = le;
    prev_v = s->value;
    if (isinf(le)) inf_v = s->value;
    nb++;
  }
  if (inf_v < 0) {
    seterr(t, "%s{%s}: no le=\"+Inf\" bucket", bucket, rest);
    return -1;
  }
  if (!has_sum || !has_count) {
    seterr(t, "%s{%s}: no _sum or no _count", f->name, rest);
    return -1;
  }
  if (count_v != inf_v) {
    seterr(t, "%s{%s}: _count %g is not the +Inf bucket %g", f->name,
             rest, count_v, inf_v);
    return -1;
  }
  return 0;
}

static int check_histograms(pt_text_t *t) {
  for (size_t i = 0; i < t->nf; i++) {
    const pt_family_t *f = &t->families[i];
    if (strcmp(f->type, "histogram") != 0 || f->samples == 0) continue;
    for (size_t k = 0; k < t->n; k++) {
      if (strcmp(t->samples[k].family, f->name) != 0) continue;
      int seen = 0; /* each label set once: at its first sample */
      for (size_t j = 0; j < k && !seen; j++) {
        seen = strcmp(t->samples[j].family, f->name) == 0 &&
               strcmp(t->samples[j].rest, t->samples[k].rest) == 0;
      }
      if (!seen && check_series(t, f, t->samples[k].rest) != 0) return -1;
    }
  }
  return 0;
}

int pt_parse(const char *text, size_t len, pt_text_t *out) {
  memset(out, 0, sizeof *out);
  cursor_t c = {.t = out, .line = 0};
  if (len == 0 || text[len - 1] != '\n') {
    snprintf(out->error, sizeof out->error, "the text does not end with a line feed");
    return -1;
  }
  if (memchr(text, '\0', len) != NULL) {
    snprintf(out->error, sizeof out->error, "a NUL byte in the text");
    return -1;
  }
  char cur[128] = "";
  char done[8192] = "\n";
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    c.line++;
    c.p = p;
    c.end = nl;
    skip_ws(&c);
    int rc = 0;
    if (c.p == c.end) rc = 0;
    else if (*c.p == '#') rc = comment(&c, cur, done, sizeof done);
    else rc = sample(&c, cur, done, sizeof done);
    if (rc != 0) return -1;
    p = nl + 1;
  }
  return check_histograms(out);
}

void pt_free(pt_text_t *t) {
  free(t->samples);
  free(t->families);
  memset(t, 0, sizeof *t);
}

int pt_value(const pt_text_t *t, const char *name, const char *labels, double *out) {
  for (size_t i = 0; i < t->n; i++) {
    if (strcmp(t->samples[i].name, name) == 0 && strcmp(t->samples[i].labels, labels) == 0) {
      *out = t->samples[i].value;
      return 0;
    }
  }
  return -1;
}

const pt_family_t *pt_family(const pt_text_t *t, const char *name) {
  for (size_t i = 0; i < t->nf; i++) if (strcmp(t->families[i].name, name) == 0) return &t->families[i];
  return NULL;
}

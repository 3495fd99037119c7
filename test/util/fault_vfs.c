/* fault_vfs.h: a wrapper of the default VFS that keeps the pre-images of unsynced writes. */
#include "fault_vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FV_MAX_DOMAINS 16
#define FV_SECTOR 512

/* One write or truncation since the file's last sync: what it replaced. */
typedef struct fv_rec {
  struct fv_rec *next;
  int64_t off;      /* write: where; truncation: the new size */
  int64_t len;      /* write: how many bytes; truncation: 0 */
  int64_t old_size; /* the file's size before it */
  uint8_t *old;     /* the bytes it replaced: [off, min(off+len, old_size)) or, for a
                       truncation, [off, old_size) */
  int trunc;
} fv_rec_t;

/* A tracked file (by path), kept after its handles close until its domain is reverted. */
typedef struct fv_node {
  struct fv_node *next;
  char *path;
  int domain;         /* -1: its domain was forgotten while a handle was open */
  int open;           /* handles */
  int main_db;        /* opened as SQLITE_OPEN_MAIN_DB */
  int volatile_entry; /* created since its directory was last synced */
  int64_t synced_size;
  fv_rec_t *head, *tail;
} fv_node_t;

typedef struct fv_domain {
  char *folder; /* with a trailing '/' */
  size_t folder_len;
  fv_counts_t counts;
  long cut_at; /* 0: none */
  int cut_fired;
  long fault_at;
  int fault_err, fault_kinds;
} fv_domain_t;

typedef struct fv_file {
  sqlite3_file base;
  fv_node_t *node; /* NULL: not tracked */
  int dirsync;     /* the first sync also syncs the directory (unix VFS: WAL and journals) */
  sqlite3_file *real;
} fv_file_t;

static pthread_mutex_t fv_mu = PTHREAD_MUTEX_INITIALIZER;
static sqlite3_vfs *fv_orig;
static sqlite3_vfs fv_vfs;
static fv_domain_t fv_domains[FV_MAX_DOMAINS];
static fv_node_t *fv_nodes;

uint64_t fv_rand(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* ---- bookkeeping (under fv_mu) ---- */

static int domain_of(const char *path) {
  for (int d = 0; d < FV_MAX_DOMAINS; d++) {
    fv_domain_t *dm = &fv_domains[d];
    if (dm->folder != NULL && strncmp(path, dm->folder, dm->folder_len) == 0) return d;
  }
  return -1;
}

static fv_node_t *node_find(const char *path) {
  for (fv_node_t *n = fv_nodes; n != NULL; n = n->next) {
    if (strcmp(n->path, path) == 0) return n;
  }
  return NULL;
}

static void recs_free(fv_node_t *n) {
  for (fv_rec_t *r = n->head, *next; r != NULL; r = next) {
    next = r->next;
    free(r->old);
    free(r);
  }
  n->head = n->tail = NULL;
}

static void node_unlink(fv_node_t *n) {
  for (fv_node_t **p = &fv_nodes; *p != NULL; p = &(*p)->next) {
    if (*p == n) {
      *p = n->next;
      break;
    }
  }
  recs_free(n);
  free(n->path);
  free(n);
}

/* Counts an operation of `kind` on domain d; the SQLite error it must fail with (setting errno
 * as the OS would), or SQLITE_OK. */
static int op_check(int d, int kind, int ioerr) {
  fv_domain_t *dm = &fv_domains[d];
  long op = ++dm->counts.ops;
  if (kind == FV_SYNCS) dm->counts.syncs++;
  else dm->counts.writes++;
  if (dm->cut_at != 0 && op >= dm->cut_at) dm->cut_fired = 1;
  int faulty = dm->fault_at != 0 && op >= dm->fault_at && (dm->fault_kinds & kind);
  if (!dm->cut_fired && !faulty) return SQLITE_OK;
  dm->counts.failed++;
  if (kind == FV_SYNCS) dm->counts.failed_syncs++;
  errno = dm->cut_fired ? EIO : dm->fault_err; /* a cut: the disk is gone */
  /* the unix VFS reports a write that found no room as SQLITE_FULL, any failed fsync as FSYNC */
  return ioerr == SQLITE_IOERR_WRITE && errno == ENOSPC ? SQLITE_FULL : ioerr;
}

/* The bytes [off, off+len) of the file as it is (zeros past its end). */
static int read_old(fv_file_t *f, int64_t off, int64_t len, uint8_t **out) {
  *out = NULL;
  if (len <= 0) return SQLITE_OK;
  uint8_t *buf = malloc((size_t)len);
  if (buf == NULL) return SQLITE_NOMEM;
  int rc = f->real->pMethods->xRead(f->real, buf, (int)len, off);
  if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ) {
    free(buf);
    return rc;
  }
  *out = buf;
  return SQLITE_OK;
}

static int rec_add(fv_file_t *f, int64_t off, int64_t len, int trunc) {
  sqlite3_int64 size = 0;
  int rc = f->real->pMethods->xFileSize(f->real, &size);
  if (rc != SQLITE_OK) return rc;
  fv_rec_t *r = calloc(1, sizeof *r);
  if (r == NULL) return SQLITE_NOMEM;
  r->off = off;
  r->len = len;
  r->old_size = size;
  r->trunc = trunc;
  int64_t end = trunc ? size : (off + len < size ? off + len : size);
  rc = read_old(f, off, end - off, &r->old);
  if (rc != SQLITE_OK) {
    free(r);
    return rc;
  }
  fv_node_t *n = f->node;
  if (n->tail != NULL) n->tail->next = r;
  else n->head = r;
  n->tail = r;
  return SQLITE_OK;
}

/* ---- the file methods ---- */

static int fv_close(sqlite3_file *p) {
  fv_file_t *f = (fv_file_t *)p;
  int rc = f->real->pMethods->xClose(f->real);
  pthread_mutex_lock(&fv_mu);
  if (f->node != NULL && --f->node->open == 0 && f->node->domain < 0) node_unlink(f->node);
  pthread_mutex_unlock(&fv_mu);
  return rc;
}

static int fv_read(sqlite3_file *p, void *buf, int amt, sqlite3_int64 off) {
  fv_file_t *f = (fv_file_t *)p;
  return f->real->pMethods->xRead(f->real, buf, amt, off);
}

/* 1 if the file's writes and syncs are tracked (under fv_mu: forgetting a domain unties it) */
static int tracked(const fv_file_t *f) { return f->node != NULL && f->node->domain >= 0; }

/* A write or truncation of a tracked file (under fv_mu): counted, failed as a cut or a fault
 * says, and what it replaces kept. SQLITE_OK: go on with the real call. */
static int write_begin(fv_file_t *f, int64_t off, int64_t len, int trunc) {
  int rc = op_check(f->node->domain, FV_WRITES, trunc ? SQLITE_IOERR_TRUNCATE : SQLITE_IOERR_WRITE);
  return rc == SQLITE_OK ? rec_add(f, off, len, trunc) : rc;
}

static int fv_write(sqlite3_file *p, const void *buf, int amt, sqlite3_int64 off) {
  fv_file_t *f = (fv_file_t *)p;
  pthread_mutex_lock(&fv_mu);
  int rc = tracked(f) ? write_begin(f, off, amt, 0) : SQLITE_OK;
  if (rc == SQLITE_OK) rc = f->real->pMethods->xWrite(f->real, buf, amt, off);
  pthread_mutex_unlock(&fv_mu);
  return rc;
}

static int fv_truncate(sqlite3_file *p, sqlite3_int64 size) {
  fv_file_t *f = (fv_file_t *)p;
  pthread_mutex_lock(&fv_mu);
  int rc = tracked(f) ? write_begin(f, size, 0, 1) : SQLITE_OK;
  if (rc == SQLITE_OK) rc = f->real->pMethods->xTruncate(f->real, size);
  pthread_mutex_unlock(&fv_mu);
  return rc;
}

static int fv_sync(sqlite3_file *p, int flags) {
  fv_file_t *f = (fv_file_t *)p;
  pthread_mutex_lock(&fv_mu);
  fv_node_t *n = tracked(f) ? f->node : NULL;
  int rc = n != NULL ? op_check(n->domain, FV_SYNCS, SQLITE_IOERR_FSYNC) : SQLITE_OK;
  if (rc == SQLITE_OK) rc = f->real->pMethods->xSync(f->real, flags);
  if (rc == SQLITE_OK && n != NULL) {
    sqlite3_int64 size = 0;
    f->real->pMethods->xFileSize(f->real, &size);
    recs_free(n); /* an fsync writes every dirty page of the file, whichever handle wrote it */
    n->synced_size = size;
    if (f->dirsync) n->volatile_entry = 0;
    f->dirsync = 0;
    size_t len = strlen(n->path);
    if (len > 4 && strcmp(n->path + len - 4, "-wal") == 0) fv_domains[n->domain].counts.wal_syncs++;
  }
  pthread_mutex_unlock(&fv_mu);
  return rc;
}

static int fv_file_size(sqlite3_file *p, sqlite3_int64 *size) {
  fv_file_t *f = (fv_file_t *)p;
  return f->real->pMethods->xFileSize(f->real, size);
}
static int fv_lock(sqlite3_file *p, int lock) {
  fv_file_t *f = (fv_file_t *)p;
  return f->real->pMethods->xLock(f->real, lock);
}
static int fv_unlock(sqlite3_file *p, int lock) {
  fv_file_t *f = (fv_file_t *)p;
  return f->real->pMethods->xUnlock(f->real, lock);
}
static int fv_check_lock(sqlite3_file *p, int *out) {
  fv_file_t *f = (fv_file_t *)p;
  return f->real->pMethods->xCheckReservedLock(f->real, out);
}
static int fv_file_control(sqlite3_file *p, int op, void *arg) {
  fv_file_t *f = (fv_file_t *)p;
  return f->real->pMethods->xFileControl(f->real, op, arg);
}
static int fv_sector_size(sqlite3_file *p) {
  fv_file_t *f = (fv_file_t *)p;
  return f->real->pMethods->xSectorSize(f->real);
}
static int fv_device_chars(sqlite3_file *p) {
  fv_file_t *f = (fv_file_t *)p;
  /* the unix VFS's (powersafe overwrite): a torn write here damages no byte it did not write */
  return f->real->pMethods->xDeviceCharacteristics(f->real);
}
static int fv_shm_map(sqlite3_file *p, int pg, int pgsz, int extend, void volatile **pp) {
  fv_file_t *f = (fv_file_t *)p;
  return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, pp);
}
static int fv_shm_lock(sqlite3_file *p, int offset, int n, int flags) {
  fv_file_t *f = (fv_file_t *)p;
  return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}
static void fv_shm_barrier(sqlite3_file *p) {
  fv_file_t *f = (fv_file_t *)p;
  f->real->pMethods->xShmBarrier(f->real);
}
static int fv_shm_unmap(sqlite3_file *p, int del) {
  fv_file_t *f = (fv_file_t *)p;
  return f->real->pMethods->xShmUnmap(f->real, del);
}

/* Version 2: shared memory (WAL) but no memory-mapped I/O, so every write goes through xWrite. */
static const sqlite3_io_methods fv_io = {
    2,           fv_close,      fv_read,        fv_write,     fv_truncate,
    fv_sync,     fv_file_size,  fv_lock,        fv_unlock,    fv_check_lock,
    fv_file_control, fv_sector_size, fv_device_chars, fv_shm_map, fv_shm_lock,
    fv_shm_barrier,  fv_shm_unmap,   NULL,           NULL,
};

/* ---- the VFS methods ---- */

static int fv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *p, int flags, int *out_flags) {
  (void)vfs;
  fv_file_t *f = (fv_file_t *)p;
  memset(f, 0, sizeof *f);
  f->real = (sqlite3_file *)(f + 1);
  struct stat st;
  int existed = name != NULL && stat(name, &st) == 0;
  int rc = fv_orig->xOpen(fv_orig, name, f->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    if (f->real->pMethods != NULL) f->real->pMethods->xClose(f->real);
    f->base.pMethods = NULL;
    return rc;
  }
  f->base.pMethods = &fv_io;
  if (name == NULL) return rc;
  pthread_mutex_lock(&fv_mu);
  int d = domain_of(name);
  if (d >= 0) {
    fv_node_t *n = node_find(name);
    if (n == NULL && (n = calloc(1, sizeof *n)) != NULL && (n->path = strdup(name)) != NULL) {
      n->domain = d;
      n->volatile_entry = !existed;
      n->synced_size = existed ? (int64_t)st.st_size : 0;
      n->next = fv_nodes;
      fv_nodes = n;
    } else if (n != NULL && n->path == NULL) {
      free(n);
      n = NULL;
    }
    if (n != NULL) {
      if (n->domain < 0) { /* left over from a forgotten domain: tracked afresh */
        recs_free(n);
        n->domain = d;
      }
      n->open++;
      if (flags & SQLITE_OPEN_MAIN_DB) n->main_db = 1;
      f->node = n;
      f->dirsync = (flags & SQLITE_OPEN_CREATE) &&
                   (flags & (SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_SUPER_JOURNAL));
    }
  }
  pthread_mutex_unlock(&fv_mu);
  return rc;
}

static int fv_delete(sqlite3_vfs *vfs, const char *name, int dirsync) {
  (void)vfs;
  pthread_mutex_lock(&fv_mu);
  int d = domain_of(name);
  if (d >= 0 && fv_domains[d].cut_fired) {
    fv_domains[d].counts.failed++;
    pthread_mutex_unlock(&fv_mu);
    return SQLITE_IOERR_DELETE;
  }
  int rc = fv_orig->xDelete(fv_orig, name, dirsync);
  fv_node_t *n = d >= 0 ? node_find(name) : NULL;
  if (rc == SQLITE_OK && n != NULL) {
    if (n->open == 0) {
      node_unlink(n);
    } else { /* still open (unlinked while open): nothing of it survives a cut */
      recs_free(n);
      n->synced_size = 0;
      n->volatile_entry = 0;
    }
  }
  pthread_mutex_unlock(&fv_mu);
  return rc;
}

int fv_install(void) {
  pthread_mutex_lock(&fv_mu);
  int rc = 0;
  if (fv_orig == NULL) {
    sqlite3_vfs *orig = sqlite3_vfs_find(NULL);
    if (orig == NULL) {
      rc = -1;
    } else {
      fv_vfs = *orig; /* the unix VFS's methods ignore the vfs pointer they get, but pAppData */
      fv_vfs.iVersion = orig->iVersion;
      fv_vfs.szOsFile = (int)sizeof(fv_file_t) + orig->szOsFile;
      fv_vfs.zName = "hd-fault";
      fv_vfs.pNext = NULL;
      fv_vfs.xOpen = fv_open;
      fv_vfs.xDelete = fv_delete;
      fv_orig = orig;
      if (sqlite3_vfs_register(&fv_vfs, 1) != SQLITE_OK) {
        fv_orig = NULL;
        rc = -1;
      }
    }
  }
  pthread_mutex_unlock(&fv_mu);
  return rc;
}

/* ---- domains ---- */

int fv_domain(const char *folder) {
  pthread_mutex_lock(&fv_mu);
  int free_d = -1, found = -1;
  size_t len = strlen(folder);
  for (int d = 0; d < FV_MAX_DOMAINS; d++) {
    fv_domain_t *dm = &fv_domains[d];
    if (dm->folder == NULL) {
      if (free_d < 0) free_d = d;
    } else if (dm->folder_len == len + 1 && strncmp(dm->folder, folder, len) == 0) {
      found = d;
    }
  }
  if (found < 0 && free_d >= 0) {
    fv_domain_t *dm = &fv_domains[free_d];
    memset(dm, 0, sizeof *dm);
    dm->folder = malloc(len + 2);
    if (dm->folder != NULL) {
      memcpy(dm->folder, folder, len);
      memcpy(dm->folder + len, "/", 2);
      dm->folder_len = len + 1;
      found = free_d;
    }
  }
  pthread_mutex_unlock(&fv_mu);
  return found;
}

static void forget_nodes(int d) {
  for (fv_node_t *n = fv_nodes, *next; n != NULL; n = next) {
    next = n->next;
    if (n->domain != d) continue;
    if (n->open == 0) {
      node_unlink(n);
    } else { /* a handle still open: untracked from now on, freed at its last close */
      recs_free(n);
      n->domain = -1;
    }
  }
}

void fv_domain_forget(int d) {
  if (d < 0 || d >= FV_MAX_DOMAINS) return;
  pthread_mutex_lock(&fv_mu);
  forget_nodes(d);
  free(fv_domains[d].folder);
  memset(&fv_domains[d], 0, sizeof fv_domains[d]);
  pthread_mutex_unlock(&fv_mu);
}

void fv_counts(int d, fv_counts_t *out) {
  pthread_mutex_lock(&fv_mu);
  *out = fv_domains[d].counts;
  pthread_mutex_unlock(&fv_mu);
}

void fv_cut_at(int d, long op) {
  pthread_mutex_lock(&fv_mu);
  fv_domains[d].cut_at = op;
  pthread_mutex_unlock(&fv_mu);
}

void fv_cut_now(int d) {
  pthread_mutex_lock(&fv_mu);
  fv_domains[d].cut_fired = 1;
  pthread_mutex_unlock(&fv_mu);
}

int fv_cut_fired(int d) {
  pthread_mutex_lock(&fv_mu);
  int fired = fv_domains[d].cut_fired;
  pthread_mutex_unlock(&fv_mu);
  return fired;
}

void fv_fault_at(int d, long op, int err, int kinds) {
  pthread_mutex_lock(&fv_mu);
  fv_domains[d].fault_at = op;
  fv_domains[d].fault_err = err;
  fv_domains[d].fault_kinds = kinds;
  pthread_mutex_unlock(&fv_mu);
}

void fv_fault_clear(int d) {
  pthread_mutex_lock(&fv_mu);
  fv_domains[d].fault_at = 0;
  pthread_mutex_unlock(&fv_mu);
}

/* ---- the revert ---- */

static int pwrite_all(int fd, const uint8_t *buf, int64_t len, int64_t off) {
  while (len > 0) {
    ssize_t n = pwrite(fd, buf, (size_t)len, off);
    if (n <= 0) return -1;
    buf += n;
    len -= n;
    off += n;
  }
  return 0;
}

/* Puts back what record r replaced from `from` (an offset inside it) on: its pre-image where the
 * file had bytes, zeros where it had none. */
static int undo(int fd, const fv_rec_t *r, int64_t from) {
  int64_t end = r->trunc ? r->old_size : r->off + r->len;
  int64_t old_end = r->trunc ? r->old_size : (end < r->old_size ? end : r->old_size);
  if (from < old_end && pwrite_all(fd, r->old + (from - r->off), old_end - from, from) != 0) {
    return -1;
  }
  if (!r->trunc && end > old_end && end > from) {
    int64_t z0 = from > old_end ? from : old_end;
    uint8_t *zeros = calloc(1, (size_t)(end - z0));
    int rc = zeros != NULL ? pwrite_all(fd, zeros, end - z0, z0) : -1;
    free(zeros);
    if (rc != 0) return -1;
  }
  return 0;
}

/* What the disk keeps of each record: -1 all of it, 0 nothing, else the bytes of its prefix. */
static void choose(const fv_node_t *n, int mode, uint64_t *rng, int64_t *keep, long count) {
  for (long i = 0; i < count; i++) keep[i] = 0;
  if (mode == FV_DROP || count == 0) return;
  long k = 0, torn = -1;
  if (mode == FV_ORDERED) {
    k = (long)(fv_rand(rng) % (uint64_t)(count + 1));
    for (long i = 0; i < k; i++) keep[i] = -1;
    torn = k;
  } else {
    for (long i = 0; i < count; i++) keep[i] = (fv_rand(rng) & 1) ? -1 : 0;
    torn = (long)(fv_rand(rng) % (uint64_t)count);
  }
  long i = 0;
  for (const fv_rec_t *r = n->head; r != NULL; r = r->next, i++) {
    if (i == torn && !r->trunc && r->len > FV_SECTOR) {
      keep[i] = (int64_t)(fv_rand(rng) % (uint64_t)(r->len / FV_SECTOR)) * FV_SECTOR;
    }
  }
}

static int marker_there(const fv_domain_t *dm) {
  char path[4096];
  snprintf(path, sizeof path, "%shyperdown.store", dm->folder);
  struct stat st;
  return stat(path, &st) == 0;
}

static int revert_node(fv_node_t *n, int mode, uint64_t *rng, int marker,
                       fv_revert_report_t *rep) {
  long count = 0;
  for (fv_rec_t *r = n->head; r != NULL; r = r->next) count++;
  if (n->volatile_entry && !(n->main_db && marker)) {
    rep->files_removed++;
    rep->writes_dropped += count;
    return unlink(n->path) == 0 || errno == ENOENT ? 0 : -1;
  }
  if (count == 0) return 0;
  int64_t *keep = calloc((size_t)count, sizeof *keep);
  fv_rec_t **recs = calloc((size_t)count, sizeof *recs);
  int fd = open(n->path, O_RDWR | O_CLOEXEC);
  int rc = keep != NULL && recs != NULL && fd >= 0 ? 0 : -1;
  if (rc == 0) {
    long i = 0;
    for (fv_rec_t *r = n->head; r != NULL; r = r->next) recs[i++] = r;
    choose(n, mode, rng, keep, count);
    int64_t size = n->synced_size;
    for (i = 0; i < count; i++) { /* the size the kept writes give the file, in their order */
      const fv_rec_t *r = recs[i];
      int64_t kept = keep[i] < 0 ? r->len : keep[i];
      if (r->trunc && keep[i] < 0) size = r->off;
      else if (!r->trunc && kept > 0 && r->off + kept > size) size = r->off + kept;
    }
    for (i = count - 1; i >= 0 && rc == 0; i--) { /* newest first: each undo restores its past */
      const fv_rec_t *r = recs[i];
      if (keep[i] < 0) {
        rep->writes_kept++;
        continue;
      }
      if (keep[i] > 0) rep->writes_torn++;
      else rep->writes_dropped++;
      rep->bytes_dropped += r->trunc ? r->old_size - r->off : r->len - keep[i];
      rc = undo(fd, r, r->off + keep[i]);
    }
    if (rc == 0 && ftruncate(fd, size) != 0) rc = -1;
  }
  if (fd >= 0) close(fd);
  free(keep);
  free(recs);
  return rc;
}

int fv_revert(int d, int mode, uint64_t seed, fv_revert_report_t *out) {
  fv_revert_report_t rep;
  memset(&rep, 0, sizeof rep);
  uint64_t rng = seed;
  pthread_mutex_lock(&fv_mu);
  fv_domain_t *dm = &fv_domains[d];
  int rc = 0;
  for (fv_node_t *n = fv_nodes; n != NULL; n = n->next) {
    if (n->domain == d && n->open > 0) rc = -1;
  }
  int marker = marker_there(dm);
  for (fv_node_t *n = fv_nodes; n != NULL && rc == 0; n = n->next) {
    if (n->domain == d) rc = revert_node(n, mode, &rng, marker, &rep);
  }
  if (rc == 0) {
    forget_nodes(d);
    dm->cut_at = 0;
    dm->cut_fired = 0;
  }
  pthread_mutex_unlock(&fv_mu);
  if (out != NULL) *out = rep;
  return rc;
}

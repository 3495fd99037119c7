/* A SQLite VFS for tests that plays a disk losing power or failing (docs/RELIABILITY.md, "Power
 * cuts and I/O faults"). It wraps the default (unix) VFS and registers itself as the default, so
 * the stores, which open with the default VFS, run on it unchanged.
 *
 * Files are tracked by folder ("domains": one per store folder). For every write or truncation
 * of a tracked file since that file's last successful sync, the VFS keeps the bytes it replaced
 * (and the file's size at its last sync), the way a disk cache holds what it has not written:
 *
 *  - a power cut (fv_cut_at / fv_cut_now): from that operation on, every write, truncation, sync
 *    and delete of the domain fails (SQLITE_IOERR_*), so nothing more reaches "disk" and nothing
 *    later is reported durable; the test closes the handles and calls fv_revert, which puts each
 *    file back as the disk holds it: the unsynced writes dropped (all of them, or a random prefix
 *    kept in order with the next one torn at a 512-byte boundary, or a random subset), the size
 *    back to the last sync's, and a file whose directory entry was never made durable removed;
 *  - an I/O fault (fv_fault_at): from a given operation until fv_fault_clear, writes fail with
 *    EIO (SQLITE_IOERR_WRITE) or ENOSPC (SQLITE_FULL), syncs and truncations with
 *    SQLITE_IOERR_FSYNC / _TRUNCATE (errno EIO or ENOSPC, as fsync reports them); the files keep
 *    what was written before (no revert).
 *
 * Operations are counted per domain: every xWrite, xTruncate and xSync of its files, from 1, so a
 * test can place a cut or a fault at each of them in turn. Directory entries: a file the VFS saw
 * created is volatile until its directory is synced: SQLite syncs it at the first sync of a WAL
 * or journal it created (the unix VFS's DIRSYNC), and the store fsyncs the folder when it writes
 * its marker (hyperdown.store), which the VFS takes to cover the database file. Deletions are
 * taken as durable at once. Thread-safe (one mutex); every tracked write reads its pre-image
 * first, so it is for tests only. */
#ifndef HD_FAULT_VFS_H
#define HD_FAULT_VFS_H

#include <stdint.h>

/* Registers the VFS as SQLite's default (idempotent). 0, or -1. */
int fv_install(void);

/* Tracks the files under `folder` (created before the store opens it); returns the domain's id
 * (the same for the same folder), -1 if the table is full. Counters start at 0. */
int fv_domain(const char *folder);
/* Stops tracking the domain and forgets what it kept (its files stay as they are). */
void fv_domain_forget(int d);

typedef struct fv_counts {
  long ops;          /* writes, truncations and syncs of the domain's files */
  long writes, syncs;
  long wal_syncs;    /* successful syncs of a -wal file: what a NORMAL commit waits for */
  long failed;       /* operations failed by a cut or an injected fault */
  long failed_syncs; /* of which syncs */
} fv_counts_t;
void fv_counts(int d, fv_counts_t *out);

/* Power cuts. */
void fv_cut_at(int d, long op); /* operation number `op` (as counted by ops) and all later fail */
void fv_cut_now(int d);
int fv_cut_fired(int d);

enum {
  FV_DROP = 0,    /* the disk got nothing since each file's last sync */
  FV_ORDERED = 1, /* a random prefix of the unsynced writes reached it, the next one torn */
  FV_RANDOM = 2,  /* a random subset reached it (sectors of a file in any order), one torn */
  FV_MODES = 3
};

typedef struct fv_revert_report {
  long writes_dropped, writes_kept, writes_torn;
  long bytes_dropped;
  long files_removed; /* created, but their directory entry never synced */
} fv_revert_report_t;

/* After a cut, with every handle on the domain's files closed: puts the files back as a disk that
 * lost power in `mode` (seeded by `seed`) holds them, clears the cut and starts the domain's
 * bookkeeping afresh (its counters go on). 0, or -1 if a file is still open or cannot be
 * rewritten. `out` may be NULL. */
int fv_revert(int d, int mode, uint64_t seed, fv_revert_report_t *out);

/* I/O faults. */
enum { FV_WRITES = 1, FV_SYNCS = 2 };
/* From operation `op` on, the operations of kinds `kinds` (FV_WRITES: writes and truncations,
 * FV_SYNCS) fail with `err` (EIO or ENOSPC) until fv_fault_clear. */
void fv_fault_at(int d, long op, int err, int kinds);
void fv_fault_clear(int d);

/* A 64-bit PRNG step (splitmix64) for seeded tests. */
uint64_t fv_rand(uint64_t *state);

#endif

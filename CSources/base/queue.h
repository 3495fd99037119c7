/* The one list of the core: an intrusive, circular, doubly linked queue. A struct that takes part
 * embeds an hd__queue_t and is found again from it with hd__container_of, so being on a list
 * costs no allocation and removal is O(1) from anywhere. A list's head is a bare hd__queue_t
 * (a sentinel): empty when it points at itself. Not thread-safe: a list shared between threads
 * is guarded by its owner's mutex. */
#ifndef HD_QUEUE_H
#define HD_QUEUE_H

#include <stddef.h>

typedef struct hd__queue {
  struct hd__queue *next;
  struct hd__queue *prev;
} hd__queue_t;

/* The struct of type `type` whose member `field` is at `ptr`. */
#define hd__container_of(ptr, type, field) ((type *)(void *)((char *)(ptr)-offsetof(type, field)))

/* Makes `q` an empty list, or marks a node as on no list (hd__queue_linked then says 0). */
static inline void hd__queue_init(hd__queue_t *q) { q->next = q->prev = q; }

static inline int hd__queue_empty(const hd__queue_t *head) { return head->next == head; }

/* 1 if the node is on a list (it was initialised and inserted, not removed since). */
static inline int hd__queue_linked(const hd__queue_t *node) { return node->next != node; }

/* The first node, or NULL for an empty list. */
static inline hd__queue_t *hd__queue_first(const hd__queue_t *head) {
  return head->next == head ? NULL : head->next;
}

static inline void hd__queue_insert_tail(hd__queue_t *head, hd__queue_t *node) {
  node->next = head;
  node->prev = head->prev;
  node->prev->next = node;
  head->prev = node;
}

static inline void hd__queue_insert_head(hd__queue_t *head, hd__queue_t *node) {
  node->next = head->next;
  node->prev = head;
  node->next->prev = node;
  head->next = node;
}

/* Takes the node off its list; it reads as unlinked afterwards. */
static inline void hd__queue_remove(hd__queue_t *node) {
  node->prev->next = node->next;
  node->next->prev = node->prev;
  hd__queue_init(node);
}

/* Moves every node of `from` to the end of `to`; `from` is empty afterwards. */
static inline void hd__queue_move(hd__queue_t *from, hd__queue_t *to) {
  if (hd__queue_empty(from)) return;
  from->next->prev = to->prev;
  to->prev->next = from->next;
  from->prev->next = to;
  to->prev = from->prev;
  hd__queue_init(from);
}

/* Removes and returns the first node, or NULL. */
static inline hd__queue_t *hd__queue_pop(hd__queue_t *head) {
  hd__queue_t *q = hd__queue_first(head);
  if (q != NULL) hd__queue_remove(q);
  return q;
}

/* Visits every node; the body must not remove `q` (use hd__queue_foreach_safe for that). */
#define hd__queue_foreach(q, head) for ((q) = (head)->next; (q) != (head); (q) = (q)->next)
/* Visits every node; the body may remove `q` (and only `q`). */
#define hd__queue_foreach_safe(q, n, head)                                                        \
  for ((q) = (head)->next, (n) = (q)->next; (q) != (head); (q) = (n), (n) = (q)->next)

#endif

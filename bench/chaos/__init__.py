"""``make chaos``: the whole shop under ``cascade run`` with faults and ``kill -9``s, then proof.

One run (``python -m bench.chaos``, ``make chaos``):

1. Start ``cascade run`` on the shop's own manifests (``k8s/rendered/shop.yaml``) with its
   supervisor, on the broker log asked for (``--log sqlite``, or ``kafka`` against a local
   Tansu started the way ``make run LOG=kafka`` does) and the state store asked for (SQLite
   files, or a fresh PostgreSQL database). The notification function mails through a real SMTP
   server (:mod:`bench.chaos.smtp`) that refuses at times; inventory gets enough stock that an
   order's kind alone decides its final state.
2. Concurrent clients place ORDERS orders (in stock, out of stock, declined) through the order
   API (:mod:`bench.chaos.load`). Meanwhile payment errors and hangs are switched on and off
   through the payment function's fault API, the SMTP server refuses a share of messages, and
   KILLS ``kill -9``s hit the broker and every function at random moments; the supervisor
   restarts them.
3. Faults off; once the broker is idle the dead-letter queue is replayed (``cascade dlq
   replay --all``), then the run is stopped.
4. The verdict comes from the functions' stores and the broker's log (:mod:`bench.chaos.checks`),
   not from counters kept here: every accepted order final in the state its kind dictates (or
   its dead letter explained), stock conserved per SKU, one email per final order, one payment
   decision per order, and every event of the log delivered to each Trigger it matches or
   dead-lettered. Memory (RSS) of every process is sampled throughout (:mod:`bench.chaos.rss`).

The last line says ``chaos: N orders, K kills, lost L, double effects D, unresolved U: PASS``
(or FAIL), the exit status is 0 only on PASS, and the figures go to
``bench/results/chaos-<log>-<state>-<time>.json``.
"""

#!/usr/bin/env python3
"""bench/e2e/report.py OUT PLOTS: results.jsonl (+ backlog-full.log) -> results.csv, tables.md
(markdown tables with the ratios and the issue 6 targets), and PNG plots in PLOTS (skipped with a
message when matplotlib is missing)."""
import csv, glob, json, os, re, sys

out, plots = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(os.path.join(out, "results.jsonl")) if l.strip()]

# Hyperdown's drain comes from bench/backlog's own lines
bl = os.path.join(out, "backlog-full.log")
if os.path.exists(bl):
    t = open(bl).read()
    m_add = re.search(r"server: added (\d+) events in ([\d.]+) s: (\d+) events/s", t)
    m_all = re.search(r"all confirmed \(both stores empty\) after ([\d.]+) s: (\d+) events/s", t)
    m_rss_s = re.search(r"peak RSS over the whole run.*?: ([\d.]+) MiB", t)
    m_rss_c = re.search(r"client: peak RSS: ([\d.]+) MiB", t)
    if m_add and m_all:
        n = int(m_add.group(1)); a = float(m_add.group(2)); d = float(m_all.group(1))
        rows.append({"system": "hyperdown", "durability": "synchronous=FULL", "mode": "drain",
                     "events": n, "add_seconds": a, "add_events_per_s": n / a, "drain_seconds": d,
                     "drain_events_per_s": n / d, "total_events_per_s": n / (a + d),
                     "exactly_once": "checked by backlog (stores empty, counts)",
                     "server_peak_rss_kib": float(m_rss_s.group(1)) * 1024 if m_rss_s else None,
                     "client_peak_rss_kib": float(m_rss_c.group(1)) * 1024 if m_rss_c else None})

keys = sorted({k for r in rows for k in r})
with open(os.path.join(out, "results.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow(r)

def sel(system=None, mode=None, dur=None, **kw):
    res = [r for r in rows if (system is None or r["system"] == system) and (mode is None or r["mode"] == mode)
           and (dur is None or dur in r.get("durability", ""))]
    for k, v in kw.items():
        res = [r for r in res if r.get(k) == v]
    return res

def one(*a, **kw):
    r = sel(*a, **kw)
    return r[0] if r else None

CONFIGS = [("hyperdown", "FULL"), ("hyperdown", "NORMAL"), ("redis", "always"), ("redis", "everysec"),
           ("nats", "2 min"), ("mosquitto", "no fsync")]
def label(s, d):
    r = one(s, None, d)
    return f"{s} ({r['durability']})" if r else s

L = []
def p(s=""):
    L.append(s)

def fmt(x, nd=0):
    if x is None:
        return "-"
    return f"{x:,.{nd}f}"

p("### Online throughput (events/s through the full path) vs events in flight\n")
infl = [1, 10, 100, 1000]
p("| system (durability) | " + " | ".join(f"{i} in flight" for i in infl) + " | exactly once |")
p("|---|" + "---|" * (len(infl) + 1))
for s, d in CONFIGS:
    rs = [one(s, "tput", d, inflight=i) for i in infl]
    if not any(rs):
        continue
    ex = all(r and r.get("exactly_once") is True for r in rs)
    p(f"| {label(s, d)} | " + " | ".join(fmt(r and r["events_per_s"]) for r in rs) + f" | {'yes' if ex else 'NO'} |")
p("\nRatios Hyperdown FULL / peer (same in-flight count):\n")
p("| peer | " + " | ".join(f"{i}" for i in infl) + " |")
p("|---|" + "---|" * len(infl))
for s, d in CONFIGS[1:]:
    rs = [(one("hyperdown", "tput", "FULL", inflight=i), one(s, "tput", d, inflight=i)) for i in infl]
    if not any(b for a, b in rs):
        continue
    p(f"| vs {label(s, d)} | " + " | ".join(f"{a['events_per_s'] / b['events_per_s']:.2f}x" if a and b else "-" for a, b in rs) + " |")

p("\n### Latency, one event at a time (deliver = add call -> client handler; complete = add call -> acknowledged end of path), µs\n")
p("| system (durability) | deliver p50 | p99 | p99.9 | complete p50 | p99 | p99.9 | paced 5,000/s deliver p50 | p99 | p99.9 |")
p("|---|---|---|---|---|---|---|---|---|---|")
for s, d in CONFIGS:
    a, b = one(s, "lat", d), one(s, "paced", d)
    if not a:
        continue
    p(f"| {label(s, d)} | {fmt(a['deliver_p50_us'])} | {fmt(a['deliver_p99_us'])} | {fmt(a['deliver_p999_us'])} | "
      f"{fmt(a['complete_p50_us'])} | {fmt(a['complete_p99_us'])} | {fmt(a['complete_p999_us'])} | "
      f"{fmt(b and b['deliver_p50_us'])} | {fmt(b and b['deliver_p99_us'])} | {fmt(b and b['deliver_p999_us'])} |")

p("\n### Offline drain (add N while the consumer is offline, then reconnect and consume all)\n")
p("| system (durability) | events | add events/s | drain events/s | add + drain events/s | server peak RSS MiB |")
p("|---|---|---|---|---|---|")
for s, d in CONFIGS:
    r = one(s, "drain", d)
    if not r:
        continue
    rss = r.get("server_peak_rss_kib")
    p(f"| {label(s, d)} | {fmt(r['events'])} | {fmt(r['add_events_per_s'])} | {fmt(r['drain_events_per_s'])} | "
      f"{fmt(r['total_events_per_s'])} | {fmt(rss and rss / 1024, 1)} |")

p("\n### Connections: memory per idle connection, fan-in, handshakes/s under load\n")
p("| system (durability) | idle connections | server bytes / idle connection | fan-in events/s | handshakes/s under load |")
p("|---|---|---|---|---|")
for s, d in CONFIGS:
    i, h = one(s, "idle", d), one(s, "handshake", d)
    if not i and not h:
        continue
    p(f"| {label(s, d)} | {fmt(i and i.get('connected', i.get('connected_users')))} | {fmt(i and i['bytes_per_idle_conn'])} | "
      f"{fmt(i and i.get('fanin_events_per_s'))} | {fmt(h and h['handshakes_per_s'])} |")

# targets
p("\n### Issue 6 targets\n")
def ratio_line(name, a, b, need):
    if a is None or b is None:
        p(f"- {name}: not measured"); return
    r = a / b
    p(f"- {name}: {r:.2f}x (need >= {need}x): {'MET' if r >= need else 'MISSED'}")
hd_dr, rd_dr, mq_dr = one("hyperdown", "drain", "FULL"), one("redis", "drain", "always"), one("mosquitto", "drain")
ratio_line("drain 1M vs Redis appendfsync always (add + drain)", hd_dr and hd_dr["total_events_per_s"], rd_dr and rd_dr["total_events_per_s"], 1.5)
ratio_line("drain 1M vs Mosquitto (add + drain)", hd_dr and hd_dr["total_events_per_s"], mq_dr and mq_dr["total_events_per_s"], 3)
best = lambda s, d: max([r["events_per_s"] for r in sel(s, "tput", d)] or [0]) or None
ratio_line("online throughput (best of <= 1000 in flight) vs Redis always", best("hyperdown", "FULL"), best("redis", "always"), 1)
ratio_line("online throughput (best of <= 1000 in flight) vs NATS", best("hyperdown", "FULL"), best("nats", "2 min"), 2)
a, b = one("hyperdown", "lat", "FULL"), one("redis", "lat", "always")
if a and b:
    p(f"- p50 one at a time, FULL: {a['deliver_p50_us']:.0f} µs vs Redis always {b['deliver_p50_us']:.0f} µs (deliver); "
      f"{a['complete_p50_us']:.0f} vs {b['complete_p50_us']:.0f} µs (complete): "
      f"{'MET' if a['deliver_p50_us'] <= b['deliver_p50_us'] else 'MISSED'}")
a = one("hyperdown", "paced", "FULL")
if a:
    p(f"- p99 at paced 5,000/s, FULL: {a['deliver_p99_us'] / 1000:.2f} ms (need < 2 ms): {'MET' if a['deliver_p99_us'] < 2000 else 'MISSED'}")
a = one("hyperdown", "idle")
if a:
    p(f"- memory per idle connection: {a['bytes_per_idle_conn'] / 1024:.1f} KiB over {a['connected_users']} connections "
      f"(need <= 16 KiB): {'MET' if a['bytes_per_idle_conn'] <= 16384 else 'MISSED'}")
open(os.path.join(out, "tables.md"), "w").write("\n".join(L) + "\n")
print("\n".join(L))

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except Exception:
    print("report: matplotlib unavailable: plots skipped")
    sys.exit(0)

fig, ax = plt.subplots(figsize=(8, 5))
for s, d in CONFIGS:
    rs = sorted(sel(s, "tput", d), key=lambda r: r["inflight"])
    if rs:
        ax.plot([r["inflight"] for r in rs], [r["events_per_s"] for r in rs], marker="o", label=label(s, d))
ax.set_xscale("log"); ax.set_yscale("log")
ax.set_xlabel("events in flight"); ax.set_ylabel("events/s (full path, acknowledged)")
ax.set_title("Online throughput vs events in flight (100-byte payload)")
ax.grid(True, which="both", alpha=.3); ax.legend(fontsize=7)
fig.tight_layout(); fig.savefig(os.path.join(plots, "e2e-throughput.png"), dpi=110)

for mode, title in (("lat", "one event at a time"), ("paced", "paced at 5,000 events/s")):
    fig, ax = plt.subplots(figsize=(8, 5))
    for f in sorted(glob.glob(os.path.join(out, f"curve-*-{mode}.csv"))):
        name = os.path.basename(f)[6:-len(mode) - 5]
        xs, ys = [], []
        for row in csv.DictReader(open(f)):
            pc = float(row["percentile"])
            if pc >= 100:
                pc = 99.9999
            xs.append(1 / (1 - pc / 100)); ys.append(float(row["latency_us"]))
        ax.plot(xs, ys, marker=".", label=name)
    ax.set_xscale("log"); ax.set_yscale("log")
    ax.set_xticks([1, 2, 10, 100, 1000, 10000, 100000]); ax.set_xticklabels(["0", "50", "90", "99", "99.9", "99.99", "99.999"])
    ax.set_xlabel("percentile"); ax.set_ylabel("latency add -> handler (µs)")
    ax.set_title(f"Delivery latency distribution, {title}")
    ax.grid(True, which="both", alpha=.3); ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(os.path.join(plots, f"e2e-latency-{mode}.png"), dpi=110)
print(f"report: plots in {plots}/e2e-*.png")

#!/usr/bin/python3
"""Render the runs of bench/peers.sh (runs.tsv + machine.txt) as a markdown report on stdout."""
import argparse
import csv
import statistics
import sys

SERVERS = ["oceanmx", "sink", "postfix", "opensmtpd"]
LABEL = {
    "oceanmx": "oceanmx (spool + maildir)",
    "sink": "Postfix smtp-sink (stores nothing)",
    "postfix": "Postfix smtpd + virtual (maildir)",
    "opensmtpd": "OpenSMTPD + mail.maildir (maildir)",
}


def num(v):
    return float(v) if v not in (None, "") else None


def metrics(row):
    m = int(row["messages"])
    src_s = int(row["source_ns"]) / 1e9
    out = {
        "accepted": m / src_s if src_s > 0 else None,
        "delivered_rate": (m / (int(row["deliver_ns"]) / 1e9)) if row["deliver_ns"] else None,
        "cpu": num(row["cpu_us"]) / m,
        "user": num(row["user_us"]) / m,
        "sys": num(row["sys_us"]) / m,
        "client_cpu": num(row["client_cpu_us"]) / m if row["client_cpu_us"] else None,
        "fsyncs": num(row["fsyncs"]) / m if row["fsyncs"] else None,
        "flushes": num(row["flushes"]) / m if row["flushes"] else None,
        "source_s": src_s,
        "deliver_s": int(row["deliver_ns"]) / 1e9 if row["deliver_ns"] else None,
    }
    return out


def threads(row):
    """oceanmx's CPU per message by thread role (the runs.tsv "threads" column), or None."""
    cell = row.get("threads") or ""
    if not cell:
        return None
    m = int(row["messages"])
    return {k: float(v) / m for k, v in (kv.split("=", 1) for kv in cell.split())}


def fmt(v, digits=0):
    if v is None:
        return "n/a"
    if digits == 0:
        return "{:,.0f}".format(v).replace(",", " ")
    return "{:.{}f}".format(v, digits)


def summary(values, digits=0):
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a", None
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med, digits), med
    lo, hi = min(vals), max(vals)
    spread = " (±{:.0f}%)".format(50 * (hi - lo) / med) if med else ""
    return "{} [{}–{}]{}".format(fmt(med, digits), fmt(lo, digits), fmt(hi, digits), spread), med


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "n/a"
    return "{:.{}f}×".format(a / b, digits)


def cpu_section(by, med, floors_path):
    """Where oceanmx's CPU goes by thread role, against the floors of the same parts timed alone."""
    roles = [threads(r) for r, _ in by.get("oceanmx", [])]
    roles = [t for t in roles if t]
    floors = []
    if floors_path:
        with open(floors_path, newline="") as f:
            floors = [r for r in csv.DictReader(f, delimiter="\t") if r.get("maildir_cpu_us")]
    if not roles:
        return []
    o = ["## Where oceanmx's CPU goes, against the floors of its parts", ""]
    o.append("oceanmx's threads by role (/proc/PID/task, the same window as the server CPU above), "
             "median µs per message. Each part's floor is the least that part costs here when it "
             "runs alone, timed in the same run: the SMTP exchange is smtp-sink's CPU per message "
             "(it answers and stores nothing); the Maildir protocol (create in tmp/, write 4 KiB, "
             "one syncfs per 8 files, rename into new/, fsync new/) and the spool's group commit "
             "(2 records of 4 KiB written through io_uring, then made durable) are "
             "`omx-sync-bench maildir DIR 8` and `commit DIR 2`, process CPU per file or record.")
    o.append("")

    def m(key):
        vals = [t.get(key) for t in roles if t.get(key) is not None]
        return statistics.median(vals) if vals else None

    def fm(key):
        vals = [float(r[key]) for r in floors if r.get(key)]
        return statistics.median(vals) if vals else None

    sink = med.get("sink", {}).get("cpu")
    md, cm, cb = fm("maildir_cpu_us"), fm("commit_cpu_us"), fm("commit_best_cpu_us")
    best = sorted({r["commit_best"] for r in floors if r.get("commit_best")})
    o.append("| part | oceanmx's threads | µs/msg | floor | floor µs/msg |")
    o.append("| --- | --- | --- | --- | --- |")
    o.append("| SMTP exchange, parsing | shards | {} | smtp-sink | {} |".format(fmt(m("shard")), fmt(sink)))
    o.append("| maildir sink | delivery workers | {} | Maildir protocol alone | {} |".format(
        fmt(m("deliver")), fmt(md)))
    o.append("| spool group commit | io_uring workers | {} | commit alone: write + fdatasync (as the shard); "
             "cheapest variant ({}) | {}; {} |".format(fmt(m("iouring")), ", ".join(best) or "n/a", fmt(cm), fmt(cb)))
    o.append("| DKIM, SPF, DMARC, ARC | verify pool | {} | – | – |".format(fmt(m("verify"))))
    o.append("| DNS, log, metrics, main | other | {} | – | – |".format(fmt(m("other"))))
    total = sum(v for v in (m("shard"), m("deliver"), m("iouring"), m("verify"), m("other")) if v)
    o.append("| all | | {} | sum of the floors (cheapest commit) | {} |".format(
        fmt(total), fmt(sum(v for v in (sink, md, cb) if v is not None)) if None not in (sink, md, cb) else "n/a"))
    o.append("")
    # Per round, so an outlier shows (file creation on ext4 without a journal slows down for
    # minutes after many deletions: see bench/README.md).
    o.append("Per round: " + "; ".join(
        "{}: oceanmx shards {}, delivery {}, io_uring {}, verify {}; floors Maildir {}, commit {} / {}".format(
            i + 1, fmt(t.get("shard")), fmt(t.get("deliver")), fmt(t.get("iouring")), fmt(t.get("verify")),
            fmt(num(f.get("maildir_cpu_us"))) if f else "n/a", fmt(num(f.get("commit_cpu_us"))) if f else "n/a",
            fmt(num(f.get("commit_best_cpu_us"))) if f else "n/a")
        for i, (t, f) in enumerate(zip(roles, floors + [None] * (len(roles) - len(floors))))) + ".")
    o.append("")
    return o


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--machine", required=True)
    p.add_argument("--runs", required=True)
    p.add_argument("--floors", help="floors.tsv of bench/peers.sh (omx-sync-bench per round)")
    a = p.parse_args()

    with open(a.machine) as f:
        machine = [l.rstrip("\n") for l in f if l.strip()]
    info = dict(l.split(": ", 1) for l in machine if ": " in l)
    with open(a.runs, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        print("no runs", file=sys.stderr)
        return 1

    by = {}
    for r in rows:
        by.setdefault(r["server"], []).append((r, metrics(r)))
    order = [s for s in SERVERS if s in by] + [s for s in by if s not in SERVERS]

    o = []
    o.append("# oceanmx and its peers, {}".format(info.get("date", "")))
    o.append("")
    o.append("Generated by `bench/peers.sh`; every figure comes from this one run on this machine.")
    o.append("")
    o.append("## Machine")
    o.append("")
    for l in machine:
        o.append("- " + l)
    o.append("")

    reps = max(len(v) for v in by.values())
    o.append("## Results")
    o.append("")
    o.append("Median of {} interleaved measurements, [min–max] and (± half the range, relative "
             "to the median). Per message = divided by the messages smtp-source sent.".format(reps))
    o.append("")
    o.append("| server | msg/s accepted | msg/s delivered | server CPU µs/msg | user / sys µs/msg "
             "| fsync-like calls/msg | device flushes/msg | delivered |")
    o.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    med = {}
    for s in order:
        ms = [m for _, m in by[s]]
        acc, med_acc = summary([m["accepted"] for m in ms])
        dlv, med_dlv = summary([m["delivered_rate"] for m in ms])
        cpu, med_cpu = summary([m["cpu"] for m in ms])
        _, med_user = summary([m["user"] for m in ms])
        _, med_sys = summary([m["sys"] for m in ms])
        fs, med_fs = summary([m["fsyncs"] for m in ms], 2)
        fl, med_fl = summary([m["flushes"] for m in ms], 3)
        med[s] = dict(accepted=med_acc, delivered=med_dlv, cpu=med_cpu, fsyncs=med_fs, flushes=med_fl)
        delivered = []
        for r, _ in by[s]:
            delivered.append("{}/{}".format(r["delivered"], r["messages"]) if r["delivered"] else "–")
        dl = "all" if all(d != "–" and d.split("/")[0] == d.split("/")[1] for d in delivered) else \
            ("not stored" if all(d == "–" for d in delivered) else ", ".join(delivered))
        o.append("| {} | {} | {} | {} | {} / {} | {} | {} | {} |".format(
            LABEL.get(s, s), acc, dlv if dlv != "n/a" else "– (stores nothing)", cpu,
            fmt(med_user), fmt(med_sys), fs, fl, dl))
    o.append("")

    if "oceanmx" in med and len(order) > 1:
        b = med["oceanmx"]
        o.append("## Peers relative to oceanmx (ratio of medians, same run)")
        o.append("")
        o.append("Throughput: peer/oceanmx (< 1 means oceanmx is faster). Costs: peer/oceanmx "
                 "(> 1 means the peer spends more per message).")
        o.append("")
        o.append("| peer | msg/s accepted | msg/s delivered | CPU per message | fsync-like calls per message "
                 "| device flushes per message |")
        o.append("| --- | --- | --- | --- | --- | --- |")
        for s in order:
            if s == "oceanmx":
                continue
            m = med[s]
            o.append("| {} | {} | {} | {} | {} | {} |".format(
                LABEL.get(s, s), ratio(m["accepted"], b["accepted"]), ratio(m["delivered"], b["delivered"]),
                ratio(m["cpu"], b["cpu"]), ratio(m["fsyncs"], b["fsyncs"]), ratio(m["flushes"], b["flushes"])))
        o.append("")
        o.append("Inverted, oceanmx relative to each peer: " + "; ".join(
            "{}: {} the accepted msg/s, {} the CPU per message".format(
                s, ratio(b["accepted"], med[s]["accepted"]), ratio(b["cpu"], med[s]["cpu"]))
            for s in order if s != "oceanmx") + ".")
        o.append("")

    o.extend(cpu_section(by, med, a.floors))

    o.append("## Every measurement")
    o.append("")
    o.append("| # | server | smtp-source s | until delivered s | msg/s accepted | server CPU µs/msg "
             "| client CPU µs/msg | fsync-like/msg | flushes/msg | notes |")
    o.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for i, r in enumerate(rows, 1):
        m = metrics(r)
        o.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r["rep"], r["server"], fmt(m["source_s"], 2), fmt(m["deliver_s"], 2), fmt(m["accepted"]),
            fmt(m["cpu"]), fmt(m["client_cpu"]), fmt(m["fsyncs"], 2), fmt(m["flushes"], 3),
            (r["notes"] or "").strip().rstrip(";").replace("|", "/")))
    o.append("")

    o.append("## What the figures are")
    o.append("")
    o.append("- **msg/s accepted**: messages / wall-clock time of smtp-source (all sessions finished, "
             "every message answered 250). For oceanmx and Postfix a 250 means the message is on "
             "stable storage (spool / queue file fsynced); OpenSMTPD does not fsync its queue file "
             "before the 250 (its fsync is the maildir file's, at delivery); smtp-sink acknowledges "
             "without storing.")
    o.append("- **msg/s delivered**: messages / time from the start of smtp-source until the last "
             "message is a file in the maildir's `new/` (counted with `find`).")
    o.append("- **server CPU**: user+system CPU of every process and thread of the server (its own "
             "cgroup: for Postfix master, smtpd, cleanup, qmgr, trivial-rewrite, virtual, postlogd, "
             "anvil...; for OpenSMTPD its parent, klondike, control, lookup, pony express, queue, "
             "scheduler and the mail.maildir process of each delivery), from the start of smtp-source until delivery is complete. Kernel work done "
             "on the server's behalf in its context (TCP receive, io_uring workers, fsync) is "
             "included; the journal thread (jbd2) and block I/O completion are not.")
    o.append("- **client CPU**: the same for smtp-source (it shares the {} CPUs with the server).".format(
        info.get("nproc", "?")))
    o.append("- **fsync-like calls**: {} events (fsync/fdatasync/msync reaching the filesystem, "
             "including io_uring IORING_OP_FSYNC) counted by perf for the server's cgroup only.".format(
                 info.get("fsync counting", "n/a")))
    o.append("- **device flushes**: the 'flush requests completed' counter of the spool's block device "
             "(/proc/diskstats column 19, field 16 of Documentation/admin-guide/iostats.rst), for the "
             "whole device during the same window: other activity on the machine is included, and "
             "the filesystem merges concurrent syncs into one journal commit and flush.")
    return print("\n".join(o)) or 0


if __name__ == "__main__":
    sys.exit(main())

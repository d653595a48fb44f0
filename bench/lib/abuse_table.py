#!/usr/bin/env python3
"""abuse_table.py RESULTS_DIR -- the Markdown report of bench/abuse/run.sh (standard library only).

Reads <server>_<phase>.{legit,attack,watch,lost,after}.json (server: postfix =
Postfix + Dovecot, pigeonpost; phase: base, attack) and meta.json from the
results directory, prints the side-by-side table, the goals, and the attackers'
details, and writes results.json (everything in one file).
"""
import json
import os
import sys

sys.dont_write_bytecode = True
NAME = {"postfix": "Postfix + Dovecot", "pigeonpost": "pigeonpost"}
KINDS = [("guess", "password guessers"), ("idle", "idle connections"), ("slow", "slowloris"),
         ("garbage", "oversized literals / garbage"), ("tls", "TLS-handshake flood")]


def load(d, name):
    p = os.path.join(d, name)
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return None


def f(x, nd=0):
    return "–" if x is None else f"{x:,.{nd}f}"


def ratio(a, b):
    return None if a in (None, 0) or b is None else b / a


def rf(r):
    return "–" if r is None else f"{r:.2f}×"


def main():
    d = sys.argv[1]
    meta = load(d, "meta.json") or {}
    servers = [s for s in ("postfix", "pigeonpost") if load(d, f"{s}_base.legit.json") or load(d, f"{s}_attack.legit.json")]
    res = {}
    for s in servers:
        for ph in ("base", "attack"):
            r = {k: load(d, f"{s}_{ph}.{k}.json") for k in ("legit", "attack", "watch", "lost", "after")}
            try:
                r["vmhwm_mb"] = round(int(open(os.path.join(d, f"{s}_{ph}.vmhwm_kb")).read()) / 1024, 1)
            except (OSError, ValueError):
                r["vmhwm_mb"] = None
            res[(s, ph)] = r
    json.dump({"meta": meta, "results": {f"{s}_{ph}": v for (s, ph), v in res.items()}},
              open(os.path.join(d, "results.json"), "w"))

    def lg(s, ph, proto, key):
        r = (res.get((s, ph)) or {}).get("legit") or {}
        return (r.get(proto) or {}).get(key)

    dur, lead = meta.get("duration"), meta.get("attack_lead")
    print(f"Legitimate load from 127.0.0.1 for {dur} s: {meta.get('smtp_clients')} SMTP senders "
          f"({meta.get('smtp_rate') or 'unpaced'} msg/s each, {meta.get('smtp_size')} B), {meta.get('imap_clients')} IMAP "
          f"sessions (LOGIN SELECT FETCH×{meta.get('imap_bodies')} IDLE {meta.get('imap_idle')} s NOOP LOGOUT), "
          f"{meta.get('pop3_clients')} POP3 pullers ({meta.get('msgs')} messages per pull). Attacked: the attackers start "
          f"{lead} s before it and stop with it: {meta.get('guessers')} guessers ({meta.get('guess_ips')} IPs), "
          f"{meta.get('idle_conns')} idle, {meta.get('slowloris')} slowloris (1 byte / {meta.get('slow_gap')} s), "
          f"{meta.get('garbage')} oversized-literal/garbage, {meta.get('tls_flood')} TLS-flood connections, "
          f"from 127.0.1-5.x.\n")
    head = "| |"
    sep = "|---|"
    for s in servers:
        head += f" {NAME[s]} alone | {NAME[s]} attacked | attacked ÷ alone |"
        sep += "---:|---:|---:|"
    print(head)
    print(sep)

    def row(label, get, nd=0, show_ratio=True):
        cells = ""
        for s in servers:
            a, b = get(s, "base"), get(s, "attack")
            fa = a if isinstance(a, str) else f(a, nd)
            fb = b if isinstance(b, str) else f(b, nd)
            r = rf(ratio(a, b)) if show_ratio and not isinstance(a, str) and not isinstance(b, str) else ""
            cells += f" {fa} | {fb} | {r} |"
        print(f"| {label} |{cells}")

    row("SMTP messages/s accepted (250)", lambda s, ph: lg(s, ph, "smtp", "rate"), 1)
    row("SMTP p99 ms (connect → 250)", lambda s, ph: lg(s, ph, "smtp", "p99_ms"), 1)
    row("IMAP commands/s", lambda s, ph: lg(s, ph, "imap", "rate"), 1)
    row("IMAP p99 ms (per command, connect incl.)", lambda s, ph: lg(s, ph, "imap", "p99_ms"), 1)
    row("POP3 pulls/min", lambda s, ph: None if lg(s, ph, "pop3", "rate") is None else lg(s, ph, "pop3", "rate") * 60, 1)
    row("POP3 pull p99 ms", lambda s, ph: lg(s, ph, "pop3", "p99_ms"), 1)
    row("legitimate errors SMTP / IMAP / POP3", lambda s, ph: " / ".join(
        f(lg(s, ph, p, "errors")) for p in ("smtp", "imap", "pop3")), show_ratio=False)

    def lost(s, ph):
        r = res.get((s, ph), {}).get("lost")
        if not r:
            return "–"
        return f"**{r['lost']}** of {r['accepted']:,}" + (f" (+{r['duplicated']} dup)" if r.get("duplicated") else "")
    row("lost messages (250 but no file)", lost, show_ratio=False)

    def mem(s, ph):
        r = res.get((s, ph), {})
        w = r.get("watch") or {}
        if s == "pigeonpost":
            return f"{f(r.get('vmhwm_mb') or w.get('peak_rss_mb'), 1)}"
        return f"{f(w.get('peak_rss_mb'), 0)} / {f(w.get('peak_pss_mb'), 0)} ({w.get('peak_nproc', '–')} procs)"
    row("server peak RSS MB (pigeonpost: VmHWM; Postfix + Dovecot: summed RSS / PSS)", mem, show_ratio=False)
    row("server CPU s in the phase", lambda s, ph: (res.get((s, ph), {}).get("watch") or {}).get("cpu_s"), 1)

    def gr(which):
        def g(s, ph):
            a = (res.get((s, ph), {}).get("attack") or {}).get("guess_rates") or {}
            w = a.get(which)
            if ph == "base":
                return "–"
            if not w:
                return "–"
            return f"{w['per_ip_per_min_median']:.1f} (max {w['per_ip_per_min_max']:.1f})"
        return g
    win = meta.get("guess_window")
    row(f"guesses answered per attacker IP per minute, first {win} s: median (max)", gr("first"), show_ratio=False)
    row(f"… after the first {win} s", gr("after"), show_ratio=False)

    def gtot(s, ph):
        a = (res.get((s, ph), {}).get("attack") or {}).get("kinds", {}).get("guess", {}).get("counters", {})
        if ph == "base" or not a:
            return "–"
        return (f"{a.get('answers_fail', 0):,} / {a.get('answers_refused', 0):,} / {a.get('answers_success', 0)}")
    row("guesses answered in all: password refused / other refusal / accepted", gtot, show_ratio=False)

    def conns(s, ph):
        if ph == "base":
            return "–"
        k = (res.get((s, ph), {}).get("attack") or {}).get("kinds", {})
        t = {}
        for r in k.values():
            for c, v in (r.get("counters") or {}).items():
                t[c] = t.get(c, 0) + v
        if not t:
            return "–"
        refused = sum(t.get(c, 0) for c in ("connect_refused", "connect_reset", "connect_timeout", "tls_handshake_failed",
                                            "tls_handshake_timeout"))
        return (f"{t.get('conns', 0):,} / {refused:,} / {t.get('refused_at_greeting', 0):,} / "
                f"{t.get('closed_by_server', 0):,} / {t.get('open_at_end', 0):,}")
    row("attacker connections: opened / refused at connect or TLS / refused by the first reply / closed by the server"
        " later / still open at the end", conns, show_ratio=False)

    def after(s, ph):
        r = res.get((s, ph), {}).get("after") or {}
        if not r:
            return "–"
        ok = r.get("alive", True) and all((r.get(p) or {}).get("ops", 0) > 0 and not (r.get(p) or {}).get("errors")
                                           for p in ("smtp", "imap", "pop3"))
        return "yes" if ok else "**no** (" + ", ".join(f"{p} {(r.get(p) or {}).get('ops', 0)} ok / "
                                                       f"{(r.get(p) or {}).get('errors', '?')} errors"
                                                       for p in ("smtp", "imap", "pop3")) + ")"
    row("serves normally right after the phase", after, show_ratio=False)
    print()

    # goals
    for s in servers:
        out = []
        for p, key, goal in (("smtp", "rate", "≥ 0.8×"), ("imap", "rate", "≥ 0.8×"), ("pop3", "rate", "≥ 0.8×")):
            r = ratio(lg(s, "base", p, key), lg(s, "attack", p, key))
            out.append(f"{p.upper()} throughput {rf(r)} ({'met' if r is not None and r >= 0.8 else 'NOT met'})")
        for p in ("smtp", "imap", "pop3"):
            r = ratio(lg(s, "base", p, "p99_ms"), lg(s, "attack", p, "p99_ms"))
            out.append(f"{p.upper()} p99 {rf(r)} ({'met' if r is not None and r <= 3 else 'NOT met'})")
        a = (res.get((s, "attack"), {}).get("attack") or {}).get("guess_rates") or {}
        w = a.get("after")
        out.append("guesses after the first window " + ("n/a (the attack was not longer than the window)" if not w else
                   f"{w['per_ip_per_min_max']:.1f}/IP/min max ({'met' if w['per_ip_per_min_max'] <= 10 else 'NOT met'})"))
        m = res.get((s, "attack"), {})
        rss = m.get("vmhwm_mb") if s == "pigeonpost" else (m.get("watch") or {}).get("peak_pss_mb")
        out.append(f"peak {'RSS' if s == 'pigeonpost' else 'PSS (summed over its processes)'} {f(rss, 1)} MB "
                   f"({'met' if rss is not None and rss <= 256 else 'NOT met'})")
        lo = [(res.get((s, ph), {}).get("lost") or {}).get("lost") for ph in ("base", "attack")]
        out.append(f"lost messages {' + '.join(f(x) for x in lo)} ({'met' if all(x == 0 for x in lo) else 'NOT met'})")
        print(f"- goals, {NAME[s]}: " + "; ".join(out))
    print()

    # the attackers in detail
    print("| attackers | server | opened | refused at connect / TLS | refused by the first reply | closed by the server "
          "later (median / max s held) | open at the end | what else |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for k, label in KINDS:
        for s in servers:
            r = (res.get((s, "attack"), {}).get("attack") or {}).get("kinds", {}).get(k)
            if not r:
                continue
            if r.get("error"):
                print(f"| {label} | {NAME[s]} | error: {r['error']} | | | | | |")
                continue
            c = r.get("counters", {})
            refused = sum(c.get(x, 0) for x in ("connect_refused", "connect_reset", "connect_timeout",
                                                "tls_handshake_failed", "tls_handshake_timeout"))
            skip = {"conns", "connect_refused", "connect_reset", "connect_timeout", "tls_handshake_failed",
                    "tls_handshake_timeout", "refused_at_greeting", "closed_by_server", "open_at_end"}
            other = ", ".join(f"{x} {v:,}" for x, v in sorted(c.items()) if x not in skip)
            print(f"| {label} ({r.get('clients')} from {r.get('ips')} IPs) | {NAME[s]} | {c.get('conns', 0):,} | {refused:,} | "
                  f"{c.get('refused_at_greeting', 0):,} | {c.get('closed_by_server', 0):,} ({f(r.get('hold_p50_s'), 1)} / "
                  f"{f(r.get('hold_max_s'), 1)}) | {c.get('open_at_end', 0):,} | {other} |")
    print()

    # where each kind of attacker was cut off: per listener (and mode)
    rows = {}
    for s in servers:
        for k, _ in KINDS:
            r = (res.get((s, "attack"), {}).get("attack") or {}).get("kinds", {}).get(k) or {}
            for where, d in (r.get("by") or {}).items():
                rows.setdefault((k, where), {})[s] = d
    if rows:
        print("Per listener (and mode): connections accepted / closed by the server (mean seconds held) / still open at "
              "the end of the attack" + (" / given up by the attacker after TLS_STALL s" if any(
                  "we_gave_up" in d for v in rows.values() for d in v.values()) else "") + ":\n")
        print("| attackers | where | " + " | ".join(NAME[s] for s in servers) + " |")
        print("|---|---|" + "---:|" * len(servers))
        for (k, where), per in sorted(rows.items(), key=lambda x: ([kk for kk, _ in KINDS].index(x[0][0]), x[0][1])):
            cells = []
            for s in servers:
                d = per.get(s)
                if not d:
                    cells.append("–")
                    continue
                c = d.get("closed_by_server", 0)
                mean = f" ({d['hold_sum_s'] / c:.1f} s)" if c else ""
                cells.append(f"{d.get('conns', 0):,} / {c:,}{mean} / {d.get('open_at_end', 0):,}"
                             + (f" / {d['we_gave_up']:,}" if d.get("we_gave_up") else ""))
            print(f"| {dict(KINDS)[k]} | {where} | " + " | ".join(cells) + " |")
        print()
    for s in servers:
        m = res.get((s, "attack"), {})
        w = m.get("watch") or {}
        rep = []
        for k, _ in KINDS:
            r = (m.get("attack") or {}).get("kinds", {}).get(k) or {}
            for line, n in sorted((r.get("server_replies") or {}).items(), key=lambda x: -x[1])[:3]:
                rep.append(f"{k}: `{line}` ×{n}")
        if rep:
            print(f"- {NAME[s]}, replies and errors the attackers saw (samples): " + "; ".join(rep))
        if w.get("mem_abort_at_s") is not None:
            print(f"- {NAME[s]}: the memory guard stopped the attack after {w['mem_abort_at_s']} s")
        if w and len(w.get("roots_alive", [])) != len(w.get("roots", [])):
            print(f"- {NAME[s]}: **a server process died during the attack** ({w.get('roots')} → {w.get('roots_alive')})")
        if w:
            print(f"- {NAME[s]}: peak established connections on its listeners: legitimate {w.get('peak_conns_legit')}, "
                  f"attackers {w.get('peak_conns_attack')}; RSS at the start / end of the attack phase "
                  f"{f(w.get('start_rss_mb'), 1)} / {f(w.get('end_rss_mb'), 1)} MB")
        md = w.get("metrics_delta") or {}
        keys = [k for k in md if "auth_failures" in k or "connections_total" in k or "messages_received" in k]
        if keys:
            print(f"- {NAME[s]} /metrics growth during the attack phase: " + ", ".join(f"`{k}` +{md[k]:,.0f}" for k in keys))


if __name__ == "__main__":
    main()

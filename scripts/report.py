#!/usr/bin/env python3
"""Writes RESULTS_DIR/report.html: one self-contained page (tables, plots inline, the machine
and flags, which rows to trust and why) from what compare.sh left in RESULTS_DIR.

    scripts/report.py RESULTS_DIR BASELINE PLOT_SCENARIO
"""
import glob
import html
import json
import os
import sys

out, baseline, plot_scenario = sys.argv[1], sys.argv[2], sys.argv[3]


def read(name, default=""):
    try:
        with open(os.path.join(out, name), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return default


def svg(name):
    text = read(name)
    start = text.find("<svg")
    return text[start:] if start >= 0 else "<p>(no plot)</p>"


rows = json.loads(read("summary.json", "[]") or "[]")
sweeps = []
for path in sorted(glob.glob(os.path.join(out, "sweep-*.json"))):
    try:
        with open(path, encoding="utf-8") as f:
            sweeps.append(json.load(f))
    except (OSError, ValueError):
        pass

e = html.escape


def fmt(v, digits=2):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def verdict(r):
    if r.get("failure"):
        return "FAILED: " + r["failure"], "bad"
    if r["mismatches"] or r["errors"]:
        return f"FAILED: {r['mismatches']} bytes corrupted, {r['errors']} errors", "bad"
    if not r.get("witnessed", True):
        return "— (no server counts)", "note"
    if not r["server_agrees"]:
        return "DISAGREE", "bad"
    return "agree", "good"


body = []
body.append("<h1>ringecho compare report</h1>")
body.append("<h2>Machine and flags</h2><pre>" + e(read("machine.txt")) + "</pre>")
body.append(f"<h2>Results (ratios to {e(baseline)}, median of per-round ratios)</h2>")
head = ["scenario", "server", "msgs/s", f"×{baseline}", "p50 µs", "p99 µs", "p99.9 µs",
        "server µs/msg", "user", "sys", f"CPU ×{baseline}", "spread", "syscalls/msg",
        "RSS MiB", "loadgen busy", "loadgen-limited", "FIN/RST", "verdict"]
t = ["<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"]
for r in rows:
    v, cls = verdict(r)
    if r.get("failure"):
        t.append(f"<tr class='{cls}'><td>{e(r['scenario'])}</td><td>{e(r['backend'])}</td>"
                 f"<td colspan='{len(head) - 3}'></td><td>{e(v)}</td></tr>")
        continue
    spread = r.get("cpu_ratio_spread")
    cells = [r["scenario"], r["backend"], fmt(r["msgs_per_s"], 0), fmt(r.get("msgs_ratio")),
             fmt(r["p50_us"], 0), fmt(r["p99_us"], 0), fmt(r["p999_us"], 0),
             fmt(r["server_cpu_us_per_msg"]), fmt(r["server_user_us_per_msg"]),
             fmt(r["server_sys_us_per_msg"]), fmt(r.get("cpu_ratio")),
             f"{spread[0]:.2f}–{spread[1]:.2f}" if spread else "—",
             fmt(r.get("server_syscalls_per_msg")), fmt(r["server_rss_mib"], 1),
             f"{100 * r['loadgen_utilisation']:.0f}%",
             f"{r.get('loadgen_limited_rounds', 0)}/{r['rounds']}",
             f"{r['fin']}/{r['rst']}", v]
    t.append(f"<tr class='{cls}'>" + "".join(f"<td>{e(str(c))}</td>" for c in cells) + "</tr>")
t.append("</table>")
body.append("".join(t))
body.append("""<h2>Which figures to trust</h2><ul>
<li><b>Server µs/msg</b> (the server process's CPU over the measured window, from the
scheduler's nanosecond run time, per echoed message) is the comparable figure: it does not depend on how fast the loadgen is.</li>
<li>Rows marked <b>loadgen-limited</b> in some round: there the loadgen's own CPU, send lag or
achieved rate limited the run, so msgs/s and latency describe the loadgen as much as the
server. On loopback a closed-loop loadgen core is usually saturated.</li>
<li>Scenarios named <b>cap…</b> hold the server to a fraction of a core (a cgroup CPU quota,
see machine.txt), so the server, not the loadgen, is the bottleneck: there msgs/s ×baseline is
what each server does with the same CPU. Their latency is queueing in a saturated, throttled
server and is not comparable with the other rows.</li>
<li>A verdict of <b>—</b>: the server has no metrics endpoint, so its own FIN/RST counts are
not known; the kernel's counters are in each run's JSON.</li>
<li>Ratios are medians of per-round ratios measured minutes apart on the same machine; the
spread column shows how much they moved between rounds.</li></ul>""")
profiles = json.loads(read("profile.json", "[]") or "[]")
if profiles:
    cats = [c[0] for c in profiles[0]["categories"]]
    labels = {"tcp_ip": "TCP/IP and skb", "scheduling": "scheduling and wake-ups",
              "interface": "I/O interface", "user": "user space", "other": "other kernel"}
    colours = {"tcp_ip": "#4e79a7", "scheduling": "#f28e2b", "interface": "#e15759",
               "user": "#59a14f", "other": "#bab0ac"}
    body.append(f"<h2>Where the time goes ({e(plot_scenario)}, perf record -e cpu-clock)</h2>"
                "<p>Server CPU µs per echoed message, split by where perf found it; one short "
                "run per server after the rounds (profile.txt has the top symbols).</p>")
    pt = ["<table><tr><th>server</th>" + "".join(f"<th>{e(labels.get(c, c))} µs</th>" for c in cats)
          + "<th>total µs/msg</th></tr>"]
    for p in profiles:
        pt.append(f"<tr><td>{e(p['server'])}</td>" + "".join(
            f"<td>{c[2]:.2f} ({100 * c[1]:.0f} %)</td>" for c in p["categories"])
            + f"<td>{p['cpu_us_per_msg']:.2f}</td></tr>")
    pt.append("</table>")
    body.append("".join(pt))
    top = max(p["cpu_us_per_msg"] for p in profiles) or 1.0
    width, bar, left = 900, 22, 130
    height = 30 + len(profiles) * (bar + 8) + 40
    g = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
         f"font-family='sans-serif' font-size='12'>"]
    scale = (width - left - 80) / top
    for i, p in enumerate(profiles):
        y = 20 + i * (bar + 8)
        g.append(f"<text x='{left - 6}' y='{y + 15}' text-anchor='end'>{e(p['server'])}</text>")
        x = left
        for c in p["categories"]:
            w = c[2] * scale
            g.append(f"<rect x='{x:.1f}' y='{y}' width='{w:.1f}' height='{bar}' "
                     f"fill='{colours.get(c[0], '#999')}'><title>{e(labels.get(c[0], c[0]))}: "
                     f"{c[2]:.2f} µs</title></rect>")
            x += w
        g.append(f"<text x='{x + 4:.1f}' y='{y + 15}'>{p['cpu_us_per_msg']:.2f} µs</text>")
    y = 20 + len(profiles) * (bar + 8) + 10
    x = left
    for c in cats:
        g.append(f"<rect x='{x}' y='{y}' width='12' height='12' fill='{colours.get(c, '#999')}'/>"
                 f"<text x='{x + 16}' y='{y + 11}'>{e(labels.get(c, c))}</text>")
        x += 165
    g.append(f"<text x='{left}' y='{height - 2}' fill='#555'>server CPU µs per echoed message</text>")
    g.append("</svg>")
    body.append("".join(g))
elif read("profile.txt").startswith("--profile skipped"):
    body.append("<h2>Where the time goes</h2><p>" + e(read("profile.txt")) + "</p>")
body.append(f"<h2>Latency percentiles ({e(plot_scenario)}, round 1)</h2>"
            + svg(f"latency-{plot_scenario}.svg"))
if sweeps:
    body.append("<h2>Latency against offered load</h2>" + svg("latency-load.svg"))
    for s in sweeps:
        knee = s.get("knee_rate")
        body.append(f"<h3>{e(s['label'])}: knee {fmt(knee, 0) if knee else 'none'} msg/s "
                    f"(p99 ≤ {s['p99_bound_us']} µs); {e(s['stopped'])}</h3>")
        st = ["<table><tr><th>offered</th><th>achieved</th><th>p50 µs</th><th>p99 µs</th>"
              "<th>p99.9 µs</th><th>send lag p99 µs</th><th>server µs/msg</th><th>note</th></tr>"]
        for x in s["steps"]:
            note = "" if x["clean"] else "NOT CLEAN"
            if x["loadgen_limited"]:
                note += " loadgen-limited: " + "; ".join(x["limited_reasons"])
            st.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in [
                fmt(x["rate"], 0), fmt(x["achieved"], 0), x["p50_us"], x["p99_us"],
                x["p999_us"], x["send_lag_p99_us"], fmt(x.get("server_cpu_us_per_msg")),
                note]) + "</tr>")
        st.append("</table>")
        body.append("".join(st))
page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ringecho compare report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #111; }}
table {{ border-collapse: collapse; font-size: 13px; margin-bottom: 1em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
th {{ background: #f2f2f2; }}
td:first-child, td:nth-child(2) {{ text-align: left; }}
tr.bad td {{ background: #fde2e2; }}
tr.note td:last-child {{ color: #555; }}
pre {{ background: #f7f7f7; padding: 8px; }}
svg {{ max-width: 100%; height: auto; }}
</style></head><body>
{''.join(body)}
</body></html>
"""
with open(os.path.join(out, "report.html"), "w", encoding="utf-8") as f:
    f.write(page)

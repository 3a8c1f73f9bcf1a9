"""Plots of a benchmark run: reads models.json and server.json in DIR (either may be missing), writes PNGs into DIR
and prints each file name written. Run by bench/main.ts with training/.venv's Python: `python bench/plot.py DIR`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GRAPHS = ["vision", "text", "itm", "vqa_encoder", "cross_kv", "decoder"]  # contract.json's graphs, in its order
COLORS = {"embed_image": "C0", "embed_text": "C1", "caption": "C2", "vqa": "C3", "rank": "C4",
          "student": "C0", "teacher": "C1"}


def _save(fig, out: Path, name: str) -> None:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    print(name)


def _stamp(fig, result: dict) -> None:
    m = result["stamp"]["machine"]
    fig.text(0.995, 0.005, f"{m['cpu_model']}, {m['cores']} cores; {result['stamp']['command']}",
             ha="right", va="bottom", fontsize=6, color="gray")


def server_throughput(s: dict, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for e, r in s["endpoints"].items():
        xs = [p["connections"] for p in r["points"]]
        ax.plot(xs, [p["throughput_rps"] for p in r["points"]], "o-", color=COLORS.get(e), label=e)
        c = s["ceiling"].get(e)
        if c:
            ax.axhline(c["throughput_rps"], color=COLORS.get(e), ls="--", lw=1, label=f"{e} graphs-only ceiling")
        ip = (s.get("in_process_ceiling") or {}).get(e)
        if ip:
            ax.axhline(ip["throughput_rps"], color=COLORS.get(e), ls=":", lw=1.2, label=f"{e} in-process ceiling")
    b = s.get("batching")
    if b:
        ax.plot([b["concurrency"]], [b["off"]["throughput_rps"]], "x", color=COLORS["embed_image"], ms=9,
                label="embed_image, batching off")
    cb = s.get("continuous")
    if cb:
        ax.plot([cb["concurrency"]], [cb["off"]["throughput_rps"]], "+", color=COLORS.get("caption"), ms=10,
                label="caption, continuous batching off")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent connections")
    ax.set_ylabel("requests per second")
    ax.set_title("Server throughput vs concurrency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    _stamp(fig, s)
    _save(fig, out, "server_throughput.png")


def server_latency(s: dict, out: Path) -> None:
    eps = list(s["endpoints"].items())
    fig, axes = plt.subplots(1, len(eps), figsize=(3.2 * len(eps), 3.6), squeeze=False)
    for ax, (e, r) in zip(axes[0], eps):
        points = [p for p in r["points"] if p["latency_ms"]["p50"] is not None]  # None: no request answered
        tp = [p["throughput_rps"] for p in points]
        for q, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^:")):
            ax.plot(tp, [p["latency_ms"][q] for p in points], style, label=q)
        for p in points:
            ax.annotate(f"c{p['connections']}", (p["throughput_rps"], p["latency_ms"]["p50"]), fontsize=6,
                        textcoords="offset points", xytext=(2, -8))
        h = s["half_load"].get(e)
        if h and h["result"]["latency_ms"]["p50"] is not None:
            lat = h["result"]["latency_ms"]
            ax.plot([h["result"]["throughput_rps"]] * 2, [lat["p50"], lat["p99"]], "k|-", ms=10,
                    label="half load p50-p99")
        ax.set_yscale("log")
        ax.set_title(e, fontsize=9)
        ax.set_xlabel("requests per second")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("latency (ms)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Latency percentiles vs throughput (labels: connections)", fontsize=10)
    _stamp(fig, s)
    _save(fig, out, "server_latency.png")


def student_vs_teacher(m: dict | None, s: dict | None, out: Path) -> None:
    panels = []
    if m:
        bars = {}
        for role in ("student", "teacher"):
            b = m["bundles"].get(role)
            if not b:
                continue
            for v, r in b["variants"].items():
                for task in ("caption", "vqa"):
                    for p in r["e2e"][task]:
                        bars.setdefault(f"{task}\n{v} b{p['batch']}", {})[role] = p["ms_per_image"]
        panels.append(("raw onnxruntime: ms per image (lower is better)", bars))
    if s and s.get("teacher"):
        bars = {}
        for task, t in s["teacher"]["tasks"].items():
            for role in ("student", "teacher"):
                p = t[role][-1]
                bars.setdefault(f"{task}\nc{p['connections']}", {})[role] = p["throughput_rps"]
        panels.append(("one server: requests per second (higher is better)", bars))
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4), squeeze=False)
    for ax, (title, bars) in zip(axes[0], panels):
        labels = list(bars)
        for k, role in enumerate(("student", "teacher")):
            xs = [i + (k - 0.5) * 0.38 for i in range(len(labels))]
            ys = [bars[lab].get(role, 0) for lab in labels]
            ax.bar(xs, ys, width=0.38, color=COLORS[role], label=role)
            for x, y, lab in zip(xs, ys, labels):
                other = bars[lab].get("teacher")
                if role == "student" and y and other:
                    ratio = other / y if "ms" in title else y / other
                    ax.annotate(f"{ratio:.1f}x", (x + 0.19, max(y, other)), ha="center", fontsize=7,
                                textcoords="offset points", xytext=(0, 2))
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    if m and not m["bundles"].get("teacher"):
        fig.suptitle("teacher not measured: " + (m.get("teacher_note") or "")[:110], fontsize=7)
    _stamp(fig, m or s)
    _save(fig, out, "student_vs_teacher.png")


def models_graphs(m: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, len(GRAPHS), figsize=(3 * len(GRAPHS), 3.4), squeeze=False)
    for ax, g in zip(axes[0], GRAPHS):
        for role in ("student", "teacher"):
            b = m["bundles"].get(role)
            if not b:
                continue
            for v, r in b["variants"].items():
                pts = r["graphs"][g]
                ax.plot([p["batch"] for p in pts], [p["latency_ms"] for p in pts], "o-" if v == "fp32" else "s--",
                        color=COLORS[role], label=f"{role} {v}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(g, fontsize=9)
        ax.set_xlabel("batch size")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("median latency per run (ms)")
    axes[0][0].legend(fontsize=7)
    _stamp(fig, m)
    _save(fig, out, "models_graphs.png")


def memory(s: dict, out: Path) -> None:
    mem = s["memory"]
    xs, ys = zip(*mem["samples"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(xs, ys, "-", color="C0")
    ax.axhline(mem["rss_mb"]["before"] * 1.1, color="C3", ls="--", lw=1, label="+10% of the start")
    ax.set_xlabel("requests answered")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Server resident memory over {mem['requests']} requests", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    _stamp(fig, s)
    _save(fig, out, "memory.png")


def main(out: Path) -> None:
    m = json.loads((out / "models.json").read_text()) if (out / "models.json").exists() else None
    s = json.loads((out / "server.json").read_text()) if (out / "server.json").exists() else None
    if s:
        server_throughput(s, out)
        server_latency(s, out)
        memory(s, out)
    if m:
        models_graphs(m, out)
    student_vs_teacher(m, s, out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/plot.py RESULTS_DIR")
    main(Path(sys.argv[1]))

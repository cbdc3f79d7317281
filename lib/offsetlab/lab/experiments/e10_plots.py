"""E10's tables (per producer; the recorded moments) and its main figure: one time axis
(seconds from the first send) for the two producers, the consumer group and the cluster
(:mod:`.e10_failover`)."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

__all__ = ["plot_failover", "summary", "table"]

_OK, _LOST, _ERR, _RETRY = "tab:green", "tab:red", "tab:orange", "tab:purple"


def table(run: Any) -> list[dict[str, Any]]:
    """The recorded moments, seconds from the first send (the plot's axis)."""
    t0 = run.t0
    rows = [{"moment": k, "s": round(v - t0, 2)} for k, v in sorted(run.events.items(), key=lambda kv: kv[1])]
    for c in run.leader_changes:
        rows.append({"moment": f"node {c['node']} leads {c['partition']} (from offset {c['offset']})",
                     "s": round(c["at"] - t0, 2)})
    if run.retry_due is not None:
        rows.append({"moment": "retry copy due", "s": round(run.retry_due - t0, 2)})
    if run.retry_delivered_at is not None:
        rows.append({"moment": "retry copy delivered", "s": round(run.retry_delivered_at - t0, 2)})
    return sorted(rows, key=lambda r: r["s"])


def summary(run: Any) -> list[dict[str, Any]]:
    """One row per producer setting: what it sent, had acknowledged, lost, wrote twice."""
    rows = []
    for s in run.topics:
        sent = run.sent(s)
        rows.append({"setting": s, "sent": len(sent),
                     "acknowledged": sum(x.acked_at is not None for x in sent),
                     "failed (reported to the app)": sum(x.error is not None for x in sent),
                     "retried errors (kafka-python log)": sum(e["setting"] == s for e in run.producer_errors
                                                              if e["error"] != "other"),
                     "read back": len(run.read_back[s]),
                     "lost": len(run.lost(s)), "written twice": len(run.written_twice(s))})
    return rows


def plot_failover(run: Any) -> Figure:
    t0 = run.t0
    fig = Figure(figsize=(11, 5.6))
    ax = fig.add_subplot(1, 1, 1)
    lanes = {"acks=all producer": 3.0, "acks=1 producer": 2.0, "consumer group\n(acks=all topic)": 1.0}
    ev = {k: v - t0 for k, v in run.events.items()}
    ax.axvspan(ev["freeze"], ev["resume"], color="0.85", zorder=0)
    ax.axvline(ev["kill"], color="black", lw=1.5)
    ax.text(ev["kill"], 3.62, f" node {run.leader} (leader) SIGKILLed", fontsize=8, va="bottom")
    ax.text(ev["freeze"], 3.62, f" nodes {run.followers[0]}, {run.followers[1]} frozen", fontsize=8,
            va="bottom", color="0.35")
    leader_at = run.new_leader_at("acks=all")
    if leader_at is not None:
        x = leader_at - t0
        ax.axvline(x, color="tab:blue", lw=1.5, ls="--")
        ax.text(x, 3.62, f" node {run.leaders_after['acks=all']} leads", fontsize=8, va="bottom",
                color="tab:blue")
    for setting, y in (("acks=all", 3.0), ("acks=1", 2.0)):
        lost = set(run.lost(setting))
        for s in run.sent(setting):
            sent = s.sent_at - t0
            if s.acked_at is None:
                ax.plot([sent], [y], "x", color=_ERR, ms=6)
                continue
            acked = s.acked_at - t0
            color = _LOST if s.seq in lost else _OK
            ax.plot([sent, acked], [y + 0.12, y - 0.12], color=color, lw=0.8 if s.seq in lost else 0.7,
                    alpha=1.0 if s.seq in lost else 0.55)
        errs = [e["at"] - t0 for e in run.producer_errors if e["setting"] == setting and e["error"] != "other"]
        ax.plot(errs, [y + 0.28] * len(errs), "v", color=_ERR, ms=7, ls="none")
    deliveries = [(t - t0, seq, n) for t, seq, n in run.deliveries]
    ax.plot([t for t, _, n in deliveries if n == 1], [1.0] * sum(1 for *_, n in deliveries if n == 1),
            "|", color=_OK, ms=12)
    for t, seq, n in deliveries:
        if seq == run.params.fail_seq:
            ax.plot([t], [1.0], "o" if n > 1 else "X", color=_RETRY, ms=9)
    if run.retry_due is not None:
        due = run.retry_due - t0
        ax.plot([due], [1.25], "d", color=_RETRY, ms=7)
        ax.text(due, 1.33, " retry copy due", fontsize=8, color=_RETRY)
    ax.set_yticks(list(lanes.values()), list(lanes))
    ax.set_ylim(0.3, 3.9)
    ax.set_xlabel("seconds from the first send")
    ax.set_title("A partition's leader dies: two producers and a consumer group on one time axis")
    handles = [
        Line2D([], [], color=_OK, label="send -> acknowledgement (read back)"),
        Line2D([], [], color=_LOST, label="send -> acknowledgement, then lost"),
        Line2D([], [], marker="x", color=_ERR, ls="none", label="never acknowledged"),
        Line2D([], [], marker="v", color=_ERR, ls="none", label="error kafka-python retried (its log)"),
        Line2D([], [], marker="|", color=_OK, ls="none", ms=10, label="group delivery"),
        Line2D([], [], marker="X", color=_RETRY, ls="none", label="failing delivery (retry copy sent)"),
        Line2D([], [], marker="o", color=_RETRY, ls="none", label="retry copy delivered"),
        Patch(color="0.85", label="followers frozen (SIGSTOP)"),
        Line2D([], [], color="black", label="leader killed"),
        Line2D([], [], color="tab:blue", ls="--", label="new leader (survivor's log)"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, fontsize=8,
              frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig

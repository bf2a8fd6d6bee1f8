"""Report charts drawn with matplotlib (Agg) at print size, returned as PNG bytes.

Figures are sized for the full text width of an A4 page (18 cm) so that 8 pt text in the figure is 8 pt on
paper; colours come from the Okabe-Ito palette, which stays distinguishable for colour-blind readers.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from engagement.report.run import readable_name  # noqa: E402
from engagement.states import STATE_COLOURS as SHARED_COLOURS  # noqa: E402
from engagement.states import UNCERTAIN  # noqa: E402

TEXT_WIDTH_IN = 7.1
DPI = 200
# The states' shared colours (as in the annotated video) in stacking order: engaged states at the bottom, disengaged
# ones on top, uncertain last.
STACKED = ("engaged_in_discussion", "attentive", "taking_notes", "confused", "bored", "distracted", UNCERTAIN)
STATE_COLOURS = {state: SHARED_COLOURS[state] for state in STACKED}
HIGH_COLOUR, LOW_COLOUR = "#009E73", "#D55E00"

plt.rcParams.update({
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
})


@dataclass(frozen=True)
class TimeAxis:
    """How periods map onto the time axis: ``bin_s`` seconds per period, drawn in minutes or in seconds."""

    bin_s: float = 60.0
    unit_s: float = 60.0

    @property
    def width(self) -> float:
        return self.bin_s / self.unit_s

    @property
    def label(self) -> str:
        return f"lecture time ({'minutes' if self.unit_s == 60 else 'seconds'} from start)"

    @property
    def period(self) -> str:
        """A period's name: ``minute``, or ``2-second period`` for short sessions."""
        return "minute" if self.bin_s == 60 else f"{self.bin_s:g}-second period"

    def position(self, bins: np.ndarray) -> np.ndarray:
        return np.asarray(bins, float) * self.width


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def timeline_chart(timeline: pd.DataFrame, time_axis: TimeAxis, duration_s: float, high: int | None,
                   low: int | None) -> bytes:
    """Class engagement score per period, students present behind it, highest and lowest period marked.

    ``timeline`` has columns bin, score, n_students; bin b covers [b, b+1) periods and is drawn at its middle.
    """
    figure, axis = plt.subplots(figsize=(TEXT_WIDTH_IN, 2.2))
    centres = time_axis.position(timeline["bin"].to_numpy(float) + 0.5)
    people_axis = axis.twinx()
    people_axis.bar(centres, timeline["n_students"], width=0.9 * time_axis.width, color="#DDDDDD",
                    label="students present")
    people_axis.set_ylabel("students present", color="#777777")
    people_axis.tick_params(axis="y", colors="#777777")
    people_axis.set_ylim(0, max(1, timeline["n_students"].max()) * 2.5)
    people_axis.spines["right"].set_visible(True)
    axis.set_zorder(people_axis.get_zorder() + 1)
    axis.patch.set_visible(False)

    axis.plot(centres, timeline["score"], color="#0072B2", linewidth=1.6, marker="o" if len(timeline) < 20 else None,
              markersize=3, label="class engagement")
    for period, colour, name in ((high, HIGH_COLOUR, "highest"), (low, LOW_COLOUR, "lowest")):
        if period is not None:
            row = timeline[timeline["bin"] == period].iloc[0]
            axis.scatter(time_axis.position(np.array([period + 0.5])), [row["score"]], s=40, color=colour, zorder=3,
                         label=f"{name} {time_axis.period}")
    axis.set_xlim(0, max(time_axis.position(np.array([duration_s / time_axis.bin_s]))[0],
                         time_axis.position(np.array([timeline["bin"].max() + 1.0]))[0]))
    axis.set_ylim(0, 100)
    axis.set_xlabel(time_axis.label)
    axis.set_ylabel("engagement score (0-100)")
    axis.grid(axis="y", color="#EEEEEE")
    handles, labels = axis.get_legend_handles_labels()
    extra_handles, extra_labels = people_axis.get_legend_handles_labels()
    axis.legend(handles + extra_handles, labels + extra_labels, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=4)
    return _png(figure)


def state_share_chart(shares: pd.DataFrame) -> bytes:
    """Stacked bars of the share of student time in each state; one bar per row of ``shares`` (index = x labels).

    ``shares`` holds one column per state with values in [0, 1] that sum to 1 per row.
    """
    states = [state for state in STATE_COLOURS if state in shares.columns]
    many = len(shares) > 12
    figure, axis = plt.subplots(figsize=(TEXT_WIDTH_IN, 2.0))
    positions = np.arange(len(shares))
    bottom = np.zeros(len(shares))
    for state in states:
        values = shares[state].to_numpy(float) * 100
        axis.bar(positions, values, bottom=bottom, width=0.85 if many else 0.6, color=STATE_COLOURS[state],
                 label=readable_name(state))
        bottom += values
    labels = [str(label) for label in shares.index]
    step = max(1, int(np.ceil(len(labels) / 15)))
    slanted = 8 < len(labels) and not many
    axis.set_xticks(positions[::step], labels[::step], rotation=20 if slanted else 0, ha="right" if slanted else "center")
    axis.set_xlim(-0.6, len(shares) - 0.4)
    axis.set_ylim(0, 100)
    axis.set_ylabel("share of student time (%)")
    axis.set_xlabel(shares.index.name or "")
    axis.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(states))
    return _png(figure)


def heatmap_chart(scores: pd.DataFrame, time_axis: TimeAxis) -> bytes:
    """Engagement score per student (rows, pseudonymous track IDs) and period (columns, columns bin and score).

    Periods in which a student was not seen stay light grey, so absence is never read as disengagement.
    """
    grid = scores.pivot_table(index="track_id", columns="bin", values="score", aggfunc="mean")
    all_bins = np.arange(int(grid.columns.min()), int(grid.columns.max()) + 1)
    grid = grid.reindex(columns=all_bins).sort_index()
    rows = len(grid)
    height = min(3.4, 0.9 + 0.12 * rows)  # capped so that a large class keeps the report within its three pages
    figure, axis = plt.subplots(figsize=(TEXT_WIDTH_IN, height))
    colour_map = plt.get_cmap("viridis").with_extremes(bad="#EEEEEE")
    left, right = time_axis.position(np.array([all_bins[0], all_bins[-1] + 1.0]))
    image = axis.imshow(np.ma.masked_invalid(grid.to_numpy(float)), aspect="auto", cmap=colour_map, vmin=0, vmax=100,
                        interpolation="nearest", extent=(left, right, rows, 0))
    row_step = max(1, int(np.ceil(rows / 32)))
    axis.set_yticks(np.arange(rows)[::row_step] + 0.5, [f"#{int(track)}" for track in grid.index[::row_step]],
                    fontsize=6 if rows > 20 else 8)
    axis.set_xlabel(time_axis.label)
    axis.set_ylabel("student (track ID)")
    bar = figure.colorbar(image, ax=axis, fraction=0.03, pad=0.015)
    bar.set_label("engagement score (0-100)")
    axis.spines[["top", "right"]].set_visible(True)
    return _png(figure)


def session_scores_chart(labels: Sequence[str], scores: Sequence[float | None]) -> bytes:
    """Session engagement score per session of a course, in recording order."""
    figure, axis = plt.subplots(figsize=(TEXT_WIDTH_IN, 2.1))
    positions = np.arange(len(labels))
    values = np.array([np.nan if score is None else score for score in scores], dtype=float)
    axis.plot(positions, values, color="#0072B2", marker="o", linewidth=1.6)
    for position, value in zip(positions, values):
        if not np.isnan(value):
            axis.annotate(f"{value:.0f}", (position, value), textcoords="offset points", xytext=(0, 6), ha="center")
    axis.set_xticks(positions, labels, rotation=20 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center")
    axis.set_xlim(-0.5, len(labels) - 0.5)
    axis.set_ylim(0, 100)
    axis.set_ylabel("session engagement (0-100)")
    axis.grid(axis="y", color="#EEEEEE")
    return _png(figure)
